//! What a node logged, kept in memory: its lines are searched by tests and printed when a
//! test fails. A node in the test process logs here through a subscriber of its own (set on
//! every thread the node runs on); a process node's standard error is read into one.

use std::io::Write;
use std::sync::{Arc, Mutex};

use tracing_subscriber::fmt::MakeWriter;

/// The lines a node logged.
#[derive(Clone, Default)]
pub struct Log(Arc<Mutex<Vec<String>>>);

impl Log {
    pub fn push(&self, line: String) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).push(line);
    }

    pub fn contains(&self, needle: &str) -> bool {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).iter().any(|l| l.contains(needle))
    }

    /// The last `n` lines.
    pub fn tail(&self, n: usize) -> Vec<String> {
        let lines = self.0.lock().unwrap_or_else(|e| e.into_inner());
        lines[lines.len().saturating_sub(n)..].to_vec()
    }

    /// Prints the last lines, when the test that owns the node is failing.
    pub(crate) fn print_if_panicking(&self, whose: &str) {
        if std::thread::panicking() {
            let tail = self.tail(60);
            eprintln!("--- {whose} log (last {} lines) ---", tail.len());
            for line in tail {
                eprintln!("{line}");
            }
        }
    }

    /// A subscriber that writes a node's events here: the node's crates at debug, the rest
    /// at info.
    pub(crate) fn dispatch(&self) -> tracing::Dispatch {
        let filter = tracing_subscriber::EnvFilter::new("herald=debug,herald_store=debug,herald_core=debug,info");
        tracing::Dispatch::new(
            tracing_subscriber::fmt().with_env_filter(filter).with_ansi(false).with_writer(self.clone()).finish(),
        )
    }
}

/// One event being formatted; its lines join the log when it is done.
pub struct LineWriter {
    log: Log,
    buf: Vec<u8>,
}

impl Write for LineWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for LineWriter {
    fn drop(&mut self) {
        for line in String::from_utf8_lossy(&self.buf).lines() {
            self.log.push(line.to_owned());
        }
    }
}

impl<'a> MakeWriter<'a> for Log {
    type Writer = LineWriter;

    fn make_writer(&'a self) -> LineWriter {
        LineWriter { log: self.clone(), buf: Vec::new() }
    }
}
