//! The receipt sender: posts each app's outbox to its webhook in batches, head first.
//!
//! One node at a time sends an app's receipts (a claim in the store, renewed per batch), so
//! a cluster posts each receipt once; a batch leaves the outbox only after a 2xx, so a
//! crash between the answer and that commit posts it again (at least once; receivers
//! de-duplicate by `messageId`, `deviceId` and `status`). A failure backs the app off
//! exponentially with jitter; receipts older than `max_age_secs` are given up into the
//! failures list. Each app is served by its own task, with at most `concurrency` at once:
//! a slow or dead webhook holds only its own app's receipts.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use herald_core::crypto::{self, MasterKey};
use herald_core::ids::AppId;
use herald_store::Store;
use parking_lot::Mutex;
use tokio::sync::Semaphore;

use super::ReceiptsConfig;
use crate::metrics::Metrics;
use crate::shutdown::Signal;

/// How often the sender looks for apps with receipts due.
const POLL: Duration = Duration::from_millis(200);

/// The signature of a webhook POST: base64url without padding of HMAC-SHA256 over the
/// timestamp, a newline and the body, keyed with the app's receipt secret.
pub fn signature(secret: &[u8], timestamp: &str, body: &[u8]) -> String {
    let mut signed = Vec::with_capacity(timestamp.len() + 1 + body.len());
    signed.extend_from_slice(timestamp.as_bytes());
    signed.push(b'\n');
    signed.extend_from_slice(body);
    crypto::b64url(&crypto::hmac_sha256(secret, &signed))
}

/// The body of a batch: the stored receipts (JSON objects) as they are.
pub fn batch_body(receipts: &[&str]) -> String {
    format!("{{\"receipts\":[{}]}}", receipts.join(","))
}

/// The delay before try `attempts + 1` after `attempts` failures: `base` doubled per
/// failure, at most `max`, less up to half of it at random.
pub fn backoff(attempts: i64, base_ms: u64, max_ms: u64, random: u64) -> u64 {
    let exp = attempts.clamp(1, 40) as u32 - 1;
    let full = base_ms.saturating_mul(1u64 << exp.min(30)).min(max_ms);
    full - (random % (full / 2 + 1))
}

#[derive(Clone)]
pub struct Sender {
    store: Arc<dyn Store>,
    master: Arc<MasterKey>,
    metrics: Arc<Metrics>,
    node: String,
    cfg: ReceiptsConfig,
    client: herald_channels::HttpsClient,
    busy: Arc<Mutex<HashSet<AppId>>>,
    permits: Arc<Semaphore>,
}

impl Sender {
    pub fn new(
        store: Arc<dyn Store>,
        master: Arc<MasterKey>,
        metrics: Arc<Metrics>,
        node: String,
        cfg: ReceiptsConfig,
        client: herald_channels::HttpsClient,
    ) -> Sender {
        let permits = Arc::new(Semaphore::new(cfg.concurrency));
        Sender { store, master, metrics, node, cfg, client, busy: Arc::default(), permits }
    }

    pub async fn run(self, shutdown: Signal) {
        let mut ticks = crate::shutdown::ticks(POLL);
        while shutdown.every(&mut ticks).await {
            let now = herald_core::now_ms();
            let due = match self.store.due_webhooks(&self.node, now, self.cfg.concurrency * 2).await {
                Ok(due) => due,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the webhooks due");
                    continue;
                }
            };
            for app in due {
                let Ok(permit) = self.permits.clone().try_acquire_owned() else { break };
                if !self.busy.lock().insert(app.clone()) {
                    continue;
                }
                let (me, stop) = (self.clone(), shutdown.clone());
                tokio::spawn(async move {
                    if let Err(e) = me.serve(&app, &stop).await {
                        tracing::warn!(error = %e, app = %app, "receipt sender failed; tried again later");
                    }
                    let _ = me.store.release_webhook(&app, &me.node).await;
                    me.busy.lock().remove(&app);
                    drop(permit);
                });
            }
        }
    }

    /// How long a claim of an app's sending lasts: longer than a whole try.
    fn claim_ms(&self) -> i64 {
        (self.cfg.timeout_secs as i64 + 30) * 1000
    }

    /// Sends the app's receipts while batches are ready and the webhook answers 2xx. The
    /// claim is renewed when half of it is left; receipts past their age are given up when
    /// the head is that old.
    async fn serve(&self, app: &AppId, stop: &Signal) -> anyhow::Result<()> {
        let now = herald_core::now_ms();
        let mut claimed_until = now + self.claim_ms();
        if !self.store.claim_webhook(app, &self.node, claimed_until, now).await? {
            return Ok(());
        }
        let Some(hook) = self.store.webhook(app).await? else { return Ok(()) };
        if !hook.enabled || hook.next_at > now {
            return Ok(());
        }
        let secret = self.master.open(&hook.secret_sealed).ok_or_else(|| anyhow::anyhow!("unreadable secret"))?;
        let max_age_ms = self.cfg.max_age_secs as i64 * 1000;
        loop {
            let now = herald_core::now_ms();
            if stop.is_set() {
                return Ok(());
            }
            if claimed_until - now < self.claim_ms() / 2 {
                claimed_until = now + self.claim_ms();
                if !self.store.claim_webhook(app, &self.node, claimed_until, now).await? {
                    return Ok(());
                }
            }
            let mut head = self.store.outbox_head(app, self.cfg.batch_size).await?;
            if head.first().is_some_and(|r| r.created_at < now - max_age_ms) {
                let reason = match &hook.last_error {
                    Some(e) => format!("not acknowledged within {} s; last error: {e}", self.cfg.max_age_secs),
                    None => format!("not acknowledged within {} s", self.cfg.max_age_secs),
                };
                let given_up = self.store.give_up_receipts(app, now - max_age_ms, reason, now).await?;
                self.metrics.receipts_given_up.add(given_up);
                tracing::warn!(app = %app, receipts = given_up, "receipts given up");
                head = self.store.outbox_head(app, self.cfg.batch_size).await?;
            }
            let Some(oldest) = head.first() else { return Ok(()) };
            if head.len() < self.cfg.batch_size && now - oldest.created_at < self.cfg.batch_delay_ms as i64 {
                return Ok(()); // a batch is still filling
            }
            let body = batch_body(&head.iter().map(|r| r.receipt.as_str()).collect::<Vec<_>>());
            let timestamp = herald_core::now_ms().to_string();
            let headers = [
                ("x-herald-timestamp", timestamp.clone()),
                ("x-herald-signature", signature(&secret, &timestamp, body.as_bytes())),
            ];
            let answer = self.client.post_json(&hook.url, &headers, Bytes::from(body)).await;
            let now = herald_core::now_ms();
            match answer {
                Ok(status) if (200..300).contains(&status) => {
                    self.store.receipts_sent(app, head.iter().map(|r| r.seq).collect(), now).await?;
                    self.metrics.receipts_posted.add(head.len() as u64);
                }
                failed => {
                    let error = match failed {
                        Ok(status) => format!("HTTP {status}"),
                        Err(e) => e,
                    };
                    self.metrics.receipt_posts_failed.inc();
                    let attempts = hook.attempts + 1;
                    let random = u64::from_le_bytes(crypto::random_bytes::<8>());
                    let delay = backoff(attempts, self.cfg.backoff_ms, self.cfg.max_backoff_secs * 1000, random) as i64;
                    tracing::info!(app = %app, attempts, retry_in_ms = delay, error = %error, "webhook refused receipts");
                    self.store.receipts_failed(app, attempts, now + delay, now, error).await?;
                    return Ok(());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_hmac_over_timestamp_newline_body() {
        // Computed independently: printf '1700000000000\n{"receipts":[]}' |
        //   openssl dgst -sha256 -hmac secret -binary | basenc --base64url | tr -d =
        let sig = signature(b"secret", "1700000000000", b"{\"receipts\":[]}");
        assert_eq!(sig, "zY277CFWTkmX_vOkDwgFPm0bvGtuwVWHHrZaw_7i1Zg");
    }

    #[test]
    fn backoff_doubles_to_a_cap_with_at_most_half_taken_off() {
        assert_eq!(backoff(1, 1000, 600_000, 0), 1000);
        assert_eq!(backoff(3, 1000, 600_000, 0), 4000);
        assert_eq!(backoff(30, 1000, 600_000, 0), 600_000);
        for r in [1u64, 77, 499, 500, 12345, u64::MAX] {
            let d = backoff(2, 1000, 600_000, r);
            assert!((1000..=2000).contains(&d), "{d}");
        }
    }

    #[test]
    fn a_batch_is_the_receipts_as_stored() {
        assert_eq!(batch_body(&["{\"a\":1}", "{\"b\":2}"]), "{\"receipts\":[{\"a\":1},{\"b\":2}]}");
    }
}
