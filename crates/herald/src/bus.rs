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
use std::sync::atomic::{AtomicBool, Ordering};

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
    connected: Arc<AtomicBool>,
}

impl Bus {
    /// The bus of a single node: nothing to ring, always available.
    pub fn local(node_id: &str) -> Self {
        Bus { node_id: node_id.to_owned(), nats: None }
    }

    /// Connects to NATS at `url` and subscribes to this node's subjects; what arrives comes
    /// out of the returned receiver. Fails when NATS does not answer.
    pub async fn connect(
        url: &str,
        prefix: &str,
        node_id: &str,
    ) -> anyhow::Result<(Self, mpsc::UnboundedReceiver<Incoming>)> {
        let connected = Arc::new(AtomicBool::new(false));
        let flag = connected.clone();
        let (incoming, received) = mpsc::unbounded_channel();
        let reconnects = incoming.clone();
        let client = async_nats::ConnectOptions::new()
            .name(format!("herald {node_id}"))
            .event_callback(move |event| {
                let (flag, reconnects) = (flag.clone(), reconnects.clone());
                async move {
                    match event {
                        async_nats::Event::Connected => {
                            // The first connect is the start; a later one ends an outage.
                            if !flag.swap(true, Ordering::SeqCst) {
                                tracing::info!("bus connected");
                            }
                            let _ = reconnects.send(Incoming::Reconnected);
                        }
                        async_nats::Event::Disconnected => {
                            flag.store(false, Ordering::SeqCst);
                            tracing::warn!("bus disconnected: pushes are refused until it is back");
                        }
                        // async-nats logs these itself (reconnect attempts, errors).
                        other => tracing::debug!(event = %other, "bus event"),
                    }
                }
            })
            .connect(url)
            .await
            .with_context(|| format!("connecting to NATS at {url}"))?;
        connected.store(true, Ordering::SeqCst);
        let subjects = [format!("{prefix}.node.{node_id}"), format!("{prefix}.all")];
        for subject in subjects {
            let mut sub =
                client.subscribe(subject.clone()).await.with_context(|| format!("subscribing to {subject}"))?;
            let (incoming, me) = (incoming.clone(), node_id.to_owned());
            tokio::spawn(async move {
                while let Some(msg) = sub.next().await {
                    match serde_json::from_slice::<Envelope>(&msg.payload) {
                        Ok(env) if env.from == me => {}
                        Ok(env) => {
                            let _ = incoming.send(Incoming::Event(env.event));
                        }
                        Err(e) => tracing::warn!(%subject, error = %e, "ignored a malformed bus event"),
                    }
                }
            });
        }
        // The subscriptions are in place at the server before the node serves anyone.
        client.flush().await.context("flushing the NATS subscriptions")?;
        let bus =
            Bus { node_id: node_id.to_owned(), nats: Some(Nats { client, prefix: prefix.to_owned(), connected }) };
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

    /// False while a cluster node has lost NATS: it could not ring other nodes.
    pub fn available(&self) -> bool {
        self.nats.as_ref().is_none_or(|n| n.connected.load(Ordering::SeqCst))
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
}

impl Nats {
    async fn publish(&self, subject: String, from: &str, event: Event) {
        let body = match serde_json::to_vec(&Envelope { from: from.to_owned(), event }) {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(error = %e, "cannot encode a bus event");
                return;
            }
        };
        if let Err(e) = self.client.publish(subject, body.into()).await {
            tracing::warn!(error = %e, "bus publish failed; the store keeps the work for the next refill");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        ];
        for event in events {
            let wire = serde_json::to_vec(&Envelope { from: "n1".into(), event: event.clone() }).unwrap();
            let back: Envelope = serde_json::from_slice(&wire).unwrap();
            assert_eq!((back.from.as_str(), back.event), ("n1", event));
        }
    }
}
