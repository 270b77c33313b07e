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
