//! The PostgreSQL backend, for a cluster of nodes sharing one database.
//!
//! Each operation is one transaction on a pooled connection; PostgreSQL itself groups the
//! WAL flushes of concurrent commits, so many pushes share one fsync as with SQLite's
//! writer. Status updates that nobody waits for ([`Store::record`]) go through one task that
//! applies them in order, many per transaction; reads that must see them
//! ([`Store::pending_deliveries`], [`Store::flush`]) wait behind a barrier in that queue.

mod tx;

use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::{Mutex, MutexGuard, mpsc, oneshot};
use tokio_postgres::{Client, GenericClient, NoTls, Row, Statement, Transaction};

use super::*;
use crate::store::broadcast_sql::pg;
use crate::store::schedule_sql;

const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("../../../migrations/postgres/0001_init.sql")),
    (2, include_str!("../../../migrations/postgres/0002_cluster.sql")),
    (3, include_str!("../../../migrations/postgres/0003_presence.sql")),
    (4, include_str!("../../../migrations/postgres/0004_templates.sql")),
    (5, include_str!("../../../migrations/postgres/0005_revoke.sql")),
    (6, include_str!("../../../migrations/postgres/0006_broadcasts.sql")),
    (7, include_str!("../../../migrations/postgres/0007_schedules.sql")),
];
/// Serialises migrations of nodes starting together (any constant unique to Herald).
const MIGRATION_LOCK: i64 = 0x4845_5241_4c44;
/// Most queued status updates applied in one transaction.
const UPDATE_BATCH: usize = 2048;

pub struct PostgresStore {
    pool: Arc<Pool>,
    updates: mpsc::UnboundedSender<Update>,
}

enum Update {
    Status(StatusUpdate),
    /// Answered once every update queued before it is committed.
    Barrier(oneshot::Sender<()>),
}

struct Pool {
    config: tokio_postgres::Config,
    clients: Vec<Mutex<PgConn>>,
    next: AtomicUsize,
}

/// One pooled connection and the statements prepared on it.
struct PgConn {
    client: Client,
    cache: StmtCache,
}

/// Statements prepared on one connection, by SQL text.
type StmtCache = parking_lot::Mutex<std::collections::HashMap<String, Statement>>;

impl PgConn {
    async fn open(config: &tokio_postgres::Config) -> Result<PgConn, tokio_postgres::Error> {
        Ok(PgConn { client: connect(config).await?, cache: Default::default() })
    }

    fn db(&self) -> Db<'_, Client> {
        Db::new(&self.client, &self.cache)
    }

    async fn transaction(&mut self) -> Result<(Transaction<'_>, &StmtCache), tokio_postgres::Error> {
        let PgConn { client, cache } = self;
        Ok((client.transaction().await?, &*cache))
    }
}

/// A client or a transaction with the statement cache of its connection: each SQL text is
/// parsed and planned once per connection, then only bound and executed (one round trip
/// per statement instead of two, and no planning on the server).
pub(super) struct Db<'a, C> {
    c: &'a C,
    cache: &'a StmtCache,
}

type Params<'a> = &'a [&'a (dyn tokio_postgres::types::ToSql + Sync)];

impl<'a, C: GenericClient + Sync> Db<'a, C> {
    fn new(c: &'a C, cache: &'a StmtCache) -> Self {
        Db { c, cache }
    }

    async fn statement(&self, sql: &str) -> Result<Statement, tokio_postgres::Error> {
        if let Some(s) = self.cache.lock().get(sql) {
            return Ok(s.clone());
        }
        let s = self.c.prepare(sql).await?;
        self.cache.lock().insert(sql.to_owned(), s.clone());
        Ok(s)
    }

    pub(super) async fn execute(&self, sql: &str, params: Params<'_>) -> Result<u64, tokio_postgres::Error> {
        self.c.execute(&self.statement(sql).await?, params).await
    }

    pub(super) async fn query(&self, sql: &str, params: Params<'_>) -> Result<Vec<Row>, tokio_postgres::Error> {
        self.c.query(&self.statement(sql).await?, params).await
    }

    pub(super) async fn query_one(&self, sql: &str, params: Params<'_>) -> Result<Row, tokio_postgres::Error> {
        self.c.query_one(&self.statement(sql).await?, params).await
    }

    pub(super) async fn query_opt(&self, sql: &str, params: Params<'_>) -> Result<Option<Row>, tokio_postgres::Error> {
        self.c.query_opt(&self.statement(sql).await?, params).await
    }
}

async fn connect(config: &tokio_postgres::Config) -> Result<Client, tokio_postgres::Error> {
    let (client, connection) = config.connect(NoTls).await?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::warn!(error = %e, "PostgreSQL connection ended");
        }
    });
    Ok(client)
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
            *guard = PgConn::open(&self.config).await.map_err(map_err)?;
        }
        Ok(guard)
    }
}

pub(crate) fn map_err(err: tokio_postgres::Error) -> StoreError {
    // No SQLSTATE: the connection or the server is gone, not the statement.
    if err.is_closed() || err.code().is_none() {
        StoreError::Unavailable(err.to_string())
    } else {
        StoreError::Internal(err.to_string())
    }
}

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
        let mut clients = Vec::with_capacity(connections.max(1));
        for _ in 0..connections.max(1) {
            clients.push(Mutex::new(PgConn::open(&config).await.map_err(map_err)?));
        }
        let pool = Arc::new(Pool { config, clients, next: AtomicUsize::new(0) });
        migrate(&pool).await?;
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(apply_updates(pool.clone(), rx));
        Ok(PostgresStore { pool, updates: tx })
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
        let (tx, cache) = conn.transaction().await.map_err(map_err)?;
        let db = Db::new(&tx, cache);
        let committed = tx::commit_push(&db, push, now).await.map_err(map_err)?;
        let _ = held.send(());
        let _ = release.await;
        tx.commit().await.map_err(map_err)?;
        Ok(committed)
    }
}

async fn migrate(pool: &Pool) -> StoreResult<()> {
    let mut conn = pool.get().await?;
    let tx = conn.client.transaction().await.map_err(map_err)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK]).await.map_err(map_err)?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)",
    )
    .await
    .map_err(map_err)?;
    for (version, sql) in MIGRATIONS {
        let applied = tx
            .query_opt("SELECT version FROM schema_migrations WHERE version = $1", &[version])
            .await
            .map_err(map_err)?;
        if applied.is_none() {
            tx.batch_execute(sql).await.map_err(map_err)?;
            tx.execute(
                "INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)",
                &[version, &crate::now_ms()],
            )
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
        if !statuses.is_empty()
            && let Err(e) = tx::apply_updates(&pool, &statuses).await
        {
            tracing::warn!(error = %e, "status updates failed; applying one by one");
            for s in statuses {
                if let Err(e) = tx::apply_updates(&pool, std::slice::from_ref(&s)).await {
                    tracing::warn!(error = %e, update = ?s, "status update failed");
                }
            }
        }
        for b in barriers {
            let _ = b.send(());
        }
    }
}

#[async_trait::async_trait]
impl Store for PostgresStore {
    async fn setting(&self, name: &str) -> StoreResult<Option<String>> {
        tx::setting(&self.pool.get().await?.db(), name).await.map_err(map_err)
    }

    async fn init_setting(&self, name: &str, value: &str) -> StoreResult<String> {
        tx::init_setting(&self.pool.get().await?.db(), name, value).await.map_err(map_err)
    }

    async fn create_app(&self, app: AppRecord, first_key: ApiKeyRecord) -> StoreResult<()> {
        let mut conn = self.pool.get().await?;
        let (tx, cache) = conn.transaction().await.map_err(map_err)?;
        let db = Db::new(&tx, cache);
        tx::insert_app(&db, &app).await.map_err(map_err)?;
        tx::insert_key(&db, &first_key).await.map_err(map_err)?;
        tx.commit().await.map_err(map_err)
    }

    async fn app(&self, app_id: &AppId) -> StoreResult<Option<AppRecord>> {
        tx::app(&self.pool.get().await?.db(), app_id).await.map_err(map_err)
    }

    async fn apps(&self) -> StoreResult<Vec<AppRecord>> {
        tx::apps(&self.pool.get().await?.db()).await.map_err(map_err)
    }

    async fn create_api_key(&self, key: ApiKeyRecord) -> StoreResult<()> {
        tx::insert_key(&self.pool.get().await?.db(), &key).await.map_err(map_err)
    }

    async fn api_key(&self, key_id: &KeyId) -> StoreResult<Option<ApiKeyRecord>> {
        tx::api_key(&self.pool.get().await?.db(), key_id).await.map_err(map_err)
    }

    async fn api_keys(&self, app_id: &AppId) -> StoreResult<Vec<ApiKeyRecord>> {
        tx::api_keys(&self.pool.get().await?.db(), app_id).await.map_err(map_err)
    }

    async fn revoke_api_key(&self, app_id: &AppId, key_id: &KeyId, now: i64) -> StoreResult<bool> {
        tx::revoke_api_key(&self.pool.get().await?.db(), app_id, key_id, now).await.map_err(map_err)
    }

    async fn register_device(&self, reg: DeviceRegistration) -> StoreResult<DeviceRecord> {
        let mut conn = self.pool.get().await?;
        let (tx, cache) = conn.transaction().await.map_err(map_err)?;
        let db = Db::new(&tx, cache);
        let device = tx::register_device(&db, reg).await.map_err(map_err)?;
        tx.commit().await.map_err(map_err)?;
        Ok(device)
    }

    async fn device_by_token_hash(&self, token_hash: &str) -> StoreResult<Option<DeviceRecord>> {
        tx::device_by(&self.pool.get().await?.db(), "token_hash = $1", &[&token_hash]).await.map_err(map_err)
    }

    async fn device(&self, app_id: &AppId, device_id: &DeviceId) -> StoreResult<Option<DeviceRecord>> {
        tx::device_by(
            &self.pool.get().await?.db(),
            "device_id = $1 AND app_id = $2",
            &[&device_id.as_str(), &app_id.as_str()],
        )
        .await
        .map_err(map_err)
    }

    async fn device_credentials(&self, device_id: &DeviceId) -> StoreResult<Option<(AppId, String)>> {
        tx::device_credentials(&self.pool.get().await?.db(), device_id).await.map_err(map_err)
    }

    async fn report_device(
        &self,
        app_id: &AppId,
        device_id: &DeviceId,
        app_version: Option<String>,
        vendor_tokens: Option<serde_json::Map<String, serde_json::Value>>,
    ) -> StoreResult<bool> {
        let mut conn = self.pool.get().await?;
        let (tx, cache) = conn.transaction().await.map_err(map_err)?;
        let db = Db::new(&tx, cache);
        let found = tx::report_device(&db, app_id, device_id, app_version, vendor_tokens).await.map_err(map_err)?;
        tx.commit().await.map_err(map_err)?;
        Ok(found)
    }

    async fn bind_user(
        &self,
        app_id: &AppId,
        device_id: &DeviceId,
        user_id: &UserId,
        now: i64,
    ) -> StoreResult<Option<Bound>> {
        self.barrier().await?;
        let mut conn = self.pool.get().await?;
        let (tx, cache) = conn.transaction().await.map_err(map_err)?;
        let db = Db::new(&tx, cache);
        let pending = tx::bind_user(&db, app_id, device_id, user_id, now).await.map_err(map_err)?;
        tx.commit().await.map_err(map_err)?;
        Ok(pending)
    }

    async fn unbind_user(&self, app_id: &AppId, device_id: &DeviceId, now: i64) -> StoreResult<bool> {
        let mut conn = self.pool.get().await?;
        let (tx, cache) = conn.transaction().await.map_err(map_err)?;
        let db = Db::new(&tx, cache);
        let found = tx::unbind_user(&db, app_id, device_id, now).await.map_err(map_err)?;
        tx.commit().await.map_err(map_err)?;
        Ok(found)
    }

    async fn user_devices(&self, app_id: &AppId, user_id: &UserId) -> StoreResult<Vec<DeviceRecord>> {
        tx::user_devices(&self.pool.get().await?.db(), app_id, user_id).await.map_err(map_err)
    }

    async fn commit_broadcast(&self, b: NewBroadcast, now: i64) -> StoreResult<BroadcastCommitted> {
        let mut conn = self.pool.get().await?;
        let (tx, cache) = conn.transaction().await.map_err(map_err)?;
        let db = Db::new(&tx, cache);
        let done = tx::commit_broadcast(&db, &b, now).await.map_err(map_err)?;
        tx.commit().await.map_err(map_err)?;
        Ok(done)
    }

    async fn broadcast_recipients(&self, message_id: &MessageId, node: &str) -> StoreResult<Vec<DeviceId>> {
        tx::broadcast_recipients(&self.pool.get().await?.db(), message_id, node).await.map_err(map_err)
    }

    async fn revoke(
        &self,
        app_id: &AppId,
        what: RevokeTarget,
        now: i64,
        since: i64,
    ) -> StoreResult<Option<Revocation>> {
        let mut conn = self.pool.get().await?;
        let (tx, cache) = conn.transaction().await.map_err(map_err)?;
        let db = Db::new(&tx, cache);
        let done = tx::revoke(&db, app_id, &what, now, since).await.map_err(map_err)?;
        tx.commit().await.map_err(map_err)?;
        Ok(done)
    }

    async fn create_schedule(&self, s: ScheduleRecord) -> StoreResult<()> {
        tx::insert_schedule(&self.pool.get().await?.db(), &s).await.map_err(map_err)
    }

    async fn due_schedules(&self, now: i64, limit: usize) -> StoreResult<Vec<ScheduleRecord>> {
        let conn = self.pool.get().await?;
        let rows = conn.db().query(&pg(&schedule_sql::due()), &[&now, &(limit as i64)]).await.map_err(map_err)?;
        rows.iter().map(tx::schedule_row).collect::<Result<_, _>>().map_err(map_err)
    }

    async fn fire_schedule(&self, claim: FireClaim, now: i64) -> StoreResult<Option<Option<Fired>>> {
        let mut conn = self.pool.get().await?;
        let (tx, cache) = conn.transaction().await.map_err(map_err)?;
        let db = Db::new(&tx, cache);
        let fired = tx::fire_schedule(&db, claim, now).await.map_err(map_err)?;
        tx.commit().await.map_err(map_err)?;
        Ok(fired)
    }

    async fn schedules(
        &self,
        app_id: &AppId,
        unique_id: Option<&str>,
        from: i64,
        to: i64,
    ) -> StoreResult<Vec<ScheduleRecord>> {
        let conn = self.pool.get().await?;
        let db = conn.db();
        let rows = match unique_id {
            Some(id) => db.query(&pg(&schedule_sql::family()), &[&app_id.as_str(), &id]).await,
            None => db.query(&pg(&schedule_sql::of_app()), &[&app_id.as_str(), &from, &to]).await,
        }
        .map_err(map_err)?;
        rows.iter().map(tx::schedule_row).collect::<Result<_, _>>().map_err(map_err)
    }

    async fn cancel_schedule(&self, app_id: &AppId, unique_id: &str) -> StoreResult<Result<bool, i64>> {
        let conn = self.pool.get().await?;
        let db = conn.db();
        if db.execute(&pg(schedule_sql::CANCEL), &[&app_id.as_str(), &unique_id]).await.map_err(map_err)? == 1 {
            return Ok(Ok(true));
        }
        let status = db.query_opt(&pg(schedule_sql::STATUS), &[&app_id.as_str(), &unique_id]).await.map_err(map_err)?;
        Ok(match status {
            Some(r) => Err(r.try_get(0).map_err(map_err)?),
            None => Ok(false),
        })
    }

    async fn template_in_use(&self, app_id: &AppId, name: &str) -> StoreResult<bool> {
        let conn = self.pool.get().await?;
        let r = conn.db().query_opt(&pg(schedule_sql::TEMPLATE_IN_USE), &[&app_id.as_str(), &name]).await;
        Ok(r.map_err(map_err)?.is_some())
    }

    async fn create_template(&self, t: TemplateRecord, max_per_app: usize) -> StoreResult<TemplateCreated> {
        let mut conn = self.pool.get().await?;
        let (tx, cache) = conn.transaction().await.map_err(map_err)?;
        let db = Db::new(&tx, cache);
        let created = tx::create_template(&db, &t, max_per_app).await.map_err(map_err)?;
        tx.commit().await.map_err(map_err)?;
        Ok(created)
    }

    async fn template(&self, app_id: &AppId, name: &str) -> StoreResult<Option<TemplateRecord>> {
        tx::template(&self.pool.get().await?.db(), app_id, name).await.map_err(map_err)
    }

    async fn templates(&self, app_id: &AppId) -> StoreResult<Vec<TemplateRecord>> {
        tx::templates(&self.pool.get().await?.db(), app_id).await.map_err(map_err)
    }

    async fn update_template(&self, t: TemplateRecord) -> StoreResult<bool> {
        tx::update_template(&self.pool.get().await?.db(), &t).await.map_err(map_err)
    }

    async fn delete_template(&self, app_id: &AppId, name: &str) -> StoreResult<bool> {
        tx::delete_template(&self.pool.get().await?.db(), app_id, name).await.map_err(map_err)
    }

    async fn device_connected(
        &self,
        device_id: &DeviceId,
        presence: &Presence,
        now: i64,
    ) -> StoreResult<Option<Presence>> {
        tx::device_connected(&self.pool.get().await?.db(), device_id, presence, now).await.map_err(map_err)
    }

    async fn node_started(&self, node: &str) -> StoreResult<u64> {
        let conn = self.pool.get().await?;
        conn.db()
            .execute("UPDATE devices SET online_node = NULL, online_gen = NULL WHERE online_node = $1", &[&node])
            .await
            .map_err(map_err)
    }

    async fn stale_pending(
        &self,
        node: &str,
        created_before: i64,
        now: i64,
        limit: usize,
    ) -> StoreResult<Vec<DeviceId>> {
        tx::stale_pending(&self.pool.get().await?.db(), node, created_before, now, limit).await.map_err(map_err)
    }

    async fn commit_push(&self, push: NewPush, now: i64) -> StoreResult<CommittedPush> {
        let mut conn = self.pool.get().await?;
        let (tx, cache) = conn.transaction().await.map_err(map_err)?;
        let db = Db::new(&tx, cache);
        let committed = tx::commit_push(&db, push, now).await.map_err(map_err)?;
        if committed.replayed {
            // Nothing of a whole repeat is kept (its task row included).
            tx.rollback().await.map_err(map_err)?;
        } else {
            tx.commit().await.map_err(map_err)?;
        }
        Ok(committed)
    }

    async fn pending_deliveries(
        &self,
        device_id: &DeviceId,
        now: i64,
        limit: usize,
    ) -> StoreResult<Vec<PendingDelivery>> {
        self.barrier().await?;
        tx::pending_deliveries(&self.pool.get().await?.db(), device_id, now, limit).await.map_err(map_err)
    }

    fn record(&self, update: StatusUpdate) {
        if self.updates.send(Update::Status(update)).is_err() {
            tracing::warn!("status update dropped: the update task has stopped");
        }
    }

    async fn expire_due(&self, now: i64) -> StoreResult<u64> {
        tx::expire_due(&self.pool.get().await?.db(), now).await.map_err(map_err)
    }

    async fn task(&self, app_id: &AppId, task_id: &TaskId) -> StoreResult<Option<TaskView>> {
        tx::task(&self.pool.get().await?.db(), app_id, task_id).await.map_err(map_err)
    }

    async fn message(&self, app_id: &AppId, message_id: &MessageId) -> StoreResult<Option<MessageView>> {
        let conn = self.pool.get().await?;
        let mut views =
            tx::message_views(&conn.db(), "message_id = $1 AND app_id = $2", &[&message_id.as_str(), &app_id.as_str()])
                .await
                .map_err(map_err)?;
        Ok(views.pop())
    }

    async fn flush(&self) -> StoreResult<()> {
        self.barrier().await
    }

    async fn claim_nonce(&self, key_id: &KeyId, nonce: &str, now: i64, expires_at: i64) -> StoreResult<bool> {
        tx::claim_nonce(&self.pool.get().await?.db(), key_id, nonce, now, expires_at).await.map_err(map_err)
    }

    async fn try_lease(&self, name: &str, holder: &str, now: i64, ttl_ms: i64) -> StoreResult<bool> {
        tx::try_lease(&self.pool.get().await?.db(), name, holder, now, ttl_ms).await.map_err(map_err)
    }
}
