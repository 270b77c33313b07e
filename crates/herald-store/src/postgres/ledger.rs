//! [`Ledger`] on PostgreSQL: each operation on a pooled connection, writes in a transaction
//! of their own (the journal's reading, counting and deletion in one).

use herald_core::ids::{AppId, DeviceId, TaskId};
use herald_core::ledger::{CountQuery, Counts, StoredReceipt, TaskCounted, TaskCounts, WebhookRecord};
use herald_core::state::{Channel, Granularity};

use super::{PgTx, PostgresStore, map_err};
use crate::StoreResult;
use crate::ledger::Ledger;
use crate::ops::{ledger, receipts};

#[async_trait::async_trait]
impl Ledger for PostgresStore {
    fn set_journal(&self, on: bool) {
        self.pool.journal.store(on, std::sync::atomic::Ordering::Relaxed);
    }

    async fn tally(&self, limit: usize, now: i64, tasks: TaskCounted) -> StoreResult<(usize, usize)> {
        in_tx!(self, |tx| async {
            let entries = ledger::read_journal(tx, limit, &self.dims, now).await?;
            let tally = ledger::plan(&entries, tasks)?;
            if tally.entries > 0 {
                ledger::apply(tx, &tally, now).await?;
            }
            StoreResult::Ok((tally.entries, tally.receipts()))
        })
    }

    async fn drop_counts(&self, granularity: Granularity, before: i64) -> StoreResult<u64> {
        in_tx!(self, |tx| ledger::drop_counts(tx, granularity, before))
    }

    async fn drop_task_counts(&self, before: i64) -> StoreResult<u64> {
        in_tx!(self, |tx| ledger::drop_task_counts(tx, before))
    }

    async fn count_total(&self, q: CountQuery) -> StoreResult<Counts> {
        on_conn!(self, |tx| ledger::total(tx, &q))
    }

    async fn count_series(&self, q: CountQuery, limit: usize) -> StoreResult<Vec<(i64, Counts)>> {
        on_conn!(self, |tx| ledger::series(tx, &q, limit))
    }

    async fn count_tasks(&self, q: CountQuery, offset: u64, limit: u64) -> StoreResult<(u64, Vec<TaskCounts>)> {
        on_conn!(self, |tx| ledger::tasks(tx, &q, offset, limit))
    }

    async fn count_task(&self, app_id: &AppId, task_id: &TaskId) -> StoreResult<Option<TaskCounts>> {
        let (app_id, task_id) = (app_id.clone(), task_id.clone());
        on_conn!(self, |tx| ledger::task(tx, &app_id, &task_id))
    }

    async fn webhook(&self, app_id: &AppId) -> StoreResult<Option<WebhookRecord>> {
        let app_id = app_id.clone();
        on_conn!(self, |tx| receipts::webhook(tx, &app_id))
    }

    async fn put_webhook(&self, webhook: WebhookRecord) -> StoreResult<()> {
        in_tx!(self, |tx| receipts::put_webhook(tx, &webhook))
    }

    async fn due_webhooks(&self, node: &str, now: i64, limit: usize) -> StoreResult<Vec<AppId>> {
        let node = node.to_owned();
        on_conn!(self, |tx| receipts::due(tx, &node, now, limit))
    }

    async fn claim_webhook(&self, app_id: &AppId, node: &str, until: i64, now: i64) -> StoreResult<bool> {
        let (app_id, node) = (app_id.clone(), node.to_owned());
        in_tx!(self, |tx| receipts::claim(tx, &app_id, &node, until, now))
    }

    async fn release_webhook(&self, app_id: &AppId, node: &str) -> StoreResult<()> {
        let (app_id, node) = (app_id.clone(), node.to_owned());
        in_tx!(self, |tx| receipts::release(tx, &app_id, &node))
    }

    async fn outbox_head(&self, app_id: &AppId, limit: usize) -> StoreResult<Vec<StoredReceipt>> {
        let app_id = app_id.clone();
        on_conn!(self, |tx| receipts::head(tx, &app_id, limit))
    }

    async fn outbox_size(&self, app_id: &AppId) -> StoreResult<u64> {
        let app_id = app_id.clone();
        on_conn!(self, |tx| receipts::outbox_size(tx, &app_id))
    }

    async fn receipts_sent(&self, app_id: &AppId, seqs: Vec<i64>, now: i64) -> StoreResult<()> {
        let app_id = app_id.clone();
        in_tx!(self, |tx| receipts::sent(tx, &app_id, &seqs, now))
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
        in_tx!(self, |tx| receipts::failed(tx, &app_id, attempts, next_at, now, &error))
    }

    async fn give_up_receipts(&self, app_id: &AppId, before: i64, reason: String, now: i64) -> StoreResult<u64> {
        let app_id = app_id.clone();
        in_tx!(self, |tx| receipts::give_up(tx, &app_id, before, &reason, now))
    }

    async fn receipt_failures(
        &self,
        app_id: &AppId,
        offset: u64,
        limit: u64,
    ) -> StoreResult<(u64, Vec<StoredReceipt>)> {
        let app_id = app_id.clone();
        on_conn!(self, |tx| receipts::failures(tx, &app_id, offset, limit))
    }

    async fn replay_receipts(&self, app_id: &AppId, ids: Option<Vec<i64>>, now: i64) -> StoreResult<u64> {
        let app_id = app_id.clone();
        in_tx!(self, |tx| receipts::replay(tx, &app_id, ids.as_deref(), now))
    }

    async fn vendor_device(
        &self,
        app_id: &AppId,
        channel: Channel,
        message_id: &str,
        token: &str,
    ) -> StoreResult<Option<DeviceId>> {
        let (app_id, message_id, token) = (app_id.clone(), message_id.to_owned(), token.to_owned());
        on_conn!(self, |tx| receipts::vendor_device(tx, &app_id, channel, &message_id, &token))
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
        in_tx!(self, |tx| receipts::vendor_failed(tx, &message_id, &device_id, channel, &reason, at))
    }
}
