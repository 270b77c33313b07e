//! `herald bench cluster`: unicast pushes on one SQLite node next to the same load on
//! several nodes sharing PostgreSQL and NATS, every push entering through a node other than
//! the one holding its device; then nodes that each hold `--connections` idle devices, with
//! pushes crossing between them.
//!
//! One process may open about 20,000 files here, so the devices of the scale part are held
//! by `herald bench hold` helper processes, one per node; each payload carries its send
//! time, and the helpers report latencies measured against the same wall clock.

use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout};

use herald_testkit::ScratchSchema;

use crate::BenchArgs;
use crate::load::*;
use crate::push::*;
use crate::servers::*;

/// Nodes of one cluster under test, sharing one schema, one NATS subject prefix and one
/// master key.
pub(crate) struct Nodes {
    pub(crate) servers: Vec<Server>,
    pub(crate) pools: Vec<Arc<HttpPool>>,
    schema: Option<ScratchSchema>,
    _config: tempfile::TempDir,
}

impl Nodes {
    pub(crate) async fn start(
        bin: &Path,
        n: usize,
        store_url: &str,
        bus_url: &str,
        pool_size: usize,
        extra_config: &str,
    ) -> anyhow::Result<Nodes> {
        let schema = ScratchSchema::create(store_url, "herald_bench").await?;
        let config = tempfile::Builder::new().prefix("herald-bench-cluster").tempdir()?;
        let file = config.path().join("cluster.toml");
        let prefix = format!("bench{}", herald_core::crypto::random_alnum(8));
        std::fs::write(&file, format!("{extra_config}\n[cluster]\nsubject_prefix = \"{prefix}\"\n"))?;
        let master = herald_core::crypto::b64url(&herald_core::crypto::random_bytes::<32>());
        let mut servers = Vec::with_capacity(n);
        let mut pools = Vec::with_capacity(n);
        for i in 1..=n {
            let extra: Vec<String> = [
                "--config",
                file.to_str().context("config path")?,
                "--store-url",
                &schema.store_url(),
                "--bus-url",
                bus_url,
                "--node-id",
                &format!("node-{i}"),
            ]
            .iter()
            .map(|s| s.to_string())
            .collect();
            let server = start_herald_with(bin, &extra, &[("HERALD_MASTER_KEY", &master)]).await?;
            pools.push(Arc::new(HttpPool::new(&server.http, pool_size).await?));
            servers.push(server);
        }
        Ok(Nodes { servers, pools, schema: Some(schema), _config: config })
    }

    /// Registers `per` devices of `app` through each node at once (device t of node k is
    /// `bench-{k * per + t}`); each node's (deviceId, token) pairs.
    pub(crate) async fn register(&self, app: &Arc<BenchApp>, per: usize) -> anyhow::Result<Vec<Vec<(String, String)>>> {
        let mut registering = Vec::with_capacity(self.pools.len());
        for (k, pool) in self.pools.iter().enumerate() {
            let (pool, app) = (pool.clone(), app.clone());
            registering.push(tokio::spawn(async move { register_devices(pool, &app, per, k * per).await }));
        }
        let mut by_node = Vec::with_capacity(registering.len());
        for r in registering {
            by_node.push(r.await??);
        }
        Ok(by_node)
    }

    /// Connects each node's devices to it from a `herald-bench hold` process of their own,
    /// all processes at once; `source(k, i)` is the address device i of node k connects from.
    /// Returns when every device is connected.
    pub(crate) async fn hold(
        &self,
        app: &BenchApp,
        by_node: &[Vec<(String, String)>],
        source: impl Fn(usize, usize) -> Option<std::net::Ipv4Addr>,
    ) -> anyhow::Result<Vec<Worker>> {
        let files = tempfile::Builder::new().prefix("herald-bench-devices").tempdir()?;
        let mut spawning = Vec::with_capacity(by_node.len());
        for (k, devices) in by_node.iter().enumerate() {
            let file = files.path().join(format!("node-{}.txt", k + 1));
            let mut lines = String::new();
            for (i, (id, token)) in devices.iter().enumerate() {
                lines.push_str(&format!("{} {id} {token}", app.app_id));
                if let Some(a) = source(k, i) {
                    lines.push_str(&format!(" {a}"));
                }
                lines.push('\n');
            }
            std::fs::write(&file, lines)?;
            let mqtt = self.servers[k].mqtt.clone();
            spawning.push(tokio::spawn(async move { Worker::spawn(&mqtt, &file).await }));
        }
        let mut workers = Vec::with_capacity(spawning.len());
        for w in spawning {
            workers.push(w.await??);
        }
        Ok(workers)
    }

    /// The scratch schema the nodes share.
    pub(crate) fn schema(&self) -> &ScratchSchema {
        self.schema.as_ref().expect("the schema lives until stop")
    }

    /// CPU seconds all nodes used so far.
    pub(crate) fn cpu_secs(&self) -> anyhow::Result<f64> {
        self.servers.iter().map(Server::cpu_secs).sum()
    }

    pub(crate) async fn stop(mut self) -> anyhow::Result<()> {
        self.pools.clear();
        self.servers.clear();
        if let Some(schema) = self.schema.take() {
            drop(schema);
        }
        Ok(())
    }
}

pub(crate) async fn run(args: &BenchArgs, bin: &Path) -> anyhow::Result<()> {
    let (Some(store_url), Some(bus_url)) = (args.store_url.as_deref(), args.bus_url.as_deref()) else {
        bail!("the cluster scenario needs --store-url postgres://… and --bus-url nats://…");
    };
    println!(
        "## Unicast pushes: one SQLite node vs {} nodes on PostgreSQL + NATS\n\n{} connected devices, one target per \
         request, {} s per phase. In the cluster, device i is held by node i mod {} and its push enters through \
         another node, so every delivery crosses NATS.\n",
        args.nodes, args.devices, args.seconds, args.nodes
    );
    println!("| setup | phase | sent | delivered | seconds | delivered/s | p50 ms | p99 ms | max ms |");
    println!("|---|---|---|---|---|---|---|---|---|");
    let single_full = herald_push_phase_on(args, bin, None, None).await?;
    print_phase(&format!("1 node, SQLite | full speed ({} in flight)", args.concurrency), &single_full);
    let single_fixed = herald_push_phase_on(args, bin, Some(args.rate), None).await?;
    print_phase(&format!("1 node, SQLite | {}/s", args.rate), &single_fixed);
    let setup = format!("{} nodes, PostgreSQL + NATS", args.nodes);
    let cluster_full = cluster_push_phase(args, bin, store_url, bus_url, None).await?;
    print_phase(&format!("{setup} | full speed ({} in flight)", args.concurrency), &cluster_full);
    let cluster_fixed = cluster_push_phase(args, bin, store_url, bus_url, Some(args.rate)).await?;
    print_phase(&format!("{setup} | {}/s", args.rate), &cluster_fixed);
    println!(
        "\ncluster / single node delivered per second at full speed: {:.2}; p99 at {}/s: {:.1} ms vs {:.1} ms\n",
        cluster_full.rate() / single_full.rate(),
        args.rate,
        cluster_fixed.p99_ms,
        single_fixed.p99_ms
    );
    if args.nats_servers > 1 {
        nats_redundancy(args, bin, store_url).await?;
    }
    scale(args, bin, store_url, bus_url).await
}

/// The same unicast phases on one NATS server and on a cluster of `--nats-servers` (routed
/// to each other, every node given every server's URL), both of the bench's own: the cost
/// of the redundancy.
async fn nats_redundancy(args: &BenchArgs, bin: &Path, store_url: &str) -> anyhow::Result<()> {
    println!(
        "\n## The bus: one NATS server vs a cluster of {}\n\n{} nodes, same phases, NATS servers of the bench's own.\n",
        args.nats_servers, args.nodes
    );
    println!("| bus | phase | sent | delivered | seconds | delivered/s | p50 ms | p99 ms | max ms |");
    println!("|---|---|---|---|---|---|---|---|---|");
    let mut full = Vec::new();
    for servers in [1, args.nats_servers] {
        let nats = herald_testkit::TestNats::cluster(servers)
            .await
            .ok_or_else(|| anyhow::anyhow!("nats-server is not installed here"))?;
        nats.routed().await;
        let setup = if servers == 1 { "1 NATS server".to_string() } else { format!("{servers} NATS servers, routed") };
        let r = cluster_push_phase(args, bin, store_url, &nats.url(), None).await?;
        print_phase(&format!("{setup} | full speed ({} in flight)", args.concurrency), &r);
        full.push(r.rate());
        let r = cluster_push_phase(args, bin, store_url, &nats.url(), Some(args.rate)).await?;
        print_phase(&format!("{setup} | {}/s", args.rate), &r);
    }
    println!(
        "\n{}-server cluster / one server, delivered per second at full speed: {:.2}\n",
        args.nats_servers,
        full[1] / full[0]
    );
    Ok(())
}

/// The unicast phase on a cluster: devices spread over the nodes, each push sent through
/// the node after the one that holds its device.
pub(crate) async fn cluster_push_phase(
    args: &BenchArgs,
    bin: &Path,
    store_url: &str,
    bus_url: &str,
    rate: Option<u64>,
) -> anyhow::Result<PhaseResult> {
    let n = args.nodes.max(1);
    let nodes = Nodes::start(bin, n, store_url, bus_url, (args.concurrency / n).max(8), "").await?;
    let app = Arc::new(create_app(&nodes.pools[0]).await?);
    let devices = Arc::new(register_devices(nodes.pools[0].clone(), &app, args.devices, 0).await?);
    let receipts = Arc::new(Receipts::default());
    let specs = herald_specs(&app, &devices);
    let mut handles = Vec::new();
    for (k, server) in nodes.servers.iter().enumerate() {
        let mine: Vec<DeviceSpec> =
            specs.iter().enumerate().filter(|(i, _)| i % n == k).map(|(_, s)| s.clone()).collect();
        handles.extend(connect_all(&server.mqtt, mine, Some(receipts.clone())).await?);
    }
    let collector = Collector::Local(receipts);
    let pools = nodes.pools.clone();
    let run = herald_core::crypto::random_alnum(8);
    let result = drive(devices.len(), args.seconds, args.concurrency, rate, &collector, move |seq, target| {
        let pool = pools[(target + 1) % pools.len()].clone();
        push_one(pool, app.clone(), devices[target].0.clone(), format!("{run}-{seq}"), seq)
    })
    .await?;
    for h in handles {
        h.abort();
    }
    nodes.stop().await?;
    Ok(result)
}

/// One signed single-target Simple push.
pub(crate) async fn push_one(
    pool: Arc<HttpPool>,
    app: Arc<BenchApp>,
    device: String,
    msg_key: String,
    seq: usize,
) -> anyhow::Result<()> {
    let body = json!({
        "deliveryType": 1,
        "targetMsgkey": {device: msg_key},
        "title": bench_title(seq),
        "content": "benchmark message",
        "expiredSeconds": 3600,
    })
    .to_string();
    let (status, answer) = pool.send_signed(&app, "POST", "/v1/push/simple", body).await?;
    if status != 200 {
        bail!("push answered {status}: {}", String::from_utf8_lossy(&answer));
    }
    Ok(())
}

/// `--scale-nodes` nodes, each holding `--connections` idle devices (in a helper process
/// per node); then pushes through every node to devices held by the next one.
pub(crate) async fn scale(args: &BenchArgs, bin: &Path, store_url: &str, bus_url: &str) -> anyhow::Result<()> {
    let (n, per) = (args.scale_nodes.max(1), args.connections);
    let total = n * per;
    println!("## Scale by nodes: {n} nodes × {per} idle connections = {total}, pushes crossing nodes\n");
    let nodes = Nodes::start(bin, n, store_url, bus_url, 16, "").await?;
    let app = Arc::new(create_app(&nodes.pools[0]).await?);
    // Registered through every node at once; device t is held by node t mod n.
    let by_node = nodes.register(&app, per).await?;
    let rss_before: Vec<u64> = nodes.servers.iter().map(Server::rss_kb).collect::<Result<_, _>>()?;
    let workers = nodes.hold(&app, &by_node, |_, _| None).await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    println!("| node | connections | RSS before (KiB) | RSS with connections (KiB) | bytes per connection |");
    println!("|---|---|---|---|---|");
    for (k, server) in nodes.servers.iter().enumerate() {
        let after = server.rss_kb()?;
        let per_conn = (after.saturating_sub(rss_before[k]) as f64) * 1024.0 / per as f64;
        println!("| node-{} | {per} | {} | {after} | {per_conn:.0} |", k + 1, rss_before[k]);
    }
    // Target t: the t-th device of node t mod n, pushed through node t+1 mod n.
    let targets: Arc<Vec<(usize, String)>> =
        Arc::new((0..total).map(|t| (t % n, by_node[t % n][t / n].0.clone())).collect());
    let collector = Collector::Workers(workers);
    println!("\n| phase | sent | delivered | seconds | delivered/s | p50 ms | p99 ms | max ms |");
    println!("|---|---|---|---|---|---|---|---|");
    for rate in [None, Some(args.rate)] {
        let (pools, app, targets) = (nodes.pools.clone(), app.clone(), targets.clone());
        let run = herald_core::crypto::random_alnum(8);
        let result = drive(total, args.seconds, args.concurrency, rate, &collector, move |seq, t| {
            let (node, device) = &targets[t];
            push_one(pools[(node + 1) % pools.len()].clone(), app.clone(), device.clone(), format!("{run}-{seq}"), seq)
        })
        .await?;
        let name = match rate {
            None => format!("through all {n} nodes, full speed ({} in flight)", args.concurrency),
            Some(r) => format!("through all {n} nodes, {r}/s"),
        };
        print_phase(&name, &result);
    }
    println!();
    drop(collector);
    nodes.stop().await
}

/// A `herald-bench hold` process, and the pipe to ask it what it received.
pub(crate) struct Worker {
    _child: Child,
    io: tokio::sync::Mutex<(ChildStdin, Lines<BufReader<ChildStdout>>)>,
}

impl Worker {
    pub(crate) async fn spawn(mqtt: &str, devices_file: &std::path::Path) -> anyhow::Result<Worker> {
        let mut child = tokio::process::Command::new(std::env::current_exe()?)
            .args(["hold", "--mqtt", mqtt, "--devices-file"])
            .arg(devices_file)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .context("starting a bench hold process")?;
        let stdin = child.stdin.take().context("stdin")?;
        let mut lines = BufReader::new(child.stdout.take().context("stdout")?).lines();
        let ready = lines.next_line().await?.context("bench hold ended before holding its devices")?;
        if !ready.starts_with("held ") {
            bail!("bench hold: {ready}");
        }
        Ok(Worker { _child: child, io: tokio::sync::Mutex::new((stdin, lines)) })
    }

    pub(crate) async fn ask(&self, command: &str) -> anyhow::Result<String> {
        let mut io = self.io.lock().await;
        io.0.write_all(format!("{command}\n").as_bytes()).await?;
        io.0.flush().await?;
        io.1.next_line().await?.context("bench hold process ended")
    }

    pub(crate) async fn received(&self) -> anyhow::Result<u64> {
        Ok(self.ask("count").await?.trim().parse()?)
    }

    pub(crate) async fn take_latencies(&self) -> anyhow::Result<Vec<u64>> {
        Ok(self.ask("latencies").await?.split_whitespace().map(str::parse).collect::<Result<_, _>>()?)
    }
}

/// `herald-bench hold`: connects the devices of `--devices-file` (lines of `appId deviceId
/// token [sourceAddress]`) to `--mqtt`, prints
/// `held N`, then answers `count` and `latencies` (µs, and a fresh start) on stdin.
pub(crate) async fn hold(args: &BenchArgs) -> anyhow::Result<()> {
    let (Some(mqtt), Some(file)) = (&args.mqtt, &args.devices_file) else {
        bail!("bench hold needs --mqtt and --devices-file");
    };
    let mut specs = Vec::new();
    for line in std::fs::read_to_string(file)?.lines() {
        let mut f = line.split_whitespace();
        let (Some(app), Some(id), Some(token)) = (f.next(), f.next(), f.next()) else {
            bail!("bench hold: a devices line needs appId, deviceId and token: {line:?}");
        };
        let source = match f.next() {
            Some(a) => Some(a.parse().with_context(|| format!("bench hold: source address {a:?}"))?),
            None => None,
        };
        specs.push(DeviceSpec {
            client_id: id.to_string(),
            username: Some(app.to_string()),
            password: Some(token.to_string()),
            subscribe: None,
            source,
        });
    }
    let receipts = Arc::new(Receipts::default());
    let n = specs.len();
    let handles = connect_all(mqtt, specs, Some(receipts.clone())).await?;
    let mut out = tokio::io::stdout();
    out.write_all(format!("held {n}\n").as_bytes()).await?;
    out.flush().await?;
    let mut commands = BufReader::new(tokio::io::stdin()).lines();
    while let Some(command) = commands.next_line().await? {
        let answer = match command.trim() {
            "count" => receipts.received.load(Ordering::Relaxed).to_string(),
            "latencies" => {
                receipts.received.store(0, Ordering::Relaxed);
                let lat = std::mem::take(&mut *receipts.latencies_us.lock());
                lat.iter().map(u64::to_string).collect::<Vec<_>>().join(" ")
            }
            other => format!("unknown command {other}"),
        };
        out.write_all(format!("{answer}\n").as_bytes()).await?;
        out.flush().await?;
    }
    for h in handles {
        h.abort();
    }
    Ok(())
}
