//! [`Tx`] on a pooled tokio-postgres connection or transaction. Each statement is prepared
//! once per connection, then only bound and executed (one round trip, no planning);
//! futures an operation joins are pipelined on the connection.

use std::collections::HashMap;

use tokio_postgres::types::ToSql;
use tokio_postgres::{GenericClient, Statement};

use crate::tx::{Arg, Dialect, Row, Sql, Tx};
use crate::{StoreError, StoreResult};

/// Statements prepared on one connection, by [`Sql::key`].
/// The statements prepared on one connection, and the store's journal switch.
#[derive(Default)]
pub(crate) struct StmtCache {
    statements: parking_lot::Mutex<HashMap<usize, Statement>>,
    journal: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl StmtCache {
    pub(crate) fn new(journal: std::sync::Arc<std::sync::atomic::AtomicBool>) -> Self {
        StmtCache { statements: Default::default(), journal }
    }
}

pub(crate) struct PgTx<'a, C> {
    c: &'a C,
    cache: &'a StmtCache,
}

impl<'a, C: GenericClient + Sync> PgTx<'a, C> {
    pub(crate) fn new(c: &'a C, cache: &'a StmtCache) -> Self {
        PgTx { c, cache }
    }

    async fn statement(&self, sql: &'static Sql) -> StoreResult<Statement> {
        if let Some(s) = self.cache.statements.lock().get(&sql.key()) {
            return Ok(s.clone());
        }
        let s = self.c.prepare(sql.text(Dialect::Postgres)).await.map_err(map_err)?;
        self.cache.statements.lock().insert(sql.key(), s.clone());
        Ok(s)
    }
}

impl<C: GenericClient + Sync> PgTx<'_, C> {
    /// A statement only PostgreSQL runs, with arguments only it binds (arrays).
    pub(crate) async fn execute_pg(&self, sql: &'static Sql, args: &[&(dyn ToSql + Sync)]) -> StoreResult<u64> {
        let stmt = self.statement(sql).await?;
        self.c.execute(&stmt, args).await.map_err(map_err)
    }

    /// As [`Self::execute_pg`], for the rows it returns.
    pub(crate) async fn query_pg(
        &self,
        sql: &'static Sql,
        args: &[&(dyn ToSql + Sync)],
    ) -> StoreResult<Vec<tokio_postgres::Row>> {
        let stmt = self.statement(sql).await?;
        self.c.query(&stmt, args).await.map_err(map_err)
    }
}

fn pg_args<'a>(args: &'a [&'a dyn Arg]) -> Vec<&'a (dyn ToSql + Sync)> {
    args.iter().map(|a| *a as &(dyn ToSql + Sync)).collect()
}

impl<C: GenericClient + Sync> Tx for PgTx<'_, C> {
    fn dialect(&self) -> Dialect {
        Dialect::Postgres
    }

    fn journal(&self) -> bool {
        self.cache.journal.load(std::sync::atomic::Ordering::Relaxed)
    }

    async fn execute(&self, sql: &'static Sql, args: &[&dyn Arg]) -> StoreResult<u64> {
        let stmt = self.statement(sql).await?;
        self.c.execute(&stmt, &pg_args(args)).await.map_err(map_err)
    }

    async fn query<T, F>(&self, sql: &'static Sql, args: &[&dyn Arg], map: F) -> StoreResult<Vec<T>>
    where
        T: Send,
        F: Fn(&dyn Row) -> StoreResult<T> + Send,
    {
        let stmt = self.statement(sql).await?;
        let rows = self.c.query(&stmt, &pg_args(args)).await.map_err(map_err)?;
        rows.iter().map(|r| map(r)).collect()
    }
}

impl Row for tokio_postgres::Row {
    fn i64(&self, i: usize) -> StoreResult<i64> {
        self.try_get(i).map_err(column)
    }

    fn opt_i64(&self, i: usize) -> StoreResult<Option<i64>> {
        self.try_get(i).map_err(column)
    }

    fn text(&self, i: usize) -> StoreResult<String> {
        self.try_get(i).map_err(column)
    }

    fn opt_text(&self, i: usize) -> StoreResult<Option<String>> {
        self.try_get(i).map_err(column)
    }

    fn bool(&self, i: usize) -> StoreResult<bool> {
        self.try_get(i).map_err(column)
    }
}

/// A column that does not read as the type the store gave it: a bug or corrupt data.
pub(crate) fn column(err: tokio_postgres::Error) -> StoreError {
    StoreError::Internal(err.to_string())
}

/// Without an SQLSTATE the connection or the server is gone, not the statement: the store
/// is unavailable (nothing was accepted). With one, a bug or corrupt data.
pub(crate) fn map_err(err: tokio_postgres::Error) -> StoreError {
    // tokio-postgres says only "db error"; the server's message and code say what.
    let text = match err.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => err.to_string(),
    };
    if err.is_closed() || err.code().is_none_or(server_unavailable) {
        StoreError::Unavailable(text)
    } else {
        StoreError::Internal(text)
    }
}

/// SQLSTATEs that say the server cannot serve now, not that the statement is wrong: a
/// connection problem (class 08), a shutdown, restart or start-up in progress (57P01-57P03),
/// too many connections or no room (53), and a read-only server (25006: a standby, or a
/// primary demoted by a failover), which a new connection to the right host cures.
fn server_unavailable(code: &tokio_postgres::error::SqlState) -> bool {
    let code = code.code();
    code.starts_with("08") || code.starts_with("53") || matches!(code, "57P01" | "57P02" | "57P03" | "25006")
}
