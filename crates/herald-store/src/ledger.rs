//! The store's side of receipts and analytics (DESIGN §8), a part of every [`crate::Store`].

use herald_core::ids::{AppId, DeviceId, TaskId};
use herald_core::ledger::{CountQuery, Counts, StoredReceipt, TaskCounted, TaskCounts, WebhookRecord};
use herald_core::state::{Channel, Granularity};

use crate::StoreResult;

#[async_trait::async_trait]
pub trait Ledger: Send + Sync + 'static {
    /// Whether status changes are journalled from now on (on at open). Off, nothing is
    /// counted and no receipt is queued: `analytics.enabled = false`.
    fn set_journal(&self, on: bool);
    /// Counts the oldest `limit` journal entries (in the app's counters, and in their task's
    /// own when its push type is one of `tasks`), queues the receipts of those whose app's
    /// webhook is on, and deletes them, in one transaction: (entries, receipts queued).
    /// Among nodes sharing a store, run by one at a time (under a lease).
    async fn tally(&self, limit: usize, now: i64, tasks: TaskCounted) -> StoreResult<(usize, usize)>;
    /// Drops the counters of `granularity` older than `before`; how many rows.
    async fn drop_counts(&self, granularity: Granularity, before: i64) -> StoreResult<u64>;
    /// Drops the counters of tasks created before `before`; how many rows.
    async fn drop_task_counts(&self, before: i64) -> StoreResult<u64>;
    async fn count_total(&self, q: CountQuery) -> StoreResult<Counts>;
    /// Per bucket with a count, oldest first, at most `limit`.
    async fn count_series(&self, q: CountQuery, limit: usize) -> StoreResult<Vec<(i64, Counts)>>;
    /// The tasks created in the span that have counts, newest first, each with its counts
    /// over its life: (how many, the page).
    async fn count_tasks(&self, q: CountQuery, offset: u64, limit: u64) -> StoreResult<(u64, Vec<TaskCounts>)>;
    async fn count_task(&self, app_id: &AppId, task_id: &TaskId) -> StoreResult<Option<TaskCounts>>;

    async fn webhook(&self, app_id: &AppId) -> StoreResult<Option<WebhookRecord>>;
    /// Creates or replaces the app's webhook (url, enabled, secret; `updated_at` is now);
    /// its sender tries again at once.
    async fn put_webhook(&self, webhook: WebhookRecord) -> StoreResult<()>;
    /// Apps whose webhook is on and due at `now` with receipts waiting, that no other node
    /// is sending.
    async fn due_webhooks(&self, node: &str, now: i64, limit: usize) -> StoreResult<Vec<AppId>>;
    /// Takes (or renews) the sending of the app's receipts until `until`; false while
    /// another node holds it.
    async fn claim_webhook(&self, app_id: &AppId, node: &str, until: i64, now: i64) -> StoreResult<bool>;
    async fn release_webhook(&self, app_id: &AppId, node: &str) -> StoreResult<()>;
    /// The first `limit` receipts of the app's outbox.
    async fn outbox_head(&self, app_id: &AppId, limit: usize) -> StoreResult<Vec<StoredReceipt>>;
    async fn outbox_size(&self, app_id: &AppId) -> StoreResult<u64>;
    /// The receipts `seqs` were acknowledged.
    async fn receipts_sent(&self, app_id: &AppId, seqs: Vec<i64>, now: i64) -> StoreResult<()>;
    /// A try failed: the head is tried again at `next_at`.
    async fn receipts_failed(
        &self,
        app_id: &AppId,
        attempts: i64,
        next_at: i64,
        now: i64,
        error: String,
    ) -> StoreResult<()>;
    /// Gives up the app's receipts created before `before`; how many.
    async fn give_up_receipts(&self, app_id: &AppId, before: i64, reason: String, now: i64) -> StoreResult<u64>;
    /// The app's given-up receipts, oldest first: (how many, the page).
    async fn receipt_failures(&self, app_id: &AppId, offset: u64, limit: u64)
    -> StoreResult<(u64, Vec<StoredReceipt>)>;
    /// The device the app's send of `message_id` through `channel` to `token` went to.
    async fn vendor_device(
        &self,
        app_id: &AppId,
        channel: Channel,
        message_id: &str,
        token: &str,
    ) -> StoreResult<Option<DeviceId>>;
    /// Journals a vendor's report that it could not deliver the message to the device.
    async fn vendor_failed(
        &self,
        message_id: &str,
        device_id: &DeviceId,
        channel: Channel,
        reason: String,
        at: i64,
    ) -> StoreResult<()>;
    /// Puts given-up receipts (`ids`, or all) back into the outbox; how many.
    async fn replay_receipts(&self, app_id: &AppId, ids: Option<Vec<i64>>, now: i64) -> StoreResult<u64>;
}
