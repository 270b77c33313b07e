//! Dispatch: the meeting point of the API and the gateway. A push is validated (by
//! `herald_core::push`), committed to the store, then handed to the connections of this
//! node through the [`Hub`], and announced over the [`Bus`] to the node that holds each
//! other connected device (the store's presence says which). Devices that are not connected
//! get it from the store when they connect or bind; the expiry sweep marks what ran out of
//! validity; the resync finds what a lost bus message did not announce, and, while a node
//! has lost the bus, everything: a bus outage costs latency, not availability.
//!
//! - [`hub`]: this node's connections and their in-memory queues;
//! - [`scheduler`]: scheduled pushes, fired under a lease;
//! - [`events`]: what other nodes ask of this one, handled in one place.

pub mod events;
mod hub;
pub mod scheduler;
pub mod vendors;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use herald_core::error::{ApiError, ErrorCode};
use herald_core::ids::{AppId, DeviceId, TaskId, UserId};
use herald_core::limits::Limits;
use herald_core::model::{
    BroadcastCommitted, CommittedPush, NewBroadcast, NewPush, PendingDelivery, Recipient, Revocation, RevokeTarget,
    ScheduleRecord, TargetOutcome,
};
use herald_core::push::Prepared;
use herald_core::push::request::PushRequest;
use herald_core::schedule::{Strategy, schedule_of};
use herald_store::{Cancelled, Store};

pub use hub::{CloseCause, Hub, Message, Outgoing, Session};

use crate::bus::{Bus, Event};
use crate::metrics::Metrics;

pub struct Dispatcher {
    store: Arc<dyn Store>,
    hub: Arc<Hub>,
    bus: Arc<Bus>,
    metrics: Arc<Metrics>,
    /// This node's name, as the holder of leases.
    node_id: String,
    /// This node runs the expiry sweep now.
    expiry_lease_held: AtomicBool,
    /// This node fires the schedules now.
    scheduler_lease_held: AtomicBool,
    /// This node or another has lost the bus: the resync runs every
    /// `cluster.degraded_resync_ms`.
    degraded: AtomicBool,
    /// To validate requests (scheduled ones again when they fire).
    limits: Limits,
    /// The vendor outbox's senders, rung when a commit wrote vendor sends.
    vendors: OnceLock<Arc<vendors::VendorWorker>>,
    /// When (Unix ms) this node last heard each other node's heartbeat over the bus.
    heard: parking_lot::Mutex<std::collections::HashMap<String, i64>>,
    /// The last look at the store for `/readyz`: (when, Unix ms; it answered).
    store_probe: parking_lot::Mutex<(i64, bool)>,
    /// Per-app request and push rates of this node.
    flow: crate::rate::FlowControl,
}

/// How long a node's connections remember a revoked message id, to skip a copy queued in
/// memory before the revoke: longer than any message's validity.
const REVOKED_MEMORY_MS: i64 = 73 * 3600 * 1000;

/// The lease under which one node of a cluster runs the expiry sweep.
const EXPIRY_LEASE: &str = "expiry-sweep";

/// How long after a broadcast's cut the resync sweeps keep checking it (at least three
/// sweeps): a bus event lost, or a commit that became visible after a sweep's cut, is found
/// within it.
const RESYNC_BROADCAST_WINDOW: Duration = Duration::from_secs(60);

/// The creation times of the broadcasts a resync sweep checks: from the cut of the last sweep
/// that found everything it looked for, less `window`; at first, every live broadcast.
#[derive(Debug)]
struct ResyncWindow {
    window_ms: i64,
    checked_to: Option<i64>,
}

impl ResyncWindow {
    fn new(window: Duration) -> Self {
        ResyncWindow { window_ms: window.as_millis() as i64, checked_to: None }
    }

    fn since(&self) -> i64 {
        self.checked_to.map_or(0, |c| c - self.window_ms)
    }

    /// A sweep up to `cut` succeeded; `complete` unless it stopped at its limit (the rest is
    /// looked for again next time).
    fn swept(&mut self, cut: i64, complete: bool) {
        if complete {
            self.checked_to = Some(cut);
        }
    }
}

/// What became of a push request.
pub enum Submitted {
    /// Stored as a schedule: sent when it fires.
    Scheduled(ScheduleRecord),
    /// Committed now; `targets` are the request's (target, msgKey), in the order of the
    /// push's outcomes.
    Pushed { committed: CommittedPush, targets: Vec<(String, String)> },
    /// A broadcast committed now (or the earlier one of its msgkey).
    Broadcast { committed: BroadcastCommitted, msg_key: String },
}

/// What a revoke of a task did.
pub struct TaskRevocation {
    pub revocation: Revocation,
    /// The task named a waiting scheduled push, now cancelled.
    pub schedule_cancelled: Option<bool>,
}

/// The lease a node holds while it has lost the bus (`bus-down:<node>`): the other nodes,
/// whose bus is fine, see it and look for its work in the store as often as it does.
const BUS_DOWN_LEASE: &str = "bus-down:";

/// A node not heard on the bus for this long is forgotten (it left the cluster); until then
/// its silence keeps this node's resync fast.
const HEARD_RECENTLY_MS: i64 = 30_000;

/// While the cluster is degraded, a delivery younger than this is left to arrive by itself
/// (from its own node's hub) before a resync hands it over again.
const DEGRADED_GRACE_MS: i64 = 250;

impl Dispatcher {
    pub fn new(
        store: Arc<dyn Store>,
        hub: Arc<Hub>,
        bus: Arc<Bus>,
        metrics: Arc<Metrics>,
        node_id: String,
        limits: Limits,
    ) -> Self {
        Dispatcher {
            store,
            hub,
            bus,
            metrics,
            node_id,
            expiry_lease_held: AtomicBool::new(false),
            scheduler_lease_held: AtomicBool::new(false),
            degraded: AtomicBool::new(false),
            store_probe: parking_lot::Mutex::new((0, true)),
            heard: parking_lot::Mutex::default(),
            flow: crate::rate::FlowControl::new(&limits),
            limits,
            vendors: OnceLock::new(),
        }
    }

    /// The per-app rate limits (the API spends a request token per signed request).
    pub fn flow(&self) -> &crate::rate::FlowControl {
        &self.flow
    }

    /// Connects the vendor senders (set once, when the node starts).
    pub fn set_vendor_worker(&self, worker: Arc<vendors::VendorWorker>) {
        let _ = self.vendors.set(worker);
    }

    fn ring_vendors(&self) {
        if let Some(w) = self.vendors.get() {
            w.ring();
        }
    }

    pub fn hub(&self) -> &Arc<Hub> {
        &self.hub
    }

    pub fn bus(&self) -> &Arc<Bus> {
        &self.bus
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    /// Whether the store answers (a read of the leases within 2 s), asked at most once a
    /// second whoever asks: the health checks come from outside.
    pub async fn store_answers(&self) -> bool {
        let now = herald_core::now_ms();
        let (at, ok) = *self.store_probe.lock();
        if now - at < 1_000 {
            return ok;
        }
        *self.store_probe.lock() = (now, ok);
        let ok = tokio::time::timeout(Duration::from_secs(2), self.store.leases()).await.is_ok_and(|r| r.is_ok());
        *self.store_probe.lock() = (herald_core::now_ms(), ok);
        ok
    }

    /// True while this node or another has lost the bus (the resync runs often then).
    pub fn degraded(&self) -> bool {
        self.degraded.load(Ordering::Relaxed)
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

    /// Whether the device holds a connection anywhere in the cluster: here, as the hub knows;
    /// elsewhere, as the store's presence records (`online_node`, read with the device).
    pub fn is_online(&self, device: &DeviceId, online_node: Option<&str>) -> bool {
        self.hub.is_online(device) || online_node.is_some_and(|node| node != self.node_id)
    }

    /// Validates a push request; sends it now (strategyType 0) or stores it as a schedule
    /// (1 fixed time, 2 recurring).
    pub async fn submit(self: &Arc<Self>, app: &AppId, request: &PushRequest, now: i64) -> Result<Submitted, ApiError> {
        let strategy = Strategy::parse(request.options(), now)?;
        let prepared = self.prepare(request, app, now).await?;
        let targets = match &prepared {
            Prepared::Push(push) => push.targets.len(),
            Prepared::Broadcast(_) => 1,
        };
        self.flow.push(app, targets)?;
        if let Some(strategy) = strategy {
            let record = schedule_of(app, request, &prepared, &strategy, now)?;
            self.store.create_schedule(record.clone()).await?;
            return Ok(Submitted::Scheduled(record));
        }
        match prepared {
            Prepared::Push(push) => {
                let targets = push.targets.clone();
                let committed = self.push(push.into_new_push(app.clone(), now, &self.limits)?, now).await?;
                Ok(Submitted::Pushed { committed, targets })
            }
            Prepared::Broadcast(b) => {
                let msg_key = b.msg_key.clone();
                Ok(Submitted::Broadcast { committed: self.broadcast(b, now).await?, msg_key })
            }
        }
    }

    /// Validates a push request as of `now`, with the app's template it names (every type
    /// but Simple); its strategy fields are not read here.
    pub async fn prepare(&self, request: &PushRequest, app: &AppId, now: i64) -> Result<Prepared, ApiError> {
        let template = match request.template_name()? {
            Some(name) => {
                let found = self.store.template(app, &name).await?;
                Some(found.ok_or_else(|| {
                    ApiError::new(ErrorCode::TemplateNotExist, format!("no template {name} in this app"))
                })?)
            }
            None => None,
        };
        Prepared::parse(request, template.as_ref(), &self.limits, app, now)
    }

    /// Commits `push`, then queues it for the targets connected to this node and rings
    /// the nodes that hold the other connected targets.
    pub async fn push(&self, push: NewPush, now: i64) -> Result<CommittedPush, ApiError> {
        let expires_at = push.task.expires_at;
        // Bytes: the payloads are shared with the store's job, not copied.
        let payloads: Vec<Bytes> = push.messages.iter().map(|m| m.payload.clone()).collect();
        let committed = self.store.commit_push(push, now).await?;
        self.metrics.pushes_accepted.inc();
        let vendor_sends = committed.outcomes.iter().any(|(_, o)| match o {
            TargetOutcome::Accepted { devices } => devices.iter().any(|d| d.vendor.is_some()),
            TargetOutcome::Undeliverable | TargetOutcome::Duplicate { .. } => false,
        });
        if vendor_sends {
            self.ring_vendors();
        }
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
            let message = Arc::new(Message::new(message_id.clone(), expires_at, payload));
            self.route(message, devices).await;
        }
    }

    /// Hands a committed message to the connections of its recipients: here through the
    /// hub, elsewhere through the bus to the node that holds each one.
    async fn route(&self, message: Arc<Message>, recipients: &[Recipient]) {
        let mut remote: BTreeMap<&str, Vec<DeviceId>> = BTreeMap::new();
        for r in recipients.iter().filter(|r| r.own_now) {
            if self.hub.deliver(&r.device_id, Outgoing { message: message.clone(), dup: false }) {
                continue;
            }
            if let Some(node) = r.online_node.as_deref().filter(|n| *n != self.node_id) {
                remote.entry(node).or_default().push(r.device_id.clone());
            }
        }
        for (node, devices) in remote {
            self.bus.send(node, events::deliver(devices, &message)).await;
        }
    }

    /// Commits a broadcast and answers without waiting for its fan-out: the connections of
    /// this node get it from a task started here, those of other nodes through the bus,
    /// devices that connect later from the store.
    pub async fn broadcast(self: &Arc<Self>, b: NewBroadcast, now: i64) -> Result<BroadcastCommitted, ApiError> {
        let (payload, expires_at) = (b.payload.clone(), b.task.expires_at);
        let done = self.store.commit_broadcast(b, now).await?;
        self.metrics.pushes_accepted.inc();
        if !done.replayed {
            self.ring_vendors();
            self.announce_broadcast(Arc::new(Message::new(done.message_id.clone(), expires_at, payload))).await;
        }
        Ok(done)
    }

    /// Rings every node about a committed broadcast and fans it out here.
    async fn announce_broadcast(self: &Arc<Self>, message: Arc<Message>) {
        self.bus.send_all(events::broadcast(&message)).await;
        tokio::spawn(self.clone().fan_out(message));
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
            // The devices get it from the store when they next connect, or at the resync.
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
        let Some(done) = self.store.revoke(app, what, now, now - window_ms).await? else {
            return Ok(None);
        };
        if !done.messages.is_empty() {
            let until = now + REVOKED_MEMORY_MS;
            self.hub.revoke(&done.messages, until);
            self.bus.send_all(Event::Revoked { message_ids: done.messages.clone(), until }).await;
        }
        for recall in &done.recalls {
            let message = Arc::new(Message::new(recall.message_id.clone(), recall.expires_at, recall.payload.clone()));
            self.route(message, &recall.devices).await;
        }
        Ok(Some(done))
    }

    /// Revokes a task; when `task` names a scheduled push instead, cancels what it has not
    /// sent and revokes what its firings sent. `None`: no such task or schedule.
    pub async fn revoke_task(
        &self,
        app: &AppId,
        task: &TaskId,
        now: i64,
        window_ms: i64,
    ) -> Result<Option<TaskRevocation>, ApiError> {
        if let Some(revocation) = self.revoke(app, RevokeTarget::Task(task.clone()), now, window_ms).await? {
            return Ok(Some(TaskRevocation { revocation, schedule_cancelled: None }));
        }
        let family = self.store.schedules(app, Some(task.as_str()), 0, 0).await?;
        if family.is_empty() {
            return Ok(None);
        }
        let cancelled = self.store.cancel_schedule(app, task.as_str()).await? == Cancelled::Cancelled;
        let mut all = Revocation::default();
        for fired in family.iter().filter_map(|s| s.task_id.as_ref()) {
            let what = RevokeTarget::Task(TaskId::new(fired.clone()));
            if let Some(done) = self.revoke(app, what, now, window_ms).await? {
                all.messages.extend(done.messages);
                all.withdrawn += done.withdrawn;
                all.recalls.extend(done.recalls);
            }
        }
        Ok(Some(TaskRevocation { revocation: all, schedule_cancelled: Some(cancelled) }))
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

    pub async fn unbind(&self, app: &AppId, device: &DeviceId, now: i64) -> Result<bool, ApiError> {
        Ok(self.store.unbind_user(app, device, now).await?)
    }

    /// Until `shutdown`, every `every`: asks the connections of this node whose devices have
    /// deliveries (or broadcasts) waiting since longer than `every` to read them from the
    /// store. Covers a bus message that was lost; a single node has none to lose.
    ///
    /// While this node or another has lost the bus, no doorbell rings at all: the look runs
    /// every `degraded` and takes every delivery older than [`DEGRADED_GRACE_MS`]. A node
    /// without the bus says so in the store (the lease `bus-down:<node>`, renewed each
    /// `degraded`, three of them long) so that the others, whose bus is fine, do the same:
    /// at once when it loses the bus, not at its next tick (which cost the others up to one
    /// more `degraded` before they looked).
    ///
    /// Checking a broadcast costs a probe per device connected here, so each broadcast is
    /// checked in the sweeps of [`RESYNC_BROADCAST_WINDOW`] after its cut, not through its
    /// whole life: from the cut of the last sweep that succeeded (and found fewer devices
    /// than its limit) minus that window, which also covers a broadcast whose commit became
    /// visible late.
    pub async fn run_resync(self: Arc<Self>, every: Duration, degraded: Duration, shutdown: crate::shutdown::Signal) {
        if !self.bus.is_cluster() {
            return;
        }
        const LIMIT: usize = 10_000;
        let mut window = ResyncWindow::new(RESYNC_BROADCAST_WINDOW.max(3 * every));
        let mut ticks = crate::shutdown::ticks(degraded.min(every));
        let mut last_look = 0;
        // A look in the store as if degraded is owed from the moment the cluster is
        // degraded until one succeeds after it no longer is: doorbells lost just before
        // the end (NATS servers not yet routed to each other) would otherwise wait for an
        // ordinary look, `every` later, and so would every delivery of a degraded time whose
        // looks failed (PostgreSQL away too).
        let mut owed = false;
        let own_lease = format!("{BUS_DOWN_LEASE}{}", self.node_id);
        loop {
            tokio::select! {
                _ = ticks.tick() => {}
                _ = self.bus.lost() => {}
                _ = shutdown.wait() => break,
            }
            let now = herald_core::now_ms();
            self.bus.send_all(Event::Heartbeat).await;
            let is_degraded = self.cluster_degraded(&own_lease, now, degraded).await || self.silent_node(now, degraded);
            if self.degraded.swap(is_degraded, Ordering::Relaxed) != is_degraded {
                if is_degraded {
                    tracing::info!(
                        "cluster degraded (a node lost the bus, or went silent on it): resync every {degraded:?}"
                    );
                } else {
                    tracing::info!("cluster no longer degraded: resync every {every:?}");
                }
            }
            owed |= is_degraded;
            let interval = if owed { degraded } else { every };
            if now - last_look < interval.as_millis() as i64 - DEGRADED_GRACE_MS {
                continue;
            }
            last_look = now;
            let cut = now - if owed { DEGRADED_GRACE_MS } else { every.as_millis() as i64 };
            match self.store.stale_pending(&self.node_id, cut, window.since(), now, LIMIT).await {
                Ok(devices) => {
                    if !devices.is_empty() {
                        tracing::info!(devices = devices.len(), "resync: deliveries no bus message announced");
                    }
                    devices.iter().for_each(|d| self.hub.refill(d));
                    window.swept(cut, devices.len() < LIMIT);
                    owed = is_degraded;
                }
                Err(e) => tracing::warn!(error = %e, "resync failed"),
            }
        }
    }

    /// Whether a node heard in the last [`HEARD_RECENTLY_MS`] has been silent on the bus for
    /// three `degraded` intervals: its events may not reach this node (NATS servers not yet
    /// routed to each other, a node cut off, or a node that died).
    fn silent_node(&self, now: i64, degraded: Duration) -> bool {
        let silent_after = 3 * degraded.as_millis() as i64;
        let mut heard = self.heard.lock();
        heard.retain(|_, at| now - *at < HEARD_RECENTLY_MS);
        heard.values().any(|at| now - *at > silent_after)
    }

    /// Whether this node has lost the bus, or got it back less than three `degraded`
    /// intervals ago (it then renews its `bus-down` lease), or another node holds a live
    /// `bus-down` lease.
    async fn cluster_degraded(&self, own_lease: &str, now: i64, degraded: Duration) -> bool {
        let ttl = 3 * degraded.as_millis() as i64;
        if self.bus.recently_down(ttl) {
            if let Err(e) = self.store.try_lease(own_lease, &self.node_id, now, ttl).await {
                tracing::warn!(error = %e, "cannot tell the other nodes that the bus is lost");
            }
            return true;
        }
        match self.store.leases().await {
            Ok(leases) => leases.iter().any(|(name, holder, expires_at)| {
                name.starts_with(BUS_DOWN_LEASE) && holder != &self.node_id && *expires_at > now
            }),
            // The store is away too: nothing to look for there now.
            Err(_) => false,
        }
    }

    /// Marks expired deliveries until `shutdown`; among nodes sharing a store, only the
    /// holder of the sweep's lease does (another takes over within three intervals of the
    /// holder's death).
    pub async fn run_expiry_sweeps(self: Arc<Self>, every: Duration, shutdown: crate::shutdown::Signal) {
        let mut ticks = crate::shutdown::ticks(every);
        while shutdown.every(&mut ticks).await {
            let now = herald_core::now_ms();
            if !self.hold_lease(EXPIRY_LEASE, &self.expiry_lease_held, now, 3 * every.as_millis() as i64).await {
                continue;
            }
            match self.store.expire_due(now).await {
                Ok(0) => {}
                Ok(n) => tracing::debug!(expired = n, "expiry sweep"),
                Err(e) => tracing::warn!(error = %e, "expiry sweep failed"),
            }
        }
    }

    /// Takes or renews `lease` for this node; remembers (in `held`) and logs when that changes.
    async fn hold_lease(&self, lease: &'static str, held: &AtomicBool, now: i64, ttl_ms: i64) -> bool {
        let holds = self.store.try_lease(lease, &self.node_id, now, ttl_ms).await.unwrap_or_else(|e| {
            tracing::warn!(error = %e, lease, "cannot take the lease");
            false
        });
        if held.swap(holds, Ordering::Relaxed) != holds {
            tracing::info!(lease, held = holds, "lease changed hands");
        }
        holds
    }
}

/// A delivery read back from the store, ready for a connection.
pub fn outgoing(p: PendingDelivery) -> Outgoing {
    Outgoing { message: Arc::new(Message::new(p.message_id, p.expires_at, Bytes::from(p.payload))), dup: p.sent_before }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_broadcast_is_checked_by_the_sweeps_of_one_window_after_its_cut() {
        let mut w = ResyncWindow::new(Duration::from_secs(60));
        assert_eq!(w.since(), 0, "the first sweep checks every live broadcast");
        w.swept(100_000, true);
        assert_eq!(w.since(), 40_000);
        // A sweep stopped at its limit or failed moves nothing: its broadcasts stay in view.
        w.swept(110_000, false);
        assert_eq!(w.since(), 40_000);
        w.swept(120_000, true);
        assert_eq!(w.since(), 60_000, "broadcasts created before 60 s are no longer checked");
    }
}
