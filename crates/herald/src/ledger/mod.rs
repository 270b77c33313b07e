//! Receipts and analytics on a node (DESIGN §8): the counter that turns the store's journal
//! of status changes into counters and receipts ([`Ledger::tally`], under a lease: one node
//! of a cluster at a time), the retention of the counters, and the receipt sender
//! ([`webhook`]). All of it runs beside delivery, never in its path: a delivery commits its
//! journal entry with its status, and everything else reads the journal afterwards.

pub mod vendor;
pub mod webhook;

use std::sync::Arc;
use std::time::Duration;

use herald_core::crypto::MasterKey;
use herald_core::ledger::TaskCounted;
use herald_core::state::{Granularity, PushType};
use herald_store::Store;
use serde::Deserialize;

use crate::metrics::Metrics;
use crate::shutdown::Signal;

/// The `[analytics]` table of the configuration.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AnalyticsConfig {
    /// Off: status changes are not journalled, so nothing is counted and no receipt is
    /// sent (the store does one write less per change).
    pub enabled: bool,
    /// How often the journal is counted (ms); a minute's counts are complete this long
    /// after it ends (plus the time to count a backlog).
    pub flush_ms: u64,
    /// Journal entries counted in one transaction. The changes of one push (pushed, sent,
    /// delivered) counted together add to its task's counter row once, not three times; on
    /// SQLite the writer, between group commits, holds the pushes behind the count's writes
    /// (docs/PERFORMANCE.md).
    pub batch: usize,
    /// Days each granularity's counters are kept.
    pub minute_retention_days: u64,
    pub hour_retention_days: u64,
    pub day_retention_days: u64,
    /// Days a task's own counters are kept, from the task's creation.
    pub task_retention_days: u64,
    /// The push types whose tasks have counters of their own (the task list, the task
    /// detail, totals and series filtered by `taskId`): MPS's, Multiple and Broadcast. A
    /// Simple or Template push (one task per call) would add a counter row per push.
    #[serde(deserialize_with = "push_types")]
    pub task_counts: TaskCounted,
}

/// A list of push type names (`analytics.task_counts`), refused in our words when one is
/// not a push type.
fn push_types<'de, D: serde::Deserializer<'de>>(d: D) -> Result<TaskCounted, D::Error> {
    let names = Vec::<String>::deserialize(d)?;
    let mut types = Vec::with_capacity(names.len());
    for name in &names {
        match PushType::parse(name) {
            Some(t) => types.push(t),
            None => {
                return Err(serde::de::Error::custom(format!(
                    "analytics.task_counts: {name:?} is not a push type (simple, template, multiple, broadcast)"
                )));
            }
        }
    }
    Ok(TaskCounted::of(&types))
}

impl Default for AnalyticsConfig {
    fn default() -> Self {
        AnalyticsConfig {
            enabled: true,
            flush_ms: 1000,
            batch: 1000,
            minute_retention_days: 7,
            hour_retention_days: 90,
            day_retention_days: 730,
            task_retention_days: 90,
            task_counts: TaskCounted::MPS,
        }
    }
}

impl AnalyticsConfig {
    pub fn retention_days(&self, g: Granularity) -> u64 {
        match g {
            Granularity::Minute => self.minute_retention_days,
            Granularity::Hour => self.hour_retention_days,
            Granularity::Day => self.day_retention_days,
        }
    }

    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if !(10..=60_000).contains(&self.flush_ms) {
            out.push(
                "analytics.flush_ms must be between 10 and 60000 (counts are flushed at least each minute)".into(),
            );
        }
        if !(1..=100_000).contains(&self.batch) {
            out.push("analytics.batch must be between 1 and 100000".into());
        }
        if self.minute_retention_days < 1 || self.hour_retention_days < 1 || self.task_retention_days < 1 {
            out.push(
                "analytics.minute_retention_days, hour_retention_days and task_retention_days must be at least 1"
                    .into(),
            );
        }
        if self.day_retention_days < 90 {
            out.push("analytics.day_retention_days must be at least 90 (the longest span a query covers)".into());
        }
        out
    }
}

/// The `[receipts]` table of the configuration.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReceiptsConfig {
    /// Most receipts in one POST.
    pub batch_size: usize,
    /// Longest a receipt waits for a batch to fill before it is sent (ms).
    pub batch_delay_ms: u64,
    /// A receipt not acknowledged this long after it was queued is given up (listed in
    /// `/v1/receipts/failures`, replayable).
    pub max_age_secs: u64,
    /// Seconds a webhook has to answer a POST.
    pub timeout_secs: u64,
    /// The first retry's delay (ms); each failure doubles it, up to `max_backoff_secs`, with
    /// up to 50% taken off at random (jitter).
    pub backoff_ms: u64,
    pub max_backoff_secs: u64,
    /// Apps whose webhooks one node posts to at once.
    pub concurrency: usize,
    /// Longest accepted webhook URL (characters).
    pub max_url_chars: usize,
}

impl Default for ReceiptsConfig {
    fn default() -> Self {
        ReceiptsConfig {
            batch_size: 500,
            batch_delay_ms: 1000,
            max_age_secs: 86_400,
            timeout_secs: 10,
            backoff_ms: 1000,
            max_backoff_secs: 600,
            concurrency: 32,
            max_url_chars: 2048,
        }
    }
}

impl ReceiptsConfig {
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if !(1..=1000).contains(&self.batch_size) {
            out.push("receipts.batch_size must be between 1 and 1000".into());
        }
        if self.batch_delay_ms > 60_000 {
            out.push("receipts.batch_delay_ms must be at most 60000".into());
        }
        if self.max_age_secs < 1 {
            out.push("receipts.max_age_secs must be at least 1".into());
        }
        if !(1..=120).contains(&self.timeout_secs) {
            out.push("receipts.timeout_secs must be between 1 and 120".into());
        }
        if self.backoff_ms < 1 || self.max_backoff_secs < 1 {
            out.push("receipts.backoff_ms and max_backoff_secs must be at least 1".into());
        }
        if !(1..=1024).contains(&self.concurrency) {
            out.push("receipts.concurrency must be between 1 and 1024".into());
        }
        if !(16..=8192).contains(&self.max_url_chars) {
            out.push("receipts.max_url_chars must be between 16 and 8192".into());
        }
        out
    }
}

const TALLY_LEASE: &str = "analytics-tally";

/// Counts the journal every `flush_ms` (at once again while a whole batch was found), under
/// a lease; drops counters past their retention once an hour.
pub async fn run_tally(
    store: Arc<dyn Store>,
    metrics: Arc<Metrics>,
    node: String,
    cfg: AnalyticsConfig,
    shutdown: Signal,
) {
    let every = Duration::from_millis(cfg.flush_ms);
    let mut ticks = crate::shutdown::ticks(every);
    let mut next_retention = 0;
    let mut held = false;
    while shutdown.every(&mut ticks).await {
        let now = herald_core::now_ms();
        let ttl = (3 * cfg.flush_ms).max(10_000) as i64;
        let holds = store.try_lease(TALLY_LEASE, &node, now, ttl).await.unwrap_or_else(|e| {
            tracing::warn!(error = %e, "cannot take the analytics lease");
            false
        });
        if holds != held {
            tracing::info!(lease = TALLY_LEASE, held = holds, "lease changed hands");
            held = holds;
        }
        if !holds {
            continue;
        }
        let mut renewed = now;
        loop {
            // A backlog is counted batch after batch: the lease is renewed as it goes, and
            // the counting stops if another node took it.
            let at = herald_core::now_ms();
            if at - renewed > ttl / 3 {
                renewed = at;
                if !store.try_lease(TALLY_LEASE, &node, at, ttl).await.unwrap_or(false) {
                    break;
                }
            }
            match store.tally(cfg.batch, herald_core::now_ms(), cfg.task_counts).await {
                Ok((n, receipts)) => {
                    metrics.changes_counted.add(n as u64);
                    if n > 0 {
                        tracing::debug!(entries = n, receipts, "journal counted");
                    }
                    if n < cfg.batch || shutdown.is_set() {
                        break;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "counting the journal failed; tried again next tick");
                    break;
                }
            }
        }
        if now >= next_retention {
            next_retention = now + 3_600_000;
            for g in Granularity::ALL {
                let before = g.bucket(now) - cfg.retention_days(*g) as i64 * 86_400_000;
                match store.drop_counts(*g, before).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(granularity = %g, rows = n, "counters past their retention dropped"),
                    Err(e) => tracing::warn!(error = %e, "dropping old counters failed"),
                }
            }
            match store.drop_task_counts(now - cfg.task_retention_days as i64 * 86_400_000).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(rows = n, "counters of tasks past their retention dropped"),
                Err(e) => tracing::warn!(error = %e, "dropping old task counters failed"),
            }
        }
    }
}

/// Starts the counter and the receipt sender of a node configured by `cfg`.
pub fn spawn(
    store: Arc<dyn Store>,
    master: Arc<MasterKey>,
    metrics: Arc<Metrics>,
    cfg: &crate::config::Config,
    client: herald_channels::HttpsClient,
    shutdown: Signal,
) -> Vec<tokio::task::JoinHandle<()>> {
    let node = cfg.node_id.clone();
    let tally =
        tokio::spawn(run_tally(store.clone(), metrics.clone(), node.clone(), cfg.analytics.clone(), shutdown.clone()));
    let sender = webhook::Sender::new(store, master, metrics, node, cfg.receipts.clone(), client);
    vec![tally, tokio::spawn(sender.run(shutdown))]
}
