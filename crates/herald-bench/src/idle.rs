//! `idle`: the resident memory of a server per idle, authenticated, subscribed connection,
//! and how fast the connections came up, Herald next to Mosquitto; with `--tls`, both over
//! TLS (Herald's MQTT over TLS listener, a Mosquitto TLS listener, one certificate).

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;

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
    /// Seconds to connect all (128 handshakes in flight at most).
    pub(crate) connect_secs: f64,
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

/// Connects `specs` to `server` (over TLS to its `mqtts` listener when `tls` is given) and
/// measures its memory and how fast the connections came up.
pub(crate) async fn measure_idle(
    server: &Server,
    mut specs: Vec<DeviceSpec>,
    tls: Option<&TlsFiles>,
) -> anyhow::Result<IdleMemory> {
    let addr = match tls {
        Some(_) => server.mqtts.clone().context("the server has no MQTT over TLS listener")?,
        None => server.mqtt.clone(),
    };
    let connector = tls.map(|t| t.connector.clone());
    let n = specs.len();
    let second = specs.split_off(n / 2);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = server.rss_kb()?;
    let started = Instant::now();
    let mut handles = connect_all_with(&addr, specs, None, connector.clone()).await?;
    let mut connect_secs = started.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let half = server.rss_kb()?;
    let started = Instant::now();
    handles.extend(connect_all_with(&addr, second, None, connector).await?);
    connect_secs += started.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = server.rss_kb()?;
    for h in handles {
        h.abort();
    }
    Ok(IdleMemory { before, half, after, n, connect_secs })
}

pub(crate) async fn idle(args: &BenchArgs, herald_bin: &Path) -> anyhow::Result<()> {
    let n = args.connections;
    let tls = if args.tls { Some(TlsFiles::new()?) } else { None };
    let over = if tls.is_some() { " over TLS" } else { "" };
    println!("## Idle connections{over}: {n} authenticated, subscribed, idle\n");
    println!(
        "| server | RSS before (KiB) | RSS with {} connections (KiB) | RSS with {n} connections (KiB) | bytes per connection | bytes per connection, second half | connections per second |",
        n / 2
    );
    println!("|---|---|---|---|---|---|---|");
    let row = |name: &str, m: &IdleMemory| {
        println!(
            "| {name} | {} | {} | {} | {:.0} | {:.0} | {:.0} |",
            m.before,
            m.half,
            m.after,
            m.per_connection(),
            m.marginal(),
            m.n as f64 / m.connect_secs
        )
    };
    let schema = match &args.store_url {
        Some(url) => Some(ScratchSchema::create(url, "herald_bench").await?),
        None => None,
    };
    let mut extra: Vec<String> = tls.as_ref().map(TlsFiles::herald_args).unwrap_or_default();
    if let Some(schema) = &schema {
        extra.extend(["--store-url".to_string(), schema.store_url()]);
    }
    let herald = start_herald_with(herald_bin, &extra, &[]).await?;
    let pool = Arc::new(HttpPool::new(&herald.http, 32).await?);
    let app = create_app(&pool).await?;
    let devices = register_devices(pool.clone(), &app, n, 0).await?;
    drop(pool);
    let mem = measure_idle(&herald, herald_specs(&app, &devices), tls.as_ref()).await?;
    row("herald", &mem);
    drop(herald);
    drop(schema);
    if !args.no_reference {
        let mosquitto = start_mosquitto_with(&args.mosquitto, tls.as_ref()).await?;
        let reference = measure_idle(&mosquitto, mosquitto_specs(n), tls.as_ref()).await?;
        row("mosquitto", &reference);
        println!(
            "\nherald / mosquitto{over}: memory per connection {:.2} (all), {:.2} (second half); connections per second {:.2}\n",
            mem.per_connection() / reference.per_connection(),
            mem.marginal() / reference.marginal(),
            reference.connect_secs / mem.connect_secs
        );
    }
    Ok(())
}
