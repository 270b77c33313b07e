//! Connections and threads of the backend.

use rusqlite::Connection;

use crate::{StoreError, StoreResult};

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
