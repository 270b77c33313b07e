//! The writer's group commit when no transaction can begin.

use rusqlite::Connection;

use super::SqliteStore;
use crate::{Store, StoreConfig, StoreError};

/// A write whose group could not begin (the database locked past the busy timeout) is
/// answered with an error and must not happen: before, the job ran anyway outside a
/// transaction, and its savepoint committed on its own once the lock was gone, so a push
/// answered 503 could still be stored and delivered.
#[tokio::test]
async fn a_write_refused_because_no_transaction_began_is_not_committed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("herald.db");
    let store = SqliteStore::open(&path, &StoreConfig::default()).unwrap();
    let other = Connection::open(&path).unwrap();
    other.execute_batch("BEGIN IMMEDIATE").unwrap();
    // Held past the writer's busy timeout (5 s), then let go while the job would run.
    let holder = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_millis(6_000));
        other.execute_batch("COMMIT").unwrap();
    });
    let written = store.init_setting("refused", "value").await;
    assert!(matches!(written, Err(StoreError::Unavailable(_))), "{written:?}");
    holder.join().unwrap();
    assert_eq!(store.setting("refused").await.unwrap(), None);
}
