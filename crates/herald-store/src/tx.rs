//! What the shared algorithms ([`crate::ops`]) see of a backend: a [`Tx`] that runs
//! statements written once ([`Sql`]) with values both drivers bind ([`Arg`]), and rows read
//! the same way from both ([`Row`]).
//!
//! The SQLite backend runs an operation on its writer (or a reader) thread, where every
//! statement completes at once: its futures are ready when made, and the operation is
//! driven to its end in one poll ([`run_now`]). The PostgreSQL backend awaits its
//! connection; futures an operation joins are pipelined on that connection.

use std::future::Future;
use std::sync::OnceLock;

use crate::{StoreError, StoreResult};

/// The backend a statement is rendered for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    Sqlite,
    Postgres,
}

/// A row lock that PostgreSQL takes and SQLite does not need (its one writer thread runs
/// every write in turn).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lock {
    /// `FOR UPDATE`: the row is about to change; concurrent writers wait.
    Update,
    /// `FOR SHARE`: the row must not change until this transaction ends (a push reading a
    /// device's presence; see the push/connect race in architecture.md).
    Share,
}

/// One statement, written once for both backends with PostgreSQL's `$N` parameters.
///
/// Rendering is the one place where the text differs: SQLite gets `?N` (explicit numbers,
/// so that a parameter may come first anywhere in the text), and the row lock, when the
/// statement takes one, is appended for PostgreSQL only. Each rendering is made once.
pub(crate) struct Sql {
    text: &'static str,
    lock: Option<Lock>,
    sqlite: OnceLock<String>,
    postgres: OnceLock<String>,
}

impl Sql {
    pub(crate) const fn new(text: &'static str) -> Sql {
        Sql { text, lock: None, sqlite: OnceLock::new(), postgres: OnceLock::new() }
    }

    /// A statement that ends by locking the rows it reads (PostgreSQL).
    pub(crate) const fn locking(text: &'static str, lock: Lock) -> Sql {
        Sql { text, lock: Some(lock), sqlite: OnceLock::new(), postgres: OnceLock::new() }
    }

    /// The text for `dialect`.
    pub(crate) fn text(&self, dialect: Dialect) -> &str {
        match dialect {
            Dialect::Sqlite => self.sqlite.get_or_init(|| self.text.replace('$', "?")),
            Dialect::Postgres => self.postgres.get_or_init(|| match self.lock {
                None => self.text.to_owned(),
                Some(Lock::Update) => format!("{} FOR UPDATE", self.text),
                Some(Lock::Share) => format!("{} FOR SHARE", self.text),
            }),
        }
    }

    /// Identifies the statement in per-connection caches (statements are statics).
    pub(crate) fn key(&self) -> usize {
        self as *const Sql as usize
    }
}

impl std::fmt::Debug for Sql {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.text)
    }
}

/// A value both drivers can bind: text, integers, booleans and their `Option`s.
pub(crate) trait Arg: rusqlite::ToSql + tokio_postgres::types::ToSql + Sync {}

impl<T: rusqlite::ToSql + tokio_postgres::types::ToSql + Sync + ?Sized> Arg for T {}

/// A row as the shared code reads it, whichever driver produced it.
pub(crate) trait Row {
    fn i64(&self, i: usize) -> StoreResult<i64>;
    fn opt_i64(&self, i: usize) -> StoreResult<Option<i64>>;
    fn text(&self, i: usize) -> StoreResult<String>;
    fn opt_text(&self, i: usize) -> StoreResult<Option<String>>;
    fn bool(&self, i: usize) -> StoreResult<bool>;
}

/// Runs statements inside one operation of a backend (a transaction, a savepoint of the
/// SQLite writer's group, or a single statement outside any transaction).
pub(crate) trait Tx {
    fn dialect(&self) -> Dialect;

    /// Whether status changes are journalled (`Ledger::set_journal`): off, there are no
    /// analytics and no receipts.
    fn journal(&self) -> bool {
        true
    }

    /// Runs a statement; the number of rows it changed.
    fn execute(&self, sql: &'static Sql, args: &[&dyn Arg]) -> impl Future<Output = StoreResult<u64>>;

    /// Runs a query and maps every row.
    fn query<T, F>(&self, sql: &'static Sql, args: &[&dyn Arg], map: F) -> impl Future<Output = StoreResult<Vec<T>>>
    where
        T: Send,
        F: Fn(&dyn Row) -> StoreResult<T> + Send;
}

/// The first row of a query, if any.
pub(crate) async fn query_opt<X: Tx, T: Send>(
    tx: &X,
    sql: &'static Sql,
    args: &[&dyn Arg],
    map: impl Fn(&dyn Row) -> StoreResult<T> + Send,
) -> StoreResult<Option<T>> {
    Ok(tx.query(sql, args, map).await?.into_iter().next())
}

/// The one row a query must return.
pub(crate) async fn query_one<X: Tx, T: Send>(
    tx: &X,
    sql: &'static Sql,
    args: &[&dyn Arg],
    map: impl Fn(&dyn Row) -> StoreResult<T> + Send,
) -> StoreResult<T> {
    query_opt(tx, sql, args, map)
        .await?
        .ok_or_else(|| StoreError::Internal(format!("no row where one was expected: {sql:?}")))
}

/// True when the query returns a row.
pub(crate) async fn exists<X: Tx>(tx: &X, sql: &'static Sql, args: &[&dyn Arg]) -> StoreResult<bool> {
    Ok(query_opt(tx, sql, args, |_| Ok(())).await?.is_some())
}

/// Drives an operation whose every statement completes when made (the SQLite backend's) to
/// its end in one poll. An operation that waited would be a bug: it is reported, not hung.
pub(crate) fn run_now<T>(op: impl Future<Output = StoreResult<T>>) -> StoreResult<T> {
    let mut op = std::pin::pin!(op);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match op.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(out) => out,
        std::task::Poll::Pending => Err(StoreError::Internal("a SQLite operation waited for something".into())),
    }
}

/// A value that the store holds but cannot read back as the type it should be: an error,
/// with the cause in the message (and so in the log of whoever reports it).
pub(crate) fn corrupt(what: impl std::fmt::Display) -> StoreError {
    StoreError::Internal(format!("corrupt data in the store: {what}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    static LOCKED: Sql = Sql::locking("SELECT 1 FROM devices WHERE device_id = $1 AND app_id = $2", Lock::Update);

    #[test]
    fn statements_render_per_backend() {
        assert_eq!(LOCKED.text(Dialect::Sqlite), "SELECT 1 FROM devices WHERE device_id = ?1 AND app_id = ?2");
        assert_eq!(
            LOCKED.text(Dialect::Postgres),
            "SELECT 1 FROM devices WHERE device_id = $1 AND app_id = $2 FOR UPDATE"
        );
    }
}
