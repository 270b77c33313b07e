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
    /// MQTT over TLS, when the server listens for it.
    pub(crate) mqtts: Option<String>,
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
    stat_cpu_secs(&format!("/proc/{pid}/stat"))
}

/// CPU seconds the thread of process `pid` named `name` used so far (0 when there is none).
pub(crate) fn thread_cpu_secs(pid: u32, name: &str) -> anyhow::Result<f64> {
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let dir = task?.path();
        if std::fs::read_to_string(dir.join("comm")).is_ok_and(|c| c.trim() == name) {
            return stat_cpu_secs(&dir.join("stat").to_string_lossy());
        }
    }
    Ok(0.0)
}

/// CPU seconds every process named `postgres` on this machine used so far, with the children
/// each has waited for (the postmaster's exited backends).
pub(crate) fn postgres_cpu_secs() -> anyhow::Result<f64> {
    let mut total = 0.0;
    for entry in std::fs::read_dir("/proc")? {
        let dir = entry?.path();
        if std::fs::read_to_string(dir.join("comm")).is_ok_and(|c| c.trim() == "postgres") {
            // A process that ended meanwhile is counted in its parent's children.
            total += stat_fields_secs(&dir.join("stat").to_string_lossy(), &[11, 12, 13, 14]).unwrap_or(0.0);
        }
    }
    Ok(total)
}

fn stat_cpu_secs(path: &str) -> anyhow::Result<f64> {
    stat_fields_secs(path, &[11, 12])
}

/// The sum of the clock-tick fields `which` of a /proc stat file (counted after the command
/// name: 11 utime, 12 stime, 13 cutime, 14 cstime), in seconds.
fn stat_fields_secs(path: &str, which: &[usize]) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(path)?;
    // The fields after the command name, which may hold spaces, start after its ')'.
    let after = stat.rsplit_once(')').context("malformed /proc/PID/stat")?.1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let mut ticks = 0u64;
    for i in which {
        ticks += fields.get(*i).context("a CPU time field is missing")?.parse::<u64>()?;
    }
    // SAFETY: sysconf only reads a constant of the system.
    let per_sec = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    Ok(ticks as f64 / per_sec)
}

pub(crate) fn rss_kb(pid: u32) -> anyhow::Result<u64> {
    kb_field(&format!("/proc/{pid}/status"), "VmRSS:")
}

/// The value of the `key` line (`key   N kB`) of a /proc file such as /proc/meminfo, in KiB.
pub(crate) fn kb_field(path: &str, key: &str) -> anyhow::Result<u64> {
    std::fs::read_to_string(path)?
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .with_context(|| format!("{key} not found in {path}"))
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

/// What every benchmarked node is configured with besides its scenario's file: no per-app
/// rate limits (the load is one app, measuring the node, not the limits).
const BENCH_CONFIG: &str = "[limits]\napp_requests_per_second = 0\napp_pushes_per_second = 0\n";

/// Starts `herald serve` on loopback ports with `extra` arguments and `env` variables. A
/// `--config FILE` among them is extended with [`BENCH_CONFIG`] (it must have no `[limits]`).
pub(crate) async fn start_herald_with(bin: &Path, extra: &[String], env: &[(&str, &str)]) -> anyhow::Result<Server> {
    let config_dir = tempfile::Builder::new().prefix("herald-bench-config").tempdir()?;
    let config = config_dir.path().join("bench.toml");
    let mut args = extra.to_vec();
    let mut text = String::new();
    if let Some(i) = args.iter().position(|a| a == "--config") {
        let given = args.get(i + 1).context("--config without a file")?;
        text = std::fs::read_to_string(given).with_context(|| format!("reading {given}"))?;
        args.drain(i..=i + 1);
    }
    text.push('\n');
    text.push_str(BENCH_CONFIG);
    std::fs::write(&config, text)?;
    let dir = tempfile::Builder::new().prefix("herald-bench").tempdir()?;
    let mut cmd = Command::new(bin);
    cmd.args(["serve", "--http-addr", "127.0.0.1:0", "--mqtt-addr", "127.0.0.1:0", "--log-level", "warn"]);
    cmd.arg("--config").arg(&config);
    cmd.args(&args).envs(env.iter().copied());
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
        mqtts: field("mqtts="),
        _dir: dir,
    })
}

pub(crate) async fn start_mosquitto(bin: &Path) -> anyhow::Result<Server> {
    start_mosquitto_with(bin, "").await
}

/// Mosquitto on a loopback port whose listener `listener_conf` completes (`certfile …` for
/// TLS, `protocol websockets`).
pub(crate) async fn start_mosquitto_with(bin: &Path, listener_conf: &str) -> anyhow::Result<Server> {
    let dir = tempfile::Builder::new().prefix("mosquitto-bench").tempdir()?;
    let port = free_port()?;
    let conf = dir.path().join("mosquitto.conf");
    let text = format!(
        "listener {port} 127.0.0.1\n{listener_conf}allow_anonymous true\nmax_queued_messages 100000\npersistence false\n"
    );
    std::fs::write(&conf, text)?;
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
    Ok(Server { child, http: String::new(), mqtt, mqtts: None, _dir: dir })
}

/// A certificate for localhost from a CA of the bench's own, as files for the servers, and
/// a client configuration that trusts that CA.
pub(crate) struct TlsFiles {
    _dir: tempfile::TempDir,
    pub(crate) cert: std::path::PathBuf,
    pub(crate) key: std::path::PathBuf,
    pub(crate) connector: tokio_rustls::TlsConnector,
}

impl TlsFiles {
    pub(crate) fn new() -> anyhow::Result<TlsFiles> {
        use rustls_pki_types::pem::PemObject;
        let dir = tempfile::Builder::new().prefix("bench-tls").tempdir()?;
        let ca = herald_testkit::fakes::TestCa::new();
        let (chain, key) = ca.server_pem("bench");
        let (cert_file, key_file) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
        std::fs::write(&cert_file, chain)?;
        std::fs::write(&key_file, key)?;
        let mut roots = rustls::RootCertStore::empty();
        roots.add(rustls_pki_types::CertificateDer::from_pem_slice(ca.ca_pem.as_bytes())?)?;
        let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(TlsFiles {
            _dir: dir,
            cert: cert_file,
            key: key_file,
            connector: tokio_rustls::TlsConnector::from(std::sync::Arc::new(config)),
        })
    }

    /// What completes a Mosquitto listener to serve TLS with these files.
    pub(crate) fn mosquitto_conf(&self) -> String {
        format!("certfile {}\nkeyfile {}\n", self.cert.display(), self.key.display())
    }

    /// `herald serve` arguments that turn its TLS listeners on with these files.
    pub(crate) fn herald_args(&self) -> Vec<String> {
        let path = |p: &std::path::Path| p.display().to_string();
        ["--tls-cert", &path(&self.cert), "--tls-key", &path(&self.key)]
            .into_iter()
            .chain(["--mqtts-addr", "127.0.0.1:0", "--https-addr", "127.0.0.1:0"])
            .map(str::to_string)
            .collect()
    }
}
