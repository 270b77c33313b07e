//! The SQLite backend: one writer thread that group-commits, and a few read-only
//! connections. WAL mode lets readers run while the writer commits.
//!
//! Every write is a job sent to the writer thread. The thread takes the first job, then
//! every job already waiting (up to `max_batch`), runs each inside its own SAVEPOINT (a
//! failing job rolls back alone) and commits them all at once: one fsync for the group.
//! Callers are answered only after COMMIT returned, so "200 OK" means "on disk".
//!
//! Status updates (acknowledgements, disconnects) are not jobs: they are the bulk of the
//! writes (one per delivery) and nobody waits for them. They gather in a buffer that the
//! writer drains at the start of each group and applies a few hundred to a savepoint, in the order
//! they were recorded; an update recorded before a job was sent is applied no later than
//! that job. So every write (and every read made on the writer) is ordered after the
//! updates recorded before it.
//!
//! An operation is one of [`crate::ops`], run to its end at once on the thread's
//! connection ([`crate::tx::run_now`]).

mod files;
mod ledger;
mod nonces;
mod setup;
pub(crate) mod tx;
mod writer;
#[cfg(test)]
mod writer_tests;

use std::path::Path;
use std::sync::Arc;

use herald_core::channel::route::Routing;
use herald_core::ids::{AppId, DeviceId, KeyId, MessageId, TaskId, UserId};
use herald_core::model::*;
use herald_core::state::Channel;
use parking_lot::Mutex;
use rusqlite::{Connection, OpenFlags};
use tokio::sync::{mpsc, oneshot};

use crate::tx::run_now;
use crate::{Cancelled, FireOutcome, Registered, Store, StoreConfig, StoreError, StoreResult, TemplateCreated, ops};
use setup::{configure_writer, migrate, spawn, stable_plans};
use tx::{SqliteTx, map_err, read_tx};
use writer::{in_savepoint, writer_loop};

/// How often the WAL is copied back into the database file.
const CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_millis(500);

type Completion = Box<dyn FnOnce(Result<(), StoreError>) + Send>;
/// A job of the writer: run in the group's transaction (`Some`), or not at all (`None`: no
/// transaction could begin; its caller is told so).
type WriteJob = Box<dyn FnOnce(Option<&Connection>) -> Completion + Send>;
type ReadJob = Box<dyn FnOnce(&Connection) + Send>;

pub struct SqliteStore {
    jobs: mpsc::UnboundedSender<WriteJob>,
    /// Read jobs, served by `reader_connections` threads that each own a connection. Own
    /// threads rather than `spawn_blocking`: a burst of reads (a reconnect storm) must not
    /// grow the process by a thread per concurrent read.
    reads: std::sync::mpsc::Sender<ReadJob>,
    /// A SQLite file serves one node, so nonces stay in memory: no write per request.
    nonces: Mutex<nonces::NonceSet>,
    /// Status updates waiting for the writer.
    updates: Arc<Mutex<Vec<StatusUpdate>>>,
    /// Whether the writer journals status changes (`Ledger::set_journal`).
    journal: Arc<std::sync::atomic::AtomicBool>,
    /// Dropped with the store: the checkpoint thread stops (the others stop when the job
    /// channels close).
    _checkpoints: std::sync::mpsc::Sender<()>,
    /// The counter's lookups of message and device dimensions.
    dims: Arc<crate::ops::ledger::DimsCache>,
}

fn stopped() -> StoreError {
    StoreError::Unavailable("the store writer has stopped".into())
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` and applies migrations.
    pub fn open(path: &Path, cfg: &StoreConfig) -> StoreResult<Self> {
        files::private_file(path)?;
        let writer = Connection::open(path).map_err(map_err)?;
        configure_writer(&writer, &cfg.sqlite_synchronous).map_err(map_err)?;
        stable_plans(&writer).map_err(map_err)?;
        migrate(&writer).map_err(map_err)?;
        let (read_tx, read_rx) = std::sync::mpsc::channel::<ReadJob>();
        let read_rx = Arc::new(Mutex::new(read_rx));
        for i in 0..cfg.reader_connections {
            let conn =
                Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)
                    .map_err(map_err)?;
            // Small caches: readers serve status queries and CONNECT checks, and the OS page
            // cache holds the file anyway.
            conn.execute_batch("PRAGMA busy_timeout = 5000; PRAGMA cache_size = -1024;").map_err(map_err)?;
            stable_plans(&conn).map_err(map_err)?;
            let rx = read_rx.clone();
            spawn(format!("sqlite-reader-{i}"), move || {
                loop {
                    let job = rx.lock().recv();
                    match job {
                        Ok(job) => job(&conn),
                        Err(_) => return,
                    }
                }
            })?;
        }
        // Checkpoints run beside the writer, not inside a commit: an automatic checkpoint
        // would stall every push waiting on that group for the time it copies the WAL.
        let checkpointer = Connection::open(path).map_err(map_err)?;
        checkpointer.execute_batch("PRAGMA busy_timeout = 5000; PRAGMA cache_size = -1024;").map_err(map_err)?;
        let (checkpoints, stop) = std::sync::mpsc::channel::<()>();
        spawn("sqlite-checkpoint".into(), move || {
            while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = stop.recv_timeout(CHECKPOINT_EVERY) {
                if let Err(e) = checkpointer.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
                    tracing::warn!(error = %e, "WAL checkpoint failed");
                }
            }
        })?;
        let (tx, rx) = mpsc::unbounded_channel();
        let max_batch = cfg.max_batch;
        let updates = Arc::new(Mutex::new(Vec::new()));
        let writer_updates = updates.clone();
        let journal = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let writer_journal = journal.clone();
        spawn("sqlite-writer".into(), move || writer_loop(writer, rx, max_batch, &writer_updates, &writer_journal))?;
        Ok(SqliteStore {
            jobs: tx,
            reads: read_tx,
            nonces: Mutex::new(nonces::NonceSet::default()),
            updates,
            journal,
            _checkpoints: checkpoints,
            dims: Arc::default(),
        })
    }

    /// Runs `f` on the writer, in a savepoint of the next group; answers after its COMMIT.
    async fn write<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&SqliteTx<'_>) -> StoreResult<T> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let journal = self.journal.load(std::sync::atomic::Ordering::Relaxed);
        let job: WriteJob = Box::new(move |conn| {
            let result = match conn {
                Some(conn) => in_savepoint(conn, |c| f(&SqliteTx::journalling(c, journal))),
                None => Err(StoreError::Unavailable("no write transaction could begin".into())),
            };
            Box::new(move |commit: Result<(), StoreError>| {
                let _ = tx.send(commit.and(result));
            })
        });
        self.jobs.send(job).map_err(|_| stopped())?;
        rx.await.map_err(|_| stopped())?
    }

    /// Runs `f` on a reader's connection (a snapshot of what was committed).
    async fn read<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&SqliteTx<'_>) -> StoreResult<T> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let job: ReadJob = Box::new(move |conn| {
            let _ = tx.send(read_tx(conn, f));
        });
        let gone = || StoreError::Unavailable("the store readers have stopped".into());
        self.reads.send(job).map_err(|_| gone())?;
        rx.await.map_err(|_| gone())?
    }
}

// One line per operation: where it runs (a reader, or the writer) and which shared
// operation it is. Reads that must see the status updates recorded before them run on the
// writer (`pending_deliveries`, `bind_user`).
#[async_trait::async_trait]
impl Store for SqliteStore {
    async fn setting(&self, name: &str) -> StoreResult<Option<String>> {
        let name = name.to_owned();
        self.read(move |tx| run_now(ops::apps::setting(tx, &name))).await
    }

    async fn init_setting(&self, name: &str, value: &str) -> StoreResult<String> {
        let (name, value) = (name.to_owned(), value.to_owned());
        self.write(move |tx| run_now(ops::apps::init_setting(tx, &name, &value))).await
    }

    async fn create_app(&self, app: AppRecord, first_key: ApiKeyRecord) -> StoreResult<()> {
        self.write(move |tx| run_now(ops::apps::create_app(tx, &app, &first_key))).await
    }

    async fn app(&self, app_id: &AppId) -> StoreResult<Option<AppRecord>> {
        let app_id = app_id.clone();
        self.read(move |tx| run_now(ops::apps::app(tx, &app_id))).await
    }

    async fn apps(&self) -> StoreResult<Vec<AppRecord>> {
        self.read(|tx| run_now(ops::apps::apps(tx))).await
    }

    async fn create_api_key(&self, key: ApiKeyRecord) -> StoreResult<()> {
        self.write(move |tx| run_now(ops::apps::create_api_key(tx, &key))).await
    }

    async fn api_key(&self, key_id: &KeyId) -> StoreResult<Option<ApiKeyRecord>> {
        let key_id = key_id.clone();
        self.read(move |tx| run_now(ops::apps::api_key(tx, &key_id))).await
    }

    async fn api_keys(&self, app_id: &AppId) -> StoreResult<Vec<ApiKeyRecord>> {
        let app_id = app_id.clone();
        self.read(move |tx| run_now(ops::apps::api_keys(tx, &app_id))).await
    }

    async fn revoke_api_key(&self, app_id: &AppId, key_id: &KeyId, now: i64) -> StoreResult<bool> {
        let (app_id, key_id) = (app_id.clone(), key_id.clone());
        self.write(move |tx| run_now(ops::apps::revoke_api_key(tx, &app_id, &key_id, now))).await
    }
    async fn update_app(&self, app_id: &AppId, u: AppUpdate) -> StoreResult<bool> {
        let app_id = app_id.clone();
        self.write(move |tx| run_now(ops::apps::update_app(tx, &app_id, &u))).await
    }
    async fn put_console_session(&self, s: ConsoleSession, now: i64) -> StoreResult<()> {
        self.write(move |tx| run_now(ops::apps::put_console_session(tx, &s, now))).await
    }
    async fn console_session(&self, id_hash: &str, now: i64) -> StoreResult<Option<ConsoleSession>> {
        let id_hash = id_hash.to_owned();
        self.read(move |tx| run_now(ops::apps::console_session(tx, &id_hash, now))).await
    }
    async fn end_console_session(&self, id_hash: &str) -> StoreResult<bool> {
        let id_hash = id_hash.to_owned();
        self.write(move |tx| run_now(ops::apps::end_console_session(tx, &id_hash))).await
    }
    async fn cluster(&self) -> StoreResult<ClusterView> {
        self.read(|tx| run_now(ops::apps::cluster(tx))).await
    }

    async fn leases(&self) -> StoreResult<Vec<(String, String, i64)>> {
        self.read(|tx| run_now(ops::apps::leases(tx))).await
    }

    async fn register_device(&self, reg: DeviceRegistration) -> StoreResult<Registered> {
        self.write(move |tx| run_now(ops::devices::register(tx, &reg))).await
    }

    async fn device_by_token_hash(&self, token_hash: &str) -> StoreResult<Option<DeviceRecord>> {
        let token_hash = token_hash.to_owned();
        self.read(move |tx| run_now(ops::devices::device_by_token_hash(tx, &token_hash))).await
    }

    async fn device(&self, app_id: &AppId, device_id: &DeviceId) -> StoreResult<Option<DeviceRecord>> {
        let (app_id, device_id) = (app_id.clone(), device_id.clone());
        self.read(move |tx| run_now(ops::devices::device(tx, &app_id, &device_id))).await
    }

    async fn devices(
        &self,
        app_id: &AppId,
        filter: &DeviceFilter,
        offset: u64,
        limit: u64,
    ) -> StoreResult<(u64, Vec<DeviceRecord>)> {
        let (app_id, filter) = (app_id.clone(), filter.clone());
        self.read(move |tx| run_now(ops::devices::devices(tx, &app_id, &filter, offset, limit))).await
    }

    async fn device_credentials(&self, device_id: &DeviceId) -> StoreResult<Option<(AppId, String)>> {
        let device_id = device_id.clone();
        self.read(move |tx| run_now(ops::devices::credentials(tx, &device_id))).await
    }

    async fn report_device(
        &self,
        app_id: &AppId,
        device_id: &DeviceId,
        app_version: Option<String>,
        vendor_tokens: Option<serde_json::Map<String, serde_json::Value>>,
    ) -> StoreResult<bool> {
        let (app_id, device_id) = (app_id.clone(), device_id.clone());
        self.write(move |tx| {
            run_now(ops::devices::report(tx, &app_id, &device_id, app_version.as_deref(), vendor_tokens))
        })
        .await
    }

    async fn bind_user(
        &self,
        app_id: &AppId,
        device_id: &DeviceId,
        user_id: &UserId,
        now: i64,
    ) -> StoreResult<Option<Bound>> {
        let (app_id, device_id, user_id) = (app_id.clone(), device_id.clone(), user_id.clone());
        self.write(move |tx| run_now(ops::devices::bind(tx, &app_id, &device_id, &user_id, now))).await
    }

    async fn unbind_user(&self, app_id: &AppId, device_id: &DeviceId, now: i64) -> StoreResult<bool> {
        let (app_id, device_id) = (app_id.clone(), device_id.clone());
        self.write(move |tx| run_now(ops::devices::unbind(tx, &app_id, &device_id, now))).await
    }

    async fn user_devices(&self, app_id: &AppId, user_id: &UserId) -> StoreResult<Vec<DeviceRecord>> {
        let (app_id, user_id) = (app_id.clone(), user_id.clone());
        self.read(move |tx| run_now(ops::devices::user_devices(tx, &app_id, &user_id))).await
    }

    async fn device_connected(
        &self,
        device_id: &DeviceId,
        presence: &Presence,
        now: i64,
    ) -> StoreResult<Option<Presence>> {
        let (device_id, presence) = (device_id.clone(), presence.clone());
        self.write(move |tx| run_now(ops::devices::connected(tx, &device_id, &presence, now))).await
    }

    async fn node_started(&self, node: &str) -> StoreResult<u64> {
        let node = node.to_owned();
        self.write(move |tx| run_now(ops::devices::node_started(tx, &node))).await
    }

    async fn stale_pending(
        &self,
        node: &str,
        created_before: i64,
        broadcasts_since: i64,
        now: i64,
        limit: usize,
    ) -> StoreResult<Vec<DeviceId>> {
        let node = node.to_owned();
        self.read(move |tx| run_now(ops::devices::stale(tx, &node, created_before, broadcasts_since, now, limit))).await
    }

    async fn commit_broadcast(&self, b: NewBroadcast, now: i64) -> StoreResult<BroadcastCommitted> {
        self.write(move |tx| run_now(ops::broadcast::commit(tx, &b, now))).await
    }

    async fn broadcast_recipients(&self, message_id: &MessageId, node: &str) -> StoreResult<Vec<DeviceId>> {
        let (message_id, node) = (message_id.clone(), node.to_owned());
        self.read(move |tx| run_now(ops::broadcast::recipients(tx, &message_id, &node))).await
    }

    async fn revoke(
        &self,
        app_id: &AppId,
        what: RevokeTarget,
        now: i64,
        since: i64,
    ) -> StoreResult<Option<Revocation>> {
        let app_id = app_id.clone();
        self.write(move |tx| run_now(ops::revoke::revoke(tx, &app_id, &what, now, since))).await
    }

    async fn create_schedule(&self, s: ScheduleRecord) -> StoreResult<()> {
        self.write(move |tx| run_now(ops::schedules::create(tx, &s))).await
    }

    async fn due_schedules(&self, now: i64, limit: usize) -> StoreResult<Vec<ScheduleRecord>> {
        self.write(move |tx| run_now(ops::schedules::due(tx, now, limit))).await
    }

    async fn fire_schedule(&self, claim: FireClaim, now: i64) -> StoreResult<FireOutcome> {
        self.write(move |tx| run_now(ops::schedules::fire(tx, &claim, now))).await
    }

    async fn schedules(
        &self,
        app_id: &AppId,
        unique_id: Option<&str>,
        from: i64,
        to: i64,
    ) -> StoreResult<Vec<ScheduleRecord>> {
        let (app_id, unique_id) = (app_id.clone(), unique_id.map(str::to_owned));
        self.read(move |tx| run_now(ops::schedules::list(tx, &app_id, unique_id.as_deref(), from, to))).await
    }

    async fn cancel_schedule(&self, app_id: &AppId, unique_id: &str) -> StoreResult<Cancelled> {
        let (app_id, unique_id) = (app_id.clone(), unique_id.to_owned());
        self.write(move |tx| run_now(ops::schedules::cancel(tx, &app_id, &unique_id))).await
    }

    async fn template_in_use(&self, app_id: &AppId, name: &str) -> StoreResult<bool> {
        let (app_id, name) = (app_id.clone(), name.to_owned());
        self.read(move |tx| run_now(ops::schedules::template_in_use(tx, &app_id, &name))).await
    }

    async fn create_template(&self, t: TemplateRecord, max_per_app: usize) -> StoreResult<TemplateCreated> {
        self.write(move |tx| run_now(ops::apps::create_template(tx, &t, max_per_app))).await
    }

    async fn template(&self, app_id: &AppId, name: &str) -> StoreResult<Option<TemplateRecord>> {
        let (app_id, name) = (app_id.clone(), name.to_owned());
        self.read(move |tx| run_now(ops::apps::template(tx, &app_id, &name))).await
    }

    async fn templates(&self, app_id: &AppId) -> StoreResult<Vec<TemplateRecord>> {
        let app_id = app_id.clone();
        self.read(move |tx| run_now(ops::apps::templates(tx, &app_id))).await
    }

    async fn update_template(&self, t: TemplateRecord) -> StoreResult<bool> {
        self.write(move |tx| run_now(ops::apps::update_template(tx, &t))).await
    }

    async fn delete_template(&self, app_id: &AppId, name: &str) -> StoreResult<bool> {
        let (app_id, name) = (app_id.clone(), name.to_owned());
        self.write(move |tx| run_now(ops::apps::delete_template(tx, &app_id, &name))).await
    }

    async fn commit_push(&self, push: NewPush, now: i64) -> StoreResult<CommittedPush> {
        // The push comes back from the writer so that the counter's cache is primed here,
        // on the caller's thread, not on the writer every push waits for.
        let (push, committed, journal) = self
            .write(move |tx| {
                let committed = run_now(ops::push::commit(tx, &push, now))?;
                Ok((push, committed, crate::tx::Tx::journal(tx)))
            })
            .await?;
        if journal {
            self.dims.remember_push(&push, &committed);
        }
        Ok(committed)
    }

    async fn pending_deliveries(
        &self,
        device_id: &DeviceId,
        now: i64,
        limit: usize,
    ) -> StoreResult<Vec<PendingDelivery>> {
        let device_id = device_id.clone();
        self.write(move |tx| run_now(ops::push::pending(tx, &device_id, now, limit))).await
    }

    fn record(&self, update: StatusUpdate) {
        let first = {
            let mut pending = self.updates.lock();
            pending.push(update);
            pending.len() == 1
        };
        // The writer drains the buffer at the start of every group; it needs waking only
        // when the buffer was empty (it may be asleep).
        if first && self.jobs.send(Box::new(|_| -> Completion { Box::new(|_| {}) })).is_err() {
            tracing::warn!("status update dropped: the store writer has stopped");
        }
    }

    async fn expire_due(&self, now: i64) -> StoreResult<u64> {
        self.write(move |tx| run_now(ops::push::expire(tx, now))).await
    }

    async fn task(&self, app_id: &AppId, task_id: &TaskId) -> StoreResult<Option<TaskView>> {
        let (app_id, task_id) = (app_id.clone(), task_id.clone());
        self.read(move |tx| run_now(ops::views::task(tx, &app_id, &task_id))).await
    }

    async fn tasks(
        &self,
        app_id: &AppId,
        filter: &TaskFilter,
        offset: u64,
        limit: u64,
    ) -> StoreResult<(u64, Vec<TaskSummary>)> {
        let (app_id, filter) = (app_id.clone(), filter.clone());
        self.read(move |tx| run_now(ops::views::tasks(tx, &app_id, &filter, offset, limit))).await
    }

    async fn message(&self, app_id: &AppId, message_id: &MessageId) -> StoreResult<Option<MessageView>> {
        let (app_id, message_id) = (app_id.clone(), message_id.clone());
        self.read(move |tx| run_now(ops::views::message(tx, &app_id, &message_id))).await
    }

    async fn flush(&self) -> StoreResult<()> {
        self.write(|_| Ok(())).await
    }

    async fn claim_nonce(&self, key_id: &KeyId, nonce: &str, now: i64, expires_at: i64) -> StoreResult<bool> {
        Ok(self.nonces.lock().claim(key_id.as_str(), nonce, now, expires_at))
    }

    async fn try_lease(&self, name: &str, holder: &str, now: i64, ttl_ms: i64) -> StoreResult<bool> {
        let (name, holder) = (name.to_owned(), holder.to_owned());
        self.write(move |tx| run_now(ops::apps::try_lease(tx, &name, &holder, now, ttl_ms))).await
    }

    async fn put_channel(&self, channel: ChannelRecord) -> StoreResult<()> {
        self.write(move |tx| run_now(ops::channels::put(tx, &channel))).await
    }

    async fn channel(&self, app_id: &AppId, kind: Channel) -> StoreResult<Option<ChannelRecord>> {
        let app_id = app_id.clone();
        self.read(move |tx| run_now(ops::channels::get(tx, &app_id, kind))).await
    }

    async fn channels(&self, app_id: &AppId) -> StoreResult<Vec<ChannelRecord>> {
        let app_id = app_id.clone();
        self.read(move |tx| run_now(ops::channels::all(tx, &app_id))).await
    }

    async fn delete_channel(&self, app_id: &AppId, kind: Channel) -> StoreResult<bool> {
        let app_id = app_id.clone();
        self.write(move |tx| run_now(ops::channels::delete(tx, &app_id, kind))).await
    }

    async fn routing(&self, app_id: &AppId) -> StoreResult<Option<Routing>> {
        let app_id = app_id.clone();
        self.read(move |tx| run_now(ops::channels::routing(tx, &app_id))).await
    }

    async fn set_routing(&self, app_id: &AppId, routing: Routing) -> StoreResult<bool> {
        let app_id = app_id.clone();
        self.write(move |tx| run_now(ops::channels::set_routing(tx, &app_id, &routing))).await
    }

    async fn claim_vendor_sends(
        &self,
        channel: Channel,
        now: i64,
        lease_ms: i64,
        limit: usize,
    ) -> StoreResult<Vec<VendorSend>> {
        let sends = self.write(move |tx| run_now(ops::channels::claim_rows(tx, channel, now, lease_ms, limit))).await?;
        if sends.is_empty() {
            return Ok(sends);
        }
        self.read(move |tx| run_now(ops::channels::with_payloads(tx, sends))).await
    }

    async fn finish_vendor_sends(&self, done: Vec<VendorSendDone>) -> StoreResult<()> {
        self.write(move |tx| run_now(ops::channels::finish(tx, &done))).await
    }

    async fn invalid_tokens(&self, app_id: &AppId, offset: u64, limit: u64) -> StoreResult<(u64, Vec<InvalidToken>)> {
        let app_id = app_id.clone();
        self.read(move |tx| run_now(ops::channels::invalid_tokens(tx, &app_id, offset, limit))).await
    }
}

#[cfg(test)]
mod tests {
    use rusqlite::StatementStatus;

    use super::setup::migrate_to;
    use super::*;
    use crate::sql;
    use crate::tx::Dialect;

    fn fresh() -> (tempfile::TempDir, Connection) {
        let dir = tempfile::tempdir().unwrap();
        let conn = Connection::open(dir.path().join("herald.db")).unwrap();
        (dir, conn)
    }

    /// Every statement of the store prepares on SQLite, with as many parameters as `$N`s.
    #[test]
    fn every_statement_prepares() {
        let (_dir, conn) = fresh();
        migrate(&conn).unwrap();
        for s in sql::ALL.iter().chain(sql::channels::ALL).chain(sql::broadcasts::ALL).chain(sql::ledger::ALL) {
            let stmt = conn.prepare(s.text(Dialect::Sqlite)).unwrap_or_else(|e| panic!("{e}: {s:?}"));
            let highest = (1..=16).rev().find(|n| s.text(Dialect::Postgres).contains(&format!("${n}"))).unwrap_or(0);
            assert_eq!(stmt.parameter_count(), highest, "{s:?}");
        }
    }

    /// The statements every CONNECT and every broadcast fan-out runs must be compiled once,
    /// not again for each new device id or time bound to them.
    #[test]
    fn hot_statements_are_not_compiled_again_for_new_values() {
        let (_dir, conn) = fresh();
        stable_plans(&conn).unwrap();
        migrate(&conn).unwrap();
        for s in [&sql::PENDING_UNICAST, &sql::PENDING_BROADCASTS, &sql::BROADCAST_RECIPIENTS] {
            let mut stmt = conn.prepare(s.text(Dialect::Sqlite)).unwrap();
            for run in 0..3i64 {
                for i in 1..=stmt.parameter_count() {
                    stmt.raw_bind_parameter(i, run * 1_000 + i as i64).unwrap();
                }
                let mut rows = stmt.raw_query();
                while rows.next().unwrap().is_some() {}
            }
            assert_eq!(stmt.get_status(StatementStatus::RePrepare), 0, "compiled again: {s:?}");
        }
    }

    /// Migration 8 rebuilds broadcast_acks without a rowid: what a database of version 7
    /// recorded is still there afterwards.
    #[test]
    fn compacting_broadcast_acks_keeps_them() {
        let (_dir, conn) = fresh();
        migrate_to(&conn, 7).unwrap();
        conn.execute_batch(
            "PRAGMA foreign_keys = OFF; \
             INSERT INTO broadcast_acks (message_id, device_id, status, sent_at, delivered_at, updated_at) \
             VALUES ('b1', 'd1', 'delivered', 10, 20, 20), ('b1', 'd2', 'sent', 11, NULL, 11);",
        )
        .unwrap();
        migrate(&conn).unwrap();
        let rows: Vec<(String, String, Option<i64>)> = conn
            .prepare("SELECT device_id, status, delivered_at FROM broadcast_acks ORDER BY device_id")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(rows, vec![("d1".into(), "delivered".into(), Some(20)), ("d2".into(), "sent".into(), None)]);
        assert!(conn.prepare("SELECT rowid FROM broadcast_acks").is_err(), "still a rowid table");
    }
}
