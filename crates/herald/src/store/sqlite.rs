//! The SQLite backend: one writer thread that group-commits, and a few read-only
//! connections. WAL mode lets readers run while the writer commits.
//!
//! Every write is a job sent to the writer thread. The thread takes the first job, then
//! every job already waiting (up to `max_batch`), runs each inside its own SAVEPOINT (a
//! failing job rolls back alone) and commits them all at once: one fsync for the group.
//! Callers are answered only after COMMIT returned, so "200 OK" means "on disk".

use std::path::Path;
use std::sync::Arc;

use parking_lot::Mutex;
use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use tokio::sync::{mpsc, oneshot};

use super::*;

const MIGRATIONS: &[(i64, &str)] = &[(1, include_str!("../../migrations/sqlite/0001_init.sql"))];

/// How often the WAL is copied back into the database file.
const CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_millis(500);

type Completion = Box<dyn FnOnce(Result<(), StoreError>) + Send>;
type WriteJob = Box<dyn FnOnce(&Connection) -> Completion + Send>;

pub struct SqliteStore {
    jobs: mpsc::UnboundedSender<WriteJob>,
    /// Read jobs, served by `reader_connections` threads that each own a connection. Own
    /// threads rather than `spawn_blocking`: a burst of reads (a reconnect storm) must not
    /// grow the process by a thread per concurrent read.
    reads: std::sync::mpsc::Sender<ReadJob>,
}

type ReadJob = Box<dyn FnOnce(&Connection) + Send>;

fn map_err(err: rusqlite::Error) -> StoreError {
    use rusqlite::ErrorCode as C;
    match &err {
        rusqlite::Error::SqliteFailure(e, _)
            if matches!(
                e.code,
                C::DatabaseBusy | C::DatabaseLocked | C::DiskFull | C::CannotOpen | C::SystemIoFailure | C::ReadOnly
            ) =>
        {
            StoreError::Unavailable(err.to_string())
        }
        _ => StoreError::Internal(err.to_string()),
    }
}

fn stopped() -> StoreError {
    StoreError::Unavailable("the store writer has stopped".into())
}

/// Runs `f` inside a savepoint so that its failure undoes only its own changes.
fn in_savepoint<T>(conn: &Connection, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> rusqlite::Result<T> {
    conn.prepare_cached("SAVEPOINT op")?.execute([])?;
    match f(conn) {
        Ok(v) => {
            conn.prepare_cached("RELEASE op")?.execute([])?;
            Ok(v)
        }
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK TO op; RELEASE op");
            Err(e)
        }
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` and applies migrations.
    pub fn open(path: &Path, cfg: &crate::config::StoreConfig) -> StoreResult<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| StoreError::Unavailable(format!("{}: {e}", dir.display())))?;
        }
        let writer = Connection::open(path).map_err(map_err)?;
        let sync = if cfg.sqlite_synchronous == "normal" { "NORMAL" } else { "FULL" };
        writer
            .execute_batch(&format!(
                "PRAGMA page_size = 2048; PRAGMA journal_mode = WAL; PRAGMA synchronous = {sync}; PRAGMA foreign_keys = ON; \
                 PRAGMA busy_timeout = 5000; PRAGMA cache_size = -65536; \
                 PRAGMA wal_autocheckpoint = 0; PRAGMA journal_size_limit = 67108864;"
            ))
            .map_err(map_err)?;
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
            let rx = read_rx.clone();
            std::thread::Builder::new()
                .name(format!("sqlite-reader-{i}"))
                .spawn(move || {
                    loop {
                        let job = rx.lock().recv();
                        match job {
                            Ok(job) => job(&conn),
                            Err(_) => return,
                        }
                    }
                })
                .map_err(|e| StoreError::Unavailable(format!("cannot start a reader thread: {e}")))?;
        }
        // Checkpoints run beside the writer, not inside a commit: an automatic checkpoint
        // would stall every push waiting on that group for the time it copies the WAL.
        let checkpointer = Connection::open(path).map_err(map_err)?;
        checkpointer.execute_batch("PRAGMA busy_timeout = 5000; PRAGMA cache_size = -1024;").map_err(map_err)?;
        std::thread::Builder::new()
            .name("sqlite-checkpoint".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(CHECKPOINT_EVERY);
                    if let Err(e) = checkpointer.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
                        tracing::warn!(error = %e, "WAL checkpoint failed");
                    }
                }
            })
            .map_err(|e| StoreError::Unavailable(format!("cannot start the checkpoint thread: {e}")))?;
        let (tx, rx) = mpsc::unbounded_channel();
        let max_batch = cfg.max_batch;
        std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || writer_loop(writer, rx, max_batch))
            .map_err(|e| StoreError::Unavailable(format!("cannot start the writer thread: {e}")))?;
        Ok(SqliteStore { jobs: tx, reads: read_tx })
    }

    async fn write<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let job: WriteJob = Box::new(move |conn| {
            let result = in_savepoint(conn, f);
            Box::new(move |commit: Result<(), StoreError>| {
                let _ = tx.send(commit.and_then(|()| result.map_err(map_err)));
            })
        });
        self.jobs.send(job).map_err(|_| stopped())?;
        rx.await.map_err(|_| stopped())?
    }

    fn write_detached(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<()> + Send + 'static) {
        let job: WriteJob = Box::new(move |conn| {
            if let Err(e) = in_savepoint(conn, f) {
                tracing::warn!(error = %e, "queued status update failed");
            }
            Box::new(|_| {})
        });
        if self.jobs.send(job).is_err() {
            tracing::warn!("status update dropped: the store writer has stopped");
        }
    }

    async fn read<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let job: ReadJob = Box::new(move |conn| {
            let _ = tx.send(f(conn));
        });
        self.reads.send(job).map_err(|_| StoreError::Unavailable("the store readers have stopped".into()))?;
        rx.await.map_err(|_| StoreError::Unavailable("the store readers have stopped".into()))?.map_err(map_err)
    }
}

fn writer_loop(conn: Connection, mut rx: mpsc::UnboundedReceiver<WriteJob>, max_batch: usize) {
    let mut completions: Vec<Completion> = Vec::with_capacity(max_batch);
    while let Some(first) = rx.blocking_recv() {
        if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
            let err = map_err(e);
            first(&conn)(Err(err));
            continue;
        }
        completions.push(first(&conn));
        while completions.len() < max_batch {
            match rx.try_recv() {
                Ok(job) => completions.push(job(&conn)),
                Err(_) => break,
            }
        }
        let outcome = conn.execute_batch("COMMIT").map_err(map_err);
        if let Err(e) = &outcome {
            tracing::error!(error = %e, jobs = completions.len(), "group commit failed");
            let _ = conn.execute_batch("ROLLBACK");
        }
        for done in completions.drain(..) {
            done(outcome.clone());
        }
    }
    tracing::debug!("sqlite writer stopped");
}

fn migrate(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)",
    )?;
    for (version, sql) in MIGRATIONS {
        let applied: Option<i64> = conn
            .query_row("SELECT version FROM schema_migrations WHERE version = ?1", [version], |r| r.get(0))
            .optional()?;
        if applied.is_none() {
            let tx = conn.unchecked_transaction()?;
            tx.execute_batch(sql)?;
            tx.execute(
                "INSERT INTO schema_migrations (version, applied_at) VALUES (?1, ?2)",
                params![version, crate::now_ms()],
            )?;
            tx.commit()?;
            tracing::info!(version, "applied schema migration");
        }
    }
    Ok(())
}

const APP_COLUMNS: &str = "app_id, name, app_key_hash, bind_secret_sealed, trust_client_bind, created_at";

fn app_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<AppRecord> {
    Ok(AppRecord {
        app_id: AppId::new(r.get::<_, String>(0)?),
        name: r.get(1)?,
        app_key_hash: r.get(2)?,
        bind_secret_sealed: r.get(3)?,
        trust_client_bind: r.get(4)?,
        created_at: r.get(5)?,
    })
}

const KEY_COLUMNS: &str = "key_id, app_id, kind, material, created_at, revoked_at";

fn key_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ApiKeyRecord> {
    let kind: String = r.get(2)?;
    Ok(ApiKeyRecord {
        key_id: KeyId::new(r.get::<_, String>(0)?),
        app_id: AppId::new(r.get::<_, String>(1)?),
        kind: KeyKind::parse(&kind).ok_or_else(|| corrupt(format!("unknown key kind {kind}")))?,
        material: r.get(3)?,
        created_at: r.get(4)?,
        revoked_at: r.get(5)?,
    })
}

const DEVICE_COLUMNS: &str = "device_id, app_id, install_id, platform, app_version, os_version, model, \
                              vendor_tokens, user_id, bound_at, created_at, last_seen";

fn device_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<DeviceRecord> {
    let tokens: String = r.get(7)?;
    Ok(DeviceRecord {
        device_id: DeviceId::new(r.get::<_, String>(0)?),
        app_id: AppId::new(r.get::<_, String>(1)?),
        install_id: r.get(2)?,
        platform: r.get(3)?,
        app_version: r.get(4)?,
        os_version: r.get(5)?,
        model: r.get(6)?,
        vendor_tokens: serde_json::from_str(&tokens).map_err(|e| corrupt(format!("vendor_tokens: {e}")))?,
        user_id: r.get::<_, Option<String>>(8)?.map(UserId::new),
        bound_at: r.get(9)?,
        created_at: r.get(10)?,
        last_seen: r.get(11)?,
    })
}

fn corrupt(msg: String) -> rusqlite::Error {
    rusqlite::Error::ToSqlConversionFailure(msg.into())
}

fn pending_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<PendingDelivery> {
    let status: String = r.get(3)?;
    Ok(PendingDelivery {
        message_id: MessageId::new(r.get::<_, String>(0)?),
        payload: r.get(1)?,
        expires_at: r.get(2)?,
        sent_before: status == "sent",
    })
}

fn device_by(conn: &Connection, filter: &str, args: impl rusqlite::Params) -> rusqlite::Result<Option<DeviceRecord>> {
    conn.prepare_cached(&format!("SELECT {DEVICE_COLUMNS} FROM devices WHERE {filter}"))?
        .query_row(args, device_row)
        .optional()
}

/// Drops the device's undelivered deliveries of messages sent to `user`.
fn drop_user_deliveries(conn: &Connection, app_id: &str, device_id: &str, user: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "DELETE FROM deliveries WHERE device_id = ?1 AND status IN ('pending', 'sent') AND message_id IN \
         (SELECT message_id FROM messages WHERE app_id = ?2 AND target_kind = 'user' AND target = ?3)",
    )?
    .execute(params![device_id, app_id, user])?;
    Ok(())
}

fn message_views(conn: &Connection, filter: &str, args: &[&dyn rusqlite::ToSql]) -> rusqlite::Result<Vec<MessageView>> {
    let mut messages: Vec<MessageView> = conn
        .prepare_cached(&format!(
            "SELECT message_id, task_id, msg_key, target_kind, target, undeliverable, created_at, expires_at \
             FROM messages WHERE {filter} ORDER BY message_id"
        ))?
        .query_map(args, |r| {
            let kind: String = r.get(3)?;
            Ok(MessageView {
                message_id: MessageId::new(r.get::<_, String>(0)?),
                task_id: TaskId::new(r.get::<_, String>(1)?),
                msg_key: r.get(2)?,
                target_kind: TargetKind::parse(&kind).ok_or_else(|| corrupt(format!("target kind {kind}")))?,
                target: r.get(4)?,
                undeliverable: r.get(5)?,
                created_at: r.get(6)?,
                expires_at: r.get(7)?,
                deliveries: Vec::new(),
            })
        })?
        .collect::<rusqlite::Result<_>>()?;
    let mut stmt = conn.prepare_cached(
        "SELECT device_id, status, created_at, updated_at, sent_at, delivered_at FROM deliveries \
         WHERE message_id = ?1 ORDER BY device_id",
    )?;
    for m in &mut messages {
        m.deliveries = stmt
            .query_map([m.message_id.as_str()], |r| {
                Ok(DeliveryView {
                    device_id: DeviceId::new(r.get::<_, String>(0)?),
                    status: r.get(1)?,
                    created_at: r.get(2)?,
                    updated_at: r.get(3)?,
                    sent_at: r.get(4)?,
                    delivered_at: r.get(5)?,
                })
            })?
            .collect::<rusqlite::Result<_>>()?;
    }
    Ok(messages)
}

fn commit_push_tx(conn: &Connection, push: NewPush, now: i64) -> rusqlite::Result<CommittedPush> {
    let app = push.task.app_id.as_str().to_owned();
    let t = &push.task;
    // Claim each (app, msgKey, target) for this message unless an earlier one is still
    // within its validity: one statement for a new key, a second read only for a repeat.
    let mut claim = conn.prepare_cached(
        "INSERT INTO idempotency (app_id, msg_key, target_kind, target, message_id, task_id, expires_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) \
         ON CONFLICT (app_id, msg_key, target_kind, target) DO UPDATE SET \
         message_id = excluded.message_id, task_id = excluded.task_id, expires_at = excluded.expires_at \
         WHERE idempotency.expires_at <= ?8",
    )?;
    let mut earlier_of = conn.prepare_cached(
        "SELECT message_id, task_id FROM idempotency \
         WHERE app_id = ?1 AND msg_key = ?2 AND target_kind = ?3 AND target = ?4",
    )?;
    let mut earlier = Vec::with_capacity(push.messages.len());
    for m in &push.messages {
        let claimed = claim.execute(params![
            app,
            m.msg_key,
            m.target_kind.as_str(),
            m.target,
            m.message_id.as_str(),
            t.task_id.as_str(),
            t.expires_at,
            now
        ])?;
        earlier.push(if claimed == 1 {
            None
        } else {
            Some(earlier_of.query_row(params![app, m.msg_key, m.target_kind.as_str(), m.target], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
            })?)
        });
    }
    // A whole repeat of one earlier request (a client retry) answers with that task; no
    // claim above changed anything.
    if let Some(Some((_, first_task))) = earlier.first()
        && earlier.iter().all(|e| matches!(e, Some((_, t)) if t == first_task))
    {
        let task_id = TaskId::new(first_task.clone());
        let outcomes = earlier
            .into_iter()
            .flatten()
            .map(|(mid, _)| {
                let mid = MessageId::new(mid);
                (mid.clone(), TargetOutcome::Duplicate { message_id: mid })
            })
            .collect();
        return Ok(CommittedPush { task_id, replayed: true, outcomes });
    }

    conn.prepare_cached(
        "INSERT INTO tasks (task_id, app_id, push_type, task_name, delivery_type, created_at, expires_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![
        t.task_id.as_str(),
        app,
        t.push_type,
        t.task_name,
        t.delivery_type,
        t.created_at,
        t.expires_at
    ])?;

    let mut outcomes = Vec::with_capacity(push.messages.len());
    let mut by_device = conn.prepare_cached("SELECT device_id FROM devices WHERE app_id = ?1 AND device_id = ?2")?;
    let mut by_user = conn.prepare_cached("SELECT device_id FROM devices WHERE app_id = ?1 AND user_id = ?2")?;
    let mut insert_message = conn.prepare_cached(
        "INSERT INTO messages (message_id, app_id, task_id, msg_key, target_kind, target, payload, undeliverable, \
         created_at, expires_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    )?;
    let mut insert_delivery = conn.prepare_cached(
        "INSERT INTO deliveries (message_id, device_id, status, created_at, updated_at, expires_at) \
         VALUES (?1, ?2, 'pending', ?3, ?3, ?4)",
    )?;
    for (m, earlier) in push.messages.into_iter().zip(earlier) {
        if let Some((mid, _)) = earlier {
            let mid = MessageId::new(mid);
            outcomes.push((m.message_id, TargetOutcome::Duplicate { message_id: mid }));
            continue;
        }
        let lookup = match m.target_kind {
            TargetKind::Device => &mut by_device,
            TargetKind::User => &mut by_user,
        };
        let devices: Vec<DeviceId> = lookup
            .query_map(params![app, m.target], |r| r.get::<_, String>(0).map(DeviceId::new))?
            .collect::<rusqlite::Result<_>>()?;
        let undeliverable = m.target_kind == TargetKind::Device && devices.is_empty();
        insert_message.execute(params![
            m.message_id.as_str(),
            app,
            t.task_id.as_str(),
            m.msg_key,
            m.target_kind.as_str(),
            m.target,
            std::str::from_utf8(&m.payload).map_err(|e| rusqlite::Error::ToSqlConversionFailure(e.into()))?,
            undeliverable,
            t.created_at,
            t.expires_at
        ])?;
        for d in &devices {
            insert_delivery.execute(params![m.message_id.as_str(), d.as_str(), t.created_at, t.expires_at])?;
        }
        let outcome = if undeliverable { TargetOutcome::Undeliverable } else { TargetOutcome::Accepted { devices } };
        outcomes.push((m.message_id, outcome));
    }
    Ok(CommittedPush { task_id: push.task.task_id, replayed: false, outcomes })
}

fn apply_update(conn: &Connection, update: StatusUpdate) -> rusqlite::Result<()> {
    match update {
        StatusUpdate::Sent { message_id, device_id, at } => {
            conn.prepare_cached(
                "UPDATE deliveries SET status = 'sent', sent_at = ?3, updated_at = ?3 \
                 WHERE message_id = ?1 AND device_id = ?2 AND status = 'pending'",
            )?
            .execute(params![message_id.as_str(), device_id.as_str(), at])?;
        }
        StatusUpdate::Delivered { message_id, device_id, sent_at, at } => {
            conn.prepare_cached(
                "UPDATE deliveries SET status = 'delivered', sent_at = COALESCE(sent_at, ?3), delivered_at = ?4, \
                 updated_at = ?4 WHERE message_id = ?1 AND device_id = ?2 AND \
                 (status IN ('pending', 'sent') OR (status = 'expired' AND ?3 < expires_at))",
            )?
            .execute(params![message_id.as_str(), device_id.as_str(), sent_at, at])?;
        }
        StatusUpdate::Event { message_id, device_id, event, at } => {
            // A device's word about a message can only move its delivery forward; an
            // acknowledgement of a copy written before expiry still counts as delivered.
            let sql = match event {
                DeviceEvent::Arrived => {
                    "UPDATE deliveries SET status = 'delivered', delivered_at = ?3, updated_at = ?3 \
                     WHERE message_id = ?1 AND device_id = ?2 AND \
                     (status IN ('pending', 'sent') OR (status = 'expired' AND sent_at IS NOT NULL))"
                }
                DeviceEvent::Opened => {
                    "UPDATE deliveries SET status = 'opened', delivered_at = COALESCE(delivered_at, ?3), \
                     updated_at = ?3 WHERE message_id = ?1 AND device_id = ?2 AND \
                     status IN ('pending', 'sent', 'delivered', 'ignored')"
                }
                DeviceEvent::Ignored => {
                    "UPDATE deliveries SET status = 'ignored', delivered_at = COALESCE(delivered_at, ?3), \
                     updated_at = ?3 WHERE message_id = ?1 AND device_id = ?2 AND \
                     status IN ('pending', 'sent', 'delivered')"
                }
            };
            conn.prepare_cached(sql)?.execute(params![message_id.as_str(), device_id.as_str(), at])?;
        }
        StatusUpdate::Seen { device_id, at } => {
            conn.prepare_cached("UPDATE devices SET last_seen = ?2 WHERE device_id = ?1")?
                .execute(params![device_id.as_str(), at])?;
        }
    }
    Ok(())
}

#[async_trait::async_trait]
impl Store for SqliteStore {
    async fn setting(&self, name: &str) -> StoreResult<Option<String>> {
        let name = name.to_owned();
        self.read(move |c| {
            c.prepare_cached("SELECT value FROM settings WHERE name = ?1")?.query_row([name], |r| r.get(0)).optional()
        })
        .await
    }

    async fn init_setting(&self, name: &str, value: &str) -> StoreResult<String> {
        let (name, value) = (name.to_owned(), value.to_owned());
        self.write(move |c| {
            c.prepare_cached("INSERT INTO settings (name, value) VALUES (?1, ?2) ON CONFLICT (name) DO NOTHING")?
                .execute([&name, &value])?;
            c.prepare_cached("SELECT value FROM settings WHERE name = ?1")?.query_row([&name], |r| r.get(0))
        })
        .await
    }

    async fn create_app(&self, app: AppRecord, first_key: ApiKeyRecord) -> StoreResult<()> {
        self.write(move |c| {
            c.prepare_cached(&format!("INSERT INTO apps ({APP_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6)"))?.execute(
                params![
                    app.app_id.as_str(),
                    app.name,
                    app.app_key_hash,
                    app.bind_secret_sealed,
                    app.trust_client_bind,
                    app.created_at
                ],
            )?;
            insert_key(c, &first_key)
        })
        .await
    }

    async fn app(&self, app_id: &AppId) -> StoreResult<Option<AppRecord>> {
        let app_id = app_id.clone();
        self.read(move |c| {
            c.prepare_cached(&format!("SELECT {APP_COLUMNS} FROM apps WHERE app_id = ?1"))?
                .query_row([app_id.as_str()], app_row)
                .optional()
        })
        .await
    }

    async fn apps(&self) -> StoreResult<Vec<AppRecord>> {
        self.read(|c| {
            c.prepare_cached(&format!("SELECT {APP_COLUMNS} FROM apps ORDER BY created_at"))?
                .query_map([], app_row)?
                .collect()
        })
        .await
    }

    async fn create_api_key(&self, key: ApiKeyRecord) -> StoreResult<()> {
        self.write(move |c| insert_key(c, &key)).await
    }

    async fn api_key(&self, key_id: &KeyId) -> StoreResult<Option<ApiKeyRecord>> {
        let key_id = key_id.clone();
        self.read(move |c| {
            c.prepare_cached(&format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE key_id = ?1"))?
                .query_row([key_id.as_str()], key_row)
                .optional()
        })
        .await
    }

    async fn api_keys(&self, app_id: &AppId) -> StoreResult<Vec<ApiKeyRecord>> {
        let app_id = app_id.clone();
        self.read(move |c| {
            c.prepare_cached(&format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE app_id = ?1 ORDER BY created_at"))?
                .query_map([app_id.as_str()], key_row)?
                .collect()
        })
        .await
    }

    async fn revoke_api_key(&self, app_id: &AppId, key_id: &KeyId, now: i64) -> StoreResult<bool> {
        let (app_id, key_id) = (app_id.clone(), key_id.clone());
        self.write(move |c| {
            let exists: Option<i64> = c
                .prepare_cached("SELECT 1 FROM api_keys WHERE app_id = ?1 AND key_id = ?2")?
                .query_row([app_id.as_str(), key_id.as_str()], |r| r.get(0))
                .optional()?;
            c.prepare_cached(
                "UPDATE api_keys SET revoked_at = ?3 WHERE app_id = ?1 AND key_id = ?2 AND revoked_at IS NULL",
            )?
            .execute(params![app_id.as_str(), key_id.as_str(), now])?;
            Ok(exists.is_some())
        })
        .await
    }

    async fn register_device(&self, reg: DeviceRegistration) -> StoreResult<DeviceRecord> {
        self.write(move |c| {
            let app = reg.app_id.as_str();
            let tokens = reg.vendor_tokens.as_ref().map(|t| serde_json::Value::Object(t.clone()).to_string());
            let existing: Option<String> = c
                .prepare_cached("SELECT device_id FROM devices WHERE app_id = ?1 AND install_id = ?2")?
                .query_row([app, &reg.install_id], |r| r.get(0))
                .optional()?;
            let device_id = match existing {
                Some(id) => {
                    c.prepare_cached(
                        "UPDATE devices SET token_hash = ?2, platform = ?3, app_version = COALESCE(?4, app_version), \
                         os_version = COALESCE(?5, os_version), model = COALESCE(?6, model), \
                         vendor_tokens = COALESCE(?7, vendor_tokens) WHERE device_id = ?1",
                    )?
                    .execute(params![id, reg.token_hash, reg.platform, reg.app_version, reg.os_version, reg.model, tokens])?;
                    id
                }
                None => {
                    c.prepare_cached(
                        "INSERT INTO devices (device_id, app_id, install_id, token_hash, platform, app_version, \
                         os_version, model, vendor_tokens, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                    )?
                    .execute(params![
                        reg.new_device_id.as_str(),
                        app,
                        reg.install_id,
                        reg.token_hash,
                        reg.platform,
                        reg.app_version,
                        reg.os_version,
                        reg.model,
                        tokens.unwrap_or_else(|| "{}".into()),
                        reg.now
                    ])?;
                    reg.new_device_id.into_string()
                }
            };
            device_by(c, "device_id = ?1", [device_id])?.ok_or(rusqlite::Error::QueryReturnedNoRows)
        })
        .await
    }

    async fn device_by_token_hash(&self, token_hash: &str) -> StoreResult<Option<DeviceRecord>> {
        let token_hash = token_hash.to_owned();
        self.read(move |c| device_by(c, "token_hash = ?1", [token_hash])).await
    }

    async fn device(&self, app_id: &AppId, device_id: &DeviceId) -> StoreResult<Option<DeviceRecord>> {
        let (app_id, device_id) = (app_id.clone(), device_id.clone());
        self.read(move |c| device_by(c, "device_id = ?1 AND app_id = ?2", [device_id.as_str(), app_id.as_str()])).await
    }

    async fn device_credentials(&self, device_id: &DeviceId) -> StoreResult<Option<(AppId, String)>> {
        let device_id = device_id.clone();
        self.read(move |c| {
            c.prepare_cached("SELECT app_id, token_hash FROM devices WHERE device_id = ?1")?
                .query_row([device_id.as_str()], |r| Ok((AppId::new(r.get::<_, String>(0)?), r.get(1)?)))
                .optional()
        })
        .await
    }

    async fn report_device(
        &self,
        app_id: &AppId,
        device_id: &DeviceId,
        app_version: Option<String>,
        vendor_tokens: Option<serde_json::Map<String, serde_json::Value>>,
    ) -> StoreResult<bool> {
        let (app_id, device_id) = (app_id.clone(), device_id.clone());
        self.write(move |c| {
            let Some(device) = device_by(c, "device_id = ?1 AND app_id = ?2", [device_id.as_str(), app_id.as_str()])?
            else {
                return Ok(false);
            };
            // Reported tokens are merged into the known ones; a null value removes one.
            let mut tokens = device.vendor_tokens;
            for (k, v) in vendor_tokens.unwrap_or_default() {
                if v.is_null() {
                    tokens.remove(&k);
                } else {
                    tokens.insert(k, v);
                }
            }
            c.prepare_cached(
                "UPDATE devices SET app_version = COALESCE(?2, app_version), vendor_tokens = ?3 WHERE device_id = ?1",
            )?
            .execute(params![
                device_id.as_str(),
                app_version,
                serde_json::Value::Object(tokens).to_string()
            ])?;
            Ok(true)
        })
        .await
    }

    async fn bind_user(
        &self,
        app_id: &AppId,
        device_id: &DeviceId,
        user_id: &UserId,
        now: i64,
    ) -> StoreResult<Option<Vec<PendingDelivery>>> {
        let (app_id, device_id, user_id) = (app_id.clone(), device_id.clone(), user_id.clone());
        self.write(move |c| {
            let (app, device, user) = (app_id.as_str(), device_id.as_str(), user_id.as_str());
            let Some(current) = device_by(c, "device_id = ?1 AND app_id = ?2", [device, app])? else {
                return Ok(None);
            };
            if let Some(previous) = current.user_id.as_ref().filter(|p| p.as_str() != user) {
                drop_user_deliveries(c, app, device, previous.as_str())?;
            }
            c.prepare_cached("UPDATE devices SET user_id = ?2, bound_at = ?3, unbound_at = NULL WHERE device_id = ?1")?
                .execute(params![device, user, now])?;
            // MPS: a user's message still within its validity also reaches a device that
            // binds the user later.
            c.prepare_cached(
                "INSERT INTO deliveries (message_id, device_id, status, created_at, updated_at, expires_at) \
                 SELECT message_id, ?1, 'pending', ?2, ?2, expires_at FROM messages \
                 WHERE app_id = ?3 AND target_kind = 'user' AND target = ?4 AND expires_at > ?2 \
                 ON CONFLICT (message_id, device_id) DO NOTHING",
            )?
            .execute(params![device, now, app, user])?;
            let pending = c
                .prepare_cached(
                    "SELECT d.message_id, m.payload, d.expires_at, d.status FROM deliveries d \
                     JOIN messages m ON m.message_id = d.message_id \
                     WHERE d.device_id = ?1 AND d.status IN ('pending', 'sent') AND d.expires_at > ?2 \
                     AND m.app_id = ?3 AND m.target_kind = 'user' AND m.target = ?4 ORDER BY d.message_id",
                )?
                .query_map(params![device, now, app, user], pending_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(Some(pending))
        })
        .await
    }

    async fn unbind_user(&self, app_id: &AppId, device_id: &DeviceId, now: i64) -> StoreResult<bool> {
        let (app_id, device_id) = (app_id.clone(), device_id.clone());
        self.write(move |c| {
            let (app, device) = (app_id.as_str(), device_id.as_str());
            let Some(current) = device_by(c, "device_id = ?1 AND app_id = ?2", [device, app])? else {
                return Ok(false);
            };
            if let Some(user) = &current.user_id {
                drop_user_deliveries(c, app, device, user.as_str())?;
                c.prepare_cached("UPDATE devices SET user_id = NULL, unbound_at = ?2 WHERE device_id = ?1")?
                    .execute(params![device, now])?;
            }
            Ok(true)
        })
        .await
    }

    async fn user_devices(&self, app_id: &AppId, user_id: &UserId) -> StoreResult<Vec<DeviceRecord>> {
        let (app_id, user_id) = (app_id.clone(), user_id.clone());
        self.read(move |c| {
            c.prepare_cached(&format!(
                "SELECT {DEVICE_COLUMNS} FROM devices WHERE app_id = ?1 AND user_id = ?2 ORDER BY device_id"
            ))?
            .query_map([app_id.as_str(), user_id.as_str()], device_row)?
            .collect()
        })
        .await
    }

    async fn commit_push(&self, push: NewPush, now: i64) -> StoreResult<CommittedPush> {
        self.write(move |c| commit_push_tx(c, push, now)).await
    }

    async fn pending_deliveries(
        &self,
        device_id: &DeviceId,
        now: i64,
        limit: usize,
    ) -> StoreResult<Vec<PendingDelivery>> {
        // Runs on the writer so that it sees every acknowledgement queued before it.
        let device_id = device_id.clone();
        self.write(move |c| {
            c.prepare_cached(
                "SELECT d.message_id, m.payload, d.expires_at, d.status FROM deliveries d \
                 JOIN messages m ON m.message_id = d.message_id \
                 WHERE d.device_id = ?1 AND d.status IN ('pending', 'sent') AND d.expires_at > ?2 \
                 ORDER BY d.message_id LIMIT ?3",
            )?
            .query_map(params![device_id.as_str(), now, limit as i64], pending_row)?
            .collect()
        })
        .await
    }

    fn record(&self, update: StatusUpdate) {
        self.write_detached(move |c| apply_update(c, update));
    }

    async fn expire_due(&self, now: i64) -> StoreResult<u64> {
        self.write(move |c| {
            let n = c
                .prepare_cached(
                    "UPDATE deliveries SET status = 'expired', updated_at = ?1 \
                     WHERE status IN ('pending', 'sent') AND expires_at <= ?1",
                )?
                .execute([now])?;
            Ok(n as u64)
        })
        .await
    }

    async fn task(&self, app_id: &AppId, task_id: &TaskId) -> StoreResult<Option<TaskView>> {
        let (app_id, task_id) = (app_id.clone(), task_id.clone());
        self.read(move |c| {
            let task = c
                .prepare_cached(
                    "SELECT push_type, task_name, delivery_type, created_at, expires_at FROM tasks \
                     WHERE task_id = ?1 AND app_id = ?2",
                )?
                .query_row([task_id.as_str(), app_id.as_str()], |r| {
                    Ok(TaskView {
                        task_id: task_id.clone(),
                        push_type: r.get(0)?,
                        task_name: r.get(1)?,
                        delivery_type: r.get(2)?,
                        created_at: r.get(3)?,
                        expires_at: r.get(4)?,
                        messages: Vec::new(),
                    })
                })
                .optional()?;
            let Some(mut task) = task else {
                return Ok(None);
            };
            task.messages = message_views(c, "task_id = ?1 AND app_id = ?2", &[&task_id.as_str(), &app_id.as_str()])?;
            Ok(Some(task))
        })
        .await
    }

    async fn message(&self, app_id: &AppId, message_id: &MessageId) -> StoreResult<Option<MessageView>> {
        let (app_id, message_id) = (app_id.clone(), message_id.clone());
        self.read(move |c| {
            Ok(message_views(c, "message_id = ?1 AND app_id = ?2", &[&message_id.as_str(), &app_id.as_str()])?.pop())
        })
        .await
    }

    async fn flush(&self) -> StoreResult<()> {
        self.write(|_| Ok(())).await
    }
}

fn insert_key(c: &Connection, key: &ApiKeyRecord) -> rusqlite::Result<()> {
    c.prepare_cached(&format!("INSERT INTO api_keys ({KEY_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6)"))?.execute(
        params![
            key.key_id.as_str(),
            key.app_id.as_str(),
            key.kind.as_str(),
            key.material,
            key.created_at,
            key.revoked_at
        ],
    )?;
    Ok(())
}
