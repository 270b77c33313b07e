//! The routing table of this node: which devices hold a connection here, and a small
//! in-memory queue per connection that the dispatcher fills and the gateway drains.
//!
//! The queue is a convenience, not the truth: whatever does not fit (`max_queued`) or is
//! lost with a connection stays pending in the store and is read again on the next
//! refill or connect. An idle connection's queue allocates nothing.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use parking_lot::{Mutex, RwLock};
use tokio::sync::Notify;

use crate::ids::{DeviceId, MessageId};

/// One rendered message, shared by every device it goes to.
#[derive(Debug)]
pub struct Message {
    pub id: MessageId,
    pub expires_at: i64,
    pub payload: Bytes,
}

/// A message on its way to one connection.
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub message: Arc<Message>,
    /// Written to a connection before without an acknowledgement (MQTT DUP).
    pub dup: bool,
}

/// The state a connection shares with the dispatcher.
pub struct Session {
    pub generation: u64,
    queue: Mutex<Queue>,
    notify: Notify,
}

#[derive(Default)]
struct Queue {
    items: VecDeque<Outgoing>,
    /// Something was left in the store because the queue was full.
    lagging: bool,
    /// Replaced by a newer connection of the same device, or the server is stopping.
    closed: bool,
}

impl Session {
    /// Takes up to `max` queued deliveries.
    pub fn take(&self, max: usize) -> Vec<Outgoing> {
        let mut q = self.queue.lock();
        let n = max.min(q.items.len());
        let out: Vec<Outgoing> = q.items.drain(..n).collect();
        if q.items.is_empty() && q.items.capacity() > 0 {
            // Give the memory back: most connections are idle most of the time.
            q.items = VecDeque::new();
        }
        out
    }

    /// True once if deliveries were left in the store since the last call.
    pub fn take_lagging(&self) -> bool {
        std::mem::take(&mut self.queue.lock().lagging)
    }

    pub fn mark_lagging(&self) {
        self.queue.lock().lagging = true;
        self.notify.notify_one();
    }

    pub fn is_closed(&self) -> bool {
        self.queue.lock().closed
    }

    pub fn close(&self) {
        self.queue.lock().closed = true;
        self.notify.notify_one();
    }

    /// Resolves when the dispatcher has queued something or the session was closed.
    pub async fn wait(&self) {
        self.notify.notified().await
    }

    fn offer(&self, item: Outgoing, max_queued: usize) {
        let mut q = self.queue.lock();
        if q.closed {
            return;
        }
        if q.items.len() >= max_queued {
            q.lagging = true;
        } else {
            q.items.push_back(item);
        }
        drop(q);
        self.notify.notify_one();
    }
}

const SHARDS: usize = 64;

/// Connected devices of this node, sharded to keep lock contention low.
pub struct Hub {
    shards: Vec<RwLock<HashMap<DeviceId, Arc<Session>>>>,
    hasher: RandomState,
    generations: AtomicU64,
    max_queued: usize,
}

impl Hub {
    pub fn new(max_queued: usize) -> Self {
        Hub {
            shards: (0..SHARDS).map(|_| RwLock::new(HashMap::new())).collect(),
            hasher: RandomState::new(),
            generations: AtomicU64::new(1),
            max_queued,
        }
    }

    fn shard(&self, device: &DeviceId) -> &RwLock<HashMap<DeviceId, Arc<Session>>> {
        &self.shards[self.hasher.hash_one(device) as usize % SHARDS]
    }

    /// Registers a new connection of `device`; an older one is closed (takeover).
    pub fn register(&self, device: &DeviceId) -> Arc<Session> {
        let session = Arc::new(Session {
            generation: self.generations.fetch_add(1, Ordering::Relaxed),
            queue: Mutex::new(Queue::default()),
            notify: Notify::new(),
        });
        let old = self
            .shard(device)
            .write()
            .insert(device.clone(), session.clone());
        if let Some(old) = old {
            old.close();
        }
        session
    }

    /// Removes the connection unless a newer one of the same device replaced it.
    pub fn unregister(&self, device: &DeviceId, generation: u64) {
        let mut shard = self.shard(device).write();
        if shard
            .get(device)
            .is_some_and(|s| s.generation == generation)
        {
            shard.remove(device);
        }
    }

    pub fn is_online(&self, device: &DeviceId) -> bool {
        self.shard(device).read().contains_key(device)
    }

    /// Queues a delivery for a connected device; false when it is not connected here.
    pub fn deliver(&self, device: &DeviceId, item: Outgoing) -> bool {
        let session = self.shard(device).read().get(device).cloned();
        match session {
            Some(s) => {
                s.offer(item, self.max_queued);
                true
            }
            None => false,
        }
    }

    pub fn connections(&self) -> usize {
        self.shards.iter().map(|s| s.read().len()).sum()
    }

    /// Closes every connection (server shutdown).
    pub fn close_all(&self) {
        for shard in &self.shards {
            for s in shard.read().values() {
                s.close();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(id: &str) -> Outgoing {
        Outgoing {
            message: Arc::new(Message {
                id: MessageId::new(id),
                expires_at: i64::MAX,
                payload: Bytes::new(),
            }),
            dup: false,
        }
    }

    #[test]
    fn takeover_closes_the_old_session_and_keeps_the_new() {
        let hub = Hub::new(10);
        let d = DeviceId::new("d1");
        let first = hub.register(&d);
        let second = hub.register(&d);
        assert!(first.is_closed());
        assert!(!second.is_closed());
        hub.unregister(&d, first.generation);
        assert!(
            hub.is_online(&d),
            "the old connection must not remove the new one"
        );
        hub.unregister(&d, second.generation);
        assert!(!hub.is_online(&d));
    }

    #[test]
    fn a_full_queue_marks_the_session_lagging() {
        let hub = Hub::new(2);
        let d = DeviceId::new("d1");
        let s = hub.register(&d);
        for i in 0..3 {
            assert!(hub.deliver(&d, item(&format!("m{i}"))));
        }
        assert_eq!(s.take(10).len(), 2);
        assert!(s.take_lagging());
        assert!(!s.take_lagging());
        assert!(!hub.deliver(&DeviceId::new("other"), item("m")));
    }
}
