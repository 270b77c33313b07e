//! Connections and threads of the backend.

use rusqlite::{Connection, OptionalExtension, params};

use crate::tx::Dialect;
use crate::{StoreError, StoreResult, migrations};

/// Keeps each cached statement's query plan when new values are bound. Without it this
/// build of SQLite (STAT4 enabled) marks statements whose parameters meet a partial
/// index's condition to be compiled again on every execution with new values: the
/// pending-deliveries queries of every CONNECT were parsed and planned anew each time.
pub(super) fn stable_plans(conn: &Connection) -> rusqlite::Result<()> {
    conn.set_db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)?;
    // Every statement of the store stays prepared (rusqlite keeps 16 by default).
    conn.set_prepared_statement_cache_capacity(256);
    Ok(())
}

/// The writer's settings: WAL, `synchronous` as configured ("normal" or FULL), checkpoints
/// left to the checkpointer thread, statement journals in memory.
///
/// Its page cache is 8 MiB (4,096 pages: the interior pages of a database of about 800 MB),
/// not more. When a B-tree split reorders its new pages, SQLite moves one through page number
/// 2^30 / page_size + 1; in a database smaller than 1 GiB that page lies past the end, so the
/// COMMIT that follows scans the whole cache's hash table to drop it (pcache1TruncateUnsafe):
/// about 0.7 ms per such commit with a 64 MiB cache, a fifth of the writer's time
/// (docs/PERFORMANCE.md). Leaves come from the operating system's page cache.
pub(super) fn configure_writer(conn: &Connection, synchronous: &str) -> rusqlite::Result<()> {
    let sync = if synchronous == "normal" { "NORMAL" } else { "FULL" };
    conn.execute_batch(&format!(
        "PRAGMA page_size = 2048; PRAGMA journal_mode = WAL; PRAGMA synchronous = {sync}; PRAGMA foreign_keys = ON; \
         PRAGMA busy_timeout = 5000; PRAGMA cache_size = -8192; \
         PRAGMA wal_autocheckpoint = 0; PRAGMA journal_size_limit = 67108864; PRAGMA temp_store = MEMORY;"
    ))
}

/// Starts a thread that logs where the code that started it logs (a node's threads log to
/// that node's log, also when several nodes share a process, as in the tests).
pub(super) fn spawn(name: String, f: impl FnOnce() + Send + 'static) -> StoreResult<()> {
    let log = tracing::dispatcher::get_default(|d| d.clone());
    std::thread::Builder::new()
        .name(name.clone())
        .spawn(move || {
            let _log = tracing::dispatcher::set_default(&log);
            f()
        })
        .map(|_| ())
        .map_err(|e| StoreError::Unavailable(format!("cannot start the {name} thread: {e}")))
}

pub(super) fn migrate(conn: &Connection) -> rusqlite::Result<()> {
    migrate_to(conn, i64::MAX)
}

/// Applies the migrations up to `last` that this database lacks.
pub(super) fn migrate_to(conn: &Connection, last: i64) -> rusqlite::Result<()> {
    conn.execute_batch(migrations::CREATE_LEDGER)?;
    for (version, sql) in migrations::SQLITE.iter().filter(|(v, _)| *v <= last) {
        let applied: Option<i64> =
            conn.query_row(migrations::APPLIED.text(Dialect::Sqlite), [version], |r| r.get(0)).optional()?;
        if applied.is_none() {
            let tx = conn.unchecked_transaction()?;
            tx.execute_batch(sql)?;
            tx.execute(migrations::RECORD.text(Dialect::Sqlite), params![version, herald_core::now_ms()])?;
            tx.commit()?;
            tracing::info!(version, "applied schema migration");
        }
    }
    Ok(())
}
