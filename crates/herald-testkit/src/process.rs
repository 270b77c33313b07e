//! [`TestProcess`]: `herald serve` as a process of its own, for what only a process shows:
//! kill -9, SIGTERM, restarts on the same data, the command line.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use herald_store::scratch::ScratchSchema;

use crate::client::Endpoint;
use crate::logs::Log;
use crate::{ADMIN_TOKEN, Backend, WAIT};

pub struct TestProcess {
    child: Child,
    endpoint: Endpoint,
    bin: PathBuf,
    dir: PathBuf,
    /// `serve` arguments, kept for restarts.
    args: Vec<String>,
    /// The `herald ready …` line: the addresses it listens on.
    ready: String,
    tmp: Option<tempfile::TempDir>,
    /// Dropped after the process.
    schema: Option<ScratchSchema>,
}

impl std::ops::Deref for TestProcess {
    type Target = Endpoint;
    fn deref(&self) -> &Endpoint {
        &self.endpoint
    }
}

impl TestProcess {
    /// `bin serve` on `backend` (see [`crate::herald_bin`]), with a data directory of its
    /// own; `None` when PostgreSQL is asked for and not configured here.
    pub async fn start(bin: &Path, backend: Backend) -> Option<TestProcess> {
        Self::start_with(bin, backend, &[]).await
    }

    /// As [`TestProcess::start`], with `extra` arguments (a `--config` file, say).
    pub async fn start_with(bin: &Path, backend: Backend, extra: &[&str]) -> Option<TestProcess> {
        let tmp = tempfile::tempdir().expect("temp dir");
        let schema = match backend {
            Backend::Sqlite => None,
            Backend::Postgres => Some(ScratchSchema::for_test().await?),
        };
        let mut args: Vec<String> = schema.iter().flat_map(|s| ["--store-url".to_string(), s.store_url()]).collect();
        args.extend(extra.iter().map(|a| a.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut p = Self::start_in(bin, tmp.path(), &args).await;
        p.tmp = Some(tmp);
        p.schema = schema;
        Some(p)
    }

    /// `bin serve --data-dir dir` with `extra` arguments, on port 0.
    pub async fn start_in(bin: &Path, dir: &Path, extra: &[&str]) -> TestProcess {
        let mut cmd = Command::new(bin);
        cmd.arg("serve")
            .arg("--data-dir")
            .arg(dir)
            .args(["--http-addr", "127.0.0.1:0", "--mqtt-addr", "127.0.0.1:0", "--log-level", "herald=debug,info"])
            .args(extra)
            .env("HERALD_ADMIN_TOKEN", ADMIN_TOKEN)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, _) in std::env::vars() {
            if k.starts_with("HERALD_") && k != "HERALD_ADMIN_TOKEN" {
                cmd.env_remove(k);
            }
        }
        let mut child = cmd.spawn().expect("spawn herald");
        let log = Log::default();
        let stderr = child.stderr.take().expect("stderr");
        let sink = log.clone();
        let mut file = log_file(child.id());
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(f) = file.as_mut() {
                    use std::io::Write;
                    let _ = writeln!(f, "{line}");
                }
                sink.push(line);
            }
        });
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let ready = tokio::task::spawn_blocking(move || {
            loop {
                match rx.recv_timeout(WAIT) {
                    Ok(line) if line.starts_with("herald ready ") => return Some(line),
                    Ok(_) => continue,
                    Err(_) => return None,
                }
            }
        })
        .await
        .unwrap();
        let Some(ready) = ready else {
            panic!("herald did not become ready; its log:\n{}", log.tail(200).join("\n"));
        };
        let field = |name: &str| listener(&ready, name).unwrap_or_default();
        TestProcess {
            child,
            endpoint: Endpoint { http: field("http"), mqtt: field("mqtt"), log },
            bin: bin.to_path_buf(),
            dir: dir.to_path_buf(),
            args: extra.iter().map(|s| s.to_string()).collect(),
            tmp: None,
            schema: None,
            ready,
        }
    }

    /// The address of the listener `name` (`http`, `mqtt`, `https`, `mqtts`), if it listens.
    pub fn listener(&self, name: &str) -> Option<String> {
        listener(&self.ready, name)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL: no chance to flush anything.
    pub fn kill9(&mut self) {
        self.child.kill().expect("kill -9");
        self.child.wait().expect("reap");
    }

    /// SIGTERM: a graceful stop.
    pub fn terminate(&self) {
        // SAFETY: kill only sends a signal to the child's pid.
        let sent = unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        assert_eq!(sent, 0, "SIGTERM to the herald process");
    }

    /// SIGHUP: read the TLS certificate files again.
    pub fn hangup(&self) {
        // SAFETY: kill only sends a signal to the child's pid.
        let sent = unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGHUP) };
        assert_eq!(sent, 0, "SIGHUP to the herald process");
    }

    /// Restarts on the same data directory and store (after `kill9` or a stop).
    pub async fn restart(mut self) -> TestProcess {
        let (tmp, schema) = (self.tmp.take(), self.schema.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
        let args: Vec<&str> = self.args.iter().map(String::as_str).collect();
        let mut next = Self::start_in(&self.bin, &self.dir, &args).await;
        next.tmp = tmp;
        next.schema = schema;
        next
    }

    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = std::time::Instant::now() + timeout;
        while std::time::Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for TestProcess {
    fn drop(&mut self) {
        self.log.print_if_panicking("herald process");
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.schema.take();
    }
}

/// `name=ADDR` of a `herald ready` line.
fn listener(ready: &str, name: &str) -> Option<String> {
    ready.split_whitespace().find_map(|w| w.strip_prefix(name)?.strip_prefix('=')).map(str::to_string)
}

/// Where a process's log is kept as well, when `HERALD_TEST_LOG_DIR` names a directory:
/// `<dir>/<pid>.log`. The soak kills processes, and their logs (in memory) go with them;
/// kept, a late delivery the ledger names can be followed in the nodes' own words.
fn log_file(pid: u32) -> Option<std::fs::File> {
    let dir = std::env::var_os("HERALD_TEST_LOG_DIR")?;
    let path = std::path::Path::new(&dir).join(format!("{pid}.log"));
    std::fs::File::create(&path).map_err(|e| eprintln!("cannot keep the log in {}: {e}", path.display())).ok()
}
