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

/// What the pushes of a phase cost the store and the server, per push delivered.
pub(crate) struct StoreCost {
    pub(crate) postgres_cpu_us: f64,
    pub(crate) wal_bytes: f64,
    pub(crate) herald_cpu_us: f64,
}

/// Readings taken before a phase on PostgreSQL.
pub(crate) struct StoreMeter {
    client: tokio_postgres::Client,
    wal: i64,
    postgres_cpu: f64,
    herald_cpu: f64,
}

const WAL_POSITION: &str = "SELECT (pg_current_wal_lsn() - '0/0'::pg_lsn)::bigint";

impl StoreMeter {
    pub(crate) async fn start(url: &str, herald: &crate::servers::Server) -> anyhow::Result<Self> {
        let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
        tokio::spawn(connection);
        let wal = client.query_one(WAL_POSITION, &[]).await?.get(0);
        Ok(StoreMeter {
            client,
            wal,
            postgres_cpu: crate::servers::postgres_cpu_secs()?,
            herald_cpu: herald.cpu_secs()?,
        })
    }

    pub(crate) async fn finish(self, herald: &crate::servers::Server, pushes: u64) -> anyhow::Result<StoreCost> {
        let wal: i64 = self.client.query_one(WAL_POSITION, &[]).await?.get(0);
        let n = pushes.max(1) as f64;
        Ok(StoreCost {
            postgres_cpu_us: (crate::servers::postgres_cpu_secs()? - self.postgres_cpu) * 1e6 / n,
            wal_bytes: (wal - self.wal) as f64 / n,
            herald_cpu_us: (herald.cpu_secs()? - self.herald_cpu) * 1e6 / n,
        })
    }
}
