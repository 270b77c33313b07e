//! `idle`: the resident memory of a server per idle, authenticated, subscribed connection,
//! and how fast the connections came up, Herald next to Mosquitto; with `--tls`, both over
//! TLS (Herald's MQTT over TLS listener, a Mosquitto TLS listener, one certificate); with
//! `--ws`, Herald over WebSocket (`/mqtt`) next to Herald over plain TCP (Mosquitto's
//! websockets listener, libwebsockets, does not start on these machines).

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;

use herald_testkit::ScratchSchema;

use crate::BenchArgs;
use crate::load::*;
use crate::servers::*;

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

/// Connects `specs` to `addr` of `server` over `link` and measures the server's memory and
/// how fast the connections came up.
pub(crate) async fn measure_idle(
    server: &Server,
    addr: &str,
    link: Link,
    mut specs: Vec<DeviceSpec>,
) -> anyhow::Result<IdleMemory> {
    let n = specs.len();
    let second = specs.split_off(n / 2);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = server.rss_kb()?;
    let started = Instant::now();
    let mut handles = connect_all_with(addr, specs, None, link.clone()).await?;
    let mut connect_secs = started.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let half = server.rss_kb()?;
    let started = Instant::now();
    handles.extend(connect_all_with(addr, second, None, link).await?);
    connect_secs += started.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = server.rss_kb()?;
    for h in handles {
        h.abort();
    }
    Ok(IdleMemory { before, half, after, n, connect_secs })
}

/// What the idle devices connect over.
enum Over {
    Tcp,
    Tls(TlsFiles),
    Ws,
}

pub(crate) async fn idle(args: &BenchArgs, herald_bin: &Path) -> anyhow::Result<()> {
    let n = args.connections;
    let over = match (args.tls, args.ws) {
        (true, _) => Over::Tls(TlsFiles::new()?),
        (_, true) => Over::Ws,
        _ => Over::Tcp,
    };
    let (over_text, link, herald_extra, mosquitto_conf) = match &over {
        Over::Tcp => ("", Link::Tcp, Vec::new(), String::new()),
        Over::Tls(files) => {
            (" over TLS", Link::Tls(files.connector.clone()), files.herald_args(), files.mosquitto_conf())
        }
        Over::Ws => (" over WebSocket", Link::Ws, Vec::new(), String::new()),
    };
    println!("## Idle connections{over_text}: {n} authenticated, subscribed, idle\n");
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
    let mem = measure_herald(args, herald_bin, &over, link.clone(), herald_extra).await?;
    row("herald", &mem);
    if matches!(over, Over::Ws) {
        let tcp = measure_herald(args, herald_bin, &Over::Tcp, Link::Tcp, Vec::new()).await?;
        row("herald over TCP", &tcp);
        println!(
            "\nherald over WebSocket / over TCP: memory per connection {:.2} (all), {:.2} (second half); connections per second {:.2}\n",
            mem.per_connection() / tcp.per_connection(),
            mem.marginal() / tcp.marginal(),
            tcp.connect_secs / mem.connect_secs
        );
    } else if !args.no_reference {
        let mosquitto = start_mosquitto_with(&args.mosquitto, &mosquitto_conf).await?;
        let reference = measure_idle(&mosquitto, &mosquitto.mqtt.clone(), link, mosquitto_specs(n)).await?;
        row("mosquitto", &reference);
        println!(
            "\nherald / mosquitto{over_text}: memory per connection {:.2} (all), {:.2} (second half); connections per second {:.2}\n",
            mem.per_connection() / reference.per_connection(),
            mem.marginal() / reference.marginal(),
            reference.connect_secs / mem.connect_secs
        );
    }
    Ok(())
}

/// A fresh Herald with `n` registered devices, connected over `over` and measured.
async fn measure_herald(
    args: &BenchArgs,
    herald_bin: &Path,
    over: &Over,
    link: Link,
    mut extra: Vec<String>,
) -> anyhow::Result<IdleMemory> {
    let schema = match &args.store_url {
        Some(url) => Some(ScratchSchema::create(url, "herald_bench").await?),
        None => None,
    };
    if let Some(schema) = &schema {
        extra.extend(["--store-url".to_string(), schema.store_url()]);
    }
    let herald = start_herald_with(herald_bin, &extra, &[]).await?;
    let pool = Arc::new(HttpPool::new(&herald.http, 32).await?);
    let app = create_app(&pool).await?;
    let devices = register_devices(pool.clone(), &app, args.connections, 0).await?;
    drop(pool);
    let addr = match over {
        Over::Tcp => herald.mqtt.clone(),
        Over::Tls(_) => herald.mqtts.clone().context("herald has no MQTT over TLS listener")?,
        Over::Ws => herald.http.clone(),
    };
    measure_idle(&herald, &addr, link, herald_specs(&app, &devices)).await
}
