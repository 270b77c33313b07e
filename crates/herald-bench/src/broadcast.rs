//! `herald bench broadcast`: the Broadcast push's answer time at 10,000 and at `--registered`
//! devices, then `--broadcasts` broadcasts back to back to `--connections` connected devices
//! (time until every device acknowledged all of them), next to Mosquitto and rumqttd
//! publishing as many QoS 1 messages to the same number of subscribers of one topic. With
//! `--store-url` and `--bus-url`: one broadcast through one of `--scale-nodes` nodes, each
//! holding `--connections` devices.

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use serde_json::json;

use crate::BenchArgs;
use crate::cluster::Nodes;
use crate::load::*;
use crate::push::*;
use crate::servers::*;

pub(crate) const TOPIC: &str = "bench/broadcast";

/// Creates the bench template (its title carries the send time of each broadcast).
pub(crate) async fn create_template(pool: &HttpPool, app: &BenchApp) -> anyhow::Result<()> {
    let body = json!({"templateName": "bench", "title": "#title#", "content": "broadcast benchmark"}).to_string();
    let (status, answer) = pool.send_signed(app, "POST", "/v1/templates", body).await?;
    if status != 200 {
        bail!("creating the bench template: {status} {}", String::from_utf8_lossy(&answer));
    }
    Ok(())
}

/// Sends one broadcast to every device of the app; returns the answer time and the task.
pub(crate) async fn broadcast_once(
    pool: &HttpPool,
    app: &BenchApp,
    msgkey: &str,
    seq: usize,
    ttl_secs: u64,
) -> anyhow::Result<(Duration, String)> {
    let body = json!({"deliveryType": 1, "templateName": "bench", "templateKeyValue": {"title": bench_title(seq)},
        "msgkey": msgkey, "pushStatus": 1, "expiredSeconds": ttl_secs})
    .to_string();
    let started = Instant::now();
    let (status, answer) = pool.send_signed(app, "POST", "/v1/push/broadcast", body).await?;
    let took = started.elapsed();
    if status != 200 {
        bail!("broadcast answered {status}: {}", String::from_utf8_lossy(&answer));
    }
    let answer: serde_json::Value = serde_json::from_slice(&answer)?;
    let task = answer["pushResult"]["data"].as_str().context("no taskId in the broadcast answer")?;
    Ok((took, task.to_owned()))
}

/// How many devices the store has recorded as having acknowledged the broadcast `task`.
pub(crate) async fn recorded(pool: &HttpPool, app: &BenchApp, task: &str) -> anyhow::Result<u64> {
    let path = format!("/v1/tasks/{task}");
    let (status, answer) = pool.send_signed(app, "GET", &path, String::new()).await?;
    if status != 200 {
        bail!("task status answered {status}: {}", String::from_utf8_lossy(&answer));
    }
    let answer: serde_json::Value = serde_json::from_slice(&answer)?;
    Ok(answer["resultContent"]["data"]["counts"][herald_core::state::DeliveryStatus::Delivered.as_str()]
        .as_u64()
        .unwrap_or(0))
}

/// Median and max of five answer times (broadcasts that expire in a second, before any
/// device connects).
pub(crate) async fn answer_times(pool: &HttpPool, app: &BenchApp, label: &str) -> anyhow::Result<(f64, f64)> {
    let mut times = Vec::new();
    for i in 0..5 {
        times.push(broadcast_once(pool, app, &format!("{label}-{i}"), i, 1).await?.0.as_secs_f64() * 1000.0);
    }
    times.sort_by(f64::total_cmp);
    Ok((times[2], times[4]))
}

pub(crate) async fn wait_for(
    what: &str,
    target: u64,
    mut count: impl AsyncFnMut() -> anyhow::Result<u64>,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let n = count().await?;
        if n >= target {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{what}: only {n} of {target} deliveries arrived");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

pub(crate) async fn run(args: &BenchArgs, bin: &Path) -> anyhow::Result<()> {
    let (n, registered, count) = (args.connections, args.registered.max(args.connections), args.broadcasts);
    println!(
        "## Broadcast: {registered} registered devices, {n} connected, {count} broadcasts back to back\n\n\
         Herald on SQLite; every connected device acknowledges (PUBACK) each delivery. Reference: the broker publishes \
         {count} QoS 1 messages (one publisher, each PUBACK awaited) to {n} QoS 1 subscribers of one topic.\n"
    );
    // The single node runs on SQLite; --store-url and --bus-url are for the cluster part.
    let herald = start_herald(bin, None).await?;
    let pool = Arc::new(HttpPool::new(&herald.http, 32).await?);
    let app = Arc::new(create_app(&pool).await?);
    create_template(&pool, &app).await?;
    let first = 10_000.min(registered);
    let mut devices = register_devices(pool.clone(), &app, first, 0).await?;
    let (p50_small, max_small) = answer_times(&pool, &app, "small").await?;
    devices.extend(register_devices(pool.clone(), &app, registered - first, first).await?);
    let (p50_large, max_large) = answer_times(&pool, &app, "large").await?;
    println!("| registered devices | broadcast answer time, median of 5 (ms) | max (ms) |");
    println!("|---|---|---|");
    println!("| {first} | {p50_small:.2} | {max_small:.2} |");
    println!("| {registered} | {p50_large:.2} | {max_large:.2} |\n");
    // Those broadcasts expired after a second: connect only then.
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    // Paced as rumqttd's publisher: rumqttd is measured first, before Herald's devices connect.
    let mut rumqttd_first = None;
    let schedule: Option<Vec<Duration>> = match args.pace.as_str() {
        "answer" => None,
        "rumqttd" => {
            let broker = start_rumqttd(&args.rumqttd).await?;
            let measured = broker_fanout(&broker, n, count).await?;
            let schedule = measured.3.iter().map(|ms| Duration::from_secs_f64(ms / 1000.0)).collect();
            rumqttd_first = Some(measured);
            Some(schedule)
        }
        ms => {
            let ms: u64 = ms.parse().context("--pace: answer, rumqttd or milliseconds")?;
            Some((0..count).map(|i| Duration::from_millis(ms * i as u64)).collect())
        }
    };

    let receipts = Arc::new(Receipts::default());
    let specs: Vec<DeviceSpec> = herald_specs(&app, &devices[..n]);
    let handles = connect_all(&herald.mqtt, specs, Some(receipts.clone())).await?;
    let cpu = CpuMeter::start(&herald)?;
    let started = Instant::now();
    let (http, sender_app, send_at) = (herald.http.clone(), app.clone(), schedule.clone());
    let (mut answers, tasks) = on_own_thread(move || async move {
        let pool = HttpPool::new(&http, 1).await?;
        let (mut answers, mut tasks) = (Vec::new(), Vec::new());
        let first = tokio::time::Instant::now();
        for i in 0..count {
            if let Some(at) = send_at.as_ref().and_then(|s| s.get(i)) {
                tokio::time::sleep_until(first + *at).await;
            }
            let (took, task) = broadcast_once(&pool, &sender_app, &format!("burst-{i}"), i, 3600).await?;
            answers.push(took.as_secs_f64() * 1000.0);
            tasks.push(task);
        }
        Ok((answers, tasks))
    })
    .await?;
    let expected = (n * count) as u64;
    wait_for("herald broadcasts", expected, async || Ok(receipts.received.load(Ordering::Relaxed))).await?;
    let herald_secs = started.elapsed().as_secs_f64();
    // Then until the store has recorded every acknowledgement: the server's work is done.
    for task in &tasks {
        wait_for("recorded acknowledgements", n as u64, async || recorded(&pool, &app, task).await).await?;
    }
    let recorded_secs = started.elapsed().as_secs_f64();
    let herald_cpu = cpu.stop(&herald, expected)?;
    let herald_rate = expected as f64 / herald_secs;
    let by_send = receipts.take_by_send();
    let lat = sorted(by_send.iter().flat_map(|(_, l)| l.iter().copied()).collect());
    // One more broadcast alone: its time to the last acknowledgement.
    let one_started = Instant::now();
    broadcast_once(&pool, &app, "single", count, 3600).await?;
    wait_for("one broadcast", expected + n as u64, async || Ok(receipts.received.load(Ordering::Relaxed))).await?;
    let one_secs = one_started.elapsed().as_secs_f64();
    for h in handles {
        h.abort();
    }
    drop(pool);
    drop(herald);
    answers.sort_by(f64::total_cmp);

    println!(
        "| server | deliveries | seconds to the last acknowledgement | deliveries/s | p50 ms | p99 ms | {} |",
        CpuMeter::HEADER
    );
    println!("|---|---|---|---|---|---|---|---|");
    println!(
        "| herald ({count} broadcasts{}; answer median {:.2} ms) | {expected} | {herald_secs:.2} | {herald_rate:.0} | {:.1} | {:.1} | {herald_cpu} |",
        if schedule.is_some() { format!(", paced: {}", args.pace) } else { String::new() },
        answers[answers.len() / 2],
        percentile(&lat, 0.5),
        percentile(&lat, 0.99)
    );
    let mut best_reference: f64 = 0.0;
    let mut publishes: Vec<String> = Vec::new();
    if !args.no_reference {
        for name in ["mosquitto", "rumqttd"] {
            let measured_first = if name == "rumqttd" { rumqttd_first.take() } else { None };
            let measured = match measured_first {
                Some(first) => Ok(first),
                None => {
                    let broker = if name == "rumqttd" {
                        start_rumqttd(&args.rumqttd).await
                    } else {
                        start_mosquitto(&args.mosquitto).await
                    };
                    match broker {
                        Ok(broker) => broker_fanout(&broker, n, count).await,
                        Err(e) => Err(e),
                    }
                }
            };
            let (secs, lat, cpu, sent) = match measured {
                Ok(r) => r,
                Err(e) => {
                    println!("| {name} | not measured: {e:#} | | | | | | |");
                    continue;
                }
            };
            let rate = expected as f64 / secs;
            best_reference = best_reference.max(rate);
            publishes.push(format!(
                "- {name}: {} (mean spacing {:.1} ms)",
                sent.iter().map(|ms| format!("+{ms:.1}")).collect::<Vec<_>>().join(" "),
                sent.last().copied().unwrap_or(0.0) / (sent.len().max(2) - 1) as f64
            ));
            println!(
                "| {name} | {expected} | {secs:.2} | {rate:.0} | {:.1} | {:.1} | {cpu} |",
                percentile(&lat, 0.5),
                percentile(&lat, 0.99)
            );
        }
        if best_reference > 0.0 {
            println!("\nherald / the faster reference, deliveries per second: {:.2}", herald_rate / best_reference);
        }
        if !publishes.is_empty() {
            // The publisher waits for each PUBACK: how the broker spread the messages' sends.
            println!("\nReference publishers, each message sent at (ms after the first):\n{}", publishes.join("\n"));
        }
    }
    // Where a copy waits: each broadcast's copies, by when it was sent.
    println!("\nHerald, by broadcast: sent (ms after the first) · copies · p50 / p99 / last copy (ms after its send)");
    for (i, (after_us, l)) in by_send.iter().enumerate() {
        println!(
            "- {i}: +{:.1} · {} · {:.1} / {:.1} / {:.1}",
            *after_us as f64 / 1000.0,
            l.len(),
            percentile(l, 0.5),
            percentile(l, 0.99),
            l.last().map(|v| *v as f64 / 1000.0).unwrap_or(f64::NAN)
        );
    }
    println!(
        "\nHerald's store had recorded all {expected} acknowledgements {recorded_secs:.2} s after the first broadcast \
         (its CPU above is measured until then).\n\
         One broadcast alone to the {n} connected devices: {one_secs:.2} s to the last acknowledgement.\n"
    );
    if let (Some(store_url), Some(bus_url)) = (args.store_url.as_deref(), args.bus_url.as_deref()) {
        cluster_broadcast(args, bin, store_url, bus_url, one_secs).await?;
    }
    Ok(())
}

/// Runs the sender of a burst on a runtime of its own thread, so that it does not wait for
/// its turn behind the 19,000 device tasks of this process (the same for Herald's
/// broadcasts and the brokers' publisher).
pub(crate) async fn on_own_thread<T, F, Fut>(f: F) -> anyhow::Result<T>
where
    T: Send + 'static,
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = anyhow::Result<T>>,
{
    tokio::task::spawn_blocking(move || {
        tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(f())
    })
    .await?
}

pub(crate) fn sorted(mut v: Vec<u64>) -> Vec<u64> {
    v.sort_unstable();
    v
}

/// CPU seconds of the server and of this benchmark process (the devices' side) over a
/// measured stretch.
pub(crate) struct CpuMeter {
    pub(crate) server: f64,
    pub(crate) bench: f64,
}

/// What a [`CpuMeter`] measured, printed as table cells.
pub(crate) struct CpuUse {
    pub(crate) server: f64,
    pub(crate) bench: f64,
    pub(crate) deliveries: u64,
}

impl CpuMeter {
    const HEADER: &str = "server CPU s | server CPU µs per delivery | bench (devices) CPU s";

    pub(crate) fn start(server: &Server) -> anyhow::Result<Self> {
        Ok(CpuMeter { server: server.cpu_secs()?, bench: cpu_secs(std::process::id())? })
    }

    pub(crate) fn stop(self, server: &Server, deliveries: u64) -> anyhow::Result<CpuUse> {
        Ok(CpuUse {
            server: server.cpu_secs()? - self.server,
            bench: cpu_secs(std::process::id())? - self.bench,
            deliveries,
        })
    }
}

impl std::fmt::Display for CpuUse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let per = self.server * 1e6 / self.deliveries.max(1) as f64;
        write!(f, "{:.2} | {per:.1} | {:.2}", self.server, self.bench)
    }
}

/// A broker's fan-out: `n` subscribers of one topic, `count` QoS 1 messages; returns the
/// seconds until every subscriber received all, the latencies, and the CPU used.
/// Publishes `count` QoS 1 messages, each after the PUBACK of the one before, to `n`
/// subscribers: seconds to the last delivery, the latencies, the broker's CPU, and when
/// each message was sent (ms after the first).
pub(crate) async fn broker_fanout(
    broker: &Server,
    n: usize,
    count: usize,
) -> anyhow::Result<(f64, Vec<u64>, CpuUse, Vec<f64>)> {
    let addr = broker.mqtt.as_str();
    let receipts = Arc::new(Receipts::default());
    let specs: Vec<DeviceSpec> = (0..n)
        .map(|i| DeviceSpec {
            client_id: format!("sub-{i}"),
            username: None,
            password: None,
            subscribe: Some(TOPIC.to_string()),
            source: None,
        })
        .collect();
    let handles = connect_all(addr, specs, Some(receipts.clone())).await?;
    let cpu = CpuMeter::start(broker)?;
    let started = Instant::now();
    let publisher_addr = addr.to_owned();
    let sent = on_own_thread(move || async move {
        let mut publisher = Publisher::connect(&publisher_addr, "bench-publisher").await?;
        let (first, mut sent) = (Instant::now(), Vec::with_capacity(count));
        for seq in 0..count {
            let payload = json!({"title": bench_title(seq), "content": "broadcast benchmark"}).to_string();
            sent.push(first.elapsed().as_secs_f64() * 1000.0);
            publisher.publish(TOPIC, Bytes::from(payload)).await?;
        }
        Ok(sent)
    })
    .await?;
    let expected = (n * count) as u64;
    wait_for(addr, expected, async || Ok(receipts.received.load(Ordering::Relaxed))).await?;
    let secs = started.elapsed().as_secs_f64();
    let cpu = cpu.stop(broker, expected)?;
    for h in handles {
        h.abort();
    }
    Ok((secs, sorted(std::mem::take(&mut *receipts.latencies_us.lock())), cpu, sent))
}

pub(crate) async fn start_rumqttd(bin: &Path) -> anyhow::Result<Server> {
    let dir = tempfile::Builder::new().prefix("rumqttd-bench").tempdir()?;
    let port = free_port()?;
    let conf = dir.path().join("rumqttd.toml");
    std::fs::write(
        &conf,
        format!(
            "id = 0\n[router]\nid = 0\nmax_connections = 20010\nmax_outgoing_packet_count = 200\n\
             max_segment_size = 104857600\nmax_segment_count = 10\n\
             [v4.1]\nname = \"v4-1\"\nlisten = \"127.0.0.1:{port}\"\nnext_connection_delay_ms = 0\n\
             [v4.1.connections]\nconnection_timeout_ms = 60000\nmax_payload_size = 20480\n\
             max_inflight_count = 100\ndynamic_filters = true\n"
        ),
    )?;
    let child = Command::new(bin)
        .arg("-q")
        .arg("-c")
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {} (cargo install rumqttd)", bin.display()))?;
    let mqtt = format!("127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while tokio::net::TcpStream::connect(&mqtt).await.is_err() {
        if Instant::now() > deadline {
            bail!("rumqttd did not listen on {mqtt}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(Server { child, http: String::new(), mqtt, mqtts: None, _dir: dir })
}

/// One broadcast through node 1 of a cluster whose nodes each hold `--connections` devices.
pub(crate) async fn cluster_broadcast(
    args: &BenchArgs,
    bin: &Path,
    store_url: &str,
    bus_url: &str,
    single_secs: f64,
) -> anyhow::Result<()> {
    let (nodes_n, per) = (args.scale_nodes.max(1), args.connections);
    let nodes = Nodes::start(bin, nodes_n, store_url, bus_url, 16, "").await?;
    let app = Arc::new(create_app(&nodes.pools[0]).await?);
    create_template(&nodes.pools[0], &app).await?;
    let by_node = nodes.register(&app, per).await?;
    let workers = nodes.hold(&app, &by_node, |_, _| None).await?;
    let total = (nodes_n * per) as u64;
    let started = Instant::now();
    let (answer, _) = broadcast_once(&nodes.pools[0], &app, "cluster", 0, 3600).await?;
    let collector = Collector::Workers(workers);
    wait_for("cluster broadcast", total, async || collector.received().await).await?;
    let secs = started.elapsed().as_secs_f64();
    let lat = sorted(collector.take_latencies().await?);
    println!(
        "| setup | connected devices | broadcast answer (ms) | seconds to the last acknowledgement | deliveries/s | p99 ms |"
    );
    println!("|---|---|---|---|---|---|");
    println!("| 1 node, SQLite | {per} | | {single_secs:.2} | {:.0} | |", per as f64 / single_secs);
    println!(
        "| {nodes_n} nodes, PostgreSQL + NATS, through node 1 | {total} | {:.2} | {secs:.2} | {:.0} | {:.1} |\n",
        answer.as_secs_f64() * 1000.0,
        total as f64 / secs,
        percentile(&lat, 0.99)
    );
    drop(collector);
    nodes.stop().await
}
