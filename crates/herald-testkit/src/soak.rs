//! The durability soak: pushes at a steady rate through the signed API to connected
//! devices while the node is killed (SIGKILL) at random moments and restarted on the same
//! data, then checks a ledger: every push answered 200 reached its device (at least once;
//! devices deduplicate by messageId), no push answered with a refusal reached anyone, no
//! device got another device's message. Shared by the test suite (a short run) and
//! `herald-bench soak` (a long one).

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
            "{} kill -9 cycles; pushes: {} accepted, {} refused, {} unanswered; deliveries: {} ({} duplicates); \
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
        )
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

/// Runs the soak against `bin` on `backend`; `None` when the backend is not configured here.
pub async fn run(bin: &Path, backend: Backend, cfg: &SoakConfig) -> Option<Ledger> {
    let mut node = TestProcess::start(bin, backend).await?;
    let app = node.create_app().await;
    let mut devices = Vec::with_capacity(cfg.devices);
    for i in 0..cfg.devices {
        devices.push(app.register(&format!("soak-{i}")).await);
    }
    let addresses = Arc::new(RwLock::new((node.http.clone(), node.mqtt.clone())));
    let stop = Arc::new(AtomicBool::new(false));
    let deliveries: Arc<Deliveries> = Arc::default();
    let device_tasks: Vec<_> = devices
        .iter()
        .map(|d| tokio::spawn(device(d.clone(), addresses.clone(), deliveries.clone(), stop.clone())))
        .collect();
    let pushes = Arc::new(Mutex::new(Pushes::default()));
    let pushing = Arc::new(AtomicBool::new(true));
    let pusher = tokio::spawn(push_steadily(
        app.clone(),
        devices.iter().map(|d| d.device_id.clone()).collect(),
        addresses.clone(),
        pushes.clone(),
        pushing.clone(),
        cfg.push_every,
    ));

    for _ in 0..cfg.cycles {
        tokio::time::sleep(Duration::from_millis(between(cfg.run_ms))).await;
        node.kill9();
        node = node.restart().await;
        *addresses.write() = (node.http.clone(), node.mqtt.clone());
    }
    pushing.store(false, Ordering::Relaxed);
    let _ = pusher.await;

    // Every accepted push reaches its device within the settle time, or it is lost.
    let deadline = tokio::time::Instant::now() + cfg.settle;
    loop {
        let got: HashSet<String> = deliveries.lock().iter().map(|(_, key, _)| key.clone()).collect();
        let missing = pushes.lock().accepted.keys().any(|k| !got.contains(k));
        if !missing || tokio::time::Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A refused push has had the same time to show up, if it wrongly were stored.
    stop.store(true, Ordering::Relaxed);
    for t in device_tasks {
        t.abort();
    }
    let pushes = pushes.lock();
    Some(ledger(cfg.cycles, &pushes, &deliveries.lock()))
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

/// A device that stays connected to wherever the node listens now, and records what it gets.
async fn device(creds: Creds, addresses: Arc<RwLock<(String, String)>>, got: Arc<Deliveries>, stop: Arc<AtomicBool>) {
    while !stop.load(Ordering::Relaxed) {
        let mqtt = addresses.read().1.clone();
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

/// Pushes to the devices in turn, one unique msgKey each, until `pushing` is cleared.
async fn push_steadily(
    app: TestApp,
    devices: Vec<String>,
    addresses: Arc<RwLock<(String, String)>>,
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
        // The app, at wherever the node listens now.
        let now = TestApp { http: addresses.read().0.clone(), ..app.clone() };
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
