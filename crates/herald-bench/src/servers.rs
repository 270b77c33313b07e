//! The servers under test, as child processes on loopback: Herald (`herald serve`),
//! Mosquitto; their resident memory and CPU time from /proc.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::net::TcpStream;

/// A server under test: a child process and where it listens.
pub(crate) struct Server {
    pub(crate) child: Child,
    pub(crate) http: String,
    pub(crate) mqtt: String,
    pub(crate) _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    pub(crate) fn rss_kb(&self) -> anyhow::Result<u64> {
        rss_kb(self.child.id())
    }

    /// CPU seconds (user + system) the server process used so far.
    pub(crate) fn cpu_secs(&self) -> anyhow::Result<f64> {
        cpu_secs(self.child.id())
    }
}

/// CPU seconds (user + system) process `pid` used so far, from /proc/PID/stat.
pub(crate) fn cpu_secs(pid: u32) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The fields after the command name, which may hold spaces, start after its ')'.
    let after = stat.rsplit_once(')').context("malformed /proc/PID/stat")?.1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = fields.get(11).context("utime missing")?.parse::<u64>()?
        + fields.get(12).context("stime missing")?.parse::<u64>()?;
    // SAFETY: sysconf only reads a constant of the system.
    let per_sec = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    Ok(ticks as f64 / per_sec)
}

pub(crate) fn rss_kb(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("VmRSS not found")
}

pub(crate) const ADMIN_TOKEN: &str = "bench-admin-token";

pub(crate) fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

pub(crate) async fn start_herald(bin: &Path, store_url: Option<&str>) -> anyhow::Result<Server> {
    let extra = match store_url {
        Some(url) => vec!["--store-url".to_string(), url.to_string()],
        None => vec![],
    };
    start_herald_with(bin, &extra, &[]).await
}

/// Starts `herald serve` on loopback ports with `extra` arguments and `env` variables.
pub(crate) async fn start_herald_with(bin: &Path, extra: &[String], env: &[(&str, &str)]) -> anyhow::Result<Server> {
    let dir = tempfile::Builder::new().prefix("herald-bench").tempdir()?;
    let mut cmd = Command::new(bin);
    cmd.args(["serve", "--http-addr", "127.0.0.1:0", "--mqtt-addr", "127.0.0.1:0", "--log-level", "warn"]);
    cmd.args(extra).envs(env.iter().copied());
    let mut child = cmd
        .arg("--data-dir")
        .arg(dir.path())
        .env("HERALD_ADMIN_TOKEN", ADMIN_TOKEN)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("starting herald serve")?;
    let stdout = child.stdout.take().context("stdout")?;
    let line = tokio::task::spawn_blocking(move || {
        use std::io::BufRead;
        std::io::BufReader::new(stdout).lines().map_while(Result::ok).find(|l| l.starts_with("herald ready "))
    })
    .await?
    .context("herald did not print its ready line")?;
    let field = |name: &str| line.split_whitespace().find_map(|w| w.strip_prefix(name)).map(str::to_string);
    Ok(Server {
        child,
        http: field("http=").context("http address")?,
        mqtt: field("mqtt=").context("mqtt address")?,
        _dir: dir,
    })
}

pub(crate) async fn start_mosquitto(bin: &Path) -> anyhow::Result<Server> {
    let dir = tempfile::Builder::new().prefix("mosquitto-bench").tempdir()?;
    let port = free_port()?;
    let conf = dir.path().join("mosquitto.conf");
    std::fs::write(
        &conf,
        format!("listener {port} 127.0.0.1\nallow_anonymous true\nmax_queued_messages 100000\npersistence false\n"),
    )?;
    let child = Command::new(bin)
        .arg("-c")
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    let mqtt = format!("127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(&mqtt).await.is_err() {
        if Instant::now() > deadline {
            bail!("mosquitto did not listen on {mqtt}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(Server { child, http: String::new(), mqtt, _dir: dir })
}
