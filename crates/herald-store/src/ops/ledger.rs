//! Receipts and analytics (DESIGN §8). Every status change writes a journal entry in its own
//! transaction; the counter ([`read_journal`], then [`tally`] in one transaction) adds the
//! entries to the per-minute, per-hour and per-day counters, moves the receipts of apps whose
//! webhook is on into their outbox, and deletes the entries. A crash before that commit
//! leaves the entries to count again; after it, they are gone: each is counted exactly once.

use std::sync::Arc;

use foldhash::HashMap;
use herald_core::ids::{AppId, MessageId, TaskId};
use herald_core::ledger::{CountQuery, Counts, TaskCounted, TaskCounts, count};
use herald_core::model::{CommittedPush, NewPush, TargetOutcome};
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
/// changes) for [`DEVICE_DIMS_MS`]. A push that stores messages puts theirs in at once
/// ([`DimsCache::remember_push`]) when this node counted lately (in a cluster one node
/// counts): counting them then looks nothing up. Each map is emptied when it reaches
/// [`CACHED_DIMS`]. Its lock is never held across a query: a push's writer never waits for
/// a count's reads.
#[derive(Default)]
pub(crate) struct DimsCache {
    maps: parking_lot::Mutex<DimsMaps>,
    /// When this node last read the journal (Unix ms).
    counted_at: std::sync::atomic::AtomicI64,
}

/// A push primes the cache only if this node read the journal within this time (twice the
/// longest `analytics.flush_ms`).
const COUNTING_MS: i64 = 120_000;

#[derive(Default)]
struct DimsMaps {
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
    async fn message<X: Tx>(&self, tx: &X, id: &str) -> StoreResult<Arc<MessageDims>> {
        if let Some(m) = self.maps.lock().messages.get(id) {
            return Ok(m.clone());
        }
        let m = Arc::new(find_message(tx, id).await?);
        self.maps.lock().remember_message(id.to_owned(), m.clone());
        Ok(m)
    }

    /// Remembers the dimensions of the messages `push` stored (what [`MESSAGE_DIMS`] would
    /// read of them once committed). A replay stored nothing.
    ///
    /// [`MESSAGE_DIMS`]: sql::MESSAGE_DIMS
    pub(crate) fn remember_push(&self, push: &NewPush, committed: &CommittedPush) {
        let t = &push.task;
        let counting = t.created_at - self.counted_at.load(std::sync::atomic::Ordering::Relaxed) < COUNTING_MS;
        if committed.replayed || !counting {
            return;
        }
        let stored = push.messages.iter().zip(&committed.outcomes).filter_map(|(m, (_, outcome))| match outcome {
            TargetOutcome::Accepted { .. } => Some(m),
            TargetOutcome::Undeliverable | TargetOutcome::Duplicate { .. } => None,
        });
        let dims: Vec<(String, Arc<MessageDims>)> = stored
            .map(|m| {
                let dims = MessageDims {
                    app_id: Some(t.app_id.as_str().to_owned()),
                    task_id: t.task_id.as_str().to_owned(),
                    push_type: t.push_type.as_str().to_owned(),
                    msg_key: m.msg_key.clone(),
                    target: Some(m.target.clone()),
                };
                (m.message_id.as_str().to_owned(), Arc::new(dims))
            })
            .collect();
        let mut maps = self.maps.lock();
        for (id, dims) in dims {
            maps.remember_message(id, dims);
        }
    }

    async fn device<X: Tx>(&self, tx: &X, id: &str, now: i64) -> StoreResult<Arc<DeviceDims>> {
        match self.maps.lock().devices.get(id) {
            Some((at, d)) if now - at < DEVICE_DIMS_MS => return Ok(d.clone()),
            _ => {}
        }
        let d = query_opt(tx, &sql::DEVICE_DIMS, &[&id], |r| {
            Ok(DeviceDims { platform: r.text(0)?, app_version: r.opt_text(1)?.unwrap_or_default() })
        })
        .await?;
        let d = Arc::new(d.unwrap_or_default());
        let mut maps = self.maps.lock();
        if maps.devices.len() >= CACHED_DIMS {
            maps.devices.clear();
        }
        maps.devices.insert(id.to_owned(), (now, d.clone()));
        Ok(d)
    }
}

impl DimsMaps {
    fn remember_message(&mut self, id: String, dims: Arc<MessageDims>) {
        if self.messages.len() >= CACHED_DIMS {
            self.messages.clear();
        }
        self.messages.insert(id, dims);
    }
}

/// The oldest `limit` journal entries, each with what it is counted by (looked up through
/// `cache`) and whether its app's webhook is on (looked up once per app and call).
pub(crate) async fn read_journal<X: Tx>(tx: &X, limit: usize, cache: &DimsCache, now: i64) -> StoreResult<Vec<Entry>> {
    cache.counted_at.store(now, std::sync::atomic::Ordering::Relaxed);
    let mut entries = tx.query(&sql::JOURNAL_HEAD, &[&(limit as i64)], entry).await?;
    let mut webhooks: HashMap<String, bool> = HashMap::default();
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
type Key<'a> = (&'static str, i64, [&'a str; 6]);

/// Adds `c` to the app's minute row and, when its push type is one of `tasks`, to the task's
/// own row (hour and day rows are summed from the minute rows at the end of [`plan`]).
fn add<'a>(counts: &mut HashMap<Key<'a>, Counts>, tasks: TaskCounted, e: &'a Entry, dims: [&'a str; 3], c: Counts) {
    let Some(app) = e.message.app_id.as_deref() else { return };
    if c.is_zero() {
        return;
    }
    let [platform, version, channel] = dims;
    let (push_type, task) = (e.message.push_type.as_str(), e.message.task_id.as_str());
    let minute = Granularity::Minute.bucket(e.at);
    counts.entry((MINUTE, minute, [app, platform, version, channel, push_type, ""])).or_default().add(&c);
    if !task.is_empty() && tasks.contains_name(push_type) {
        counts.entry((TASK_ROWS, minute, [app, platform, version, channel, push_type, task])).or_default().add(&c);
    }
}

const MINUTE: &str = Granularity::Minute.as_str();

/// The entries of one message on one device by one channel in one minute (a push's pushed,
/// sent and delivered): they add to the same counter rows, and their dimensions are the same
/// cached values, so they are summed first by those values' addresses, a key far cheaper to
/// hash and compare than the rows' strings.
type Source<'a> = (usize, usize, &'a str, i64);

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

/// What counting some journal entries writes: built by [`plan`] from what [`read_journal`]
/// read, written by [`apply`]. On SQLite the reading and the planning run on a reader, so
/// that the writer, which every push waits for, only writes.
#[derive(Debug)]
pub(crate) struct Tally {
    /// A counter row (granularity, bucket, [app, platform, app version, channel, push
    /// type, task]) and what to add to it.
    counts: Vec<(&'static str, i64, [String; 6], Counts)>,
    /// (app, receipt as JSON), in journal order.
    receipts: Vec<(String, String)>,
    /// The entries counted, as runs of consecutive seqs, and how many there are.
    runs: Vec<(i64, i64)>,
    pub entries: usize,
}

impl Tally {
    pub(crate) fn receipts(&self) -> usize {
        self.receipts.len()
    }
}

/// Sums `entries` (as [`read_journal`] read them) by counter row (a task's own only when its
/// push type is one of `tasks`) and turns those of apps whose webhook is on into receipts.
pub(crate) fn plan(entries: &[Entry], tasks: TaskCounted) -> StoreResult<Tally> {
    let mut sources: HashMap<Source<'_>, (&Entry, Counts)> = HashMap::default();
    let mut rows: HashMap<Key<'_>, Counts> = HashMap::default();
    let mut receipts = Vec::new();
    for e in entries {
        let Some(change) = e.change else { continue };
        if change == Change::Pushed && e.device_id.is_none() {
            for (platform, version, channel, n) in &e.audience {
                add(&mut rows, tasks, e, [platform, version, channel], count(change, None).times(*n));
            }
            continue;
        }
        let (message, device) = (Arc::as_ptr(&e.message) as usize, Arc::as_ptr(&e.device) as usize);
        let source = (message, device, e.channel.as_str(), Granularity::Minute.bucket(e.at));
        sources.entry(source).or_insert((e, Counts::default())).1.add(&count(change, e.prior));
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
            receipts.push((app.clone(), receipt));
        }
    }
    for (e, c) in sources.into_values() {
        add(&mut rows, tasks, e, [&e.device.platform, &e.device.app_version, &e.channel], c);
    }
    let mut coarser: HashMap<Key<'_>, Counts> = HashMap::default();
    for ((g, minute, dims), c) in &rows {
        if *g == MINUTE {
            for coarse in [Granularity::Hour, Granularity::Day] {
                coarser.entry((coarse.as_str(), coarse.bucket(*minute), *dims)).or_default().add(c);
            }
        }
    }
    let mut counts: Vec<_> =
        rows.into_iter().chain(coarser).map(|((g, bucket, key), c)| (g, bucket, key.map(str::to_owned), c)).collect();
    // In key order: the writer walks each B-tree once, forward.
    counts.sort_unstable_by(|a, b| {
        (&a.2[0], a.0, &a.2[5], a.1, &a.2[1..5]).cmp(&(&b.2[0], b.0, &b.2[5], b.1, &b.2[1..5]))
    });
    let seqs: Vec<i64> = entries.iter().map(|e| e.seq).collect();
    Ok(Tally { counts, receipts, runs: runs(&seqs), entries: entries.len() })
}

/// Writes `tally` in the caller's transaction: adds to the counters, queues the receipts and
/// deletes the entries counted. Fails (and the caller's transaction must roll back) when
/// another counter deleted some of them meanwhile.
pub(crate) async fn apply<X: Tx>(tx: &X, tally: &Tally, now: i64) -> StoreResult<()> {
    for (app, receipt) in &tally.receipts {
        tx.execute(&sql::INSERT_RECEIPT, &[&app.as_str(), &receipt.as_str(), &now]).await?;
    }
    for (granularity, bucket, [app, platform, version, channel, push_type, task], c) in &tally.counts {
        let args: [&dyn Arg; 15] = [
            &app.as_str(),
            granularity,
            bucket,
            &platform.as_str(),
            &version.as_str(),
            &channel.as_str(),
            &push_type.as_str(),
            &task.as_str(),
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
    let mut deleted = 0;
    for (first, last) in &tally.runs {
        deleted += tx.execute(&sql::JOURNAL_DONE, &[first, last]).await?;
    }
    // Another counter deleted some of them meanwhile (a node that outlived its lease): its
    // transaction counted them, so this one must not.
    if deleted != tally.entries as u64 {
        return Err(StoreError::Unavailable(format!(
            "{} of {} journal entries were counted by another node meanwhile; this count is rolled back",
            tally.entries as u64 - deleted,
            tally.entries
        )));
    }
    Ok(())
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
    use std::sync::Arc;

    use herald_core::ledger::{Counts, TaskCounted};
    use herald_core::state::{Change, DeliveryStatus};

    use super::{DeviceDims, Entry, MessageDims, plan, runs};

    #[test]
    fn runs_split_at_gaps() {
        assert_eq!(runs(&[1, 2, 3, 5, 6, 9]), vec![(1, 3), (5, 6), (9, 9)]);
        assert!(runs(&[]).is_empty());
    }

    fn change(seq: i64, message: &Arc<MessageDims>, device: &Arc<DeviceDims>, c: Change, at: i64) -> Entry {
        let prior = match c {
            Change::Delivered => Some(DeliveryStatus::Sent),
            _ => None,
        };
        Entry {
            seq,
            message_id: format!("m{seq}"),
            device_id: Some("d1".into()),
            change: Some(c),
            prior,
            channel: "own".into(),
            reason: None,
            at,
            message: message.clone(),
            device: device.clone(),
            receipt: seq % 2 == 0,
            audience: Vec::new(),
        }
    }

    /// A push's three changes, and a second message of the same task whose dimensions are
    /// another (equal) value, add to one task row and one app row per granularity; a change
    /// in the next hour to rows of its own; pushed is never a receipt.
    #[test]
    fn a_batch_sums_each_counter_row_once() {
        let dims = |msg: &str| {
            Arc::new(MessageDims {
                app_id: Some("app".into()),
                task_id: "t1".into(),
                push_type: "simple".into(),
                msg_key: msg.into(),
                target: Some("u1".into()),
            })
        };
        let (first, second) = (dims("k1"), dims("k2"));
        let device = Arc::new(DeviceDims { platform: "android".into(), app_version: "1.0".into() });
        // 2027-01-15 08:01 UTC: the second minute of an hour, far from a day boundary.
        let minute = 1_800_000_060_000;
        let entries = vec![
            change(1, &first, &device, Change::Pushed, minute + 1),
            change(2, &first, &device, Change::Sent, minute + 2),
            change(3, &second, &device, Change::Pushed, minute + 3),
            change(4, &first, &device, Change::Delivered, minute + 4),
            change(5, &second, &device, Change::Sent, minute + 3_600_000),
        ];
        let tally = plan(&entries, TaskCounted::ALL).unwrap();
        assert_eq!(tally.entries, 5);
        assert_eq!(tally.runs, vec![(1, 5)]);
        assert_eq!(tally.receipts(), 2, "sent (2) and delivered (4) of webhook entries; pushed never");
        let row = |g: &str, task: &str, bucket: i64| {
            tally
                .counts
                .iter()
                .filter(|(rg, rb, key, _)| *rg == g && *rb == bucket && key[5] == task)
                .map(|(_, _, _, c)| *c)
                .collect::<Vec<Counts>>()
        };
        let first_hour = Counts { pushed: 2, sent: 1, arrived: 1, ..Counts::default() };
        let next_hour = Counts { sent: 1, ..Counts::default() };
        let hour = minute - 60_000;
        assert_eq!(row("task", "t1", minute), vec![first_hour]);
        assert_eq!(row("minute", "", minute), vec![first_hour]);
        assert_eq!(row("hour", "", hour), vec![first_hour]);
        assert_eq!(row("task", "t1", minute + 3_600_000), vec![next_hour]);
        assert_eq!(row("hour", "", hour + 3_600_000), vec![next_hour]);
        assert_eq!(row("day", "", hour - hour % 86_400_000).len(), 1);
        assert_eq!(tally.counts.len(), 7, "task, minute and hour rows of two hours, one day row: {:?}", tally.counts);
        let mps = plan(&entries, TaskCounted::MPS).unwrap();
        assert_eq!(mps.counts.len(), 5, "a Simple task has no rows of its own by default: {:?}", mps.counts);
        assert!(mps.counts.iter().all(|(g, ..)| *g != "task"));
        assert_eq!(mps.receipts(), 2);
    }
}
