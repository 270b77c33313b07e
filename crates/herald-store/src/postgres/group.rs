//! Group commit on PostgreSQL: the pushes and request nonces that callers are waiting for are
//! taken together by a few committer loops; each loop runs every operation of its group in
//! one transaction, their statements pipelined on one connection (a round of statements costs
//! one round trip for the whole group), commits once, and only then answers each caller. A
//! 200 still means committed: no caller hears of its push before the COMMIT that holds it.
//!
//! An operation of a group sees the ones before it, as one after the other would: their
//! statements reach the server in the order the group was taken (a second claim of one
//! idempotency key finds the first and is answered as its repeat). When a statement of the
//! group fails (a deadlock with another group, a bug), the transaction is rolled back and each
//! operation runs again in a transaction of its own, so one bad push cannot refuse the
//! others. When the COMMIT itself fails nobody knows whether it happened: every caller gets
//! the error, as a single push would.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use futures_util::future::try_join_all;
use herald_core::model::{CommittedPush, NewMessage, NewPush, NewTask};
use herald_core::state::{Change, TargetKind};
use tokio::sync::{Mutex, mpsc, oneshot};
use tokio_postgres::types::ToSql;

use super::Pool;
use super::tx::{PgTx, column, map_err};
use crate::ops::push::{DeliveryRow, Fetched, MessageRow, PushRows};
use crate::{StoreError, StoreResult, ops, rows, sql};

/// Most operations in one transaction: enough to share one WAL flush among all the requests
/// a node has in flight, few enough that a rolled-back group is retried quickly.
const GROUP_MAX: usize = 256;
/// Operations waiting for a committer before callers wait to queue (each caller waits for
/// its answer anyway; this bounds the queue's memory).
const QUEUE: usize = 4096;

/// Statements in the transaction of a group.
type GroupTx<'a> = PgTx<'a, tokio_postgres::Transaction<'a>>;

/// One operation a caller waits for.
pub(super) enum Job {
    /// The push comes back with its answer (the caller remembers its dimensions).
    Push {
        push: Box<NewPush>,
        now: i64,
        reply: oneshot::Sender<PushAnswer>,
    },
    Nonce {
        key_id: String,
        nonce: String,
        now: i64,
        expires_at: i64,
        reply: oneshot::Sender<StoreResult<bool>>,
    },
}

/// A push and what its commit answered.
type PushAnswer = (Box<NewPush>, StoreResult<CommittedPush>);

/// What an operation answered, before its group commits.
enum Done {
    Push(CommittedPush),
    Nonce(bool),
}

/// The queue of operations to commit, and the loops that commit them.
pub(super) struct Committer {
    jobs: mpsc::Sender<Job>,
}

impl Committer {
    /// Starts `loops` committer loops on `pool`. Two or more let one group's statements run
    /// while another waits for its WAL flush.
    pub(super) fn start(pool: Arc<Pool>, loops: usize) -> Self {
        let (jobs, rx) = mpsc::channel(QUEUE);
        let rx = Arc::new(Mutex::new(rx));
        for _ in 0..loops.max(1) {
            tokio::spawn(run(pool.clone(), rx.clone()));
        }
        Committer { jobs }
    }

    /// Commits `push`; gives it back with the answer.
    pub(super) async fn push(&self, push: NewPush, now: i64) -> StoreResult<(Box<NewPush>, CommittedPush)> {
        let (reply, answer) = oneshot::channel();
        self.send(Job::Push { push: Box::new(push), now, reply }).await?;
        let (push, committed) = answer.await.map_err(|_| stopped())?;
        Ok((push, committed?))
    }

    pub(super) async fn nonce(&self, key_id: &str, nonce: &str, now: i64, expires_at: i64) -> StoreResult<bool> {
        let (reply, answer) = oneshot::channel();
        let job = Job::Nonce { key_id: key_id.to_owned(), nonce: nonce.to_owned(), now, expires_at, reply };
        self.send(job).await?;
        answer.await.map_err(|_| stopped())?
    }

    async fn send(&self, job: Job) -> StoreResult<()> {
        self.jobs.send(job).await.map_err(|_| stopped())
    }
}

fn stopped() -> StoreError {
    StoreError::Unavailable("the committer has stopped".into())
}

async fn run(pool: Arc<Pool>, rx: Arc<Mutex<mpsc::Receiver<Job>>>) {
    loop {
        let group = {
            let mut rx = rx.lock().await;
            let Some(first) = rx.recv().await else { return };
            let mut group = vec![first];
            while group.len() < GROUP_MAX {
                match rx.try_recv() {
                    Ok(job) => group.push(job),
                    Err(_) => break,
                }
            }
            group
        };
        // On a task of its own: a panic (a bug) fails this group's callers (their answers are
        // dropped: the store is unavailable to them), not every push after it.
        let pool = pool.clone();
        if let Err(e) = tokio::spawn(async move { commit_group(&pool, group).await }).await {
            tracing::error!(error = %e, "a group commit panicked; its callers were answered that the store is unavailable");
        }
    }
}

/// Where a group failed.
enum Failed {
    /// Before COMMIT: nothing of the group was committed.
    Statements(StoreError),
    /// At COMMIT (or reaching the server for it): whether it committed is unknown.
    Commit(StoreError),
}

async fn commit_group(pool: &Pool, group: Vec<Job>) {
    match run_together(pool, &group).await {
        Ok(done) => {
            for (job, done) in group.into_iter().zip(done) {
                answer(job, Ok(done));
            }
        }
        Err(Failed::Statements(e)) if group.len() > 1 => {
            tracing::debug!(error = %e, size = group.len(), "a group commit failed; committing one by one");
            for job in group {
                let alone = run_alone(pool, &job).await;
                answer(job, alone);
            }
        }
        Err(Failed::Statements(e) | Failed::Commit(e)) => {
            for job in group {
                answer(job, Err(e.clone()));
            }
        }
    }
}

/// Every operation of the group in one transaction: the nonces in one statement, each push's
/// claims and lookups (pipelined, in the group's order), then the rows of every push in one
/// statement per table.
async fn run_together(pool: &Pool, group: &[Job]) -> Result<Vec<Done>, Failed> {
    let mut conn = pool.get().await.map_err(Failed::Statements)?;
    let (pg, cache) = conn.transaction().await.map_err(Failed::Statements)?;
    let done = {
        let tx = PgTx::new(&pg, cache);
        let to_fetch: Vec<(&NewPush, i64)> = group
            .iter()
            .filter_map(|job| match job {
                Job::Push { push, now, .. } => Some((&**push, *now)),
                Job::Nonce { .. } => None,
            })
            .collect();
        let (nonces, fetched) =
            tokio::try_join!(claim_nonces(&tx, group), fetch_many(&tx, &to_fetch)).map_err(Failed::Statements)?;
        let settled = try_join_all(to_fetch.iter().zip(fetched).map(|((push, _), f)| ops::push::settle(&tx, push, f)))
            .await
            .map_err(Failed::Statements)?;
        // Back in the group's order: a push's answer where each push was.
        let mut settled = settled.into_iter();
        let mut pushes: Vec<Option<_>> =
            group.iter().map(|job| matches!(job, Job::Push { .. }).then(|| settled.next()).flatten()).collect();
        let rows: Vec<&PushRows<'_>> = pushes.iter().flatten().filter_map(|(_, rows)| rows.as_ref()).collect();
        write_rows(&tx, &rows).await.map_err(Failed::Statements)?;
        drop(rows);
        let mut done = Vec::with_capacity(group.len());
        for (i, claimed) in nonces.into_iter().enumerate() {
            done.push(match (claimed, pushes[i].take()) {
                (Some(claimed), _) => Done::Nonce(claimed),
                (None, Some((committed, _))) => Done::Push(committed),
                (None, None) => return Err(Failed::Statements(mismatch())),
            });
        }
        done
    };
    pg.commit().await.map_err(|e| Failed::Commit(map_err(e)))?;
    Ok(done)
}

/// The first round of every push of the group in a few statements, as `ops::push::claim`
/// makes it for one: the idempotency claims in one (the first message of each key only, the
/// keys in one order so that two groups lock them alike; a later one finds the first's claim
/// when it asks who holds the key), the device and the user targets in one each, and the
/// routing of each app a vendor may serve. Keys are checked for expiry at the earliest push's
/// time.
async fn fetch_many(tx: &GroupTx<'_>, pushes: &[(&NewPush, i64)]) -> StoreResult<Vec<Fetched>> {
    let messages: Vec<(&NewPush, &NewMessage)> =
        pushes.iter().flat_map(|(p, _)| p.messages.iter().map(move |m| (*p, m))).collect();
    let mut seen = HashSet::new();
    let mut claims: Vec<(&NewPush, &NewMessage)> =
        messages.iter().filter(|(p, m)| !p.skip_idempotency && seen.insert(key_of(p, m))).copied().collect();
    claims.sort_by(|a, b| key_of(a.0, a.1).cmp(&key_of(b.0, b.1)));
    let now_min = pushes.iter().map(|(_, now)| *now).min().unwrap_or(0);
    let claim_keys = async {
        if claims.is_empty() {
            return Ok(HashSet::new());
        }
        let apps: Vec<&str> = claims.iter().map(|(p, _)| p.task.app_id.as_str()).collect();
        let keys: Vec<&str> = claims.iter().map(|(_, m)| m.msg_key.as_str()).collect();
        let kinds: Vec<&str> = claims.iter().map(|(_, m)| m.target_kind.as_str()).collect();
        let targets: Vec<&str> = claims.iter().map(|(_, m)| m.target.as_str()).collect();
        let mids: Vec<&str> = claims.iter().map(|(_, m)| m.message_id.as_str()).collect();
        let tasks: Vec<&str> = claims.iter().map(|(p, _)| p.task.task_id.as_str()).collect();
        let expires: Vec<i64> = claims.iter().map(|(p, _)| p.task.expires_at).collect();
        let args: [&(dyn ToSql + Sync); 8] = [&apps, &keys, &kinds, &targets, &mids, &tasks, &expires, &now_min];
        let rows = tx.query_pg(&sql::group::CLAIM_KEYS, &args).await?;
        rows.iter().map(|r| r.try_get::<_, String>(0).map_err(column)).collect::<StoreResult<HashSet<String>>>()
    };
    let lookup = |kind: TargetKind, sql: &'static crate::tx::Sql| {
        let places: Vec<(usize, &str, &str)> = messages
            .iter()
            .enumerate()
            .filter(|(_, (_, m))| m.target_kind == kind)
            .map(|(i, (p, m))| (i, p.task.app_id.as_str(), m.target.as_str()))
            .collect();
        async move {
            if places.is_empty() {
                return Ok(Vec::new());
            }
            let apps: Vec<&str> = places.iter().map(|(_, a, _)| *a).collect();
            let targets: Vec<&str> = places.iter().map(|(_, _, t)| *t).collect();
            let indexes: Vec<i64> = places.iter().map(|(i, _, _)| *i as i64).collect();
            let args: [&(dyn ToSql + Sync); 3] = [&apps, &targets, &indexes];
            let rows = tx.query_pg(sql, &args).await?;
            rows.iter()
                .map(|r| Ok((r.try_get::<_, i64>(4).map_err(column)? as usize, rows::target(r)?)))
                .collect::<StoreResult<Vec<(usize, rows::Target)>>>()
        }
    };
    if messages.iter().any(|(_, m)| m.target_kind == TargetKind::Broadcast) {
        return Err(ops::push::not_a_push_target());
    }
    let mut vendor_apps: Vec<&str> = pushes
        .iter()
        .filter(|(p, _)| p.messages.iter().any(|m| m.vendor))
        .map(|(p, _)| p.task.app_id.as_str())
        .collect();
    vendor_apps.sort_unstable();
    vendor_apps.dedup();
    let contexts = try_join_all(vendor_apps.iter().map(|app| ops::channels::route_context(tx, app)));
    let (claimed, devices, users, contexts) = tokio::try_join!(
        claim_keys,
        lookup(TargetKind::Device, &sql::group::TARGET_DEVICES),
        lookup(TargetKind::User, &sql::group::TARGET_USERS),
        contexts
    )?;
    let contexts: HashMap<&str, _> = vendor_apps.into_iter().zip(contexts).collect();
    let mut targets: Vec<Vec<rows::Target>> = messages.iter().map(|_| Vec::new()).collect();
    for (i, target) in devices.into_iter().chain(users) {
        targets.get_mut(i).ok_or_else(|| StoreError::Internal("a target row out of place".into()))?.push(target);
    }
    let mut targets = targets.into_iter();
    Ok(pushes
        .iter()
        .map(|(p, _)| Fetched {
            claimed: p.messages.iter().map(|m| p.skip_idempotency || claimed.contains(m.message_id.as_str())).collect(),
            targets: targets.by_ref().take(p.messages.len()).collect(),
            context: p
                .messages
                .iter()
                .any(|m| m.vendor)
                .then(|| contexts.get(p.task.app_id.as_str()).cloned())
                .flatten(),
        })
        .collect())
}

/// An idempotency key: app, msgKey, target kind, target.
fn key_of<'a>(p: &'a NewPush, m: &'a NewMessage) -> (&'a str, &'a str, &'a str, &'a str) {
    (p.task.app_id.as_str(), m.msg_key.as_str(), m.target_kind.as_str(), m.target.as_str())
}

/// The nonces of the group, claimed in one statement: for each job, whether its nonce was
/// claimed (`None` for a push). A pair that comes twice in the group is claimed by its first
/// request; the later one is a replay. The expiry is checked at the earliest request's time.
async fn claim_nonces(tx: &GroupTx<'_>, group: &[Job]) -> StoreResult<Vec<Option<bool>>> {
    let mut seen = std::collections::HashSet::new();
    let (mut keys, mut nonces, mut expiries, mut now_min) = (Vec::new(), Vec::new(), Vec::new(), i64::MAX);
    for job in group {
        if let Job::Nonce { key_id, nonce, now, expires_at, .. } = job
            && seen.insert((key_id.as_str(), nonce.as_str()))
        {
            keys.push(key_id.as_str());
            nonces.push(nonce.as_str());
            expiries.push(*expires_at);
            now_min = now_min.min(*now);
        }
    }
    let claimed: std::collections::HashSet<(String, String)> = if keys.is_empty() {
        Default::default()
    } else {
        let rows = tx.query_pg(&sql::group::CLAIM_NONCES, &[&keys, &nonces, &expiries, &now_min]).await?;
        rows.iter().map(|r| (r.get(0), r.get(1))).collect()
    };
    let mut first = std::collections::HashSet::new();
    Ok(group
        .iter()
        .map(|job| match job {
            Job::Nonce { key_id, nonce, .. } => Some(
                first.insert((key_id.as_str(), nonce.as_str())) && claimed.contains(&(key_id.clone(), nonce.clone())),
            ),
            Job::Push { .. } => None,
        })
        .collect())
}

/// The rows of every push of the group: one statement per table (a push's vendor sends, few,
/// one each), sent in the order of a single push's writes.
async fn write_rows(tx: &GroupTx<'_>, pushes: &[&PushRows<'_>]) -> StoreResult<()> {
    if pushes.is_empty() {
        return Ok(());
    }
    let tasks: Vec<&NewTask> = pushes.iter().map(|p| p.task).collect();
    let task_ids: Vec<&str> = tasks.iter().map(|t| t.task_id.as_str()).collect();
    let task_apps: Vec<&str> = tasks.iter().map(|t| t.app_id.as_str()).collect();
    let push_types: Vec<&str> = tasks.iter().map(|t| t.push_type.as_str()).collect();
    let names: Vec<Option<&str>> = tasks.iter().map(|t| t.task_name.as_deref()).collect();
    let delivery_types: Vec<i64> = tasks.iter().map(|t| t.delivery_type).collect();
    let created: Vec<i64> = tasks.iter().map(|t| t.created_at).collect();
    let expires: Vec<i64> = tasks.iter().map(|t| t.expires_at).collect();

    let messages: Vec<(&NewTask, &MessageRow<'_>)> =
        pushes.iter().flat_map(|p| p.messages.iter().map(move |m| (p.task, m))).collect();
    let m_ids: Vec<&str> = messages.iter().map(|(_, m)| m.message.message_id.as_str()).collect();
    let m_apps: Vec<&str> = messages.iter().map(|(t, _)| t.app_id.as_str()).collect();
    let m_tasks: Vec<&str> = messages.iter().map(|(t, _)| t.task_id.as_str()).collect();
    let m_keys: Vec<&str> = messages.iter().map(|(_, m)| m.message.msg_key.as_str()).collect();
    let m_kinds: Vec<&str> = messages.iter().map(|(_, m)| m.message.target_kind.as_str()).collect();
    let m_targets: Vec<&str> = messages.iter().map(|(_, m)| m.message.target.as_str()).collect();
    let m_payloads: Vec<&str> = messages.iter().map(|(_, m)| m.payload).collect();
    let m_undeliverable: Vec<bool> = messages.iter().map(|(_, m)| m.undeliverable).collect();
    let m_created: Vec<i64> = messages.iter().map(|(t, _)| t.created_at).collect();
    let m_expires: Vec<i64> = messages.iter().map(|(t, _)| t.expires_at).collect();

    let deliveries: Vec<(&NewTask, &DeliveryRow<'_>)> =
        pushes.iter().flat_map(|p| p.deliveries.iter().map(move |d| (p.task, d))).collect();
    let d_messages: Vec<&str> = deliveries.iter().map(|(_, d)| d.message).collect();
    let d_devices: Vec<&str> = deliveries.iter().map(|(_, d)| d.device.as_str()).collect();
    let d_created: Vec<i64> = deliveries.iter().map(|(t, _)| t.created_at).collect();
    let d_expires: Vec<i64> = deliveries.iter().map(|(t, _)| t.expires_at).collect();
    let d_channels: Vec<&str> = deliveries.iter().map(|(_, d)| d.channel).collect();
    let journal = pushes.iter().any(|p| p.journal) && !deliveries.is_empty();

    let task_args: [&(dyn ToSql + Sync); 7] =
        [&task_ids, &task_apps, &push_types, &names, &delivery_types, &created, &expires];
    let message_args: [&(dyn ToSql + Sync); 10] = [
        &m_ids,
        &m_apps,
        &m_tasks,
        &m_keys,
        &m_kinds,
        &m_targets,
        &m_payloads,
        &m_undeliverable,
        &m_created,
        &m_expires,
    ];
    let delivery_args: [&(dyn ToSql + Sync); 4] = [&d_messages, &d_devices, &d_created, &d_expires];
    let pushed = Change::Pushed.as_str();
    let no_prior: Vec<Option<&str>> = vec![None; d_messages.len()];
    let journal_args: [&(dyn ToSql + Sync); 6] = [&d_messages, &d_devices, &pushed, &no_prior, &d_channels, &d_created];
    let messages_stmt = async {
        if m_ids.is_empty() { Ok(0) } else { tx.execute_pg(&sql::group::INSERT_MESSAGES, &message_args).await }
    };
    let deliveries_stmt = async {
        if d_messages.is_empty() { Ok(0) } else { tx.execute_pg(&sql::group::INSERT_DELIVERIES, &delivery_args).await }
    };
    let journal_stmt =
        async { if journal { tx.execute_pg(&sql::group::JOURNAL_MANY, &journal_args).await } else { Ok(0) } };
    // try_join! polls in order: the statements reach the connection in this order.
    tokio::try_join!(
        tx.execute_pg(&sql::group::INSERT_TASKS, &task_args),
        messages_stmt,
        deliveries_stmt,
        try_join_all(pushes.iter().map(|p| p.write_vendor_sends(tx))),
        journal_stmt,
    )?;
    Ok(())
}

/// One operation in a transaction of its own.
async fn run_alone(pool: &Pool, job: &Job) -> StoreResult<Done> {
    let mut conn = pool.get().await?;
    let (pg, cache) = conn.transaction().await?;
    let done = run_job(&PgTx::new(&pg, cache), job).await?;
    pg.commit().await.map_err(map_err)?;
    Ok(done)
}

async fn run_job(tx: &GroupTx<'_>, job: &Job) -> StoreResult<Done> {
    match job {
        Job::Push { push, now, .. } => ops::push::commit(tx, push, *now).await.map(Done::Push),
        Job::Nonce { key_id, nonce, now, expires_at, .. } => {
            use crate::tx::Tx as _;
            let claimed = tx.execute(&sql::CLAIM_NONCE, &[&key_id.as_str(), &nonce.as_str(), expires_at, now]).await?;
            Ok(Done::Nonce(claimed == 1))
        }
    }
}

fn answer(job: Job, done: StoreResult<Done>) {
    // A caller that stopped waiting (its request was cancelled) is not an error here.
    match job {
        Job::Push { push, reply, .. } => {
            let committed = done.and_then(|d| match d {
                Done::Push(p) => Ok(p),
                Done::Nonce(_) => Err(mismatch()),
            });
            let _ = reply.send((push, committed));
        }
        Job::Nonce { reply, .. } => {
            let _ = reply.send(done.and_then(|d| match d {
                Done::Nonce(n) => Ok(n),
                Done::Push(_) => Err(mismatch()),
            }));
        }
    }
}

fn mismatch() -> StoreError {
    StoreError::Internal("a group commit answered an operation with another's result".into())
}

#[cfg(test)]
mod tests {
    use herald_core::ids::{KeyId, MessageId};
    use herald_core::model::TargetOutcome;
    use herald_core::state::TargetKind;

    use super::*;
    use crate::Store;
    use crate::suite::{Subject, create_app, device, push};

    fn push_job(p: NewPush) -> (Job, oneshot::Receiver<PushAnswer>) {
        let (reply, answer) = oneshot::channel();
        (Job::Push { push: Box::new(p), now: 100, reply }, answer)
    }

    fn nonce_job(nonce: &str) -> (Job, oneshot::Receiver<StoreResult<bool>>) {
        let (reply, answer) = oneshot::channel();
        (Job::Nonce { key_id: "k1".into(), nonce: nonce.into(), now: 100, expires_at: 60_000, reply }, answer)
    }

    fn accepted(c: &CommittedPush) -> &MessageId {
        match &c.outcomes[0].1 {
            TargetOutcome::Accepted { .. } => &c.outcomes[0].0,
            other => panic!("not accepted: {other:?}"),
        }
    }

    /// The device's pending deliveries are those of `want`, in any order.
    async fn assert_pending(store: &crate::PostgresStore, d: &herald_core::ids::DeviceId, want: &[&MessageId]) {
        let pending = store.pending_deliveries(d, 110, 10).await.unwrap();
        let mut ids: Vec<&MessageId> = pending.iter().map(|p| &p.message_id).collect();
        let mut want = want.to_vec();
        ids.sort();
        want.sort();
        assert_eq!(ids, want);
    }

    /// One group, one transaction: a second claim of a key made earlier in the group is its
    /// repeat, a nonce that comes twice is claimed once, and everything is committed.
    #[tokio::test]
    async fn a_group_sees_its_own_earlier_operations() {
        let Some((store, _schema)) = Subject::postgres_store(2).await else { return };
        create_app(&store, "a1").await;
        let d = device(&store, "a1", "i1").await;
        let (first, first_answer) = push_job(push("a1", TargetKind::Device, &[(d.as_str(), "k")], 100, 60_000));
        let (again, again_answer) = push_job(push("a1", TargetKind::Device, &[(d.as_str(), "k")], 100, 60_000));
        let (other, other_answer) = push_job(push("a1", TargetKind::Device, &[(d.as_str(), "k2")], 100, 60_000));
        let (n1, n1_answer) = nonce_job("n1");
        let (n1_again, n1_again_answer) = nonce_job("n1");
        let (n2, n2_answer) = nonce_job("n2");
        commit_group(&store.pool, vec![first, n1, again, n1_again, other, n2]).await;

        let first = first_answer.await.unwrap().1.unwrap();
        let again = again_answer.await.unwrap().1.unwrap();
        let other = other_answer.await.unwrap().1.unwrap();
        assert!(!first.replayed);
        assert!(again.replayed, "{again:?}");
        assert_eq!(again.task_id, first.task_id);
        let TargetOutcome::Duplicate { message_id } = &again.outcomes[0].1 else { panic!("{again:?}") };
        assert_eq!(message_id, accepted(&first));
        assert_ne!(accepted(&other), accepted(&first));
        assert!(n1_answer.await.unwrap().unwrap());
        assert!(!n1_again_answer.await.unwrap().unwrap(), "a nonce twice in one group is a replay");
        assert!(n2_answer.await.unwrap().unwrap());

        assert_pending(&store, &d, &[accepted(&first), accepted(&other)]).await;
        assert!(!store.claim_nonce(&KeyId::new("k1"), "n2", 200, 60_000).await.unwrap(), "committed");
        assert!(store.task(&herald_core::ids::AppId::new("a1"), &first.task_id).await.unwrap().is_some());
    }

    /// A push that fails inside a group is refused alone: the others are committed.
    #[tokio::test]
    async fn a_failing_push_is_refused_alone() {
        let Some((store, _schema)) = Subject::postgres_store(2).await else { return };
        create_app(&store, "a1").await;
        let d = device(&store, "a1", "i1").await;
        let mut bad = push("a1", TargetKind::Device, &[(d.as_str(), "bad")], 100, 60_000);
        bad.messages[0].payload = bytes::Bytes::from_static(b"\xff\xfe not UTF-8");
        let (before, before_answer) = push_job(push("a1", TargetKind::Device, &[(d.as_str(), "k1")], 100, 60_000));
        let (bad, bad_answer) = push_job(bad);
        let (after, after_answer) = push_job(push("a1", TargetKind::Device, &[(d.as_str(), "k2")], 100, 60_000));
        let (n, n_answer) = nonce_job("n");
        commit_group(&store.pool, vec![before, bad, n, after]).await;

        let before = before_answer.await.unwrap().1.unwrap();
        assert!(matches!(bad_answer.await.unwrap().1, Err(StoreError::Internal(_))));
        let after = after_answer.await.unwrap().1.unwrap();
        assert!(n_answer.await.unwrap().unwrap());
        // The pushes beside the failing one are committed.
        assert_pending(&store, &d, &[accepted(&before), accepted(&after)]).await;
    }
}

#[cfg(test)]
mod targets {
    use herald_core::ids::{AppId, DeviceId, UserId};
    use herald_core::model::TargetOutcome;
    use herald_core::state::TargetKind;

    use super::*;
    use crate::Store;
    use crate::suite::{Subject, create_app, device, push};

    fn devices_of(c: &CommittedPush) -> Vec<Vec<DeviceId>> {
        c.outcomes
            .iter()
            .map(|(_, o)| match o {
                TargetOutcome::Accepted { devices } => devices.iter().map(|d| d.device_id.clone()).collect(),
                other => panic!("not accepted: {other:?}"),
            })
            .collect()
    }

    /// The targets of a group's pushes, read in one statement per kind, reach the push and
    /// the message that named them.
    #[tokio::test]
    async fn each_push_of_a_group_gets_its_own_targets() {
        let Some((store, _schema)) = Subject::postgres_store(2).await else { return };
        create_app(&store, "a1").await;
        let (d1, d2, d3) =
            (device(&store, "a1", "i1").await, device(&store, "a1", "i2").await, device(&store, "a1", "i3").await);
        let app = AppId::new("a1");
        for d in [&d2, &d3] {
            store.bind_user(&app, d, &UserId::new("u"), 50).await.unwrap().unwrap();
        }
        let pushes = [
            push("a1", TargetKind::Device, &[(d1.as_str(), "k1"), (d3.as_str(), "k2")], 100, 60_000),
            push("a1", TargetKind::User, &[("u", "k3")], 100, 60_000),
            push("a1", TargetKind::Device, &[(d2.as_str(), "k4")], 100, 60_000),
        ];
        let mut answers = Vec::new();
        let mut jobs = Vec::new();
        for p in pushes {
            let (reply, answer) = oneshot::channel();
            jobs.push(Job::Push { push: Box::new(p), now: 100, reply });
            answers.push(answer);
        }
        commit_group(&store.pool, jobs).await;
        let mut got = Vec::new();
        for a in answers {
            got.push(devices_of(&a.await.unwrap().1.unwrap()));
        }
        let mut users = vec![d2.clone(), d3.clone()];
        users.sort();
        assert_eq!(got, vec![vec![vec![d1], vec![d3]], vec![users], vec![vec![d2]]]);
    }
}
