//! Dispatch: the meeting point of the API and the gateway. A push is validated by
//! [`crate::push`], committed to the store, then handed to the connections of this node
//! through the [`Hub`], and announced over the [`Bus`] to the node that holds each other
//! connected device (the store's presence says which). Devices that are not connected get
//! it from the store when they connect or bind; the expiry sweep marks what ran out of
//! validity; the resync finds what a lost bus message did not announce.

mod hub;
pub mod scheduler;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;

pub use hub::{CloseCause, Hub, Message, Outgoing, Session};

use crate::bus::{Bus, Event};
use crate::error::{ApiError, ErrorCode};
use crate::ids::{AppId, DeviceId, UserId};
use crate::store::{
    BroadcastCommitted, CommittedPush, NewBroadcast, NewPush, PendingDelivery, Recipient, Revocation, RevokeTarget,
    Store, TargetOutcome,
};

pub struct Dispatcher {
    store: Arc<dyn Store>,
    hub: Arc<Hub>,
    bus: Arc<Bus>,
    /// This node's name, as the holder of leases.
    node_id: String,
    /// This node runs the expiry sweep now.
    expiry_lease_held: AtomicBool,
    /// This node fires the schedules now.
    scheduler_lease_held: AtomicBool,
    /// To validate scheduled requests again when they fire.
    limits: crate::config::Limits,
}

/// How long a node's connections remember a revoked message id, to skip a copy queued in
/// memory before the revoke: longer than any message's validity.
const REVOKED_MEMORY_MS: i64 = 73 * 3600 * 1000;

/// The lease under which one node of a cluster runs the expiry sweep.
const EXPIRY_LEASE: &str = "expiry-sweep";

impl Dispatcher {
    pub fn new(
        store: Arc<dyn Store>,
        hub: Arc<Hub>,
        bus: Arc<Bus>,
        node_id: String,
        limits: crate::config::Limits,
    ) -> Self {
        Dispatcher {
            store,
            hub,
            bus,
            node_id,
            expiry_lease_held: AtomicBool::new(false),
            scheduler_lease_held: AtomicBool::new(false),
            limits,
        }
    }

    pub fn hub(&self) -> &Arc<Hub> {
        &self.hub
    }

    pub fn bus(&self) -> &Arc<Bus> {
        &self.bus
    }

    /// The leases this node holds now.
    pub fn leases_held(&self) -> Vec<&'static str> {
        let mut held = Vec::new();
        if self.expiry_lease_held.load(Ordering::Relaxed) {
            held.push(EXPIRY_LEASE);
        }
        if self.scheduler_lease_held.load(Ordering::Relaxed) {
            held.push(scheduler::SCHEDULER_LEASE);
        }
        held
    }

    /// Commits `push`, then queues it for the targets connected to this node and rings
    /// the nodes that hold the other connected targets.
    pub async fn push(&self, push: NewPush, now: i64) -> Result<CommittedPush, ApiError> {
        if !self.bus.available() {
            // Committed but unannounced, the push would reach devices on other nodes only
            // at the next resync: refuse instead, so that the caller retries elsewhere.
            return Err(ApiError::new(
                ErrorCode::BusUnavailable,
                "this node has lost the cluster bus; nothing was accepted, retry",
            ));
        }
        let expires_at = push.task.expires_at;
        // Bytes: the payloads are shared with the store's job, not copied.
        let payloads: Vec<Bytes> = push.messages.iter().map(|m| m.payload.clone()).collect();
        let committed = self.store.commit_push(push, now).await?;
        self.deliver_committed(&committed, payloads, expires_at).await;
        Ok(committed)
    }

    /// Hands each accepted message of a committed push to its recipients' connections.
    async fn deliver_committed(&self, committed: &CommittedPush, payloads: Vec<Bytes>, expires_at: i64) {
        for ((message_id, outcome), payload) in committed.outcomes.iter().zip(payloads) {
            let TargetOutcome::Accepted { devices } = outcome else {
                continue;
            };
            if devices.is_empty() {
                continue;
            }
            let message = Arc::new(Message { id: message_id.clone(), expires_at, payload });
            self.route(message, devices).await;
        }
    }

    /// Hands a committed message to the connections of its recipients: here through the
    /// hub, elsewhere through the bus to the node that holds each one.
    async fn route(&self, message: Arc<Message>, recipients: &[Recipient]) {
        let mut remote: BTreeMap<&str, Vec<DeviceId>> = BTreeMap::new();
        for r in recipients {
            if self.hub.deliver(&r.device_id, Outgoing { message: message.clone(), dup: false }) {
                continue;
            }
            if let Some(node) = r.online_node.as_deref().filter(|n| *n != self.node_id) {
                remote.entry(node).or_default().push(r.device_id.clone());
            }
        }
        for (node, devices) in remote {
            self.bus.send(node, Event::deliver(devices, &message)).await;
        }
    }

    /// Commits a broadcast and answers without waiting for its fan-out: the connections of
    /// this node get it from a task started here, those of other nodes through the bus,
    /// devices that connect later from the store.
    pub async fn broadcast(self: &Arc<Self>, b: NewBroadcast, now: i64) -> Result<BroadcastCommitted, ApiError> {
        if !self.bus.available() {
            return Err(ApiError::new(
                ErrorCode::BusUnavailable,
                "this node has lost the cluster bus; nothing was accepted, retry",
            ));
        }
        let (payload, expires_at) = (b.payload.clone(), b.task.expires_at);
        let done = self.store.commit_broadcast(b, now).await?;
        if !done.replayed {
            let message = Arc::new(Message { id: done.message_id.clone(), expires_at, payload });
            self.bus.send_all(Event::deliver_all(&message)).await;
            tokio::spawn(self.clone().fan_out(message));
        }
        Ok(done)
    }

    /// Hands a broadcast to the connections of this node that it reaches.
    pub async fn fan_out(self: Arc<Self>, message: Arc<Message>) {
        match self.store.broadcast_recipients(&message.id, &self.node_id).await {
            Ok(devices) => {
                let n = devices
                    .iter()
                    .filter(|d| self.hub.deliver(d, Outgoing { message: message.clone(), dup: false }))
                    .count();
                tracing::debug!(message = %message.id, connections = n, "broadcast handed to this node's connections");
            }
            // The devices get it from the store when they next connect or refill.
            Err(e) => tracing::warn!(error = %e, message = %message.id, "broadcast fan-out failed"),
        }
    }

    /// Revokes what `what` names among the app's messages of the last `window_ms`: pending
    /// deliveries are withdrawn (and skipped by every node's connections from now on), and
    /// devices that got a message are sent a `revoke` control message. `None`: no such
    /// message or task in the window.
    pub async fn revoke(
        &self,
        app: &AppId,
        what: RevokeTarget,
        now: i64,
        window_ms: i64,
    ) -> Result<Option<Revocation>, ApiError> {
        if !self.bus.available() {
            return Err(ApiError::new(
                ErrorCode::BusUnavailable,
                "this node has lost the cluster bus; nothing was revoked, retry",
            ));
        }
        let Some(done) = self.store.revoke(app, what, now, now - window_ms).await? else {
            return Ok(None);
        };
        if !done.messages.is_empty() {
            let until = now + REVOKED_MEMORY_MS;
            self.hub.revoke(&done.messages, until);
            self.bus.send_all(Event::Revoked { message_ids: done.messages.clone(), until }).await;
        }
        for recall in &done.recalls {
            let message = Arc::new(Message {
                id: recall.message_id.clone(),
                expires_at: recall.expires_at,
                payload: recall.payload.clone(),
            });
            self.route(message, &recall.devices).await;
        }
        Ok(Some(done))
    }

    /// Binds a user to a device and hands the user's pending messages to the device's
    /// connection, here or on the node that holds it. False when the app has no such device.
    pub async fn bind(&self, app: &AppId, device: &DeviceId, user: &UserId, now: i64) -> Result<bool, ApiError> {
        match self.store.bind_user(app, device, user, now).await? {
            None => Ok(false),
            Some(bound) => {
                if self.hub.is_online(device) {
                    for p in bound.pending {
                        self.hub.deliver(device, outgoing(p));
                    }
                } else if let Some(node) = bound.online_node.filter(|n| *n != self.node_id)
                    && !bound.pending.is_empty()
                {
                    self.bus.send(&node, Event::Refill { devices: vec![device.clone()] }).await;
                }
                Ok(true)
            }
        }
    }

    /// Until `shutdown` resolves, every `every`: asks the connections of this node whose
    /// devices have deliveries older than `every` still pending to read them from the
    /// store. Covers a bus message that was lost; a single node has none to lose.
    pub async fn run_resync(self: Arc<Self>, every: Duration, shutdown: crate::shutdown::Signal) {
        if self.bus.kind() == "local" {
            return;
        }
        let mut ticks = crate::shutdown::ticks(every);
        while shutdown.every(&mut ticks).await {
            let now = crate::now_ms();
            match self.store.stale_pending(&self.node_id, now - every.as_millis() as i64, now, 10_000).await {
                Ok(devices) => {
                    if !devices.is_empty() {
                        tracing::info!(devices = devices.len(), "resync: deliveries no bus message announced");
                    }
                    devices.iter().for_each(|d| self.hub.refill(d));
                }
                Err(e) => tracing::warn!(error = %e, "resync failed"),
            }
        }
    }

    pub async fn unbind(&self, app: &AppId, device: &DeviceId, now: i64) -> Result<bool, ApiError> {
        Ok(self.store.unbind_user(app, device, now).await?)
    }

    /// Marks expired deliveries until `shutdown` resolves; among nodes sharing a store, only
    /// the holder of the sweep's lease does (another takes over within three intervals of
    /// the holder's death).
    pub async fn run_expiry_sweeps(self: Arc<Self>, every: Duration, shutdown: crate::shutdown::Signal) {
        let mut ticks = crate::shutdown::ticks(every);
        while shutdown.every(&mut ticks).await {
            let now = crate::now_ms();
            let lease_ms = 3 * every.as_millis() as i64;
            let held = match self.store.try_lease(EXPIRY_LEASE, &self.node_id, now, lease_ms).await {
                Ok(held) => held,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot take the expiry lease");
                    false
                }
            };
            if self.expiry_lease_held.swap(held, Ordering::Relaxed) != held {
                tracing::info!(lease = EXPIRY_LEASE, held, "lease changed hands");
            }
            if !held {
                continue;
            }
            match self.store.expire_due(now).await {
                Ok(0) => {}
                Ok(n) => tracing::debug!(expired = n, "expiry sweep"),
                Err(e) => tracing::warn!(error = %e, "expiry sweep failed"),
            }
        }
    }
}

/// Applies to this node's connections an event another node sent (key revocations are
/// the API's: see node.rs).
pub fn on_bus_event(hub: &Hub, event: Event) {
    match event {
        Event::Deliver { devices, message_id, expires_at, payload } => {
            let message = Event::message(message_id, expires_at, payload);
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
        Event::Revoked { message_ids, until } => hub.revoke(&message_ids, until),
        // Handled by the dispatcher, which reads the audience from the store (see node.rs).
        Event::Broadcast { .. } | Event::KeyRevoked { .. } => {}
    }
}

/// A delivery read back from the store, ready for a connection.
pub fn outgoing(p: PendingDelivery) -> Outgoing {
    Outgoing {
        message: Arc::new(Message { id: p.message_id, expires_at: p.expires_at, payload: Bytes::from(p.payload) }),
        dup: p.sent_before,
    }
}
