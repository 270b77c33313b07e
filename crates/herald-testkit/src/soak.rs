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

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::time::Instant;

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
    /// Cluster: per kind of fault, what it cost.
    pub faults: Vec<FaultStats>,
    /// Delivery latency of the pushes sent before the first fault.
    pub baseline: Option<Latency>,
    /// Cluster: deliveries later than [`LATE`], to follow in the nodes' logs.
    pub late: Vec<Late>,
}

/// A delivery is listed as late past this: the worst a bus outage should cost (a look in
/// the store every `cluster.degraded_resync_ms`, 1 s, for deliveries older than 250 ms)
/// plus a margin.
pub const LATE: Duration = Duration::from_millis(1_500);

/// A delivery later than [`LATE`]: the push, when it was sent, and how late it came.
#[derive(Debug, Clone)]
pub struct Late {
    /// The fault whose window the push was answered in.
    pub fault: &'static str,
    pub sent_unix_ms: i64,
    /// From the fault's strike to the push's request.
    pub after_fault: Duration,
    pub latency: Duration,
    /// Delivered after the next fault struck: it met that one too.
    pub overlapped: Option<&'static str>,
    pub device: String,
    pub message_id: String,
}

/// Delivery latency (from the push request sent to the device's receipt of the message).
#[derive(Debug, Default, Clone, Copy)]
pub struct Latency {
    pub p50: Duration,
    pub p99: Duration,
    pub max: Duration,
    pub count: usize,
}

impl Latency {
    fn of(mut samples: Vec<Duration>) -> Option<Latency> {
        if samples.is_empty() {
            return None;
        }
        samples.sort();
        let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
        Some(Latency { p50: at(0.5), p99: at(0.99), max: samples[samples.len() - 1], count: samples.len() })
    }
}

/// What one kind of fault cost, over every time it struck. A fault's window runs from the
/// moment it struck to the next fault (or the end of the pushes).
#[derive(Debug, Default, Clone)]
pub struct FaultStats {
    pub kind: &'static str,
    pub count: usize,
    /// The longest time from the fault's repair (restart done) to the next accepted push.
    pub longest_recovery: Duration,
    /// Pushes of its windows answered with a refusal, and their resultCodes.
    pub refused: usize,
    pub refused_codes: BTreeSet<String>,
    /// Pushes of its windows without an answer (sent to a node that died).
    pub unanswered: usize,
    /// Summed over the faults: from the first refused push's request to the last one's.
    pub refused_for: Duration,
    /// Delivery latency of the accepted pushes of its windows.
    pub latency: Option<Latency>,
    /// The same, of those delivered before the next fault struck: what this fault cost
    /// alone (a push whose doorbell a bus fault lost, delivered after a PostgreSQL restart
    /// that followed, waited for both).
    pub alone: Option<Latency>,
    /// Accepted pushes of its windows delivered after the next fault struck.
    pub overlapped: usize,
    /// Accepted pushes of its windows never delivered (must be 0).
    pub lost: usize,
    /// The longest time from a fault to the last push of its window that was refused,
    /// unanswered, lost or late (over 3x the baseline p99, at least 100 ms): after it,
    /// everything was as before the fault.
    pub full_recovery: Duration,
    /// Device connections lost in its windows.
    pub disconnects: usize,
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

impl Ledger {
    /// The faults' costs as a Markdown table (the one in docs/operations.md).
    pub fn fault_table(&self) -> String {
        let ms = |d: Duration| format!("{}", d.as_millis());
        let mut out = String::new();
        if let Some(b) = self.baseline {
            out.push_str(&format!(
                "Baseline (before the first fault): delivery p50 {} ms, p99 {} ms, max {} ms over {} pushes.\n\n",
                ms(b.p50),
                ms(b.p99),
                ms(b.max),
                b.count
            ));
        }
        out.push_str(
            "| fault | times | pushes refused (codes) | refused for (s) | unanswered | delivery p50 / p99 / max (ms) | \
             delivered after the next fault; p99 / max of the others (ms) | accepted lost | device disconnects | \
             full recovery (s) |\n|---|---|---|---|---|---|---|---|---|---|\n",
        );
        for f in &self.faults {
            let codes = if f.refused_codes.is_empty() {
                String::new()
            } else {
                format!(" ({})", f.refused_codes.iter().cloned().collect::<Vec<_>>().join(", "))
            };
            let latency =
                f.latency.map_or("-".to_string(), |l| format!("{} / {} / {}", ms(l.p50), ms(l.p99), ms(l.max)));
            let alone = f.alone.map_or("-".to_string(), |l| format!("{} / {}", ms(l.p99), ms(l.max)));
            out.push_str(&format!(
                "| {} | {} | {}{codes} | {:.1} | {} | {latency} | {}; {alone} | {} | {} | {:.1} |\n",
                f.kind,
                f.count,
                f.refused,
                f.refused_for.as_secs_f64(),
                f.unanswered,
                f.overlapped,
                f.lost,
                f.disconnects,
                f.full_recovery.as_secs_f64()
            ));
        }
        out
    }

    /// The statistics of the fault named `kind`.
    /// The late deliveries, a line each, in the nodes' log time (UTC).
    pub fn late_list(&self) -> String {
        self.late
            .iter()
            .map(|l| {
                let ms = l.sent_unix_ms.rem_euclid(86_400_000);
                let sent =
                    format!("{:02}:{:02}:{:02}.{:03}", ms / 3_600_000, ms / 60_000 % 60, ms / 1_000 % 60, ms % 1_000);
                let overlapped =
                    l.overlapped.map(|next| format!(", delivered after a {next} struck")).unwrap_or_default();
                format!(
                    "- {} ms: sent {sent} UTC, {} ms after a {} struck{overlapped}; device {}, message {}\n",
                    l.latency.as_millis(),
                    l.after_fault.as_millis(),
                    l.fault,
                    l.device,
                    l.message_id
                )
            })
            .collect()
    }

    pub fn fault(&self, kind: Fault) -> &FaultStats {
        self.faults.iter().find(|f| f.kind == kind.name()).unwrap_or_else(|| panic!("no {} in the soak", kind.name()))
    }
}

/// A fault as it struck: when, and when it was repaired.
struct Struck {
    /// Its index in the soak's faults.
    kind: usize,
    at: Instant,
}

/// What the pushes were: msgKey → (target device, outcome); and each one, timed.
#[derive(Default)]
struct Pushes {
    accepted: HashMap<String, String>,
    refused: HashMap<String, String>,
    unanswered: usize,
    log: Vec<PushRecord>,
}

/// One push: its msgKey, when its request was sent and answered, and how.
struct PushRecord {
    key: String,
    sent: Instant,
    /// When the answer came (or the request was given up): the fault whose window holds
    /// this time is the one the push met.
    answered: Instant,
    outcome: Outcome,
}

enum Outcome {
    Accepted,
    /// Refused, with the answer's resultCode.
    Refused(String),
    Unanswered,
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

/// What each kind of fault (named by `kinds`) cost, from the timed pushes and deliveries;
/// sets `baseline` from the pushes sent before the first fault.
fn costs(
    kinds: Vec<FaultStats>,
    struck: &[Struck],
    log: &[PushRecord],
    deliveries: &[(String, String, String, Instant)],
    disconnects: &[Instant],
    baseline: &mut Option<Latency>,
    late: &mut Vec<Late>,
) -> Vec<FaultStats> {
    let (now, now_unix) = (Instant::now(), herald_core::now_ms());
    let unix_ms = |at: Instant| now_unix - now.saturating_duration_since(at).as_millis() as i64;
    let mut first: HashMap<&str, Instant> = HashMap::new();
    for (_, key, _, at) in deliveries {
        let e = first.entry(key.as_str()).or_insert(*at);
        *e = (*e).min(*at);
    }
    let latency = |p: &PushRecord| first.get(p.key.as_str()).map(|at| at.saturating_duration_since(p.sent));
    let names: Vec<&'static str> = kinds.iter().map(|k| k.kind).collect();
    let is_accepted = |p: &PushRecord| matches!(p.outcome, Outcome::Accepted);
    let before = struck.first().map(|s| s.at);
    *baseline = Latency::of(
        log.iter().filter(|p| before.is_none_or(|b| p.answered < b) && is_accepted(p)).filter_map(latency).collect(),
    );
    let slow = baseline.map_or(Duration::from_millis(100), |b| (3 * b.p99).max(Duration::from_millis(100)));
    let end = log.last().map_or_else(Instant::now, |p| p.answered + Duration::from_secs(1));
    let mut samples: Vec<Vec<Duration>> = vec![Vec::new(); kinds.len()];
    let mut alone: Vec<Vec<Duration>> = vec![Vec::new(); kinds.len()];
    let mut kinds = kinds;
    for (i, s) in struck.iter().enumerate() {
        let until = struck.get(i + 1).map_or(end, |next| next.at);
        let window: Vec<&PushRecord> = log.iter().filter(|p| p.answered >= s.at && p.answered < until).collect();
        let delivered: Vec<Option<Duration>> = window.iter().filter(|p| is_accepted(p)).map(|p| latency(p)).collect();
        let stats = &mut kinds[s.kind];
        let refused: Vec<&&PushRecord> = window.iter().filter(|p| matches!(p.outcome, Outcome::Refused(_))).collect();
        stats.refused += refused.len();
        for p in &refused {
            if let Outcome::Refused(code) = &p.outcome {
                stats.refused_codes.insert(code.clone());
            }
        }
        if let (Some(a), Some(b)) = (refused.first(), refused.last()) {
            stats.refused_for += b.answered.saturating_duration_since(a.sent);
        }
        stats.unanswered += window.iter().filter(|p| matches!(p.outcome, Outcome::Unanswered)).count();
        stats.lost += delivered.iter().filter(|l| l.is_none()).count();
        let next = struck.get(i + 1);
        let after_next = |p: &PushRecord| next.filter(|n| first.get(p.key.as_str()).is_some_and(|at| *at >= n.at));
        for p in window.iter().filter(|p| is_accepted(p)) {
            match (latency(p), after_next(p)) {
                (Some(_), Some(_)) => stats.overlapped += 1,
                (Some(l), None) => alone[s.kind].push(l),
                (None, _) => {}
            }
            if let Some(l) = latency(p).filter(|l| *l > LATE) {
                let (device, message_id) =
                    deliveries.iter().find(|d| d.1 == p.key).map(|d| (d.0.clone(), d.2.clone())).unwrap_or_default();
                late.push(Late {
                    fault: stats.kind,
                    sent_unix_ms: unix_ms(p.sent),
                    after_fault: p.sent.saturating_duration_since(s.at),
                    latency: l,
                    overlapped: after_next(p).map(|n| names[n.kind]),
                    device,
                    message_id,
                });
            }
        }
        samples[s.kind].extend(delivered.into_iter().flatten());
        let bad = |p: &&PushRecord| !matches!(p.outcome, Outcome::Accepted) || latency(p).is_none_or(|l| l > slow);
        if let Some(last_bad) = window.iter().rev().find(|p| bad(p)) {
            stats.full_recovery = stats.full_recovery.max(last_bad.answered.saturating_duration_since(s.at));
        }
        stats.disconnects += disconnects.iter().filter(|t| **t >= s.at && **t < until).count();
    }
    for ((stats, samples), alone) in kinds.iter_mut().zip(samples).zip(alone) {
        stats.latency = Latency::of(samples);
        stats.alone = Latency::of(alone);
    }
    kinds
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

fn ledger(cycles: usize, pushes: &Pushes, deliveries: &[(String, String, String, Instant)]) -> Ledger {
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
    for (device, key, message_id, _) in deliveries {
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
