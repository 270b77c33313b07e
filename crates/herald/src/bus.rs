//! The bus: how the nodes of a cluster tell each other about work. A doorbell, never the
//! truth: everything an event announces is committed to the store first, so an event that
//! is lost costs latency, not a message (the device gets it from the store on its next
//! connect, refill or resync).
//!
//! A single node has no bus ([`Bus::local`]): every device it serves is in its own hub.
//! A cluster uses NATS core pub/sub with two subjects per cluster: `<prefix>.node.<id>`
//! for what one node must do (the node that holds a device's connection, as the store's
//! presence column says), and `<prefix>.all` for what every node must do.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use anyhow::Context;
use futures_util::StreamExt;
use herald_core::ids::{DeviceId, KeyId, MessageId};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

/// Something one node asks of another, or of all.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase", rename_all_fields = "camelCase")]
pub enum Event {
    /// Deliver a committed message to these devices if they are connected here.
    Deliver { devices: Vec<DeviceId>, message_id: MessageId, expires_at: i64, payload: String },
    /// Read these devices' pending deliveries from the store (a bind created some).
    Refill { devices: Vec<DeviceId> },
    /// Close this connection of the device: a newer one on another node replaced it.
    TakeOver { device: DeviceId, generation: u64 },
    /// A broadcast was committed: deliver it to the devices connected here that it reaches.
    Broadcast { message_id: MessageId, expires_at: i64, payload: String },
    /// Messages were revoked: connections skip copies queued in memory (until `until`).
    Revoked { message_ids: Vec<MessageId>, until: i64 },
    /// An API key was revoked: stop accepting its signatures now, not when the cache ages.
    KeyRevoked { key_id: KeyId },
    /// "The bus carries my events": sent to all every `cluster.degraded_resync_ms`. A node
    /// that stops hearing one it heard (NATS servers not yet routed to each other after a
    /// restart, a node cut off) looks for unannounced work often until it hears it again.
    Heartbeat,
}

impl Event {
    /// What to send once the bus is back for this event, which could not be sent now.
    /// A delivery becomes a read of the devices' pending deliveries: by then the device
    /// may have got it from the store, and a read writes nothing twice (a second copy of
    /// the message itself would). A broadcast is left to the resync (its audience is every
    /// device), a heartbeat says "now" and is never late.
    fn into_held(self) -> Option<Event> {
        match self {
            Event::Deliver { devices, .. } => Some(Event::Refill { devices }),
            Event::Broadcast { .. } | Event::Heartbeat => None,
            other => Some(other),
        }
    }
}

/// What travels on the wire: the event and the node it comes from.
#[derive(Serialize, Deserialize)]
struct Envelope {
    from: String,
    #[serde(flatten)]
    event: Event,
}

/// What reaches this node through the bus, in the order it arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming {
    /// An event another node sent.
    Event(Event),
    /// A heartbeat of the node named.
    Heartbeat(String),
    /// The connection to NATS came back after a loss: events sent meanwhile are gone, so the
    /// node reads its devices' pending deliveries again.
    Reconnected,
}

pub struct Bus {
    node_id: String,
    nats: Option<Nats>,
}

struct Nats {
    client: async_nats::Client,
    prefix: String,
    link: Arc<Link>,
    /// Events this node could not send while NATS was away (subject, body, when), sent
    /// when it is back: see [`Bus::send_held`].
    held: parking_lot::Mutex<std::collections::VecDeque<(String, bytes::Bytes, i64)>>,
}

/// Events held while NATS is away: at most this many (the oldest go first) ...
const HELD_MAX: usize = 5_000;
/// ... and sent when it is back only if they are younger than this: an older one's work
/// has been found in the store by its node's fast look (every second while degraded).
const HELD_FOR_MS: i64 = 2_000;

/// The state of a node's connection to NATS, told by the client's events and, at start, by
/// the first flush (which may come before the client's own "connected" event is handled).
struct Link {
    /// Since when (Unix ms) the connection to NATS is lost; 0 while it is up.
    down_since: AtomicI64,
    /// When (Unix ms) the connection last came back; 1 when the first connect at start
    /// ended no outage.
    up_since: AtomicI64,
    /// Told when the connection is lost (a permit waits if nobody listens yet).
    lost: tokio::sync::Notify,
}

impl Link {
    /// Down until the first connect says otherwise.
    fn new() -> Self {
        Link {
            down_since: AtomicI64::new(herald_core::now_ms()),
            up_since: AtomicI64::new(0),
            lost: tokio::sync::Notify::new(),
        }
    }

    /// The connection is up. Told twice at start (the flush, the event): the second time
    /// changes nothing.
    fn connected(&self) {
        let now = herald_core::now_ms();
        let since = self.down_since.swap(0, Ordering::SeqCst);
        if since == 0 {
            return;
        }
        // The first connect at start ends no outage, unless NATS kept the node waiting (it
        // served without the bus meanwhile).
        let at_start = self.up_since.load(Ordering::SeqCst) == 0 && now - since <= START_WAIT.as_millis() as i64;
        if !at_start {
            tracing::info!(down_ms = now - since, "bus connected again");
        }
        self.up_since.store(if at_start { 1 } else { now }, Ordering::SeqCst);
    }

    fn disconnected(&self) {
        let now = herald_core::now_ms();
        if self.down_since.compare_exchange(0, now, Ordering::SeqCst, Ordering::SeqCst).is_ok() {
            self.lost.notify_one();
            tracing::warn!(
                "bus disconnected: pushes are still accepted; other nodes' devices get them from the \
                 store (cluster.degraded_resync_ms)"
            );
        }
    }
}

/// How long a node waits before its next attempt to reach NATS again: 100 ms more per
/// failed attempt, at most 1 s, plus up to 25% at random so that the nodes of a cluster do
/// not all knock at once (async-nats' own default grows to 4 s: a bus back for 3.5 s
/// before the nodes saw it).
fn reconnect_delay(attempts: usize) -> Duration {
    let base = (attempts as u64 * 100).min(1_000);
    let jitter = u64::from(herald_core::crypto::random_bytes::<1>()[0]) * base / 1_020;
    Duration::from_millis(base + jitter)
}

/// How often a node pings its NATS server: a server that went silent (a partition, not a
/// closed socket) is noticed after two unanswered pings.
const PING_INTERVAL: Duration = Duration::from_secs(5);

/// How long a starting node waits for NATS before it serves without the bus.
const START_WAIT: Duration = Duration::from_secs(2);

/// The longest a push waits to hand an event to the NATS client.
const PUBLISH_WAIT: Duration = Duration::from_millis(200);

impl Bus {
    /// The bus of a single node: nothing to ring, always available.
    pub fn local(node_id: &str) -> Self {
        Bus { node_id: node_id.to_owned(), nats: None }
    }

    /// Connects to NATS at `urls` (one URL, or several separated by commas: servers of one
    /// NATS cluster, tried in turn) and subscribes to this node's subjects; what arrives comes
    /// out of the returned receiver. A NATS that does not answer yet is no reason not to
    /// start: the node serves degraded (see [`Bus::down_since`]) and connects when it can.
    /// Fails only on a malformed URL.
    pub async fn connect(
        urls: &str,
        prefix: &str,
        node_id: &str,
    ) -> anyhow::Result<(Self, mpsc::UnboundedReceiver<Incoming>)> {
        let servers: Vec<async_nats::ServerAddr> = urls
            .split(',')
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .map(|u| u.parse().with_context(|| format!("bus URL {u:?} is not a NATS URL")))
            .collect::<anyhow::Result<_>>()?;
        anyhow::ensure!(!servers.is_empty(), "bus_url names no NATS server");
        let link = Arc::new(Link::new());
        let (incoming, received) = mpsc::unbounded_channel();
        let (events_link, reconnects) = (link.clone(), incoming.clone());
        let client = async_nats::ConnectOptions::new()
            .name(format!("herald {node_id}"))
            .retry_on_initial_connect()
            .reconnect_delay_callback(reconnect_delay)
            .ping_interval(PING_INTERVAL)
            .connection_timeout(Duration::from_secs(2))
            .event_callback(move |event| {
                let (link, reconnects) = (events_link.clone(), reconnects.clone());
                async move {
                    match event {
                        async_nats::Event::Connected => {
                            link.connected();
                            // Events sent meanwhile are gone: the node reads its devices' work.
                            let _ = reconnects.send(Incoming::Reconnected);
                        }
                        async_nats::Event::Disconnected => link.disconnected(),
                        // async-nats logs these itself (reconnect attempts, errors).
                        other => tracing::debug!(event = %other, "bus event"),
                    }
                }
            })
            .connect(servers)
            .await
            .with_context(|| format!("connecting to NATS at {urls}"))?;
        let subjects = [format!("{prefix}.node.{node_id}"), format!("{prefix}.all")];
        for subject in subjects {
            let mut sub =
                client.subscribe(subject.clone()).await.with_context(|| format!("subscribing to {subject}"))?;
            let (incoming, me) = (incoming.clone(), node_id.to_owned());
            tokio::spawn(async move {
                while let Some(msg) = sub.next().await {
                    match serde_json::from_slice::<Envelope>(&msg.payload) {
                        Ok(env) if env.from == me => {}
                        Ok(Envelope { from, event: Event::Heartbeat }) => {
                            let _ = incoming.send(Incoming::Heartbeat(from));
                        }
                        Ok(env) => {
                            let _ = incoming.send(Incoming::Event(env.event));
                        }
                        Err(e) => tracing::warn!(%subject, error = %e, "ignored a malformed bus event"),
                    }
                }
            });
        }
        // The subscriptions are in place at the server before the node serves anyone, when
        // NATS answers; otherwise they are made when it connects.
        match tokio::time::timeout(START_WAIT, client.flush()).await {
            // The client's "connected" event may not have been handled yet: until it is,
            // the node would count itself without the bus (and tell the cluster so).
            Ok(Ok(())) if client.connection_state() == async_nats::connection::State::Connected => {
                link.connected();
            }
            Ok(_) => {}
            Err(_) => tracing::warn!(%urls, "NATS does not answer: serving without the bus until it does"),
        }
        let nats = Nats { client, prefix: prefix.to_owned(), link, held: Default::default() };
        let bus = Bus { node_id: node_id.to_owned(), nats: Some(nats) };
        Ok((bus, received))
    }

    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    /// "nats" or "local", for the operator.
    pub fn kind(&self) -> &'static str {
        if self.nats.is_some() { "nats" } else { "local" }
    }

    /// True for a node of a cluster (other nodes to ring, messages that can be lost).
    pub fn is_cluster(&self) -> bool {
        self.nats.is_some()
    }

    /// False while a cluster node has lost NATS: it cannot ring other nodes, whose devices
    /// then get its work from the store.
    pub fn available(&self) -> bool {
        self.down_since().is_none()
    }

    /// True while this node has lost NATS, and for `within_ms` after it came back: events
    /// sent during a reconnect, even a quick one (a NATS server of a cluster lost, another
    /// one taken), may be gone, and subscriptions take a moment to reach the other servers.
    pub fn recently_down(&self, within_ms: i64) -> bool {
        self.nats.as_ref().is_some_and(|n| {
            n.link.down_since.load(Ordering::SeqCst) != 0
                || herald_core::now_ms() - n.link.up_since.load(Ordering::SeqCst) < within_ms
        })
    }

    /// Resolves when this node loses NATS (at once if it lost it since the last call);
    /// never on a single node.
    pub async fn lost(&self) {
        match &self.nats {
            Some(n) => n.link.lost.notified().await,
            None => std::future::pending().await,
        }
    }

    /// Since when (Unix ms) this node has lost NATS; `None` while it is connected (and on a
    /// single node, which has no bus to lose).
    pub fn down_since(&self) -> Option<i64> {
        self.nats.as_ref().map(|n| n.link.down_since.load(Ordering::SeqCst)).filter(|since| *since != 0)
    }

    /// Sends `event` to node `node`. Dropped on a single node (there is no other) and
    /// logged when NATS refuses it: the store still holds what the event announces.
    pub async fn send(&self, node: &str, event: Event) {
        if let Some(n) = &self.nats {
            n.publish(format!("{}.node.{node}", n.prefix), &self.node_id, event).await;
        }
    }

    /// Sends `event` to every other node.
    pub async fn send_all(&self, event: Event) {
        if let Some(n) = &self.nats {
            n.publish(format!("{}.all", n.prefix), &self.node_id, event).await;
        }
    }

    /// Once NATS is back: sends the events held while it was away that are younger than
    /// [`HELD_FOR_MS`]. A node that lost one NATS server of a cluster is back on another
    /// in a fraction of a second: its doorbells then ring that much late, not a resync
    /// later (a delivery's doorbell is held as a refill: see [`Event::into_held`]).
    pub async fn send_held(&self) {
        let Some(n) = &self.nats else { return };
        let since = herald_core::now_ms() - HELD_FOR_MS;
        let held: Vec<(String, bytes::Bytes, i64)> = n.held.lock().drain(..).filter(|e| e.2 >= since).collect();
        if held.is_empty() {
            return;
        }
        tracing::debug!(events = held.len(), "sending the events held while the bus was away");
        for (subject, body, _) in held {
            if n.link.down_since.load(Ordering::SeqCst) != 0 {
                return;
            }
            if !matches!(tokio::time::timeout(PUBLISH_WAIT, n.client.publish(subject, body)).await, Ok(Ok(()))) {
                return;
            }
        }
    }
}

impl Nats {
    async fn publish(&self, subject: String, from: &str, event: Event) {
        // While NATS is away an event would wait in the client's buffer (and a full buffer
        // would hold the push up): what can be sent later is held here instead, a while and
        // a number (the resync finds the work of those dropped).
        let event = if self.link.down_since.load(Ordering::SeqCst) != 0 {
            match event.into_held() {
                Some(later) => later,
                None => return,
            }
        } else {
            event
        };
        let body = match serde_json::to_vec(&Envelope { from: from.to_owned(), event }) {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(error = %e, "cannot encode a bus event");
                return;
            }
        };
        if self.link.down_since.load(Ordering::SeqCst) != 0 {
            let mut held = self.held.lock();
            if held.len() == HELD_MAX {
                held.pop_front();
            }
            held.push_back((subject, body.into(), herald_core::now_ms()));
            return;
        }
        match tokio::time::timeout(PUBLISH_WAIT, self.client.publish(subject, body.into())).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "bus publish failed; the store keeps the work for the next resync")
            }
            Err(_) => tracing::debug!("bus publish timed out; the store keeps the work for the next resync"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A node that reaches NATS at start is on the bus when `connect` returns: its first
    /// resync must not count it as without the bus (and tell the cluster so). The client
    /// handles its "connected" event on another task, which could come later.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_bus_reached_at_start_is_up_when_connect_returns() {
        let Ok(url) = std::env::var("HERALD_TEST_NATS_URL") else {
            eprintln!("skipped: HERALD_TEST_NATS_URL is not set");
            return;
        };
        for i in 0..50 {
            let prefix = format!("t{}", herald_core::crypto::random_alnum(10));
            let (bus, _incoming) = Bus::connect(&url, &prefix, "n1").await.unwrap();
            assert!(bus.available(), "NATS at {url} does not answer (or round {i} raced the event)");
            assert!(!bus.recently_down(3_000), "round {i}");
        }
    }

    #[test]
    fn a_delivery_held_for_later_is_a_refill_and_a_broadcast_or_heartbeat_is_not_held() {
        let devices = vec![DeviceId::new("d1")];
        let deliver = Event::Deliver {
            devices: devices.clone(),
            message_id: MessageId::new("m"),
            expires_at: 1,
            payload: "{}".into(),
        };
        assert_eq!(deliver.into_held(), Some(Event::Refill { devices }));
        let broadcast = Event::Broadcast { message_id: MessageId::new("b"), expires_at: 1, payload: "{}".into() };
        assert_eq!((broadcast.into_held(), Event::Heartbeat.into_held()), (None, None));
        let revoked = Event::Revoked { message_ids: vec![MessageId::new("m")], until: 9 };
        assert_eq!(revoked.clone().into_held(), Some(revoked));
    }

    #[test]
    fn the_first_connect_at_start_ends_no_outage_and_a_second_word_of_it_changes_nothing() {
        let link = Link::new();
        link.connected();
        link.connected();
        assert_eq!((link.down_since.load(Ordering::SeqCst), link.up_since.load(Ordering::SeqCst)), (0, 1));
        link.disconnected();
        let lost = link.down_since.load(Ordering::SeqCst);
        assert!(lost > 0);
        link.disconnected();
        assert_eq!(link.down_since.load(Ordering::SeqCst), lost, "the outage began at the first word");
        link.connected();
        assert!(link.up_since.load(Ordering::SeqCst) >= lost, "a reconnect is an outage's end");
    }

    #[test]
    fn events_round_trip_through_the_wire_format() {
        let events = [
            Event::Deliver {
                devices: vec![DeviceId::new("d1"), DeviceId::new("d2")],
                message_id: MessageId::new("m1"),
                expires_at: 42,
                payload: r#"{"title":"hé"}"#.into(),
            },
            Event::Refill { devices: vec![DeviceId::new("d3")] },
            Event::TakeOver { device: DeviceId::new("d4"), generation: u64::MAX },
            Event::KeyRevoked { key_id: KeyId::new("k1") },
            Event::Revoked { message_ids: vec![MessageId::new("m2")], until: 7 },
            Event::Broadcast { message_id: MessageId::new("m3"), expires_at: 9, payload: "{}".into() },
            Event::Heartbeat,
        ];
        for event in events {
            let wire = serde_json::to_vec(&Envelope { from: "n1".into(), event: event.clone() }).unwrap();
            let back: Envelope = serde_json::from_slice(&wire).unwrap();
            assert_eq!((back.from.as_str(), back.event), ("n1", event));
        }
    }
}
