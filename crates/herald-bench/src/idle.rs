//! `idle`: the resident memory of a server per idle, authenticated, subscribed connection,
//! Herald next to Mosquitto.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use herald_testkit::ScratchSchema;

use crate::BenchArgs;
use crate::load::*;
use crate::servers::*;

/// Connects `specs` to `server` and reports the server's resident memory per connection.
/// What holding idle connections costs a server: RSS before any, with half of them, and
/// with all (each 3 s after the last connection is up).
pub(crate) struct IdleMemory {
    pub(crate) before: u64,
    pub(crate) half: u64,
    pub(crate) after: u64,
    pub(crate) n: usize,
}

impl IdleMemory {
    /// Bytes per connection over all of them.
    pub(crate) fn per_connection(&self) -> f64 {
        self.after.saturating_sub(self.before) as f64 * 1024.0 / self.n as f64
    }

    /// Bytes per connection of the second half only: what one more connection costs once the
    /// server runs, without what the first connections took from memory left free earlier.
    pub(crate) fn marginal(&self) -> f64 {
        self.after.saturating_sub(self.half) as f64 * 1024.0 / (self.n - self.n / 2) as f64
    }
}

pub(crate) async fn measure_idle(server: &Server, mut specs: Vec<DeviceSpec>) -> anyhow::Result<IdleMemory> {
    let n = specs.len();
    let second = specs.split_off(n / 2);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = server.rss_kb()?;
    let mut handles = connect_all(&server.mqtt, specs, None).await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let half = server.rss_kb()?;
    handles.extend(connect_all(&server.mqtt, second, None).await?);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = server.rss_kb()?;
    for h in handles {
        h.abort();
    }
    Ok(IdleMemory { before, half, after, n })
}

pub(crate) async fn idle(args: &BenchArgs, herald_bin: &Path) -> anyhow::Result<()> {
    let n = args.connections;
    println!("## Idle connections: {n} authenticated, subscribed, idle\n");
    println!(
        "| server | RSS before (KiB) | RSS with {} connections (KiB) | RSS with {n} connections (KiB) | bytes per connection | bytes per connection, second half |",
        n / 2
    );
    println!("|---|---|---|---|---|---|");
    let row = |name: &str, m: &IdleMemory| {
        println!(
            "| {name} | {} | {} | {} | {:.0} | {:.0} |",
            m.before,
            m.half,
            m.after,
            m.per_connection(),
            m.marginal()
        )
    };
    let schema = match &args.store_url {
        Some(url) => Some(ScratchSchema::create(url, "herald_bench").await?),
        None => None,
    };
    let herald = start_herald(herald_bin, schema.as_ref().map(ScratchSchema::store_url).as_deref()).await?;
    let pool = Arc::new(HttpPool::new(&herald.http, 32).await?);
    let app = create_app(&pool).await?;
    let devices = register_devices(pool.clone(), &app, n, 0).await?;
    drop(pool);
    let mem = measure_idle(&herald, herald_specs(&app, &devices)).await?;
    row("herald", &mem);
    drop(herald);
    drop(schema);
    if !args.no_reference {
        let mosquitto = start_mosquitto(&args.mosquitto).await?;
        let reference = measure_idle(&mosquitto, mosquitto_specs(n)).await?;
        row("mosquitto", &reference);
        println!(
            "\nherald / mosquitto memory per connection: {:.2} (all), {:.2} (second half)\n",
            mem.per_connection() / reference.per_connection(),
            mem.marginal() / reference.marginal()
        );
    }
    Ok(())
}
