//! The writer thread: each group takes the status updates recorded since the last one and
//! the jobs waiting, in one transaction (see the parent module).

use herald_core::model::StatusUpdate;
use parking_lot::Mutex;
use rusqlite::Connection;
use tokio::sync::mpsc;

use super::tx::{SqliteTx, map_err};
use super::{Completion, WriteJob};
use crate::tx::run_now;
use crate::{StoreResult, ops};

/// Runs `f` inside a savepoint so that its failure undoes only its own changes.
pub(super) fn in_savepoint<T>(conn: &Connection, f: impl FnOnce(&Connection) -> StoreResult<T>) -> StoreResult<T> {
    conn.prepare_cached("SAVEPOINT op").and_then(|mut s| s.execute([])).map_err(map_err)?;
    match f(conn) {
        Ok(v) => {
            conn.prepare_cached("RELEASE op").and_then(|mut s| s.execute([])).map_err(map_err)?;
            Ok(v)
        }
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK TO op; RELEASE op");
            Err(e)
        }
    }
}

pub(super) fn writer_loop(
    conn: Connection,
    mut rx: mpsc::UnboundedReceiver<WriteJob>,
    max_batch: usize,
    updates: &Mutex<Vec<StatusUpdate>>,
    journal: &std::sync::atomic::AtomicBool,
) {
    let mut completions: Vec<Completion> = Vec::with_capacity(max_batch);
    let mut batch: Vec<StatusUpdate> = Vec::new();
    loop {
        // Sleep only when neither a job nor a status update waits.
        let first = match rx.try_recv() {
            Ok(job) => Some(job),
            Err(_) if !updates.lock().is_empty() => None,
            Err(mpsc::error::TryRecvError::Empty) => match rx.blocking_recv() {
                Some(job) => Some(job),
                None => break,
            },
            Err(mpsc::error::TryRecvError::Disconnected) => break,
        };
        if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
            let err = map_err(e);
            match first {
                // Not run: outside a transaction its savepoint would commit on its own.
                Some(job) => job(None)(Err(err)),
                None => {
                    tracing::warn!(error = %err, "cannot begin a write; status updates wait");
                    std::thread::sleep(std::time::Duration::from_millis(100));
                }
            }
            continue;
        }
        std::mem::swap(&mut batch, &mut *updates.lock());
        apply_updates(&conn, &mut batch, journal.load(std::sync::atomic::Ordering::Relaxed));
        completions.extend(first.map(|job| job(Some(&conn))));
        while completions.len() < max_batch {
            match rx.try_recv() {
                Ok(job) => completions.push(job(Some(&conn))),
                Err(_) => break,
            }
        }
        // The updates recorded while this group ran: a job taken above (a flush) may have
        // been sent after them, and its completion promises they are written.
        std::mem::swap(&mut batch, &mut *updates.lock());
        apply_updates(&conn, &mut batch, journal.load(std::sync::atomic::Ordering::Relaxed));
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

/// How many status updates share one savepoint. SQLite keeps the savepoint's sub-journal in
/// memory (`temp_store = MEMORY`) as a list of 1 KiB chunks, and every statement that ends
/// inside it walks that list from its start to truncate its own part: over one savepoint
/// of n updates that is O(n²). With the whole buffer in one savepoint, the walks were 74 %
/// of the writer's time while a broadcast's 190,000 acknowledgements were recorded
/// (perf, issue 14); a few hundred updates per savepoint keep them small.
const UPDATES_PER_SAVEPOINT: usize = 256;

/// Applies `batch` (emptied), in the order it was recorded, [`UPDATES_PER_SAVEPOINT`] to a
/// savepoint; if one savepoint fails, its updates each in a savepoint of their own, so one
/// bad update loses only itself.
fn apply_updates(conn: &Connection, batch: &mut Vec<StatusUpdate>, journal: bool) {
    for part in batch.chunks(UPDATES_PER_SAVEPOINT) {
        let all = in_savepoint(conn, |c| {
            let tx = SqliteTx::journalling(c, journal);
            part.iter().try_for_each(|u| run_now(ops::push::apply_update(&tx, u)))
        });
        if let Err(e) = all {
            tracing::warn!(error = %e, updates = part.len(), "status batch failed; applying one by one");
            for u in part {
                if let Err(e) =
                    in_savepoint(conn, |c| run_now(ops::push::apply_update(&SqliteTx::journalling(c, journal), u)))
                {
                    tracing::warn!(error = %e, update = ?u, "status update failed");
                }
            }
        }
    }
    batch.clear();
}
