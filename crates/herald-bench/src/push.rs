//! `push`: unicast pushes end to end, at full speed and at a fixed rate, Herald next to
//! Mosquitto; and the machinery of every timed phase (`drive`).

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::bail;
use bytes::{Bytes, BytesMut};
use herald_mqtt::{Connect, MqttStr, Packet, Protocol, Publish, QoS, decode};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;

use herald_testkit::ScratchSchema;

use crate::BenchArgs;
use crate::cluster;
use crate::load::*;
use crate::servers::*;

/// Where deliveries are counted: in this process, or in `bench hold` worker processes
/// (one process cannot open more than about 20,000 files here).
pub(crate) enum Collector {
    Local(Arc<Receipts>),
    Workers(Vec<cluster::Worker>),
}

impl Collector {
    pub(crate) async fn received(&self) -> anyhow::Result<u64> {
        match self {
            Collector::Local(r) => Ok(r.received.load(Ordering::Relaxed)),
            Collector::Workers(ws) => {
                let mut n = 0;
                for w in ws {
                    n += w.received().await?;
                }
                Ok(n)
            }
        }
    }

    /// The latencies recorded so far (µs), and a fresh start for the next phase.
    pub(crate) async fn take_latencies(&self) -> anyhow::Result<Vec<u64>> {
        match self {
            Collector::Local(r) => {
                r.received.store(0, Ordering::Relaxed);
                Ok(std::mem::take(&mut *r.latencies_us.lock()))
            }
            Collector::Workers(ws) => {
                let mut all = Vec::new();
                for w in ws {
                    all.extend(w.take_latencies().await?);
                }
                Ok(all)
            }
        }
    }
}

pub(crate) struct PhaseResult {
    pub(crate) sent: u64,
    pub(crate) received: u64,
    pub(crate) seconds: f64,
    pub(crate) p50_ms: f64,
    pub(crate) p99_ms: f64,
    pub(crate) max_ms: f64,
    /// On PostgreSQL: what each push cost the store and the server.
    pub(crate) store_cost: Option<crate::pgbench::StoreCost>,
}

impl PhaseResult {
    pub(crate) fn rate(&self) -> f64 {
        self.received as f64 / self.seconds
    }
}

pub(crate) fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx] as f64 / 1000.0
}

/// Sends for `seconds` with `send(seq, target)`: closed loop with `concurrency` in flight
/// when `rate` is None, else open loop at `rate` per second. Waits for the deliveries.
pub(crate) async fn drive<F, Fut>(
    targets: usize,
    seconds: u64,
    concurrency: usize,
    rate: Option<u64>,
    receipts: &Collector,
    send: F,
) -> anyhow::Result<PhaseResult>
where
    F: Fn(usize, usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send,
{
    let send = Arc::new(send);
    let seq = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let stop_at = started + Duration::from_secs(seconds);
    let errors = Arc::new(AtomicU64::new(0));
    match rate {
        None => {
            let mut workers = Vec::new();
            for _ in 0..concurrency {
                let (send, seq, errors) = (send.clone(), seq.clone(), errors.clone());
                workers.push(tokio::spawn(async move {
                    while Instant::now() < stop_at {
                        let s = seq.fetch_add(1, Ordering::Relaxed);
                        if send(s, s % targets).await.is_err() {
                            errors.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }));
            }
            for w in workers {
                w.await?;
            }
        }
        Some(rate) => {
            let interval = Duration::from_nanos(1_000_000_000 / rate.max(1));
            let sem = Arc::new(Semaphore::new(concurrency));
            let mut next = Instant::now();
            while Instant::now() < stop_at {
                next += interval;
                let now = Instant::now();
                if next > now {
                    tokio::time::sleep(next - now).await;
                }
                let s = seq.fetch_add(1, Ordering::Relaxed);
                let permit = sem.clone().acquire_owned().await?;
                let (send, errors) = (send.clone(), errors.clone());
                tokio::spawn(async move {
                    if send(s, s % targets).await.is_err() {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                    drop(permit);
                });
            }
            // The requests still in flight: wait for their answers.
            let _ = sem.acquire_many(concurrency as u32).await?;
        }
    }
    let errors = errors.load(Ordering::Relaxed);
    let sent = (seq.load(Ordering::Relaxed) as u64).saturating_sub(errors);
    let deadline = Instant::now() + Duration::from_secs(30);
    while receipts.received().await? < sent && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let seconds = started.elapsed().as_secs_f64();
    if errors > 0 {
        eprintln!("warning: {errors} sends failed");
    }
    let received = receipts.received().await?;
    let mut lat = receipts.take_latencies().await?;
    lat.sort_unstable();
    Ok(PhaseResult {
        sent,
        received,
        seconds,
        p50_ms: percentile(&lat, 0.50),
        p99_ms: percentile(&lat, 0.99),
        max_ms: lat.last().map(|v| *v as f64 / 1000.0).unwrap_or(f64::NAN),
        store_cost: None,
    })
}

pub(crate) fn print_phase(name: &str, r: &PhaseResult) {
    println!(
        "| {name} | {} | {} | {:.1} | {:.0} | {:.2} | {:.2} | {:.2} |",
        r.sent,
        r.received,
        r.seconds,
        r.rate(),
        r.p50_ms,
        r.p99_ms,
        r.max_ms
    );
}

pub(crate) async fn herald_push_phase(
    args: &BenchArgs,
    herald_bin: &Path,
    rate: Option<u64>,
) -> anyhow::Result<PhaseResult> {
    herald_push_phase_on(args, herald_bin, rate, args.store_url.as_deref()).await
}

/// The unicast phase on one node, on SQLite or on the PostgreSQL of `store_url`.
pub(crate) async fn herald_push_phase_on(
    args: &BenchArgs,
    herald_bin: &Path,
    rate: Option<u64>,
    store_url: Option<&str>,
) -> anyhow::Result<PhaseResult> {
    let schema = match store_url {
        Some(url) => Some(ScratchSchema::create(url, "herald_bench").await?),
        None => None,
    };
    let herald = start_herald(herald_bin, schema.as_ref().map(ScratchSchema::store_url).as_deref()).await?;
    let result = push_phase_on_server(args, &herald, rate, async |_, _| Ok(())).await?;
    drop(herald);
    drop(schema);
    Ok(result)
}

/// The unicast phase on a running node; `prepare` runs once the app exists.
pub(crate) async fn push_phase_on_server(
    args: &BenchArgs,
    herald: &Server,
    rate: Option<u64>,
    prepare: impl AsyncFnOnce(&HttpPool, &BenchApp) -> anyhow::Result<()>,
) -> anyhow::Result<PhaseResult> {
    let pool = Arc::new(HttpPool::new(&herald.http, args.concurrency.max(8)).await?);
    let app = Arc::new(create_app(&pool).await?);
    prepare(&pool, &app).await?;
    let devices = Arc::new(register_devices(pool.clone(), &app, args.devices, 0).await?);
    let receipts = Arc::new(Receipts::default());
    let handles = connect_all(&herald.mqtt, herald_specs(&app, &devices), Some(receipts.clone())).await?;
    let targets = devices.len();
    // Message keys unique to this run: a repeated key would be an idempotent no-op.
    let run = herald_core::crypto::random_alnum(8);
    let collector = Collector::Local(receipts);
    let meter = match args.store_url.as_deref() {
        Some(url) => Some(crate::pgbench::StoreMeter::start(url, herald).await?),
        None => None,
    };
    let mut result = drive(targets, args.seconds, args.concurrency, rate, &collector, move |seq, target| {
        cluster::push_one(pool.clone(), app.clone(), devices[target].0.clone(), format!("{run}-{seq}"), seq)
    })
    .await?;
    if let Some(meter) = meter {
        result.store_cost = Some(meter.finish(herald, result.received).await?);
    }
    for h in handles {
        h.abort();
    }
    Ok(result)
}

pub(crate) async fn mosquitto_push_phase(args: &BenchArgs, rate: Option<u64>) -> anyhow::Result<PhaseResult> {
    let mosquitto = start_mosquitto(&args.mosquitto).await?;
    let receipts = Arc::new(Receipts::default());
    let handles = connect_all(&mosquitto.mqtt, mosquitto_specs(args.devices), Some(receipts.clone())).await?;
    // Publishers: one connection per concurrent sender, each waiting for its PUBACK, the
    // counterpart of an HTTP request answered after commit.
    let mut publishers = Vec::new();
    for i in 0..args.concurrency {
        publishers.push(tokio::sync::Mutex::new(Publisher::connect(&mosquitto.mqtt, &format!("publisher-{i}")).await?));
    }
    let publishers = Arc::new(publishers);
    let next = Arc::new(AtomicUsize::new(0));
    let collector = Collector::Local(receipts);
    let result = drive(args.devices, args.seconds, args.concurrency, rate, &collector, move |seq, target| {
        let (publishers, next) = (publishers.clone(), next.clone());
        async move {
            let i = next.fetch_add(1, Ordering::Relaxed) % publishers.len();
            let mut p = publishers[i].lock().await;
            let payload = json!({"title": bench_title(seq), "content": "benchmark message"}).to_string();
            p.publish(&format!("push/bench-{target}"), Bytes::from(payload)).await
        }
    })
    .await?;
    for h in handles {
        h.abort();
    }
    Ok(result)
}

pub(crate) struct Publisher {
    pub(crate) stream: TcpStream,
    pub(crate) buf: BytesMut,
    pub(crate) next_id: u16,
}

impl Publisher {
    pub(crate) async fn connect(addr: &str, client_id: &str) -> anyhow::Result<Self> {
        let mut stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let connect = Packet::Connect(Connect {
            protocol: Protocol::V311,
            clean_session: true,
            keep_alive: 600,
            client_id: MqttStr::new(client_id),
            will: None,
            username: None,
            password: None,
            properties: Default::default(),
        });
        stream.write_all(&connect.to_bytes()).await?;
        let mut p = Publisher { stream, buf: BytesMut::with_capacity(1024), next_id: 1 };
        match p.read().await? {
            Packet::ConnAck(_) => Ok(p),
            other => bail!("expected CONNACK, got {other:?}"),
        }
    }

    pub(crate) async fn read(&mut self) -> anyhow::Result<Packet> {
        loop {
            if let Some(p) = decode(&mut self.buf, 1 << 20)? {
                return Ok(p);
            }
            if self.stream.read_buf(&mut self.buf).await? == 0 {
                bail!("publisher connection closed");
            }
        }
    }

    pub(crate) async fn publish(&mut self, topic: &str, payload: Bytes) -> anyhow::Result<()> {
        let id = self.next_id;
        self.next_id = self.next_id.checked_add(1).unwrap_or(1);
        let publish = Packet::Publish(Publish {
            dup: false,
            qos: QoS::AtLeastOnce,
            retain: false,
            topic: MqttStr::new(topic),
            packet_id: Some(id),
            payload,
            properties: Default::default(),
        });
        self.stream.write_all(&publish.to_bytes()).await?;
        loop {
            if let Packet::PubAck(a) = self.read().await?
                && a.packet_id == id
            {
                return Ok(());
            }
        }
    }
}

pub(crate) async fn push(args: &BenchArgs, herald_bin: &Path) -> anyhow::Result<()> {
    println!(
        "## Unicast pushes: {} connected devices, one target per request, {} s per phase, Herald on {}\n",
        args.devices,
        args.seconds,
        if args.store_url.is_some() { "PostgreSQL" } else { "SQLite" }
    );
    println!(
        "Latency: request sent → delivery received by the device (Herald: signed HTTP push, committed, MQTT QoS 1;"
    );
    println!("Mosquitto: QoS 1 PUBLISH from a publisher connection to the device's topic).\n");
    println!("| phase | sent | delivered | seconds | delivered/s | p50 ms | p99 ms | max ms |");
    println!("|---|---|---|---|---|---|---|---|");
    let full = herald_push_phase(args, herald_bin, None).await?;
    print_phase(&format!("herald, full speed ({} in flight)", args.concurrency), &full);
    let fixed = herald_push_phase(args, herald_bin, Some(args.rate)).await?;
    print_phase(&format!("herald, {}/s", args.rate), &fixed);
    for (name, r) in [("full speed", &full), ("fixed rate", &fixed)] {
        if let Some(c) = &r.store_cost {
            println!(
                "\nper push delivered, {name}: PostgreSQL {:.0} us CPU (all its processes), {:.0} bytes of WAL; herald {:.0} us CPU",
                c.postgres_cpu_us, c.wal_bytes, c.herald_cpu_us
            );
        }
    }
    if let Some(url) = args.store_url.as_deref() {
        let tps = crate::pgbench::tps(args, url).await?;
        println!(
            "\npgbench -N -c 32 -j 2 -M prepared on the same PostgreSQL, {} s: {tps:.0} transactions/s",
            args.seconds
        );
        println!("herald pushes/s at full speed / pgbench transactions/s: {:.2}\n", full.rate() / tps);
    }
    if !args.no_reference {
        let ref_full = mosquitto_push_phase(args, None).await?;
        print_phase(&format!("mosquitto, full speed ({} in flight)", args.concurrency), &ref_full);
        let ref_fixed = mosquitto_push_phase(args, Some(args.rate)).await?;
        print_phase(&format!("mosquitto, {}/s", args.rate), &ref_fixed);
        println!("\nherald / mosquitto delivered per second at full speed: {:.2}", full.rate() / ref_full.rate());
        println!("herald / mosquitto p99 at {}/s: {:.2}\n", args.rate, fixed.p99_ms / ref_fixed.p99_ms);
    }
    Ok(())
}
