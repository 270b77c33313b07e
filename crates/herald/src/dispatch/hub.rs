//! The routing table of this node: which devices hold a connection here, and a small
//! in-memory queue per connection that the dispatcher fills and the gateway drains.
//!
//! The queue is a convenience, not the truth: whatever does not fit (`max_queued`) or is
//! lost with a connection stays pending in the store and is read again on the next
//! refill or connect. An idle connection's queue allocates nothing.

use std::borrow::Borrow;
use std::collections::{HashSet, VecDeque};
use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use bytes::Bytes;
use parking_lot::{Mutex, RwLock};
use std::task::Waker;

use herald_core::ids::{DeviceId, MessageId};

/// One rendered message, shared by every device it goes to.
#[derive(Debug)]
pub struct Message {
    pub id: MessageId,
    pub expires_at: i64,
    pub payload: Bytes,
    /// The user properties an MQTT 5 delivery carries (the payload's type and ids), read
    /// from the payload by the first MQTT 5 connection it goes to, then shared.
    pub v5_head: std::sync::OnceLock<herald_mqtt::Properties>,
}

impl Message {
    pub fn new(id: MessageId, expires_at: i64, payload: Bytes) -> Message {
        Message { id, expires_at, payload, v5_head: std::sync::OnceLock::new() }
    }
}

/// A message on its way to one connection.
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub message: Arc<Message>,
    /// Written to a connection before without an acknowledgement (MQTT DUP).
    pub dup: bool,
}

/// Why the hub closed a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseCause {
    /// A newer connection of the same device replaced it.
    TakenOver,
    /// Nothing arrived for 1.5 times the keepalive.
    KeepAlive,
    /// The server is stopping.
    Shutdown,
}

/// The state a connection shares with the dispatcher.
///
/// Keepalive deadlines live here rather than in a timer per connection: one sweep over
/// the hub ([`Hub::close_idle`]) replaces a timer entry in every connection's task. The
/// connection's task is woken through the waker it leaves in the queue.
pub struct Session {
    pub device_id: DeviceId,
    pub generation: u64,
    queue: Mutex<Queue>,
    /// 1.5 times the client's keepalive, in ms; 0 when the client asked for none.
    idle_limit_ms: AtomicI64,
    /// When the connection last received anything, in Unix ms.
    last_input_ms: AtomicI64,
}

#[derive(Default)]
struct Queue {
    items: VecDeque<Outgoing>,
    /// Something was left in the store because the queue was full.
    lagging: bool,
    closed: Option<CloseCause>,
    /// The connection task, waiting for work.
    waker: Option<Waker>,
}

impl Queue {
    fn wake(&mut self) -> Option<Waker> {
        self.waker.take()
    }
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
        let waker = {
            let mut q = self.queue.lock();
            q.lagging = true;
            q.wake()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }

    pub fn closed(&self) -> Option<CloseCause> {
        self.queue.lock().closed
    }

    pub fn close(&self, cause: CloseCause) {
        let waker = {
            let mut q = self.queue.lock();
            q.closed.get_or_insert(cause);
            q.wake()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }

    /// True when the connection has something to do: it was closed, or it has `room` and
    /// deliveries wait. Otherwise keeps `waker` to be woken when that changes.
    pub fn poll_work(&self, waker: &Waker, room: bool) -> bool {
        let mut q = self.queue.lock();
        if q.closed.is_some() || (room && (!q.items.is_empty() || q.lagging)) {
            return true;
        }
        match &q.waker {
            Some(w) if w.will_wake(waker) => {}
            _ => q.waker = Some(waker.clone()),
        }
        false
    }

    /// Sets the keepalive the client asked for at CONNECT (seconds; 0 = none).
    pub fn set_keep_alive(&self, secs: u16, now_ms: i64) {
        self.idle_limit_ms.store(secs as i64 * 1500, Ordering::Relaxed);
        self.last_input_ms.store(now_ms, Ordering::Relaxed);
    }

    /// Records that the connection received something.
    pub fn touch(&self, now_ms: i64) {
        self.last_input_ms.store(now_ms, Ordering::Relaxed);
    }

    fn idle_expired(&self, now_ms: i64) -> bool {
        let limit = self.idle_limit_ms.load(Ordering::Relaxed);
        limit > 0 && now_ms - self.last_input_ms.load(Ordering::Relaxed) > limit
    }

    fn offer(&self, item: Outgoing, max_queued: usize) {
        let mut q = self.queue.lock();
        if q.closed.is_some() {
            return;
        }
        if q.items.len() >= max_queued {
            q.lagging = true;
        } else {
            q.items.push_back(item);
        }
        let waker = q.wake();
        drop(q);
        if let Some(w) = waker {
            w.wake();
        }
    }
}

const SHARDS: usize = 64;

/// A session as a set member, keyed by its device id: the set needs no second copy of the
/// id per connection.
struct Entry(Arc<Session>);

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        self.0.device_id == other.0.device_id
    }
}

impl Eq for Entry {}

impl std::hash::Hash for Entry {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        // Must hash like the `str` it borrows as.
        self.0.device_id.as_str().hash(state)
    }
}

impl Borrow<str> for Entry {
    fn borrow(&self) -> &str {
        self.0.device_id.as_str()
    }
}

/// Connected devices of this node, sharded to keep lock contention low.
pub struct Hub {
    /// Revoked message ids, each until a time (Unix ms); copies of them queued in memory
    /// are never written. Empty almost always: checked with one atomic load.
    revoked: RwLock<std::collections::HashMap<MessageId, i64>>,
    any_revoked: std::sync::atomic::AtomicBool,
    shards: Vec<RwLock<HashSet<Entry>>>,
    hasher: RandomState,
    generations: AtomicU64,
    max_queued: usize,
}

impl Hub {
    pub fn new(max_queued: usize) -> Self {
        Hub {
            revoked: RwLock::new(std::collections::HashMap::new()),
            any_revoked: std::sync::atomic::AtomicBool::new(false),
            shards: (0..SHARDS).map(|_| RwLock::new(HashSet::new())).collect(),
            hasher: RandomState::new(),
            // Unique across restarts of the node too: the store keeps (node, generation) as
            // the device's presence, and a stale one must never match a new connection.
            generations: AtomicU64::new((herald_core::now_ms().max(0) as u64) << 16),
            max_queued,
        }
    }

    fn shard(&self, device: &DeviceId) -> &RwLock<HashSet<Entry>> {
        &self.shards[self.hasher.hash_one(device.as_str()) as usize % SHARDS]
    }

    /// Registers a new connection of `device`; an older one is closed (takeover).
    pub fn register(&self, device: &DeviceId) -> Arc<Session> {
        let session = Arc::new(Session {
            device_id: device.clone(),
            generation: self.generations.fetch_add(1, Ordering::Relaxed),
            queue: Mutex::new(Queue::default()),
            idle_limit_ms: AtomicI64::new(0),
            last_input_ms: AtomicI64::new(0),
        });
        let old = self.shard(device).write().replace(Entry(session.clone()));
        if let Some(Entry(old)) = old {
            old.close(CloseCause::TakenOver);
        }
        session
    }

    /// Removes the connection unless a newer one of the same device replaced it.
    pub fn unregister(&self, device: &DeviceId, generation: u64) {
        let mut shard = self.shard(device).write();
        if shard.get(device.as_str()).is_some_and(|e| e.0.generation == generation) {
            shard.remove(device.as_str());
        }
    }

    pub fn is_online(&self, device: &DeviceId) -> bool {
        self.shard(device).read().contains(device.as_str())
    }

    /// Queues a delivery for a connected device; false when it is not connected here.
    pub fn deliver(&self, device: &DeviceId, item: Outgoing) -> bool {
        match self.session(device) {
            Some(s) => {
                s.offer(item, self.max_queued);
                true
            }
            None => false,
        }
    }

    fn session(&self, device: &DeviceId) -> Option<Arc<Session>> {
        self.shard(device).read().get(device.as_str()).map(|e| e.0.clone())
    }

    /// Asks the device's connection, if it is here, to read its pending deliveries.
    pub fn refill(&self, device: &DeviceId) {
        if let Some(s) = self.session(device) {
            s.mark_lagging();
        }
    }

    /// Asks every connection to read its pending deliveries (after the bus lost events).
    pub fn refill_all(&self) {
        for shard in &self.shards {
            for Entry(s) in shard.read().iter() {
                s.mark_lagging();
            }
        }
    }

    /// Closes the device's connection `generation` if it is still here: a connection on
    /// another node replaced it.
    pub fn close_replaced(&self, device: &DeviceId, generation: u64) -> bool {
        match self.session(device) {
            Some(s) if s.generation == generation => {
                s.close(CloseCause::TakenOver);
                true
            }
            _ => false,
        }
    }

    /// Remembers `ids` as revoked until `until`; forgets entries that ran out.
    pub fn revoke(&self, ids: &[MessageId], until: i64) {
        let mut revoked = self.revoked.write();
        let now = herald_core::now_ms();
        revoked.retain(|_, u| *u > now);
        for id in ids {
            revoked.insert(id.clone(), until);
        }
        self.any_revoked.store(!revoked.is_empty(), Ordering::Release);
    }

    /// True when `id` was revoked: a connection must not write it.
    pub fn is_revoked(&self, id: &MessageId) -> bool {
        self.any_revoked.load(Ordering::Acquire) && self.revoked.read().contains_key(id)
    }

    pub fn connections(&self) -> usize {
        self.shards.iter().map(|s| s.read().len()).sum()
    }

    /// Closes every connection (server shutdown).
    pub fn close_all(&self) {
        for shard in &self.shards {
            for Entry(s) in shard.read().iter() {
                s.close(CloseCause::Shutdown);
            }
        }
    }

    /// Closes the connections whose keepalive ran out; returns how many.
    pub fn close_idle(&self, now_ms: i64) -> usize {
        let mut closed = 0;
        for shard in &self.shards {
            for Entry(s) in shard.read().iter() {
                if s.idle_expired(now_ms) {
                    s.close(CloseCause::KeepAlive);
                    closed += 1;
                }
            }
        }
        closed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(id: &str) -> Outgoing {
        Outgoing { message: Arc::new(Message::new(MessageId::new(id), i64::MAX, Bytes::new())), dup: false }
    }

    #[test]
    fn takeover_closes_the_old_session_and_keeps_the_new() {
        let hub = Hub::new(10);
        let d = DeviceId::new("d1");
        let first = hub.register(&d);
        let second = hub.register(&d);
        assert_eq!(first.closed(), Some(CloseCause::TakenOver));
        assert_eq!(second.closed(), None);
        hub.unregister(&d, first.generation);
        assert!(hub.is_online(&d), "the old connection must not remove the new one");
        hub.unregister(&d, second.generation);
        assert!(!hub.is_online(&d));
    }

    #[test]
    fn a_remote_takeover_closes_only_the_named_connection() {
        let hub = Hub::new(10);
        let d = DeviceId::new("d1");
        let first = hub.register(&d);
        let second = hub.register(&d);
        assert!(!hub.close_replaced(&d, first.generation), "an older connection is gone already");
        assert_eq!(second.closed(), None);
        assert!(hub.close_replaced(&d, second.generation));
        assert_eq!(second.closed(), Some(CloseCause::TakenOver));
    }

    #[test]
    fn keepalive_expiry_closes_only_silent_sessions() {
        let hub = Hub::new(10);
        let quiet = hub.register(&DeviceId::new("quiet"));
        let chatty = hub.register(&DeviceId::new("chatty"));
        let forever = hub.register(&DeviceId::new("forever"));
        quiet.set_keep_alive(2, 0);
        chatty.set_keep_alive(2, 0);
        forever.set_keep_alive(0, 0);
        chatty.touch(2_500);
        assert_eq!(hub.close_idle(3_000), 0, "3 s is the limit for a 2 s keepalive");
        assert_eq!(hub.close_idle(3_001), 1);
        assert_eq!(quiet.closed(), Some(CloseCause::KeepAlive));
        assert_eq!(chatty.closed(), None);
        assert_eq!(forever.closed(), None);
    }

    #[test]
    fn revoked_ids_are_remembered_until_their_time() {
        let hub = Hub::new(2);
        assert!(!hub.is_revoked(&MessageId::new("m1")));
        let now = herald_core::now_ms();
        hub.revoke(&[MessageId::new("m1")], now + 60_000);
        hub.revoke(&[MessageId::new("m2")], now - 1);
        assert!(hub.is_revoked(&MessageId::new("m1")));
        // m2's time is over: the next revoke forgets it.
        hub.revoke(&[MessageId::new("m3")], now + 60_000);
        assert!(!hub.is_revoked(&MessageId::new("m2")));
        assert!(hub.is_revoked(&MessageId::new("m3")));
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
