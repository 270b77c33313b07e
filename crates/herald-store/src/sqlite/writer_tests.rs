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

/// `flush` promises that everything recorded before it is committed. The writer took the
/// status buffer once, at the start of its group, then completed every job it found
/// waiting, a flush included: an update recorded while a group ran was still waiting when
/// the flush returned (CI caught the suite's long run of updates with 81 of 300 devices
/// missing). Each round here records an update while a slow job holds a group open, then
/// flushes and reads it back.
#[tokio::test]
async fn a_flush_returns_only_once_the_updates_recorded_before_it_are_written() {
    use herald_core::ids::KeyId;
    use herald_core::model::StatusUpdate;
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("herald.db"), &StoreConfig::default()).unwrap();
    let (app, key) = crate::suite::app("a1");
    store.create_app(app, key.clone()).await.unwrap();
    for round in 1..=40_i64 {
        // A group that takes 5 ms, started before the update is recorded.
        let slow = store.write(|_| {
            std::thread::sleep(std::time::Duration::from_millis(5));
            Ok(())
        });
        let record_then_flush = async {
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            store.record(StatusUpdate::KeyUsed { key_id: KeyId::new("a1-key"), at: round * 60_000 });
            store.flush().await
        };
        let (slow, flushed) = tokio::join!(slow, record_then_flush);
        slow.unwrap();
        flushed.unwrap();
        let used = store.api_key(&key.key_id).await.unwrap().unwrap().last_used_at;
        assert_eq!(used, Some(round * 60_000), "round {round}: the update recorded before the flush");
    }
}
