//! The vendor outbox's senders: one loop per vendor claims its due sends from the store
//! (under a lease, so that each send is made by one node at a time and a dead node's
//! claims pass to another), hands them to `herald_channels::Senders`, and records each
//! answer: `sent` (with the vendor's id), an invalid token, a retry with exponential
//! back-off and jitter (never past the message's validity, `Retry-After` honoured), or a
//! failure.
//!
//! Each vendor has its own loop and its own cap on requests in flight: a vendor that is slow
//! or down holds only its own sends. A 429 slows that app's channel down (on this node)
//! until the time the vendor gave. Credentials are read from the store per claimed batch
//! and rebuilt when the channel's `updated_at` changed: a rotated secret takes effect on
//! every node without a restart.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use herald_channels::setup::CERT_WARNING_DAYS;
use herald_channels::{Credential, Senders};
use herald_core::channel::{VendorNotification, VendorOutcome};
use herald_core::crypto::MasterKey;
use herald_core::ids::AppId;
use herald_core::model::{VendorSend, VendorSendDone};
use herald_core::state::{Channel, VendorSendStatus};
use parking_lot::Mutex;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, mpsc};

use herald_store::Store;

use crate::metrics::Metrics;
use crate::shutdown::Signal;

type Key = (AppId, Channel);

/// Spaces one vendor's requests to at most `channels.max_per_second`: each send reserves the
/// next free slot and waits for it.
struct Pace {
    gap: Option<Duration>,
    next: Mutex<tokio::time::Instant>,
}

impl Pace {
    fn new(per_second: u32) -> Pace {
        let gap = (per_second > 0).then(|| Duration::from_secs(1) / per_second);
        Pace { gap, next: Mutex::new(tokio::time::Instant::now()) }
    }

    async fn wait(&self) {
        let Some(gap) = self.gap else { return };
        let at = {
            let mut next = self.next.lock();
            let at = (*next).max(tokio::time::Instant::now());
            *next = at + gap;
            at
        };
        tokio::time::sleep_until(at).await;
    }
}

/// A send's answer, and its share of the room its claim took.
type Answer = (VendorSendDone, OwnedSemaphorePermit);

pub struct VendorWorker {
    store: Arc<dyn Store>,
    senders: Arc<Senders>,
    master: Arc<MasterKey>,
    metrics: Arc<Metrics>,
    /// `channels.receipt_base_url`: Xiaomi is asked for receipts at this node's address.
    receipt_base: String,
    /// Rung after a commit that wrote vendor sends.
    ring: Notify,
    /// Opened credentials by app and channel, with the `updated_at` they were opened at.
    credentials: Mutex<HashMap<Key, (i64, Arc<Credential>)>>,
    /// Channels of apps the vendor throttled, until when (Unix ms).
    paused: Mutex<HashMap<Key, i64>>,
}

impl VendorWorker {
    pub fn new(
        store: Arc<dyn Store>,
        senders: Arc<Senders>,
        master: Arc<MasterKey>,
        metrics: Arc<Metrics>,
        receipt_base: String,
    ) -> Arc<Self> {
        Arc::new(VendorWorker {
            store,
            senders,
            master,
            metrics,
            receipt_base,
            ring: Notify::new(),
            credentials: Mutex::default(),
            paused: Mutex::default(),
        })
    }

    /// Something was written to the outbox: look now rather than at the next poll.
    pub fn ring(&self) {
        self.ring.notify_waiters();
    }

    /// Runs one loop per vendor until `shutdown`; a loop finishes the sends it has out.
    pub fn spawn(self: &Arc<Self>, shutdown: Signal) -> Vec<tokio::task::JoinHandle<()>> {
        Channel::VENDORS.iter().map(|c| tokio::spawn(self.clone().run(*c, shutdown.clone()))).collect()
    }

    /// One vendor's pipeline: claim due sends while there is room, send each (at most
    /// `max_in_flight` at once and `max_per_second`), and record the answers in groups as they come, so that a
    /// slow answer never holds the next claim. At most two claim batches are out (claimed and
    /// not yet recorded) at a time. On shutdown, the sends out are finished and recorded.
    async fn run(self: Arc<Self>, channel: Channel, shutdown: Signal) {
        let cfg = self.senders.config().clone();
        let batch = cfg.claim_batch.max(1);
        let in_flight = Arc::new(Semaphore::new(cfg.max_in_flight.max(1)));
        let pace = Arc::new(Pace::new(cfg.max_per_second));
        let out = Arc::new(Semaphore::new(batch * 2));
        let poll = Duration::from_millis(cfg.poll_ms.max(10));
        let (answers, answered) = tokio::sync::mpsc::unbounded_channel();
        let recorder = tokio::spawn(self.clone().record(answered, batch));
        // A stop ends the claims at once, however long the backlog: the sends out are
        // finished and recorded, the rest wait in the store for the next start.
        while !shutdown.is_set() {
            let rung = self.ring.notified();
            // Room for the next claim (a quarter of a batch at least, so that a busy vendor
            // is not claimed from a row at a time): wait for answers to be recorded for it.
            let least = (batch / 4).max(1);
            let mut room = tokio::select! {
                room = out.clone().acquire_many_owned(least as u32) => match room {
                    Ok(room) => room,
                    Err(_) => break,
                },
                _ = shutdown.wait() => break,
            };
            let more = out.available_permits().min(batch - least);
            if more > 0
                && let Ok(p) = out.clone().try_acquire_many_owned(more as u32)
            {
                room.merge(p);
            }
            let now = herald_core::now_ms();
            let lease = cfg.claim_lease_secs as i64 * 1000;
            let claimed = match self.store.claim_vendor_sends(channel, now, lease, room.num_permits()).await {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, %channel, "cannot claim vendor sends");
                    Vec::new()
                }
            };
            let full = !claimed.is_empty() && claimed.len() >= room.num_permits();
            self.send_claimed(claimed, room, (&in_flight, &pace), &answers).await;
            if full {
                continue;
            }
            tokio::select! {
                _ = rung => {}
                _ = tokio::time::sleep(poll) => {}
                _ = shutdown.wait() => break,
            }
        }
        // The sends out hold clones of `answers`: the recorder ends once they are recorded.
        drop(answers);
        let _ = recorder.await;
    }

    /// Starts a send per claimed row; each answer goes to the recorder with its share of
    /// `room` (the claim's permits, released once the answer is recorded; the share of rows
    /// not claimed is released at once).
    async fn send_claimed(
        self: &Arc<Self>,
        claimed: Vec<VendorSend>,
        mut room: OwnedSemaphorePermit,
        (in_flight, pace): (&Arc<Semaphore>, &Arc<Pace>),
        answers: &mpsc::UnboundedSender<Answer>,
    ) {
        // Each app's credential is looked up once per claim (a rotation shows at the next).
        let mut credentials: HashMap<Key, Result<Arc<Credential>, String>> = HashMap::new();
        for send in &claimed {
            if let std::collections::hash_map::Entry::Vacant(slot) =
                credentials.entry((send.app_id.clone(), send.channel))
            {
                slot.insert(self.credential(&send.app_id, send.channel).await);
            }
        }
        for send in claimed {
            let Some(share) = room.split(1) else { break };
            let (me, permits, pace, answers) = (self.clone(), in_flight.clone(), pace.clone(), answers.clone());
            let credential = credentials[&(send.app_id.clone(), send.channel)].clone();
            tokio::spawn(async move {
                pace.wait().await;
                let _permit = permits.acquire_owned().await;
                let done = me.send_one(send, credential).await;
                let _ = answers.send((done, share));
            });
        }
    }

    /// Records answers as they come, up to `batch` in one store call; a send's room is
    /// released once its answer is recorded.
    async fn record(self: Arc<Self>, mut answered: mpsc::UnboundedReceiver<Answer>, batch: usize) {
        let mut group = Vec::with_capacity(batch);
        while answered.recv_many(&mut group, batch).await > 0 {
            let (done, rooms): (Vec<_>, Vec<_>) = group.drain(..).unzip();
            if let Err(e) = self.store.finish_vendor_sends(done).await {
                // Claims lapse: the sends are tried again after the lease (a vendor that took
                // one gets it twice; the device drops the copy by its messageId).
                tracing::error!(error = %e, "cannot record vendor answers");
            }
            drop(rooms);
        }
    }

    /// The app's credential for `channel`, opened again when the channel changed.
    async fn credential(&self, app: &AppId, channel: Channel) -> Result<Arc<Credential>, String> {
        let Some(record) = self.store.channel(app, channel).await.map_err(|e| e.to_string())? else {
            return Err(format!("the app has no {channel} channel"));
        };
        let key = (app.clone(), channel);
        if let Some((at, c)) = self.credentials.lock().get(&key)
            && *at == record.updated_at
        {
            return Ok(c.clone());
        }
        let secret = self
            .master
            .open(&record.secret_sealed)
            .and_then(|raw| serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(&raw).ok())
            .ok_or_else(|| format!("the {channel} channel's secret cannot be opened with this node's master key"))?;
        let mut settings = record.settings.clone();
        if channel == Channel::Xiaomi && !self.receipt_base.is_empty() {
            let url = crate::ledger::vendor::receipt_url(&self.master, &self.receipt_base, app, channel);
            settings.insert("receiptUrl".into(), url.into());
        }
        let credential =
            Arc::new(Credential::open(channel, &settings, &secret, record.updated_at).map_err(|e| e.to_string())?);
        if channel == Channel::Apns {
            let not_after = record.settings.get("notAfter").and_then(serde_json::Value::as_i64);
            self.metrics.vendor.certificate(app, not_after);
            if let Some(at) = not_after.filter(|at| at - herald_core::now_ms() < CERT_WARNING_DAYS * 86_400_000) {
                tracing::warn!(app = %app, not_after = at, "the APNs certificate expires within {CERT_WARNING_DAYS} days (or has): upload a new one");
            }
        }
        self.credentials.lock().insert(key, (record.updated_at, credential.clone()));
        Ok(credential)
    }

    async fn send_one(&self, s: VendorSend, credential: Result<Arc<Credential>, String>) -> VendorSendDone {
        let now = herald_core::now_ms();
        let mut done = VendorSendDone {
            message_id: s.message_id.clone(),
            device_id: s.device_id.clone(),
            app_id: s.app_id.clone(),
            channel: s.channel,
            token: s.token.clone(),
            status: VendorSendStatus::Failed,
            attempts: s.attempts,
            next_at: now,
            vendor_id: None,
            reason: None,
            at: now,
        };
        let Some(payload) = s.payload.clone() else {
            done.status = VendorSendStatus::Revoked;
            return done;
        };
        if s.expires_at <= now {
            done.status = VendorSendStatus::Expired;
            done.reason = Some("the message's validity ended before a vendor took it".into());
            return done;
        }
        let key = (s.app_id.clone(), s.channel);
        if let Some(until) = self.paused.lock().get(&key).copied().filter(|u| *u > now) {
            done.status = VendorSendStatus::Waiting;
            done.next_at = until;
            done.reason = Some("the vendor asked this app to slow down".into());
            return done;
        }
        let credential = match credential {
            Ok(c) => c,
            Err(reason) => {
                done.reason = Some(reason);
                self.metrics.vendor.record(s.channel, &s.app_id, "failed", None);
                return done;
            }
        };
        let n = VendorNotification {
            app_id: s.app_id.clone(),
            device_id: s.device_id.clone(),
            message_id: s.message_id.clone(),
            channel: s.channel,
            token: s.token.clone(),
            payload: Bytes::from(payload),
            expires_at: s.expires_at,
            recall: s.recall,
        };
        let started = std::time::Instant::now();
        let outcome = self.senders.send(&credential, &n).await;
        let elapsed = started.elapsed();
        self.metrics.vendor.record(s.channel, &s.app_id, outcome.label(), Some(elapsed));
        done.attempts = s.attempts + 1;
        done.at = herald_core::now_ms();
        match outcome {
            VendorOutcome::Accepted { vendor_id } => {
                done.status = if s.recall { VendorSendStatus::Recalled } else { VendorSendStatus::Sent };
                done.vendor_id = vendor_id;
            }
            VendorOutcome::InvalidToken { reason } => {
                tracing::info!(channel = %s.channel, app = %s.app_id, device = %s.device_id, %reason, "vendor token invalid");
                done.status = VendorSendStatus::InvalidToken;
                done.reason = Some(reason);
            }
            VendorOutcome::Failed { reason } => {
                tracing::warn!(channel = %s.channel, app = %s.app_id, %reason, "vendor refused a send");
                done.reason = Some(reason);
            }
            VendorOutcome::Retry { after, throttled, reason } => {
                let wait = after.unwrap_or_else(|| backoff(s.attempts, self.senders.config().max_backoff_secs));
                let next = done.at + wait.as_millis() as i64;
                if throttled {
                    self.paused.lock().insert(key, next);
                }
                if next >= s.expires_at {
                    done.status = VendorSendStatus::Expired;
                    done.reason = Some(format!("the validity ended before a retry: {reason}"));
                } else {
                    done.status = VendorSendStatus::Waiting;
                    done.next_at = next;
                    done.reason = Some(reason);
                }
            }
        }
        done
    }
}

/// The wait before attempt `attempts + 1`: 1 s doubled per attempt, at most `max_secs`, with
/// ±20 % jitter so that sends failed together do not come back together.
pub fn backoff(attempts: i64, max_secs: u64) -> Duration {
    let base_ms = 1000u64.saturating_mul(1u64 << attempts.clamp(0, 20)).min(max_secs.max(1) * 1000);
    let jitter = herald_core::crypto::random_bytes::<2>();
    let spread = u16::from_le_bytes(jitter) as u64 % (base_ms * 2 / 5 + 1);
    Duration::from_millis(base_ms - base_ms / 5 + spread)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_and_a_ceiling() {
        for attempts in 0..30 {
            let ms = backoff(attempts, 600).as_millis() as u64;
            let base = (1000u64 << attempts.min(20)).min(600_000);
            assert!(ms >= base * 4 / 5 && ms <= base * 6 / 5, "{attempts}: {ms}");
        }
    }
}
