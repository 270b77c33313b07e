//! Receipts and analytics (DESIGN §8). Every status change writes a journal entry in its own
//! transaction; the counter ([`read_journal`], then [`tally`] in one transaction) adds the
//! entries to the per-minute, per-hour and per-day counters, moves the receipts of apps whose
//! webhook is on into their outbox, and deletes the entries. A crash before that commit
//! leaves the entries to count again; after it, they are gone: each is counted exactly once.

use std::collections::HashMap;
use std::sync::Arc;

use herald_core::ids::{AppId, MessageId, TaskId};
use herald_core::ledger::{CountQuery, Counts, TaskCounts, count};
use herald_core::state::{Change, Channel, DeliveryStatus, Granularity, PushType};

use crate::tx::{Arg, Row, Tx, query_one, query_opt};
use crate::{StoreError, StoreResult, sql};

/// What a changed row gave back (`sql::changed!`): the status it left, its channel, and the
/// time the change took.
pub(crate) struct Changed {
    pub prior: Option<String>,
    pub channel: Option<String>,
    pub at: i64,
}

impl Changed {
    /// A change with no earlier status (a delivery created, a vendor's refusal).
    pub(crate) fn new(channel: Option<&str>, at: i64) -> Changed {
        Changed { prior: None, channel: channel.map(str::to_owned), at }
    }
}

pub(crate) fn changed(r: &dyn Row) -> StoreResult<Changed> {
    Ok(Changed { prior: r.opt_text(0)?, channel: r.opt_text(1)?, at: r.i64(2)? })
}

/// As [`changed`], with the row's message and device (`sql::changed_many!`).
pub(crate) fn changed_delivery(r: &dyn Row) -> StoreResult<(String, String, Changed)> {
    Ok((r.text(0)?, r.text(1)?, Changed { prior: r.opt_text(2)?, channel: r.opt_text(3)?, at: r.i64(4)? }))
}

/// Writes one journal entry.
pub(crate) async fn journal<X: Tx>(
    tx: &X,
    message: &str,
    device: Option<&str>,
    change: Change,
    c: &Changed,
    reason: Option<&str>,
) -> StoreResult<()> {
    if !tx.journal() {
        return Ok(());
    }
    let change = change.as_str();
    let args: [&dyn Arg; 7] = [&message, &device, &change, &c.prior, &c.channel, &reason, &c.at];
    tx.execute(&sql::JOURNAL, &args).await.map(|_| ())
}

/// Writes the journal entry of each row a statement changed (none when it changed none).
pub(crate) async fn journal_changed<X: Tx>(
    tx: &X,
    message: &str,
    device: &str,
    change: Change,
    rows: Vec<Changed>,
) -> StoreResult<()> {
    for mut c in rows {
        c.channel.get_or_insert_with(|| Channel::Own.as_str().to_owned());
        journal(tx, message, Some(device), change, &c, None).await?;
    }
    Ok(())
}

/// What the entries of one message are counted by; `app_id` is `None` for a control message
/// (a recall), whose entries are only deleted. None of it ever changes.
#[derive(Debug, Default)]
pub(crate) struct MessageDims {
    pub app_id: Option<String>,
    pub task_id: String,
    pub push_type: String,
    pub msg_key: String,
    pub target: Option<String>,
}

/// A device's platform and app version (empty when it is gone).
#[derive(Debug, Default)]
pub(crate) struct DeviceDims {
    pub platform: String,
    pub app_version: String,
}

/// The dimensions earlier counts looked up, so that the entries of one message (pushed,
/// sent, delivered, opened: often counted in different batches) and of one device cost one
/// lookup: a message's for as long as the cache holds them, a device's (its app version
/// changes) for [`DEVICE_DIMS_MS`]. Each map is emptied when it reaches [`CACHED_DIMS`].
#[derive(Default)]
pub(crate) struct DimsCache {
    messages: HashMap<String, Arc<MessageDims>>,
    devices: HashMap<String, (i64, Arc<DeviceDims>)>,
}

const DEVICE_DIMS_MS: i64 = 1_000;
const CACHED_DIMS: usize = 50_000;

/// One journal entry with what it is counted by (shared by the entries of one message, or of
/// one device).
#[derive(Debug)]
pub(crate) struct Entry {
    pub seq: i64,
    pub message_id: String,
    pub device_id: Option<String>,
    pub change: Option<Change>,
    pub prior: Option<DeliveryStatus>,
    pub channel: String,
    pub reason: Option<String>,
    pub at: i64,
    pub message: Arc<MessageDims>,
    pub device: Arc<DeviceDims>,
    /// The app's webhook is on: the entry (unless `pushed`) becomes a receipt.
    pub receipt: bool,
    /// A broadcast's `pushed`: its audience by (platform, app version, channel).
    pub audience: Vec<(String, String, String, i64)>,
}

fn entry(r: &dyn Row) -> StoreResult<Entry> {
    Ok(Entry {
        seq: r.i64(0)?,
        message_id: r.text(1)?,
        device_id: r.opt_text(2)?,
        change: Change::parse(&r.text(3)?),
        prior: r.opt_text(4)?.as_deref().and_then(DeliveryStatus::parse),
        channel: r.opt_text(5)?.unwrap_or_else(|| Channel::Own.as_str().to_owned()),
        reason: r.opt_text(6)?,
        at: r.i64(7)?,
        message: Arc::default(),
        device: Arc::default(),
        receipt: false,
        audience: Vec::new(),
    })
}

fn message_dims(r: &dyn Row) -> StoreResult<MessageDims> {
    Ok(MessageDims {
        app_id: Some(r.text(0)?),
        task_id: r.opt_text(1)?.unwrap_or_default(),
        push_type: r.opt_text(2)?.unwrap_or_default(),
        msg_key: r.opt_text(3)?.unwrap_or_default(),
        target: r.opt_text(4)?,
    })
}

/// A message's dimensions: a broadcast's or a notification's (by the id's kind first).
async fn find_message<X: Tx>(tx: &X, id: &str) -> StoreResult<MessageDims> {
    let [first, second] = match MessageId::new(id).is_broadcast() {
        true => [&sql::BROADCAST_DIMS, &sql::MESSAGE_DIMS],
        false => [&sql::MESSAGE_DIMS, &sql::BROADCAST_DIMS],
    };
    for statement in [first, second] {
        if let Some(dims) = query_opt(tx, statement, &[&id], message_dims).await? {
            return Ok(dims);
        }
    }
    Ok(MessageDims::default())
}

impl DimsCache {
    async fn message<X: Tx>(&mut self, tx: &X, id: &str) -> StoreResult<Arc<MessageDims>> {
        if let Some(m) = self.messages.get(id) {
            return Ok(m.clone());
        }
        if self.messages.len() >= CACHED_DIMS {
            self.messages.clear();
        }
        let m = Arc::new(find_message(tx, id).await?);
        self.messages.insert(id.to_owned(), m.clone());
        Ok(m)
    }

    async fn device<X: Tx>(&mut self, tx: &X, id: &str, now: i64) -> StoreResult<Arc<DeviceDims>> {
        match self.devices.get(id) {
            Some((at, d)) if now - at < DEVICE_DIMS_MS => return Ok(d.clone()),
            _ => {}
        }
        if self.devices.len() >= CACHED_DIMS {
            self.devices.clear();
        }
        let d = query_opt(tx, &sql::DEVICE_DIMS, &[&id], |r| {
            Ok(DeviceDims { platform: r.text(0)?, app_version: r.opt_text(1)?.unwrap_or_default() })
        })
        .await?;
        let d = Arc::new(d.unwrap_or_default());
        self.devices.insert(id.to_owned(), (now, d.clone()));
        Ok(d)
    }
}

/// The oldest `limit` journal entries, each with what it is counted by (looked up through
/// `cache`) and whether its app's webhook is on (looked up once per app and call).
pub(crate) async fn read_journal<X: Tx>(
    tx: &X,
    limit: usize,
    cache: &mut DimsCache,
    now: i64,
) -> StoreResult<Vec<Entry>> {
    let mut entries = tx.query(&sql::JOURNAL_HEAD, &[&(limit as i64)], entry).await?;
    let mut webhooks: HashMap<String, bool> = HashMap::new();
    for e in entries.iter_mut() {
        e.message = cache.message(tx, &e.message_id).await?;
        if let Some(app) = &e.message.app_id {
            e.receipt = match webhooks.get(app) {
                Some(on) => *on,
                None => {
                    let on = query_one(tx, &sql::WEBHOOK_ON, &[&app.as_str()], |r| r.i64(0)).await? > 0;
                    webhooks.insert(app.clone(), on);
                    on
                }
            };
        }
        if let Some(d) = &e.device_id {
            e.device = cache.device(tx, d, now).await?;
        } else if e.change == Some(Change::Pushed) && e.message.app_id.is_some() {
            let mid = e.message_id.as_str();
            e.audience = tx
                .query(&sql::BROADCAST_AUDIENCE_BY_VERSION, &[&mid], |r| {
                    Ok((r.text(0)?, r.text(1)?, r.text(2)?, r.i64(3)?))
                })
                .await?;
        }
    }
    Ok(entries)
}

/// The granularity of a task's own counters (minute buckets, `migrations/*/0014`); rows of
/// `minute`, `hour` and `day` are the app's, with task `''`.
const TASK_ROWS: &str = "task";

/// A counter row: (granularity, bucket, [app, platform, app version, channel, push type,
/// task]), borrowed from the entries counted.
type Key<'a> = (&'a str, i64, [&'a str; 6]);

/// Adds `c` to the app's rows of every granularity and to the task's own row.
fn add<'a>(counts: &mut HashMap<Key<'a>, Counts>, e: &'a Entry, dims: [&'a str; 3], c: Counts) {
    let Some(app) = e.message.app_id.as_deref() else { return };
    if c.is_zero() {
        return;
    }
    let [platform, version, channel] = dims;
    let (push_type, task) = (e.message.push_type.as_str(), e.message.task_id.as_str());
    for &g in Granularity::ALL {
        let key = (g.as_str(), g.bucket(e.at), [app, platform, version, channel, push_type, ""]);
        counts.entry(key).or_default().add(&c);
    }
    if !task.is_empty() {
        let key = (TASK_ROWS, Granularity::Minute.bucket(e.at), [app, platform, version, channel, push_type, task]);
        counts.entry(key).or_default().add(&c);
    }
}

/// A receipt as the webhook gets it (docs/receipts.md).
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct Receipt<'a> {
    message_id: &'a str,
    msg_key: &'a str,
    task_id: &'a str,
    target: Option<&'a str>,
    device_id: Option<&'a str>,
    status: &'a str,
    channel: &'a str,
    reason: Option<&'a str>,
    at: i64,
}

/// Counts `entries` (as [`read_journal`] read them), queues their receipts and deletes
/// them, in the caller's transaction. Returns how many receipts were queued.
pub(crate) async fn tally<X: Tx>(tx: &X, entries: &[Entry], now: i64) -> StoreResult<usize> {
    let mut counts: HashMap<Key<'_>, Counts> = HashMap::new();
    let mut receipts = 0;
    for e in entries {
        let Some(change) = e.change else { continue };
        if change == Change::Pushed && e.device_id.is_none() {
            for (platform, version, channel, n) in &e.audience {
                add(&mut counts, e, [platform, version, channel], count(change, None).times(*n));
            }
            continue;
        }
        add(&mut counts, e, [&e.device.platform, &e.device.app_version, &e.channel], count(change, e.prior));
        let m = &e.message;
        if let (Some(app), true, false) = (&m.app_id, e.receipt, change == Change::Pushed) {
            let receipt = Receipt {
                message_id: &e.message_id,
                msg_key: &m.msg_key,
                task_id: &m.task_id,
                target: m.target.as_deref(),
                device_id: e.device_id.as_deref(),
                status: change.as_str(),
                channel: &e.channel,
                reason: e.reason.as_deref(),
                at: e.at,
            };
            let receipt = serde_json::to_string(&receipt).map_err(|e| StoreError::Internal(e.to_string()))?;
            tx.execute(&sql::INSERT_RECEIPT, &[&app.as_str(), &receipt, &now]).await?;
            receipts += 1;
        }
    }
    for ((granularity, bucket, [app, platform, version, channel, push_type, task]), c) in counts {
        let args: [&dyn Arg; 15] = [
            &app,
            &granularity,
            &bucket,
            &platform,
            &version,
            &channel,
            &push_type,
            &task,
            &c.pushed,
            &c.sent,
            &c.arrived,
            &c.opened,
            &c.ignored,
            &c.expired,
            &c.failed,
        ];
        tx.execute(&sql::ADD_COUNTS, &args).await?;
    }
    let seqs: Vec<i64> = entries.iter().map(|e| e.seq).collect();
    let mut deleted = 0;
    for (first, last) in runs(&seqs) {
        deleted += tx.execute(&sql::JOURNAL_DONE, &[&first, &last]).await?;
    }
    // Another counter deleted some of them meanwhile (a node that outlived its lease): its
    // transaction counted them, so this one must not (the caller's transaction rolls back).
    if deleted != seqs.len() as u64 {
        return Err(StoreError::Unavailable(format!(
            "{} of {} journal entries were counted by another node meanwhile; this count is rolled back",
            seqs.len() as u64 - deleted,
            seqs.len()
        )));
    }
    Ok(receipts)
}

fn counts_at(r: &dyn Row, first: usize) -> StoreResult<Counts> {
    Ok(Counts {
        pushed: r.i64(first)?,
        sent: r.i64(first + 1)?,
        arrived: r.i64(first + 2)?,
        opened: r.i64(first + 3)?,
        ignored: r.i64(first + 4)?,
        expired: r.i64(first + 5)?,
        failed: r.i64(first + 6)?,
    })
}

/// The arguments of a count query ($1..$8, `sql::counted!` and `sql::counted_tasks!`): the
/// app, the granularity of the rows read, the span's bounds, the query's dimension filters
/// and the task filter; then `extra`.
fn query_args<'a>(
    q: &'a CountQuery,
    [app, g, from, to, task]: [&'a dyn Arg; 5],
    extra: &[&'a dyn Arg],
) -> Vec<&'a dyn Arg> {
    let mut args: Vec<&dyn Arg> = vec![app, g, from, to, &q.platform, &q.channel, &q.push_type, task];
    args.extend_from_slice(extra);
    args
}

/// The rows a total or a series reads: the app's at the query's granularity, or one task's
/// own (minute) rows; and the task filter ('' for the app's rows).
fn rows_of(q: &CountQuery) -> (&'static str, &str) {
    match &q.task_id {
        Some(task) => (TASK_ROWS, task.as_str()),
        None => (q.granularity.as_str(), ""),
    }
}

pub(crate) async fn total<X: Tx>(tx: &X, q: &CountQuery) -> StoreResult<Counts> {
    let app = q.app_id.as_str();
    let (g, task) = rows_of(q);
    let args = query_args(q, [&app, &g, &q.from, &q.to, &task], &[]);
    query_one(tx, &sql::COUNTS_TOTAL, &args, |r| counts_at(r, 0)).await
}

pub(crate) async fn series<X: Tx>(tx: &X, q: &CountQuery, limit: usize) -> StoreResult<Vec<(i64, Counts)>> {
    let (app, size, limit) = (q.app_id.as_str(), q.granularity.millis(), limit as i64);
    let (g, task) = rows_of(q);
    let args = query_args(q, [&app, &g, &q.from, &q.to, &task], &[&size, &limit]);
    tx.query(&sql::COUNTS_SERIES, &args, |r| Ok((r.i64(0)?, counts_at(r, 1)?))).await
}

/// The tasks created in the query's span that have counts, newest first, each with its
/// counts over its life: (how many, the page).
pub(crate) async fn tasks<X: Tx>(
    tx: &X,
    q: &CountQuery,
    offset: u64,
    limit: u64,
) -> StoreResult<(u64, Vec<TaskCounts>)> {
    let (app, g, limit, offset) = (q.app_id.as_str(), TASK_ROWS, limit as i64, offset as i64);
    let (first, after) = (TaskId::first_at(q.from), TaskId::first_at(q.to));
    let task = q.task_id.as_deref();
    let filters = [&app as &dyn Arg, &g, &first, &after, &task];
    let total = query_one(tx, &sql::COUNTED_TASKS, &query_args(q, filters, &[]), |r| r.i64(0)).await?;
    let args = query_args(q, filters, &[&limit, &offset]);
    let page =
        tx.query(&sql::COUNTS_BY_TASK, &args, |r| Ok((r.text(0)?, r.i64(1)?, r.i64(2)?, counts_at(r, 3)?))).await?;
    let mut out = Vec::with_capacity(page.len());
    for (task, first, last, counts) in page {
        let mut t = head(tx, app, &task).await?;
        (t.first, t.last, t.counts) = (first, last, counts);
        out.push(t);
    }
    Ok((total as u64, out))
}

async fn head<X: Tx>(tx: &X, app: &str, task: &str) -> StoreResult<TaskCounts> {
    let head = query_opt(tx, &sql::TASK_HEAD, &[&task, &app], |r| Ok((r.opt_text(0)?, r.text(1)?, r.i64(2)?))).await?;
    Ok(TaskCounts {
        task_id: TaskId::new(task.to_owned()),
        task_name: head.as_ref().and_then(|h| h.0.clone()),
        push_type: head.as_ref().and_then(|h| PushType::parse(&h.1)),
        created_at: head.as_ref().map(|h| h.2),
        first: 0,
        last: 0,
        counts: Counts::default(),
    })
}

/// A task's counts over its life (its minute counters); `None` when nothing was counted.
pub(crate) async fn task<X: Tx>(tx: &X, app: &AppId, task: &TaskId) -> StoreResult<Option<TaskCounts>> {
    let (app, task) = (app.as_str(), task.as_str());
    let row =
        query_one(tx, &sql::TASK_COUNTS, &[&app, &task], |r| Ok((r.opt_i64(0)?, r.opt_i64(1)?, counts_at(r, 2)?)))
            .await?;
    let (Some(first), Some(last), counts) = row else { return Ok(None) };
    let mut t = head(tx, app, task).await?;
    (t.first, t.last, t.counts) = (first, last, counts);
    Ok(Some(t))
}

/// Drops the app counters of `granularity` older than `before`; how many rows.
pub(crate) async fn drop_counts<X: Tx>(tx: &X, granularity: Granularity, before: i64) -> StoreResult<u64> {
    let mut dropped = 0;
    for app in tx.query(&sql::APPS, &[], |r| r.text(0)).await? {
        dropped += tx.execute(&sql::DROP_COUNTS, &[&app, &granularity.as_str(), &before]).await?;
    }
    Ok(dropped)
}

/// Drops the counters of tasks created before `before`; how many rows.
pub(crate) async fn drop_task_counts<X: Tx>(tx: &X, before: i64) -> StoreResult<u64> {
    let first_kept = TaskId::first_at(before);
    let mut dropped = 0;
    for app in tx.query(&sql::APPS, &[], |r| r.text(0)).await? {
        dropped += tx.execute(&sql::DROP_TASK_COUNTS, &[&app, &first_kept]).await?;
    }
    Ok(dropped)
}

/// Runs of consecutive numbers in ascending `seqs`, as (first, last): the rows read can be
/// deleted a range at a time without touching a row committed after the read in a gap.
pub(crate) fn runs(seqs: &[i64]) -> Vec<(i64, i64)> {
    let mut out: Vec<(i64, i64)> = Vec::new();
    for &s in seqs {
        match out.last_mut() {
            Some((_, last)) if *last + 1 == s => *last = s,
            _ => out.push((s, s)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::runs;

    #[test]
    fn runs_split_at_gaps() {
        assert_eq!(runs(&[1, 2, 3, 5, 6, 9]), vec![(1, 3), (5, 6), (9, 9)]);
        assert!(runs(&[]).is_empty());
    }
}
