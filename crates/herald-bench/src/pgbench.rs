//! The PostgreSQL reference of the push scenario on `--store-url`: `pgbench -N -c 32 -j 2 -M
//! prepared` (the simple-update transaction: one UPDATE, one SELECT, one INSERT, a commit) on
//! the same server, in a scratch schema of its own, for as many seconds as a push phase.

use std::process::Stdio;

use herald_testkit::ScratchSchema;
use tokio::process::Command;

use crate::BenchArgs;

/// Clients pgbench runs, as the issue measured it.
const CLIENTS: &str = "32";

/// pgbench's transactions per second on `url`.
pub(crate) async fn tps(args: &BenchArgs, url: &str) -> anyhow::Result<f64> {
    let schema = ScratchSchema::create(url, "herald_pgbench").await?;
    let pgbench = |extra: &[&str]| {
        let mut c = Command::new(&args.pgbench);
        c.env("PGOPTIONS", schema.options()).args(extra).arg(url).stdin(Stdio::null());
        c
    };
    let init = pgbench(&["-i", "-q", "-s", "1"]).output().await?;
    anyhow::ensure!(init.status.success(), "pgbench -i failed: {}", String::from_utf8_lossy(&init.stderr));
    let seconds = args.seconds.to_string();
    let out = pgbench(&["-N", "-c", CLIENTS, "-j", "2", "-M", "prepared", "-T", &seconds]).output().await?;
    let text = String::from_utf8_lossy(&out.stdout);
    anyhow::ensure!(out.status.success(), "pgbench failed: {}", String::from_utf8_lossy(&out.stderr));
    let tps = text
        .lines()
        .find_map(|l| l.strip_prefix("tps = ")?.split_whitespace().next()?.parse::<f64>().ok())
        .ok_or_else(|| anyhow::anyhow!("no tps line in pgbench's output:\n{text}"))?;
    drop(schema);
    Ok(tps)
}
