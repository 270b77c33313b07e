//! A PostgreSQL and a NATS server of a test's own, to stop, kill and restart under a
//! running cluster (the machine's shared ones serve every other test and stay up).
//!
//! [`TestPostgres`] runs `initdb` and `pg_ctl` from the PostgreSQL installation
//! (`pg_config --bindir`, or the newest `/usr/lib/postgresql/*/bin`); PostgreSQL refuses to
//! run as root, so as root it runs as the `postgres` user. [`TestNats`] runs `nats-server`
//! (Debian's in /usr/sbin, which is not on every PATH, or the PATH's), one server or a
//! cluster of them. All listen on loopback on ports picked at start and kept across
//! restarts, so that the nodes' URLs stay right.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A port free now on 127.0.0.1.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port").local_addr().expect("its address").port()
}

/// Waits until something accepts TCP connections on `port`.
async fn listening(port: u16, what: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
        assert!(tokio::time::Instant::now() < deadline, "{what} does not listen on {port}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub struct TestPostgres {
    bin: PathBuf,
    dir: tempfile::TempDir,
    port: u16,
    /// As root, the user PostgreSQL runs as.
    run_as: Option<String>,
}

impl TestPostgres {
    /// A new cluster in a temporary directory, started; `None` (with a line saying so) when
    /// PostgreSQL's programs are not installed here.
    pub async fn start() -> Option<TestPostgres> {
        let Some(bin) = postgres_bindir() else {
            eprintln!("skipped: no PostgreSQL programs (initdb, pg_ctl) found to run a PostgreSQL of the test's own");
            return None;
        };
        let dir = tempfile::tempdir().expect("temp dir");
        // SAFETY: geteuid has no preconditions.
        let run_as = (unsafe { libc::geteuid() } == 0).then(|| "postgres".to_string());
        if let Some(user) = &run_as {
            let chown = Command::new("chown").arg(user).arg(dir.path()).status().expect("chown runs");
            assert!(chown.success(), "chown {user} {}", dir.path().display());
        }
        let mut pg = TestPostgres { bin, dir, port: 0, run_as };
        let data = pg.data();
        pg.run("initdb", &["-D", &data, "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8"]);
        // A port free when picked may be taken before the server binds it (the tests around
        // open connections all the time): another one then.
        for attempt in 1..=3 {
            pg.port = free_port();
            match pg.try_up() {
                Ok(()) => break,
                Err(e) if attempt < 3 => eprintln!("PostgreSQL did not start on port {}, another: {e}", pg.port),
                Err(e) => panic!("{e}"),
            }
        }
        listening(pg.port, "PostgreSQL").await;
        Some(pg)
    }

    /// The URL of its `postgres` database.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    fn data(&self) -> String {
        self.dir.path().join("data").to_str().expect("UTF-8 path").to_string()
    }

    /// `program` of the installation, as the user PostgreSQL runs as.
    fn command(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        match &self.run_as {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(&path);
                c
            }
            None => Command::new(&path),
        }
    }

    fn run(&self, program: &str, args: &[&str]) {
        self.try_run(program, args).unwrap_or_else(|e| panic!("{e}"));
    }

    fn try_run(&self, program: &str, args: &[&str]) -> Result<(), String> {
        let out = self
            .command(program)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("{program} runs: {e}"));
        if out.status.success() {
            return Ok(());
        }
        Err(format!(
            "{program} {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }

    /// `pg_ctl start` on its port; its log's last lines when it failed.
    fn try_up(&self) -> Result<(), String> {
        let (data, log) = (self.data(), self.dir.path().join("postgres.log"));
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -k {} -c max_connections=200",
            self.port,
            self.dir.path().display()
        );
        self.try_run("pg_ctl", &["-D", &data, "-l", log.to_str().expect("UTF-8 path"), "-o", &options, "-w", "start"])
            .map_err(|e| {
                let text = std::fs::read_to_string(&log).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(5).collect();
                format!("{e}\n{}", tail.into_iter().rev().collect::<Vec<_>>().join("\n"))
            })
    }

    async fn up(&self) {
        self.try_up().unwrap_or_else(|e| panic!("{e}"));
        listening(self.port, "PostgreSQL").await;
    }

    /// Stops it as an operator's restart does (fast shutdown: open transactions are rolled
    /// back, connections closed), leaves it down for `down`, and starts it again.
    pub async fn restart(&self, down: Duration) {
        self.stop();
        tokio::time::sleep(down).await;
        self.up().await;
    }

    /// Stops it (fast shutdown), for good.
    pub fn stop(&self) {
        self.run("pg_ctl", &["-D", &self.data(), "-m", "fast", "-w", "stop"]);
    }

    /// A hot standby of `primary`, streaming from it (`pg_basebackup -R`), started on a port
    /// of its own: read-only until [`TestPostgres::promote`].
    pub async fn standby_of(primary: &TestPostgres) -> TestPostgres {
        let dir = tempfile::tempdir().expect("temp dir");
        if let Some(user) = &primary.run_as {
            let chown = Command::new("chown").arg(user).arg(dir.path()).status().expect("chown runs");
            assert!(chown.success(), "chown {user} {}", dir.path().display());
        }
        let pg = TestPostgres { bin: primary.bin.clone(), dir, port: free_port(), run_as: primary.run_as.clone() };
        let port = primary.port.to_string();
        let data = pg.data();
        let args = ["-D", &data, "-h", "127.0.0.1", "-p", &port, "-U", "postgres", "-R", "-X", "stream", "--no-sync"];
        pg.run("pg_basebackup", &args);
        pg.up().await;
        pg
    }

    /// Makes a standby the primary (`pg_ctl promote`, waiting until it takes writes).
    pub fn promote(&self) {
        self.run("pg_ctl", &["-D", &self.data(), "-w", "promote"]);
    }

    /// `127.0.0.1:<port>`.
    pub fn host_port(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for TestPostgres {
    fn drop(&mut self) {
        let data = self.data();
        let stop = ["-D", &data, "-m", "immediate", "stop"];
        let _ = self.command("pg_ctl").args(stop).stdout(Stdio::null()).stderr(Stdio::null()).status();
    }
}

fn postgres_bindir() -> Option<PathBuf> {
    let from_config = Command::new("pg_config")
        .arg("--bindir")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    let mut candidates: Vec<PathBuf> = from_config.into_iter().collect();
    let mut installed: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.path().join("bin")).collect())
        .unwrap_or_default();
    installed.sort_by_key(|p| {
        p.parent().and_then(Path::file_name).and_then(|v| v.to_str()).and_then(|v| v.parse::<u32>().ok())
    });
    candidates.extend(installed.into_iter().rev());
    candidates.into_iter().find(|b| b.join("initdb").exists() && b.join("pg_ctl").exists())
}

/// A `nats-server` of the test's own, or several clustered with each other (routes on
/// loopback): the nodes are given every server's URL, as in production.
pub struct TestNats {
    servers: Vec<NatsServer>,
}

struct NatsServer {
    port: u16,
    /// The port of its cluster routes (a cluster only).
    route_port: Option<u16>,
    child: Option<Child>,
}

impl TestNats {
    /// One server, started; `None` (with a line saying so) when `nats-server` is not
    /// installed here.
    pub async fn start() -> Option<TestNats> {
        Self::cluster(1).await
    }

    /// `n` servers, clustered when more than one, every one started; `None` when
    /// `nats-server` is not installed here.
    pub async fn cluster(n: usize) -> Option<TestNats> {
        if Command::new(nats_server()).arg("--version").output().is_err() {
            eprintln!("skipped: nats-server is not installed here");
            return None;
        }
        let servers = (0..n)
            .map(|_| NatsServer { port: free_port(), route_port: (n > 1).then(free_port), child: None })
            .collect();
        let mut nats = TestNats { servers };
        for i in 0..n {
            nats.up(i).await;
        }
        Some(nats)
    }

    /// Every server's URL, separated by commas (what `bus_url` takes).
    pub fn url(&self) -> String {
        self.servers.iter().map(|s| format!("nats://127.0.0.1:{}", s.port)).collect::<Vec<_>>().join(",")
    }

    async fn up(&mut self, i: usize) {
        let routes: Vec<String> =
            self.servers.iter().filter_map(|s| s.route_port).map(|p| format!("nats://127.0.0.1:{p}")).collect();
        let server = &mut self.servers[i];
        let mut command = Command::new(nats_server());
        command.args(["-a", "127.0.0.1", "-p", &server.port.to_string()]);
        if let Some(route_port) = server.route_port {
            command.args(["--cluster_name", "herald-test", "--cluster", &format!("nats://127.0.0.1:{route_port}")]);
            command.args(["--routes", &routes.join(",")]);
        }
        let child = command.stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("nats-server runs");
        server.child = Some(child);
        listening(server.port, "nats-server").await;
    }

    /// SIGKILL to every server: the bus is gone at once, every node's connection with it.
    pub fn kill9(&mut self) {
        for i in 0..self.servers.len() {
            self.kill9_one(i);
        }
    }

    /// SIGKILL to server `i` (from 0).
    pub fn kill9_one(&mut self, i: usize) {
        if let Some(mut child) = self.servers[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts every server again on the same ports.
    pub async fn restart(&mut self) {
        for i in 0..self.servers.len() {
            self.restart_one(i).await;
        }
    }

    /// Starts server `i` again on its ports.
    pub async fn restart_one(&mut self, i: usize) {
        self.kill9_one(i);
        self.up(i).await;
    }

    /// Waits until the servers see each other (each one's routes up), so that a message
    /// published on one reaches subscribers on another.
    pub async fn routed(&self) {
        let n = self.servers.len();
        if n < 2 {
            return;
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        let urls: Vec<String> = self.servers.iter().map(|s| format!("nats://127.0.0.1:{}", s.port)).collect();
        for to in &urls[1..] {
            while !routed_between(&urls[0], to).await {
                assert!(tokio::time::Instant::now() < deadline, "the NATS servers did not form a cluster");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Whether a message published on the server at `from` reaches a subscriber on `to`.
async fn routed_between(from: &str, to: &str) -> bool {
    use futures_util::StreamExt;
    let (Ok(a), Ok(b)) = (async_nats::connect(from).await, async_nats::connect(to).await) else {
        return false;
    };
    let subject = format!("probe.{}", herald_core::crypto::random_alnum(8));
    let Ok(mut sub) = b.subscribe(subject.clone()).await else { return false };
    let _ = b.flush().await;
    for _ in 0..10 {
        let _ = a.publish(subject.clone(), "x".into()).await;
        let _ = a.flush().await;
        if let Ok(Some(_)) = tokio::time::timeout(Duration::from_millis(100), sub.next()).await {
            return true;
        }
    }
    false
}

impl Drop for TestNats {
    fn drop(&mut self) {
        self.kill9();
    }
}

fn nats_server() -> &'static str {
    if Path::new("/usr/sbin/nats-server").exists() { "/usr/sbin/nats-server" } else { "nats-server" }
}
