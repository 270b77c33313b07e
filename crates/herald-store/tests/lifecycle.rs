//! Alone in its test binary (its own process), so that the threads it counts are its own.

use herald_store::{SqliteStore, StoreConfig};

/// Dropping the store stops its threads and lets the file go: many stores come and go in
/// one process (the in-process nodes of the behaviour tests).
#[test]
fn a_dropped_sqlite_store_stops_its_threads() {
    let dir = tempfile::tempdir().unwrap();
    let threads = || std::fs::read_dir("/proc/self/task").map(|d| d.count()).unwrap_or(0);
    let before = threads();
    let store = SqliteStore::open(&dir.path().join("herald.db"), &StoreConfig::default()).unwrap();
    assert!(threads() >= before + 4, "a writer, a checkpointer and two readers");
    drop(store);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while threads() > before && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(threads(), before, "threads left behind");
}
