//! The durability soak: pushes at a steady rate through the signed API to connected
//! devices while faults strike at random moments, then checks a ledger: every push answered
//! 200 reached its device (at least once; devices deduplicate by messageId), no push
//! answered with a refusal reached anyone, no device got another device's message.
//!
//! [`run`]: one node, killed (SIGKILL) and restarted on the same data. [`run_cluster`]:
//! three nodes on a PostgreSQL and a NATS (one server or a cluster of them) of the soak's
//! own, with in turn the faults of [`SoakConfig::faults`]: a node killed and restarted, one
//! NATS server or all of them killed and restarted, PostgreSQL restarted; pushes go to the
//! nodes in turn, and a device whose node is gone connects to the next one. Every push and
//! delivery is timed, so the ledger also says, per kind of fault, how many pushes were
//! refused and for how long, how much later deliveries came, and when all was well again
//! ([`FaultStats`]). Shared by the test suite (short runs) and `herald-bench soak` (long
//! ones).

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use parking_lot::{Mutex, RwLock};
use rumqttc::{AsyncClient, Event, Packet};
use serde_json::json;

use crate::{Backend, Creds, TestApp, TestProcess};

mod ledger;
pub use ledger::{FaultStats, LATE, Late, Latency, Ledger};
use ledger::{Outcome, PushRecord, Pushes, Struck, costs, ledger};

#[derive(Debug, Clone)]
pub struct SoakConfig {
    /// Kill -9 and restart cycles.
    pub cycles: usize,
    /// Connected devices the pushes go to, in turn.
    pub devices: usize,
    /// Pause between two pushes.
    pub push_every: Duration,
    /// The node runs a random time in this range (ms) between two kills.
    pub run_ms: (u64, u64),
    /// How long the devices have, after the last restart, to receive what was accepted.
    pub settle: Duration,
    /// Cluster: how long (ms) the NATS server or PostgreSQL stays down, a random time in
    /// this range.
    pub down_ms: (u64, u64),
    /// Cluster: the faults, struck in turn, one per cycle.
    pub faults: Vec<Fault>,
    /// Cluster: NATS servers (clustered when more than one).
    pub nats_servers: usize,
}

/// A fault the cluster soak strikes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// A random node killed with SIGKILL and started again (new ports).
    NodeKill,
    /// One NATS server (the first) killed with SIGKILL, started again after `down_ms`.
    NatsKillOne,
    /// Every NATS server killed with SIGKILL, started again after `down_ms`.
    NatsKillAll,
    /// PostgreSQL stopped (fast shutdown), started again after `down_ms`.
    PostgresRestart,
}

impl Fault {
    pub fn name(self) -> &'static str {
        match self {
            Fault::NodeKill => "node kill -9",
            Fault::NatsKillOne => "one NATS server kill -9",
            Fault::NatsKillAll => "every NATS server kill -9",
            Fault::PostgresRestart => "PostgreSQL restart",
        }
    }
}

/// What the devices got: (device, msgKey, messageId, when) per delivery.
type Deliveries = Mutex<Vec<(String, String, String, Instant)>>;

/// Where the nodes listen now: (HTTP, MQTT) of each.
type Addresses = Arc<RwLock<Vec<(String, String)>>>;

/// The devices and the pusher of a soak, running until [`Load::settle`].
struct Load {
    stop: Arc<AtomicBool>,
    pushing: Arc<AtomicBool>,
    pushes: Arc<Mutex<Pushes>>,
    deliveries: Arc<Deliveries>,
    /// When device connections ended.
    disconnects: Arc<Mutex<Vec<Instant>>>,
    device_tasks: Vec<tokio::task::JoinHandle<()>>,
    pusher: tokio::task::JoinHandle<()>,
}

impl Load {
    /// Registers `cfg.devices` devices of a new app, connects them (device `i` to node `i`
    /// modulo the nodes) and starts pushing.
    async fn start(app: TestApp, addresses: Addresses, cfg: &SoakConfig) -> Load {
        let mut devices = Vec::with_capacity(cfg.devices);
        for i in 0..cfg.devices {
            devices.push(app.register(&format!("soak-{i}")).await);
        }
        let stop = Arc::new(AtomicBool::new(false));
        let deliveries: Arc<Deliveries> = Arc::default();
        let disconnects: Arc<Mutex<Vec<Instant>>> = Arc::default();
        let online = Arc::new(AtomicUsize::new(0));
        let nodes: Arc<Vec<AtomicUsize>> = Arc::new((0..cfg.devices).map(AtomicUsize::new).collect());
        let device_tasks = devices
            .iter()
            .enumerate()
            .map(|(i, d)| {
                let seen = Seen {
                    got: deliveries.clone(),
                    online: online.clone(),
                    disconnects: disconnects.clone(),
                    nodes: nodes.clone(),
                };
                tokio::spawn(device(d.clone(), i, addresses.clone(), seen, stop.clone()))
            })
            .collect();
        // Every device online before the first push, so that the first latencies are the
        // network's and not a connect's.
        let started = Instant::now();
        while online.load(Ordering::Relaxed) < cfg.devices {
            assert!(started.elapsed() < Duration::from_secs(60), "the soak's devices did not all connect");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let pushes = Arc::new(Mutex::new(Pushes::default()));
        let pushing = Arc::new(AtomicBool::new(true));
        let pusher = tokio::spawn(push_steadily(
            app,
            devices.iter().map(|d| d.device_id.clone()).collect(),
            nodes,
            addresses,
            pushes.clone(),
            pushing.clone(),
            cfg.push_every,
        ));
        Load { stop, pushing, pushes, deliveries, disconnects, device_tasks, pusher }
    }

    fn accepted(&self) -> usize {
        self.pushes.lock().accepted.len()
    }

    /// Waits until a push is accepted after now: how long that took (panics after 60 s).
    async fn recovered(&self, after: &str) -> Duration {
        let (before, started) = (self.accepted(), tokio::time::Instant::now());
        while self.accepted() == before {
            assert!(started.elapsed() < Duration::from_secs(60), "no push accepted within 60 s after {after}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        started.elapsed()
    }

    /// Stops pushing, gives the devices `settle` to receive every accepted push, and
    /// draws up the ledger.
    async fn settle(self, cycles: usize, settle: Duration, faults: Vec<FaultStats>, struck: &[Struck]) -> Ledger {
        self.pushing.store(false, Ordering::Relaxed);
        let _ = self.pusher.await;
        // Every accepted push reaches its device within the settle time, or it is lost.
        let deadline = tokio::time::Instant::now() + settle;
        loop {
            let got: HashSet<String> = self.deliveries.lock().iter().map(|(_, key, _, _)| key.clone()).collect();
            let missing = self.pushes.lock().accepted.keys().any(|k| !got.contains(k));
            if !missing || tokio::time::Instant::now() > deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // A refused push has had the same time to show up, if it wrongly were stored.
        self.stop.store(true, Ordering::Relaxed);
        for t in self.device_tasks {
            t.abort();
        }
        let pushes = self.pushes.lock();
        let deliveries = self.deliveries.lock();
        let mut ledger = ledger(cycles, &pushes, &deliveries);
        let disconnects = self.disconnects.lock();
        ledger.faults =
            costs(faults, struck, &pushes.log, &deliveries, &disconnects, &mut ledger.baseline, &mut ledger.late);
        ledger
    }
}

/// Runs the soak against `bin` on `backend`; `None` when the backend is not configured here.
pub async fn run(bin: &Path, backend: Backend, cfg: &SoakConfig) -> Option<Ledger> {
    let mut node = TestProcess::start(bin, backend).await?;
    let app = node.create_app().await;
    let addresses: Addresses = Arc::new(RwLock::new(vec![(node.http.clone(), node.mqtt.clone())]));
    let load = Load::start(app, addresses.clone(), cfg).await;
    for _ in 0..cfg.cycles {
        tokio::time::sleep(Duration::from_millis(between(cfg.run_ms))).await;
        node.kill9();
        node = node.restart().await;
        *addresses.write() = vec![(node.http.clone(), node.mqtt.clone())];
    }
    Some(load.settle(cfg.cycles, cfg.settle, Vec::new(), &[]).await)
}

/// The cluster soak: three nodes (processes of `bin`) on a PostgreSQL and a NATS (of
/// `cfg.nats_servers` servers) of its own; each cycle, after a random run, the next fault of
/// `cfg.faults` (see [`Fault`]). Nodes look for work no bus message announced every
/// `resync_secs`. `None` when PostgreSQL's programs or nats-server are not installed here.
pub async fn run_cluster(bin: &Path, cfg: &SoakConfig, resync_secs: u64) -> Option<Ledger> {
    let postgres = crate::TestPostgres::start().await?;
    let mut nats = crate::TestNats::cluster(cfg.nats_servers.max(1)).await?;
    nats.routed().await;
    let opts = crate::ClusterOptions {
        processes: Some(bin.to_path_buf()),
        nats: Some(nats.url()),
        postgres: Some(postgres.url()),
        resync_secs: Some(resync_secs),
        ..Default::default()
    };
    let mut cluster = crate::Cluster::start_with(3, opts).await?;
    let endpoints = |c: &crate::Cluster| (1..=3).map(|i| (c.node(i).http.clone(), c.node(i).mqtt.clone())).collect();
    let addresses: Addresses = Arc::new(RwLock::new(endpoints(&cluster)));
    let app = cluster.node(1).create_app().await;
    let load = Load::start(app, addresses.clone(), cfg).await;
    let mut faults: Vec<FaultStats> =
        cfg.faults.iter().map(|f| FaultStats { kind: f.name(), ..FaultStats::default() }).collect();
    let mut struck = Vec::new();
    for cycle in 0..cfg.cycles {
        tokio::time::sleep(Duration::from_millis(between(cfg.run_ms))).await;
        let kind = cycle % faults.len();
        struck.push(Struck { kind, at: Instant::now() });
        match cfg.faults[kind] {
            Fault::NodeKill => {
                let victim = 1 + (between((0, 2)) as usize);
                cluster.kill9_and_restart(victim).await;
                *addresses.write() = endpoints(&cluster);
            }
            Fault::NatsKillOne => {
                nats.kill9_one(0);
                tokio::time::sleep(Duration::from_millis(between(cfg.down_ms))).await;
                nats.restart_one(0).await;
            }
            Fault::NatsKillAll => {
                nats.kill9();
                tokio::time::sleep(Duration::from_millis(between(cfg.down_ms))).await;
                nats.restart().await;
            }
            Fault::PostgresRestart => postgres.restart(Duration::from_millis(between(cfg.down_ms))).await,
        }
        let took = load.recovered(faults[kind].kind).await;
        let stats = &mut faults[kind];
        stats.count += 1;
        stats.longest_recovery = stats.longest_recovery.max(took);
    }
    let ledger = load.settle(cfg.cycles, cfg.settle, faults, &struck).await;
    drop(cluster);
    Some(ledger)
}

fn between((low, high): (u64, u64)) -> u64 {
    let r = u64::from(u16::from_le_bytes(herald_core::crypto::random_bytes::<2>()));
    low + r % (high.saturating_sub(low) + 1)
}

/// Where a device records what it sees.
struct Seen {
    got: Arc<Deliveries>,
    /// Devices connected now.
    online: Arc<AtomicUsize>,
    disconnects: Arc<Mutex<Vec<Instant>>>,
    /// Per device, the node (its index) it is connected to.
    nodes: Arc<Vec<AtomicUsize>>,
}

/// A device that stays connected to a node, and records what it gets: device `index`
/// starts on node `index` (modulo the nodes) and, when its connection ends, connects to the
/// next node, at wherever it listens now.
async fn device(creds: Creds, index: usize, addresses: Addresses, seen: Seen, stop: Arc<AtomicBool>) {
    let mut attempt = 0usize;
    while !stop.load(Ordering::Relaxed) {
        let (node, mqtt) = {
            let nodes = addresses.read();
            let node = (index + attempt) % nodes.len();
            (node, nodes[node].1.clone())
        };
        attempt += 1;
        let (client, mut events) = AsyncClient::new(Creds { mqtt, ..creds.clone() }.options(), 100);
        let mut online = false;
        loop {
            match tokio::time::timeout(Duration::from_secs(5), events.poll()).await {
                Ok(Ok(Event::Incoming(Packet::Publish(p)))) => {
                    let at = Instant::now();
                    let v: serde_json::Value = serde_json::from_slice(&p.payload).unwrap_or_default();
                    let field = |name: &str| v[name].as_str().unwrap_or_default().to_string();
                    seen.got.lock().push((creds.device_id.clone(), field("msgKey"), field("messageId"), at));
                }
                Ok(Ok(Event::Incoming(Packet::ConnAck(_)))) if !online => {
                    online = true;
                    seen.nodes[index].store(node, Ordering::Relaxed);
                    seen.online.fetch_add(1, Ordering::Relaxed);
                }
                Ok(Ok(_)) => {}
                // The node died (or is gone to another port): connect again, to where it is now.
                Ok(Err(_)) => break,
                // Nothing for a while (pushes refused during a fault): the connection stands;
                // the client's keepalive says when it does not.
                Err(_) => {}
            }
            if stop.load(Ordering::Relaxed) {
                return;
            }
        }
        if online {
            seen.online.fetch_sub(1, Ordering::Relaxed);
            seen.disconnects.lock().push(Instant::now());
        }
        drop(client);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Pushes to the devices in turn, one unique msgKey each, until `pushing` is cleared; in a
/// cluster each through the node after the one its device is connected to, so that every
/// delivery crosses the bus.
async fn push_steadily(
    app: TestApp,
    devices: Vec<String>,
    device_nodes: Arc<Vec<AtomicUsize>>,
    addresses: Addresses,
    pushes: Arc<Mutex<Pushes>>,
    pushing: Arc<AtomicBool>,
    every: Duration,
) {
    let mut n = 0usize;
    while pushing.load(Ordering::Relaxed) {
        let device = &devices[n % devices.len()];
        let key = format!("soak-{n}");
        let body = json!({
            "deliveryType": 1, "targetMsgkey": {device: key}, "title": "soak", "content": "c", "expiredSeconds": 3600,
        })
        .to_string();
        // The app, at wherever the nodes listen now.
        let http = {
            let nodes = addresses.read();
            let holder = device_nodes[n % devices.len()].load(Ordering::Relaxed);
            nodes[(holder + 1) % nodes.len()].0.clone()
        };
        let now = TestApp { http, ..app.clone() };
        let sent = Instant::now();
        let answer =
            tokio::time::timeout(Duration::from_secs(5), now.try_signed("POST", "/v1/push/simple", &body)).await;
        {
            let mut p = pushes.lock();
            let outcome = match answer {
                Ok(Ok(r)) if r.status == 200 => {
                    p.accepted.insert(key.clone(), device.clone());
                    Outcome::Accepted
                }
                Ok(Ok(r)) => {
                    p.refused.insert(key.clone(), device.clone());
                    let code =
                        r.json()["resultCode"].as_str().map_or_else(|| format!("HTTP {}", r.status), str::to_owned);
                    Outcome::Refused(code)
                }
                // No answer: the node died with the request in flight.
                Ok(Err(_)) | Err(_) => {
                    p.unanswered += 1;
                    Outcome::Unanswered
                }
            };
            p.log.push(PushRecord { key, sent, answered: Instant::now(), outcome });
        }
        n += 1;
        tokio::time::sleep(every).await;
    }
}
