//! The bus as the dispatcher uses it: the events this node sends about committed work, and
//! every event another node sends to this one, handled here in one place.

use std::sync::Arc;

use bytes::Bytes;
use herald_core::ids::{DeviceId, KeyId, MessageId};
use tokio::sync::mpsc;

use super::{Dispatcher, Message, Outgoing};
use crate::bus::{Event, Incoming};

/// Deliver `message` (committed) to `devices` if they are connected to the receiving node.
pub(super) fn deliver(devices: Vec<DeviceId>, message: &Message) -> Event {
    Event::Deliver {
        devices,
        message_id: message.id.clone(),
        expires_at: message.expires_at,
        payload: payload_text(message),
    }
}

/// Fan out broadcast `message` (committed) to the receiving node's connections it reaches.
pub(super) fn broadcast(message: &Message) -> Event {
    Event::Broadcast { message_id: message.id.clone(), expires_at: message.expires_at, payload: payload_text(message) }
}

fn payload_text(message: &Message) -> String {
    // Payloads are built from Rust strings: always UTF-8.
    String::from_utf8_lossy(&message.payload).into_owned()
}

fn message_of(id: MessageId, expires_at: i64, payload: String) -> Arc<Message> {
    Arc::new(Message::new(id, expires_at, Bytes::from(payload)))
}

impl Dispatcher {
    /// Handles what the bus brings until it closes. `on_key_revoked` is the API's: it forgets
    /// a key that another node revoked.
    pub async fn serve_bus(
        self: Arc<Self>,
        mut incoming: mpsc::UnboundedReceiver<Incoming>,
        on_key_revoked: impl Fn(&KeyId) + Send + 'static,
    ) {
        while let Some(incoming) = incoming.recv().await {
            match incoming {
                Incoming::Reconnected => {
                    self.hub.refill_all();
                    self.bus.send_held().await;
                }
                Incoming::Heartbeat(node) => {
                    self.heard.lock().insert(node, herald_core::now_ms());
                }
                Incoming::Event(event) => self.on_event(event, &on_key_revoked),
            }
        }
    }

    fn on_event(self: &Arc<Self>, event: Event, on_key_revoked: &impl Fn(&KeyId)) {
        let hub = &self.hub;
        match event {
            Event::Deliver { devices, message_id, expires_at, payload } => {
                let message = message_of(message_id, expires_at, payload);
                for d in &devices {
                    hub.deliver(d, Outgoing { message: message.clone(), dup: false });
                }
            }
            Event::Refill { devices } => devices.iter().for_each(|d| hub.refill(d)),
            Event::TakeOver { device, generation } => {
                if hub.close_replaced(&device, generation) {
                    tracing::debug!(%device, "connection taken over on another node");
                }
            }
            Event::Broadcast { message_id, expires_at, payload } => {
                // The audience is read from the store: off this task.
                tokio::spawn(self.clone().fan_out(message_of(message_id, expires_at, payload)));
            }
            Event::Revoked { message_ids, until } => hub.revoke(&message_ids, until),
            Event::KeyRevoked { key_id } => on_key_revoked(&key_id),
            // Taken apart as it arrives (Incoming::Heartbeat).
            Event::Heartbeat => {}
        }
    }

    /// Tells every other node that an API key was revoked: they stop accepting it now, not
    /// when their cache of it ages.
    pub async fn announce_key_revoked(&self, key_id: KeyId) {
        self.bus.send_all(Event::KeyRevoked { key_id }).await;
    }

    /// Tells the node of a connection this device's new one replaced to close it.
    pub async fn take_over(&self, node: &str, device: DeviceId, generation: u64) {
        self.bus.send(node, Event::TakeOver { device, generation }).await;
    }
}
