//! [`Ledger`] on SQLite: reads on a reader, writes on the writer. The journal is read and
//! summed on a reader, and only the sums, the receipts and the deletion of the entries are
//! the writer's (which every push waits for): its job fails, and nothing is counted, if
//! another counter deleted one of the entries meanwhile.

use herald_core::ids::{AppId, DeviceId, TaskId};
use herald_core::ledger::{CountQuery, Counts, StoredReceipt, TaskCounted, TaskCounts, WebhookRecord};
use herald_core::state::{Channel, Granularity};

use super::SqliteStore;
use crate::StoreResult;
use crate::ledger::Ledger;
use crate::ops::{ledger, receipts};
use crate::tx::run_now;

#[async_trait::async_trait]
impl Ledger for SqliteStore {
    fn set_journal(&self, on: bool) {
        self.journal.store(on, std::sync::atomic::Ordering::Relaxed);
    }

    async fn tally(&self, limit: usize, now: i64, tasks: TaskCounted) -> StoreResult<(usize, usize)> {
        let dims = self.dims.clone();
        let tally = self
            .read(move |tx| {
                let entries = run_now(ledger::read_journal(tx, limit, &dims, now))?;
                ledger::plan(&entries, tasks)
            })
            .await?;
        if tally.entries == 0 {
            return Ok((0, 0));
        }
        self.write(move |tx| run_now(ledger::apply(tx, &tally, now)).map(|()| (tally.entries, tally.receipts()))).await
    }

    async fn drop_counts(&self, granularity: Granularity, before: i64) -> StoreResult<u64> {
        self.write(move |tx| run_now(ledger::drop_counts(tx, granularity, before))).await
    }

    async fn drop_task_counts(&self, before: i64) -> StoreResult<u64> {
        self.write(move |tx| run_now(ledger::drop_task_counts(tx, before))).await
    }

    async fn count_total(&self, q: CountQuery) -> StoreResult<Counts> {
        self.read(move |tx| run_now(ledger::total(tx, &q))).await
    }

    async fn count_series(&self, q: CountQuery, limit: usize) -> StoreResult<Vec<(i64, Counts)>> {
        self.read(move |tx| run_now(ledger::series(tx, &q, limit))).await
    }

    async fn count_tasks(&self, q: CountQuery, offset: u64, limit: u64) -> StoreResult<(u64, Vec<TaskCounts>)> {
        self.read(move |tx| run_now(ledger::tasks(tx, &q, offset, limit))).await
    }

    async fn count_task(&self, app_id: &AppId, task_id: &TaskId) -> StoreResult<Option<TaskCounts>> {
        let (app_id, task_id) = (app_id.clone(), task_id.clone());
        self.read(move |tx| run_now(ledger::task(tx, &app_id, &task_id))).await
    }

    async fn webhook(&self, app_id: &AppId) -> StoreResult<Option<WebhookRecord>> {
        let app_id = app_id.clone();
        self.read(move |tx| run_now(receipts::webhook(tx, &app_id))).await
    }

    async fn put_webhook(&self, webhook: WebhookRecord) -> StoreResult<()> {
        self.write(move |tx| run_now(receipts::put_webhook(tx, &webhook))).await
    }

    async fn due_webhooks(&self, node: &str, now: i64, limit: usize) -> StoreResult<Vec<AppId>> {
        let node = node.to_owned();
        self.read(move |tx| run_now(receipts::due(tx, &node, now, limit))).await
    }

    async fn claim_webhook(&self, app_id: &AppId, node: &str, until: i64, now: i64) -> StoreResult<bool> {
        let (app_id, node) = (app_id.clone(), node.to_owned());
        self.write(move |tx| run_now(receipts::claim(tx, &app_id, &node, until, now))).await
    }

    async fn release_webhook(&self, app_id: &AppId, node: &str) -> StoreResult<()> {
        let (app_id, node) = (app_id.clone(), node.to_owned());
        self.write(move |tx| run_now(receipts::release(tx, &app_id, &node))).await
    }

    async fn outbox_head(&self, app_id: &AppId, limit: usize) -> StoreResult<Vec<StoredReceipt>> {
        let app_id = app_id.clone();
        self.read(move |tx| run_now(receipts::head(tx, &app_id, limit))).await
    }

    async fn outbox_size(&self, app_id: &AppId) -> StoreResult<u64> {
        let app_id = app_id.clone();
        self.read(move |tx| run_now(receipts::outbox_size(tx, &app_id))).await
    }

    async fn receipts_sent(&self, app_id: &AppId, seqs: Vec<i64>, now: i64) -> StoreResult<()> {
        let app_id = app_id.clone();
        self.write(move |tx| run_now(receipts::sent(tx, &app_id, &seqs, now))).await
    }

    async fn receipts_failed(
        &self,
        app_id: &AppId,
        attempts: i64,
        next_at: i64,
        now: i64,
        error: String,
    ) -> StoreResult<()> {
        let app_id = app_id.clone();
        self.write(move |tx| run_now(receipts::failed(tx, &app_id, attempts, next_at, now, &error))).await
    }

    async fn give_up_receipts(&self, app_id: &AppId, before: i64, reason: String, now: i64) -> StoreResult<u64> {
        let app_id = app_id.clone();
        self.write(move |tx| run_now(receipts::give_up(tx, &app_id, before, &reason, now))).await
    }

    async fn receipt_failures(
        &self,
        app_id: &AppId,
        offset: u64,
        limit: u64,
    ) -> StoreResult<(u64, Vec<StoredReceipt>)> {
        let app_id = app_id.clone();
        self.read(move |tx| run_now(receipts::failures(tx, &app_id, offset, limit))).await
    }

    async fn replay_receipts(&self, app_id: &AppId, ids: Option<Vec<i64>>, now: i64) -> StoreResult<u64> {
        let app_id = app_id.clone();
        self.write(move |tx| run_now(receipts::replay(tx, &app_id, ids.as_deref(), now))).await
    }

    async fn vendor_device(
        &self,
        app_id: &AppId,
        channel: Channel,
        message_id: &str,
        token: &str,
    ) -> StoreResult<Option<DeviceId>> {
        let (app_id, message_id, token) = (app_id.clone(), message_id.to_owned(), token.to_owned());
        self.read(move |tx| run_now(receipts::vendor_device(tx, &app_id, channel, &message_id, &token))).await
    }

    async fn vendor_failed(
        &self,
        message_id: &str,
        device_id: &DeviceId,
        channel: Channel,
        reason: String,
        at: i64,
    ) -> StoreResult<()> {
        let (message_id, device_id) = (message_id.to_owned(), device_id.clone());
        self.write(move |tx| run_now(receipts::vendor_failed(tx, &message_id, &device_id, channel, &reason, at))).await
    }
}

#[cfg(test)]
mod tests {
    use rusqlite::Connection;

    /// Migration 14 keys the counters task first: what a database of version 13 counted is
    /// still there, summed into the app's rows, and each task keeps its minutes.
    #[test]
    fn keying_counters_by_task_keeps_the_counts() {
        let conn = Connection::open_in_memory().unwrap();
        super::super::setup::migrate_to(&conn, 13).unwrap();
        conn.execute_batch(
            "INSERT INTO analytics VALUES \
             ('a', 'minute', 60000, 'android', '1.0', 'own', 'simple', 't1', 1, 1, 1, 0, 0, 0, 0), \
             ('a', 'minute', 60000, 'android', '1.0', 'own', 'simple', 't2', 2, 2, 1, 1, 0, 0, 0), \
             ('a', 'hour', 0, 'android', '1.0', 'own', 'simple', 't1', 1, 1, 1, 0, 0, 0, 0), \
             ('a', 'hour', 0, 'android', '1.0', 'own', 'simple', 't2', 2, 2, 1, 1, 0, 0, 0);",
        )
        .unwrap();
        super::super::setup::migrate(&conn).unwrap();
        let rows: Vec<(String, String, i64, i64, i64)> = conn
            .prepare("SELECT granularity, task_id, bucket, pushed, opened FROM analytics ORDER BY granularity, task_id")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let row = |g: &str, t: &str, b, p, o| (g.to_owned(), t.to_owned(), b, p, o);
        assert_eq!(
            rows,
            vec![
                row("hour", "", 0, 3, 1),
                row("minute", "", 60000, 3, 1),
                row("task", "t1", 60000, 1, 0),
                row("task", "t2", 60000, 2, 1),
            ]
        );
    }
}
