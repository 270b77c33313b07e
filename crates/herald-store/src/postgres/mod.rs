//! The PostgreSQL backend, for a cluster of nodes sharing one database.
//!
//! An operation that writes more than one row runs in one transaction on a pooled
//! connection (`in_tx!`); a single statement or a read runs without one (`on_conn!`).
//! PostgreSQL groups the WAL flushes of concurrent commits, so many pushes share one fsync
//! as with SQLite's writer. Status updates that nobody waits for ([`Store::record`]) go
//! through one task that applies them in order, many per transaction; operations that must
//! see them ([`Store::pending_deliveries`], [`Store::bind_user`], [`Store::flush`]) wait
//! behind a barrier in that queue. What nodes share beyond the data lives here too:
//! request nonces (a table; a SQLite node keeps them in memory) and leases.

mod group;
pub(crate) mod tx;
mod updates;

use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use herald_core::channel::route::Routing;
use herald_core::ids::{AppId, DeviceId, KeyId, MessageId, TaskId, UserId};
use herald_core::model::*;
use herald_core::state::Channel;
use tokio::sync::{Mutex, MutexGuard, mpsc, oneshot};
use tokio_postgres::{Client, NoTls, Transaction};

use crate::tx::{Dialect, Tx as _};
use crate::{
    Cancelled, FireOutcome, Registered, Store, StoreError, StoreResult, TemplateCreated, migrations, ops, sql,
};
use tx::{PgTx, StmtCache, map_err};

/// Serialises migrations of nodes starting together (any constant unique to Herald).
const MIGRATION_LOCK: i64 = 0x4845_5241_4c44;
/// Most queued status updates applied in one transaction.
const UPDATE_BATCH: usize = 2048;

pub struct PostgresStore {
    pool: Arc<Pool>,
    updates: mpsc::UnboundedSender<Update>,
    /// Commits the pushes and nonces callers wait for, many per transaction.
    committer: group::Committer,
    /// The counter's lookups of message and device dimensions.
    dims: crate::ops::ledger::DimsCache,
}

enum Update {
    Status(StatusUpdate),
    /// Answered once every update queued before it is committed.
    Barrier(oneshot::Sender<()>),
}

struct Pool {
    config: tokio_postgres::Config,
    /// Whether status changes are journalled, shared by every connection's [`StmtCache`].
    journal: Arc<std::sync::atomic::AtomicBool>,
    clients: Vec<Mutex<PgConn>>,
    next: AtomicUsize,
}

/// One pooled connection and the statements prepared on it.
struct PgConn {
    client: Client,
    cache: StmtCache,
}

impl PgConn {
    async fn open(
        config: &tokio_postgres::Config,
        journal: &Arc<std::sync::atomic::AtomicBool>,
    ) -> Result<PgConn, tokio_postgres::Error> {
        let (client, connection) = config.connect(NoTls).await?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::warn!(error = %e, "PostgreSQL connection ended");
            }
        });
        Ok(PgConn { client, cache: StmtCache::new(journal.clone()) })
    }

    /// Statements on this connection outside a transaction.
    fn tx(&self) -> PgTx<'_, Client> {
        PgTx::new(&self.client, &self.cache)
    }

    async fn transaction(&mut self) -> StoreResult<(Transaction<'_>, &StmtCache)> {
        let PgConn { client, cache } = self;
        Ok((client.transaction().await.map_err(map_err)?, &*cache))
    }
}

impl Pool {
    /// A connection of the pool, reconnected if it broke.
    async fn get(&self) -> StoreResult<MutexGuard<'_, PgConn>> {
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let n = self.clients.len();
        let mut guard = match (0..n).find_map(|i| self.clients[(start + i) % n].try_lock().ok()) {
            Some(g) => g,
            None => self.clients[start % n].lock().await,
        };
        if guard.client.is_closed() {
            *guard = PgConn::open(&self.config, &self.journal).await.map_err(map_err)?;
        }
        Ok(guard)
    }
}

/// Runs `$op` (an operation taking `$tx`) on a pooled connection, outside a transaction.
macro_rules! on_conn {
    ($self:ident, |$tx:ident| $op:expr) => {{
        let conn = $self.pool.get().await?;
        let $tx = &conn.tx();
        $op.await
    }};
}

/// Runs `$op` (an operation taking `$tx`) in a transaction of its own.
macro_rules! in_tx {
    ($self:ident, |$tx:ident| $op:expr) => {{
        let mut conn = $self.pool.get().await?;
        let (pg, cache) = conn.transaction().await?;
        let out = {
            let $tx = &PgTx::new(&pg, cache);
            $op.await?
        };
        pg.commit().await.map_err(map_err)?;
        Ok(out)
    }};
}

mod ledger;

impl PostgresStore {
    /// Connects (`postgres://…` or `host=… user=…`), applies migrations and starts the
    /// status-update task. `options` is passed to the server at connect (tests set their
    /// own `search_path` there).
    pub async fn open(url: &str, connections: usize, options: Option<&str>) -> StoreResult<Self> {
        let mut config =
            tokio_postgres::Config::from_str(url).map_err(|e| StoreError::Unavailable(format!("store_url: {e}")))?;
        if let Some(options) = options {
            config.options(options);
        }
        bounded_waits(&mut config);
        let journal = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let mut clients = Vec::with_capacity(connections.max(1));
        for _ in 0..connections.max(1) {
            clients.push(Mutex::new(PgConn::open(&config, &journal).await.map_err(map_err)?));
        }
        let pool = Arc::new(Pool { config, journal, clients, next: AtomicUsize::new(0) });
        migrate(&pool).await?;
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(apply_updates(pool.clone(), rx));
        // A loop per four connections: the rest serve reads, connects and status updates.
        let committer = group::Committer::start(pool.clone(), (connections / 4).clamp(1, 4));
        Ok(PostgresStore { pool, updates: tx, committer, dims: Default::default() })
    }

    /// [`Self::barrier`], for at most `wait`: queued status updates that wait for an
    /// unreachable PostgreSQL (see [`apply_or_retry`]) must not hold a connection's read of its
    /// deliveries for a minute; the read fails as the store would, and is tried again.
    async fn barrier_within(&self, wait: Duration) -> StoreResult<()> {
        tokio::time::timeout(wait, self.barrier())
            .await
            .map_err(|_| StoreError::Unavailable("status updates are waiting for the store".into()))?
    }

    async fn barrier(&self) -> StoreResult<()> {
        let (tx, rx) = oneshot::channel();
        self.updates.send(Update::Barrier(tx)).map_err(|_| StoreError::Unavailable("update task stopped".into()))?;
        rx.await.map_err(|_| StoreError::Unavailable("update task stopped".into()))
    }
}

#[cfg(test)]
impl PostgresStore {
    /// `commit_push`, paused before COMMIT: `held` fires once its statements ran, and the
    /// transaction commits when `release` fires. For tests of what waits for a push.
    pub(crate) async fn commit_push_held(
        &self,
        push: NewPush,
        now: i64,
        held: oneshot::Sender<()>,
        release: oneshot::Receiver<()>,
    ) -> StoreResult<CommittedPush> {
        let mut conn = self.pool.get().await?;
        let (pg, cache) = conn.transaction().await?;
        let committed = ops::push::commit(&PgTx::new(&pg, cache), &push, now).await?;
        let _ = held.send(());
        let _ = release.await;
        pg.commit().await.map_err(map_err)?;
        Ok(committed)
    }
}

/// Bounds on what waits for the network, unless the URL sets its own: a connect gives up
/// after 5 s (a host that is down, or the first of several hosts), and a connection whose
/// server went silent (a partition, a primary that vanished) ends within about 20 s of
/// unanswered data, or 30 s when idle (keepalives), so that the pool reconnects, to the
/// new primary when the URL names several hosts with `target_session_attrs=read-write`.
fn bounded_waits(config: &mut tokio_postgres::Config) {
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(Duration::from_secs(5));
    }
    if config.get_tcp_user_timeout().is_none() {
        config.tcp_user_timeout(Duration::from_secs(20));
    }
    // tokio-postgres' default (two hours) would leave an idle connection to a vanished
    // server in the pool that long.
    if config.get_keepalives_idle() == Duration::from_secs(2 * 3600) {
        config.keepalives_idle(Duration::from_secs(15));
        config.keepalives_interval(Duration::from_secs(5));
        config.keepalives_retries(3);
    }
}

async fn migrate(pool: &Pool) -> StoreResult<()> {
    let mut conn = pool.get().await?;
    let tx = conn.client.transaction().await.map_err(map_err)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK]).await.map_err(map_err)?;
    tx.batch_execute(migrations::CREATE_LEDGER).await.map_err(map_err)?;
    for (version, sql) in migrations::POSTGRES {
        let applied = tx.query_opt(migrations::APPLIED.text(Dialect::Postgres), &[version]).await.map_err(map_err)?;
        if applied.is_none() {
            tx.batch_execute(sql).await.map_err(map_err)?;
            tx.execute(migrations::RECORD.text(Dialect::Postgres), &[version, &herald_core::now_ms()])
                .await
                .map_err(map_err)?;
            tracing::info!(version, "applied schema migration");
        }
    }
    tx.commit().await.map_err(map_err)
}

async fn apply_updates(pool: Arc<Pool>, mut rx: mpsc::UnboundedReceiver<Update>) {
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < UPDATE_BATCH {
            match rx.try_recv() {
                Ok(u) => batch.push(u),
                Err(_) => break,
            }
        }
        let mut statuses = Vec::new();
        let mut barriers = Vec::new();
        for u in batch {
            match u {
                Update::Status(s) => statuses.push(s),
                Update::Barrier(b) => barriers.push(b),
            }
        }
        if !statuses.is_empty() {
            apply_or_retry(&pool, statuses).await;
        }
        for b in barriers {
            let _ = b.send(());
        }
    }
}

/// How long a read of a device's deliveries waits for the status updates queued before it.
const BARRIER_WAIT_FOR_READS: Duration = Duration::from_secs(2);
/// The same for a bind (an API request, whose caller waits).
const BARRIER_WAIT_FOR_WRITES: Duration = Duration::from_secs(5);

/// How long queued status updates wait for PostgreSQL to come back before they are given
/// up (a device's acknowledgement then comes again: its delivery is still open).
const UPDATES_WAIT_FOR_STORE: Duration = Duration::from_secs(60);

/// Applies `statuses`; while PostgreSQL cannot be reached (a restart, a failover) tries
/// again, 100 ms to 2 s apart, for up to [`UPDATES_WAIT_FOR_STORE`], so that the
/// acknowledgements of devices that stayed connected are not dropped. A batch PostgreSQL
/// refuses is applied one by one, so that one bad update does not take the others with it.
async fn apply_or_retry(pool: &Pool, statuses: Vec<StatusUpdate>) {
    let started = tokio::time::Instant::now();
    let mut wait = Duration::from_millis(100);
    loop {
        match apply_batch(pool, &statuses).await {
            Ok(()) => return,
            Err(StoreError::Unavailable(e)) if started.elapsed() < UPDATES_WAIT_FOR_STORE => {
                tracing::debug!(error = %e, updates = statuses.len(), "status updates wait for the store");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(2));
            }
            Err(e) => {
                tracing::warn!(error = %e, "status updates failed; applying one by one");
                for s in statuses {
                    if let Err(e) = apply_batch(pool, std::slice::from_ref(&s)).await {
                        tracing::warn!(error = %e, update = ?s, "status update failed");
                    }
                }
                return;
            }
        }
    }
}

/// Applies status updates in order: those of deliveries in one transaction, then those of
/// device (and API key) rows one statement each. A transaction that held one device row while
/// waiting for another could deadlock with a push holding share locks on devices in another
/// order.
async fn apply_batch(pool: &Pool, updates: &[StatusUpdate]) -> StoreResult<()> {
    let mut conn = pool.get().await?;
    let (devices, deliveries): (Vec<&StatusUpdate>, Vec<&StatusUpdate>) =
        updates.iter().partition(|u| matches!(u, StatusUpdate::Disconnected { .. } | StatusUpdate::KeyUsed { .. }));
    if !deliveries.is_empty() {
        let (pg, cache) = conn.transaction().await?;
        updates::apply(&PgTx::new(&pg, cache), &deliveries).await?;
        pg.commit().await.map_err(map_err)?;
    }
    for u in devices {
        ops::push::apply_update(&conn.tx(), u).await?;
    }
    Ok(())
}

#[async_trait::async_trait]
impl Store for PostgresStore {
    async fn setting(&self, name: &str) -> StoreResult<Option<String>> {
        on_conn!(self, |tx| ops::apps::setting(tx, name))
    }

    async fn init_setting(&self, name: &str, value: &str) -> StoreResult<String> {
        on_conn!(self, |tx| ops::apps::init_setting(tx, name, value))
    }

    async fn create_app(&self, app: AppRecord, first_key: ApiKeyRecord) -> StoreResult<()> {
        in_tx!(self, |tx| ops::apps::create_app(tx, &app, &first_key))
    }

    async fn app(&self, app_id: &AppId) -> StoreResult<Option<AppRecord>> {
        on_conn!(self, |tx| ops::apps::app(tx, app_id))
    }

    async fn apps(&self) -> StoreResult<Vec<AppRecord>> {
        on_conn!(self, |tx| ops::apps::apps(tx))
    }

    async fn create_api_key(&self, key: ApiKeyRecord) -> StoreResult<()> {
        on_conn!(self, |tx| ops::apps::create_api_key(tx, &key))
    }

    async fn api_key(&self, key_id: &KeyId) -> StoreResult<Option<ApiKeyRecord>> {
        on_conn!(self, |tx| ops::apps::api_key(tx, key_id))
    }

    async fn api_keys(&self, app_id: &AppId) -> StoreResult<Vec<ApiKeyRecord>> {
        on_conn!(self, |tx| ops::apps::api_keys(tx, app_id))
    }

    async fn revoke_api_key(&self, app_id: &AppId, key_id: &KeyId, now: i64) -> StoreResult<bool> {
        on_conn!(self, |tx| ops::apps::revoke_api_key(tx, app_id, key_id, now))
    }

    async fn update_app(&self, app_id: &AppId, u: AppUpdate) -> StoreResult<bool> {
        on_conn!(self, |tx| ops::apps::update_app(tx, app_id, &u))
    }

    async fn put_console_session(&self, s: ConsoleSession, now: i64) -> StoreResult<()> {
        in_tx!(self, |tx| ops::apps::put_console_session(tx, &s, now))
    }

    async fn console_session(&self, id_hash: &str, now: i64) -> StoreResult<Option<ConsoleSession>> {
        on_conn!(self, |tx| ops::apps::console_session(tx, id_hash, now))
    }

    async fn end_console_session(&self, id_hash: &str) -> StoreResult<bool> {
        on_conn!(self, |tx| ops::apps::end_console_session(tx, id_hash))
    }

    async fn cluster(&self) -> StoreResult<ClusterView> {
        on_conn!(self, |tx| ops::apps::cluster(tx))
    }

    async fn leases(&self) -> StoreResult<Vec<(String, String, i64)>> {
        on_conn!(self, |tx| ops::apps::leases(tx))
    }

    async fn register_device(&self, reg: DeviceRegistration) -> StoreResult<Registered> {
        in_tx!(self, |tx| ops::devices::register(tx, &reg))
    }

    async fn device_by_token_hash(&self, token_hash: &str) -> StoreResult<Option<DeviceRecord>> {
        on_conn!(self, |tx| ops::devices::device_by_token_hash(tx, token_hash))
    }

    async fn device(&self, app_id: &AppId, device_id: &DeviceId) -> StoreResult<Option<DeviceRecord>> {
        on_conn!(self, |tx| ops::devices::device(tx, app_id, device_id))
    }

    async fn devices(
        &self,
        app_id: &AppId,
        filter: &DeviceFilter,
        offset: u64,
        limit: u64,
    ) -> StoreResult<(u64, Vec<DeviceRecord>)> {
        on_conn!(self, |tx| ops::devices::devices(tx, app_id, filter, offset, limit))
    }

    async fn device_credentials(&self, device_id: &DeviceId) -> StoreResult<Option<(AppId, String)>> {
        on_conn!(self, |tx| ops::devices::credentials(tx, device_id))
    }

    async fn report_device(
        &self,
        app_id: &AppId,
        device_id: &DeviceId,
        app_version: Option<String>,
        vendor_tokens: Option<serde_json::Map<String, serde_json::Value>>,
    ) -> StoreResult<bool> {
        in_tx!(self, |tx| ops::devices::report(tx, app_id, device_id, app_version.as_deref(), vendor_tokens))
    }

    async fn bind_user(
        &self,
        app_id: &AppId,
        device_id: &DeviceId,
        user_id: &UserId,
        now: i64,
    ) -> StoreResult<Option<Bound>> {
        self.barrier_within(BARRIER_WAIT_FOR_WRITES).await?;
        in_tx!(self, |tx| ops::devices::bind(tx, app_id, device_id, user_id, now))
    }

    async fn unbind_user(&self, app_id: &AppId, device_id: &DeviceId, now: i64) -> StoreResult<bool> {
        in_tx!(self, |tx| ops::devices::unbind(tx, app_id, device_id, now))
    }

    async fn user_devices(&self, app_id: &AppId, user_id: &UserId) -> StoreResult<Vec<DeviceRecord>> {
        on_conn!(self, |tx| ops::devices::user_devices(tx, app_id, user_id))
    }

    async fn device_connected(
        &self,
        device_id: &DeviceId,
        presence: &Presence,
        now: i64,
    ) -> StoreResult<Option<Presence>> {
        on_conn!(self, |tx| ops::devices::connected(tx, device_id, presence, now))
    }

    async fn node_started(&self, node: &str) -> StoreResult<u64> {
        on_conn!(self, |tx| ops::devices::node_started(tx, node))
    }

    async fn stale_pending(
        &self,
        node: &str,
        created_before: i64,
        broadcasts_since: i64,
        now: i64,
        limit: usize,
    ) -> StoreResult<Vec<DeviceId>> {
        on_conn!(self, |tx| ops::devices::stale(tx, node, created_before, broadcasts_since, now, limit))
    }

    async fn commit_broadcast(&self, b: NewBroadcast, now: i64) -> StoreResult<BroadcastCommitted> {
        in_tx!(self, |tx| ops::broadcast::commit(tx, &b, now))
    }

    async fn broadcast_recipients(&self, message_id: &MessageId, node: &str) -> StoreResult<Vec<DeviceId>> {
        on_conn!(self, |tx| ops::broadcast::recipients(tx, message_id, node))
    }

    async fn revoke(
        &self,
        app_id: &AppId,
        what: RevokeTarget,
        now: i64,
        since: i64,
    ) -> StoreResult<Option<Revocation>> {
        in_tx!(self, |tx| ops::revoke::revoke(tx, app_id, &what, now, since))
    }

    async fn create_schedule(&self, s: ScheduleRecord) -> StoreResult<()> {
        on_conn!(self, |tx| ops::schedules::create(tx, &s))
    }

    async fn due_schedules(&self, now: i64, limit: usize) -> StoreResult<Vec<ScheduleRecord>> {
        on_conn!(self, |tx| ops::schedules::due(tx, now, limit))
    }

    async fn fire_schedule(&self, claim: FireClaim, now: i64) -> StoreResult<FireOutcome> {
        in_tx!(self, |tx| ops::schedules::fire(tx, &claim, now))
    }

    async fn schedules(
        &self,
        app_id: &AppId,
        unique_id: Option<&str>,
        from: i64,
        to: i64,
    ) -> StoreResult<Vec<ScheduleRecord>> {
        on_conn!(self, |tx| ops::schedules::list(tx, app_id, unique_id, from, to))
    }

    async fn cancel_schedule(&self, app_id: &AppId, unique_id: &str) -> StoreResult<Cancelled> {
        on_conn!(self, |tx| ops::schedules::cancel(tx, app_id, unique_id))
    }

    async fn template_in_use(&self, app_id: &AppId, name: &str) -> StoreResult<bool> {
        on_conn!(self, |tx| ops::schedules::template_in_use(tx, app_id, name))
    }

    async fn create_template(&self, t: TemplateRecord, max_per_app: usize) -> StoreResult<TemplateCreated> {
        in_tx!(self, |tx| ops::apps::create_template(tx, &t, max_per_app))
    }

    async fn template(&self, app_id: &AppId, name: &str) -> StoreResult<Option<TemplateRecord>> {
        on_conn!(self, |tx| ops::apps::template(tx, app_id, name))
    }

    async fn templates(&self, app_id: &AppId) -> StoreResult<Vec<TemplateRecord>> {
        on_conn!(self, |tx| ops::apps::templates(tx, app_id))
    }

    async fn update_template(&self, t: TemplateRecord) -> StoreResult<bool> {
        on_conn!(self, |tx| ops::apps::update_template(tx, &t))
    }

    async fn delete_template(&self, app_id: &AppId, name: &str) -> StoreResult<bool> {
        on_conn!(self, |tx| ops::apps::delete_template(tx, app_id, name))
    }

    async fn commit_push(&self, push: NewPush, now: i64) -> StoreResult<CommittedPush> {
        let (push, committed) = self.committer.push(push, now).await?;
        if self.pool.journal.load(std::sync::atomic::Ordering::Relaxed) {
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
        self.barrier_within(BARRIER_WAIT_FOR_READS).await?;
        on_conn!(self, |tx| ops::push::pending(tx, device_id, now, limit))
    }

    fn record(&self, update: StatusUpdate) {
        if self.updates.send(Update::Status(update)).is_err() {
            tracing::warn!("status update dropped: the update task has stopped");
        }
    }

    async fn expire_due(&self, now: i64) -> StoreResult<u64> {
        let conn = self.pool.get().await?;
        let tx = conn.tx();
        // Nonces live in a table here: the sweep drops those past their window.
        tx.execute(&sql::PURGE_NONCES, &[&now]).await?;
        ops::push::expire(&tx, now).await
    }

    async fn task(&self, app_id: &AppId, task_id: &TaskId) -> StoreResult<Option<TaskView>> {
        on_conn!(self, |tx| ops::views::task(tx, app_id, task_id))
    }

    async fn tasks(
        &self,
        app_id: &AppId,
        filter: &TaskFilter,
        offset: u64,
        limit: u64,
    ) -> StoreResult<(u64, Vec<TaskSummary>)> {
        on_conn!(self, |tx| ops::views::tasks(tx, app_id, filter, offset, limit))
    }

    async fn message(&self, app_id: &AppId, message_id: &MessageId) -> StoreResult<Option<MessageView>> {
        on_conn!(self, |tx| ops::views::message(tx, app_id, message_id))
    }

    async fn flush(&self) -> StoreResult<()> {
        self.barrier().await
    }

    async fn claim_nonce(&self, key_id: &KeyId, nonce: &str, now: i64, expires_at: i64) -> StoreResult<bool> {
        self.committer.nonce(key_id.as_str(), nonce, now, expires_at).await
    }

    async fn try_lease(&self, name: &str, holder: &str, now: i64, ttl_ms: i64) -> StoreResult<bool> {
        on_conn!(self, |tx| ops::apps::try_lease(tx, name, holder, now, ttl_ms))
    }

    async fn put_channel(&self, channel: ChannelRecord) -> StoreResult<()> {
        on_conn!(self, |tx| ops::channels::put(tx, &channel))
    }

    async fn channel(&self, app_id: &AppId, kind: Channel) -> StoreResult<Option<ChannelRecord>> {
        on_conn!(self, |tx| ops::channels::get(tx, app_id, kind))
    }

    async fn channels(&self, app_id: &AppId) -> StoreResult<Vec<ChannelRecord>> {
        on_conn!(self, |tx| ops::channels::all(tx, app_id))
    }

    async fn delete_channel(&self, app_id: &AppId, kind: Channel) -> StoreResult<bool> {
        on_conn!(self, |tx| ops::channels::delete(tx, app_id, kind))
    }

    async fn routing(&self, app_id: &AppId) -> StoreResult<Option<Routing>> {
        on_conn!(self, |tx| ops::channels::routing(tx, app_id))
    }

    async fn set_routing(&self, app_id: &AppId, routing: Routing) -> StoreResult<bool> {
        on_conn!(self, |tx| ops::channels::set_routing(tx, app_id, &routing))
    }

    async fn claim_vendor_sends(
        &self,
        channel: Channel,
        now: i64,
        lease_ms: i64,
        limit: usize,
    ) -> StoreResult<Vec<VendorSend>> {
        in_tx!(self, |tx| ops::channels::claim(tx, channel, now, lease_ms, limit))
    }

    async fn finish_vendor_sends(&self, done: Vec<VendorSendDone>) -> StoreResult<()> {
        in_tx!(self, |tx| ops::channels::finish(tx, &done))
    }

    async fn invalid_tokens(&self, app_id: &AppId, offset: u64, limit: u64) -> StoreResult<(u64, Vec<InvalidToken>)> {
        on_conn!(self, |tx| ops::channels::invalid_tokens(tx, app_id, offset, limit))
    }
}
