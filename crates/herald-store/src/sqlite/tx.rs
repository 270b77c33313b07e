//! [`Tx`] on a rusqlite connection: statements run at once (their futures are ready when
//! made), each taken from the connection's cache once per operation and held for it, so a
//! statement an operation runs many times (a push's deliveries, a batch of status updates)
//! is looked up once.

use std::cell::RefCell;
use std::future::{Future, ready};

use rusqlite::{CachedStatement, Connection};

use crate::tx::{Arg, Dialect, Row, Sql, Tx};
use crate::{StoreError, StoreResult};

pub(crate) struct SqliteTx<'c> {
    conn: &'c Connection,
    held: RefCell<Vec<(usize, CachedStatement<'c>)>>,
    journal: bool,
}

impl<'c> SqliteTx<'c> {
    pub(crate) fn new(conn: &'c Connection) -> Self {
        Self::journalling(conn, true)
    }

    /// A transaction that journals status changes or not (the writer's).
    pub(crate) fn journalling(conn: &'c Connection, journal: bool) -> Self {
        SqliteTx { conn, held: RefCell::new(Vec::new()), journal }
    }

    /// Runs `f` on the statement `sql` with `args` bound.
    fn with<T>(
        &self,
        sql: &'static Sql,
        args: &[&dyn Arg],
        f: impl FnOnce(&mut CachedStatement<'c>) -> StoreResult<T>,
    ) -> StoreResult<T> {
        let mut held = self.held.borrow_mut();
        let i = match held.iter().position(|(key, _)| *key == sql.key()) {
            Some(i) => i,
            None => {
                held.push((sql.key(), self.conn.prepare_cached(sql.text(Dialect::Sqlite)).map_err(map_err)?));
                held.len() - 1
            }
        };
        let stmt = &mut held[i].1;
        if stmt.parameter_count() != args.len() {
            return Err(StoreError::Internal(format!(
                "{} arguments for {} parameters: {sql:?}",
                args.len(),
                stmt.parameter_count()
            )));
        }
        for (i, arg) in args.iter().enumerate() {
            stmt.raw_bind_parameter(i + 1, *arg as &dyn rusqlite::ToSql).map_err(map_err)?;
        }
        f(stmt)
    }
}

/// Runs `f` in one read transaction: its statements see one snapshot, and the connection's
/// page cache, emptied whenever a statement starts after a commit of the writer, stays
/// warm from one statement to the next (a read of many small statements on autocommit
/// read every page from the file again, measured twice as slow for the journal's count).
pub(crate) fn read_tx<T>(conn: &Connection, f: impl FnOnce(&SqliteTx<'_>) -> StoreResult<T>) -> StoreResult<T> {
    conn.execute_batch("BEGIN").map_err(map_err)?;
    let out = f(&SqliteTx::new(conn));
    if conn.execute_batch("COMMIT").is_err() {
        let _ = conn.execute_batch("ROLLBACK");
    }
    out
}

impl Tx for SqliteTx<'_> {
    fn dialect(&self) -> Dialect {
        Dialect::Sqlite
    }

    fn journal(&self) -> bool {
        self.journal
    }

    fn execute(&self, sql: &'static Sql, args: &[&dyn Arg]) -> impl Future<Output = StoreResult<u64>> {
        ready(self.with(sql, args, |stmt| stmt.raw_execute().map(|n| n as u64).map_err(map_err)))
    }

    fn query<T, F>(&self, sql: &'static Sql, args: &[&dyn Arg], map: F) -> impl Future<Output = StoreResult<Vec<T>>>
    where
        T: Send,
        F: Fn(&dyn Row) -> StoreResult<T> + Send,
    {
        ready(self.with(sql, args, |stmt| {
            let mut rows = stmt.raw_query();
            let mut out = Vec::new();
            while let Some(row) = rows.next().map_err(map_err)? {
                out.push(map(row)?);
            }
            Ok(out)
        }))
    }
}

impl Row for rusqlite::Row<'_> {
    fn i64(&self, i: usize) -> StoreResult<i64> {
        self.get(i).map_err(map_err)
    }

    fn opt_i64(&self, i: usize) -> StoreResult<Option<i64>> {
        self.get(i).map_err(map_err)
    }

    fn text(&self, i: usize) -> StoreResult<String> {
        self.get(i).map_err(map_err)
    }

    fn opt_text(&self, i: usize) -> StoreResult<Option<String>> {
        self.get(i).map_err(map_err)
    }

    fn bool(&self, i: usize) -> StoreResult<bool> {
        self.get(i).map_err(map_err)
    }
}

/// A busy, full or unwritable database is unavailable (nothing was accepted); anything
/// else is a bug or corrupt data.
pub(crate) fn map_err(err: rusqlite::Error) -> StoreError {
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
