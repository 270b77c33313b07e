//! The durability soak: pushes at a steady rate through the signed API to connected
//! devices while faults strike at random moments, then checks a ledger: every push answered
//! 200 reached its device (at least once; devices deduplicate by messageId), no push
//! answered with a refusal reached anyone, no device got another device's message.
//!
//! [`run`]: one node, killed (SIGKILL) and restarted on the same data. [`run_cluster`]:
//! three nodes on a PostgreSQL and a NATS of the soak's own, with in turn a node killed and
//! restarted, the NATS server killed and restarted, and PostgreSQL restarted; pushes go to
//! the nodes in turn, and a device whose node is gone connects to the next one. Shared by
//! the test suite (short runs) and `herald-bench soak` (long ones).

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use parking_lot::{Mutex, RwLock};
use rumqttc::{AsyncClient, Event, Packet};
use serde_json::json;

use crate::{Backend, Creds, TestApp, TestProcess};

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
}

/// What the soak saw, and what the ledger found.
#[derive(Debug, Default, Clone)]
pub struct Ledger {
    pub cycles: usize,
    /// Pushes answered 200.
    pub accepted: usize,
    /// Pushes answered with a refusal (non-200): the node was starting or stopping.
    pub refused: usize,
    /// Pushes without an answer (the node died with the request in flight): either outcome
    /// is right, so they are not checked.
    pub unanswered: usize,
    /// Deliveries devices received, and how many of them were a second copy.
    pub delivered: usize,
    pub duplicates: usize,
    /// Accepted pushes their device never got (must be empty).
    pub lost: Vec<String>,
    /// Refused pushes some device got (must be empty).
    pub refused_delivered: Vec<String>,
    /// Deliveries to a device the push was not for (must be 0).
    pub misdelivered: usize,
    /// Cluster: per kind of fault, how many struck and the longest time from the fault's
    /// repair (restart done) to the next accepted push.
    pub faults: Vec<FaultStats>,
}

#[derive(Debug, Default, Clone)]
pub struct FaultStats {
    pub kind: &'static str,
    pub count: usize,
    pub longest_recovery: Duration,
}

impl Ledger {
    /// True when nothing accepted was lost, nothing refused delivered, nothing misdelivered.
    pub fn holds(&self) -> bool {
        self.lost.is_empty() && self.refused_delivered.is_empty() && self.misdelivered == 0
    }
}

impl std::fmt::Display for Ledger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} fault cycles; pushes: {} accepted, {} refused, {} unanswered; deliveries: {} ({} duplicates); \
             lost {}, refused but delivered {}, misdelivered {}",
            self.cycles,
            self.accepted,
            self.refused,
            self.unanswered,
            self.delivered,
            self.duplicates,
            self.lost.len(),
            self.refused_delivered.len(),
            self.misdelivered
        )?;
        for fault in &self.faults {
            let longest = fault.longest_recovery.as_secs_f64();
            write!(f, "; {} {} (longest recovery {longest:.1} s)", fault.count, fault.kind)?;
        }
        Ok(())
    }
}

/// What the pushes were: msgKey → (target device, outcome).
#[derive(Default)]
struct Pushes {
    accepted: HashMap<String, String>,
    refused: HashMap<String, String>,
    unanswered: usize,
}

/// What the devices got: (device, msgKey, messageId) per delivery.
type Deliveries = Mutex<Vec<(String, String, String)>>;

/// Where the nodes listen now: (HTTP, MQTT) of each.
type Addresses = Arc<RwLock<Vec<(String, String)>>>;

/// The devices and the pusher of a soak, running until [`Load::settle`].
struct Load {
    stop: Arc<AtomicBool>,
    pushing: Arc<AtomicBool>,
    pushes: Arc<Mutex<Pushes>>,
    deliveries: Arc<Deliveries>,
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
        let device_tasks = devices
            .iter()
            .enumerate()
            .map(|(i, d)| tokio::spawn(device(d.clone(), i, addresses.clone(), deliveries.clone(), stop.clone())))
            .collect();
        let pushes = Arc::new(Mutex::new(Pushes::default()));
        let pushing = Arc::new(AtomicBool::new(true));
        let pusher = tokio::spawn(push_steadily(
            app,
            devices.iter().map(|d| d.device_id.clone()).collect(),
            addresses,
            pushes.clone(),
            pushing.clone(),
            cfg.push_every,
        ));
        Load { stop, pushing, pushes, deliveries, device_tasks, pusher }
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
    async fn settle(self, cycles: usize, settle: Duration) -> Ledger {
        self.pushing.store(false, Ordering::Relaxed);
        let _ = self.pusher.await;
        // Every accepted push reaches its device within the settle time, or it is lost.
        let deadline = tokio::time::Instant::now() + settle;
        loop {
            let got: HashSet<String> = self.deliveries.lock().iter().map(|(_, key, _)| key.clone()).collect();
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
        ledger(cycles, &pushes, &self.deliveries.lock())
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
    Some(load.settle(cfg.cycles, cfg.settle).await)
}

/// The cluster soak: three nodes (processes of `bin`) on a PostgreSQL and a NATS server
/// of its own; each cycle, after a random run, one fault in turn: a node killed with
/// SIGKILL and restarted, the NATS server killed and restarted after `cfg.down_ms`,
/// PostgreSQL stopped (fast shutdown) and started after `cfg.down_ms`. Nodes look for
/// work no bus message announced every `resync_secs`. `None` when PostgreSQL's programs or
/// nats-server are not installed here.
pub async fn run_cluster(bin: &Path, cfg: &SoakConfig, resync_secs: u64) -> Option<Ledger> {
    let postgres = crate::TestPostgres::start().await?;
    let mut nats = crate::TestNats::start().await?;
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
    let mut faults: Vec<FaultStats> = ["node kill -9", "NATS kill -9", "PostgreSQL restart"]
        .into_iter()
        .map(|kind| FaultStats { kind, ..FaultStats::default() })
        .collect();
    for cycle in 0..cfg.cycles {
        tokio::time::sleep(Duration::from_millis(between(cfg.run_ms))).await;
        let kind = cycle % faults.len();
        match kind {
            0 => {
                let victim = 1 + (between((0, 2)) as usize);
                cluster.kill9_and_restart(victim).await;
                *addresses.write() = endpoints(&cluster);
            }
            1 => {
                nats.kill9();
                tokio::time::sleep(Duration::from_millis(between(cfg.down_ms))).await;
                nats.restart().await;
            }
            _ => postgres.restart(Duration::from_millis(between(cfg.down_ms))).await,
        }
        let took = load.recovered(faults[kind].kind).await;
        let stats = &mut faults[kind];
        stats.count += 1;
        stats.longest_recovery = stats.longest_recovery.max(took);
    }
    let mut ledger = load.settle(cfg.cycles, cfg.settle).await;
    ledger.faults = faults;
    drop(cluster);
    Some(ledger)
}

fn ledger(cycles: usize, pushes: &Pushes, deliveries: &[(String, String, String)]) -> Ledger {
    let mut seen = HashSet::new();
    let mut l = Ledger {
        cycles,
        accepted: pushes.accepted.len(),
        refused: pushes.refused.len(),
        unanswered: pushes.unanswered,
        delivered: deliveries.len(),
        ..Ledger::default()
    };
    let mut reached = HashSet::new();
    for (device, key, message_id) in deliveries {
        if !seen.insert((device.clone(), message_id.clone())) {
            l.duplicates += 1;
        }
        let target = pushes.accepted.get(key).or_else(|| pushes.refused.get(key));
        if target.is_some_and(|t| t != device) {
            l.misdelivered += 1;
        }
        if pushes.refused.contains_key(key) {
            l.refused_delivered.push(key.clone());
        }
        reached.insert((device.clone(), key.clone()));
    }
    l.lost = pushes
        .accepted
        .iter()
        .filter(|(key, device)| !reached.contains(&((*device).clone(), (*key).clone())))
        .map(|(key, _)| key.clone())
        .collect();
    l.lost.sort();
    l.refused_delivered.sort();
    l.refused_delivered.dedup();
    l
}

fn between((low, high): (u64, u64)) -> u64 {
    let r = u64::from(u16::from_le_bytes(herald_core::crypto::random_bytes::<2>()));
    low + r % (high.saturating_sub(low) + 1)
}

/// A device that stays connected to a node, and records what it gets: device `index`
/// starts on node `index` (modulo the nodes) and, when its connection ends, connects to the
/// next node, at wherever it listens now.
async fn device(creds: Creds, index: usize, addresses: Addresses, got: Arc<Deliveries>, stop: Arc<AtomicBool>) {
    let mut attempt = 0usize;
    while !stop.load(Ordering::Relaxed) {
        let mqtt = {
            let nodes = addresses.read();
            nodes[(index + attempt) % nodes.len()].1.clone()
        };
        attempt += 1;
        let (client, mut events) = AsyncClient::new(Creds { mqtt, ..creds.clone() }.options(), 100);
        loop {
            match tokio::time::timeout(Duration::from_secs(5), events.poll()).await {
                Ok(Ok(Event::Incoming(Packet::Publish(p)))) => {
                    let v: serde_json::Value = serde_json::from_slice(&p.payload).unwrap_or_default();
                    let field = |name: &str| v[name].as_str().unwrap_or_default().to_string();
                    got.lock().push((creds.device_id.clone(), field("msgKey"), field("messageId")));
                }
                Ok(Ok(_)) => {}
                // The node died (or is gone to another port): connect again, to where it is now.
                Ok(Err(_)) | Err(_) => break,
            }
            if stop.load(Ordering::Relaxed) {
                return;
            }
        }
        drop(client);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Pushes to the devices in turn, one unique msgKey each, through the nodes in turn, until
/// `pushing` is cleared.
async fn push_steadily(
    app: TestApp,
    devices: Vec<String>,
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
        // The app, at wherever the nodes listen now, each in turn.
        let http = {
            let nodes = addresses.read();
            nodes[n % nodes.len()].0.clone()
        };
        let now = TestApp { http, ..app.clone() };
        let answer =
            tokio::time::timeout(Duration::from_secs(5), now.try_signed("POST", "/v1/push/simple", &body)).await;
        {
            let mut p = pushes.lock();
            match answer {
                Ok(Ok(r)) if r.status == 200 => p.accepted.insert(key, device.clone()),
                Ok(Ok(_)) => p.refused.insert(key, device.clone()),
                // No answer: the node died with the request in flight.
                Ok(Err(_)) | Err(_) => {
                    p.unanswered += 1;
                    None
                }
            };
        }
        n += 1;
        tokio::time::sleep(every).await;
    }
}
