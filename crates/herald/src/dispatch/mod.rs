//! Dispatch: the meeting point of the API and the gateway. A push is validated by
//! [`crate::push`], committed to the store, then handed to the connections of this node
//! through the [`Hub`]. Devices that are not connected get it from the store when they
//! connect or bind; the expiry sweep marks what ran out of validity.

mod hub;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

pub use hub::{CloseCause, Hub, Message, Outgoing, Session};

use crate::error::ApiError;
use crate::ids::{AppId, DeviceId, UserId};
use crate::store::{CommittedPush, NewPush, PendingDelivery, Store, TargetOutcome};

pub struct Dispatcher {
    store: Arc<dyn Store>,
    hub: Arc<Hub>,
    /// This node's name, as the holder of leases.
    node_id: String,
}

/// The lease under which one node of a cluster runs the expiry sweep.
const EXPIRY_LEASE: &str = "expiry-sweep";

impl Dispatcher {
    pub fn new(store: Arc<dyn Store>, hub: Arc<Hub>, node_id: String) -> Self {
        Dispatcher { store, hub, node_id }
    }

    pub fn hub(&self) -> &Arc<Hub> {
        &self.hub
    }

    /// Commits `push`, then queues it for the targets connected to this node.
    pub async fn push(&self, push: NewPush, now: i64) -> Result<CommittedPush, ApiError> {
        let expires_at = push.task.expires_at;
        // Bytes: the payloads are shared with the store's job, not copied.
        let payloads: Vec<Bytes> = push.messages.iter().map(|m| m.payload.clone()).collect();
        let committed = self.store.commit_push(push, now).await?;
        for ((message_id, outcome), payload) in committed.outcomes.iter().zip(payloads) {
            let TargetOutcome::Accepted { devices } = outcome else {
                continue;
            };
            if devices.is_empty() {
                continue;
            }
            let message = Arc::new(Message { id: message_id.clone(), expires_at, payload });
            for device in devices {
                self.hub.deliver(device, Outgoing { message: message.clone(), dup: false });
            }
        }
        Ok(committed)
    }

    /// Binds a user to a device and hands the user's pending messages to the device if it
    /// is connected here. False when the app has no such device.
    pub async fn bind(&self, app: &AppId, device: &DeviceId, user: &UserId, now: i64) -> Result<bool, ApiError> {
        match self.store.bind_user(app, device, user, now).await? {
            None => Ok(false),
            Some(pending) => {
                for p in pending {
                    self.hub.deliver(device, outgoing(p));
                }
                Ok(true)
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
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.wait() => return,
            }
            let now = crate::now_ms();
            let lease_ms = 3 * every.as_millis() as i64;
            match self.store.try_lease(EXPIRY_LEASE, &self.node_id, now, lease_ms).await {
                Ok(true) => {}
                Ok(false) => continue,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot take the expiry lease");
                    continue;
                }
            }
            match self.store.expire_due(now).await {
                Ok(0) => {}
                Ok(n) => tracing::debug!(expired = n, "expiry sweep"),
                Err(e) => tracing::warn!(error = %e, "expiry sweep failed"),
            }
        }
    }
}

/// A delivery read back from the store, ready for a connection.
pub fn outgoing(p: PendingDelivery) -> Outgoing {
    Outgoing {
        message: Arc::new(Message { id: p.message_id, expires_at: p.expires_at, payload: Bytes::from(p.payload) }),
        dup: p.sent_before,
    }
}
