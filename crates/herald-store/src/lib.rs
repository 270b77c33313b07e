//! The store: the truth. Every accepted push is committed here before the API answers.
//!
//! - [`Store`] is the contract, and [`suite`] the contract as tests, run on both backends;
//! - [`sql`]: every statement, written once ([`tx::Sql`] renders it per backend);
//! - [`ops`]: every operation, written once over [`tx::Tx`]; [`logic`]: the decisions they
//!   take, as pure functions; [`rows`]: rows into records;
//! - [`sqlite`]: one writer thread that group-commits, reader threads, nonces in memory;
//! - [`postgres`]: a pool of connections for a cluster, nonces and leases shared by nodes;
//! - [`scratch`]: a throwaway PostgreSQL schema for tests and benchmarks.
//!
//! What the backends do differently is visible in three places: how a statement is
//! rendered ([`tx::Sql`]: parameters and row locks), the few operations that branch on
//! [`tx::Dialect`] (a connect's presence swap), and each backend's module (where an
//! operation runs, transactions, status-update batching, nonces).

pub mod ledger;
mod logic;
mod migrations;
#[cfg(test)]
mod one_source;
mod ops;
pub mod postgres;
mod rows;
pub mod scratch;
mod sql;
pub mod sqlite;
#[cfg(any(test, feature = "suite"))]
pub mod suite;
mod tx;

use std::path::Path;
use std::sync::Arc;

use herald_core::channel::route::Routing;
use herald_core::error::{ApiError, ErrorCode};
use herald_core::ids::{AppId, DeviceId, KeyId, MessageId, TaskId, UserId};
use herald_core::model::{
    ApiKeyRecord, AppRecord, AppUpdate, Bound, BroadcastCommitted, ChannelRecord, ClusterView, CommittedPush,
    ConsoleSession, DeviceFilter, DeviceRecord, DeviceRegistration, FireClaim, Fired, InvalidToken, MessageView,
    NewBroadcast, NewPush, PendingDelivery, Presence, Revocation, RevokeTarget, ScheduleRecord, StatusUpdate,
    TaskFilter, TaskSummary, TaskView, TemplateRecord, VendorSend, VendorSendDone,
};
use herald_core::state::{Channel, ScheduleStatus};
use serde::Deserialize;

pub use ledger::Ledger;
pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;

#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The store cannot be reached or is shutting down; the request was not accepted.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// A bug or corrupt data; details for the log only.
    #[error("store internal error: {0}")]
    Internal(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        tracing::error!(error = %err, "store operation failed");
        match err {
            StoreError::Unavailable(_) => ApiError::new(
                ErrorCode::StoreUnavailable,
                "the store cannot take the request now; nothing was accepted",
            ),
            StoreError::Internal(_) => ApiError::new(ErrorCode::SystemError, "internal error"),
        }
    }
}

/// The `[store]` table of the configuration.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// SQLite `synchronous`: "full" (fsync each group commit) or "normal".
    pub sqlite_synchronous: String,
    /// Most operations committed in one transaction.
    pub max_batch: usize,
    pub reader_connections: usize,
    /// How often expired deliveries are marked `expired`.
    pub expiry_sweep_secs: u64,
    /// How often due schedules are looked for (ms): how late a scheduled push may fire.
    pub schedule_tick_ms: u64,
    /// Connections to PostgreSQL (when `store_url` is `postgres://…`).
    pub postgres_connections: usize,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            sqlite_synchronous: "full".into(),
            max_batch: 2048,
            reader_connections: 2,
            expiry_sweep_secs: 5,
            schedule_tick_ms: 1000,
            postgres_connections: 8,
        }
    }
}

/// True when `url` names a PostgreSQL server.
pub fn is_postgres_url(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

/// Opens the store `url` names: `postgres://` (or `postgresql://`) for PostgreSQL, else
/// SQLite at `sqlite_path`. The one place that chooses a backend.
pub async fn open(url: Option<&str>, sqlite_path: &Path, cfg: &StoreConfig) -> StoreResult<Arc<dyn Store>> {
    match url {
        Some(url) if is_postgres_url(url) => {
            Ok(Arc::new(PostgresStore::open(url, cfg.postgres_connections, None).await?))
        }
        _ => {
            let (path, cfg) = (sqlite_path.to_owned(), cfg.clone());
            let store = tokio::task::spawn_blocking(move || SqliteStore::open(&path, &cfg))
                .await
                .map_err(|e| StoreError::Internal(format!("opening SQLite: {e}")))??;
            Ok(Arc::new(store))
        }
    }
}

/// What became of a template creation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TemplateCreated {
    Created,
    /// The app has a template of that name.
    Exists,
    /// The app has its maximum number of templates.
    TooMany,
}

/// How the token hash of an imported device starts (`POST /admin/v1/apps/{appId}/devices/
/// import`): no device token hashes to it (those are SHA-256 hex), so an imported device
/// authenticates nowhere until it registers, and its first registration needs no proof: it
/// takes over the record, keeping its deviceId, user and pending messages.
pub const IMPORTED_TOKEN_PREFIX: &str = "imported:";

/// What became of a device registration.
#[derive(Debug, Clone, PartialEq)]
pub enum Registered {
    /// A new installId: a new device.
    Created(DeviceRecord),
    /// A known installId whose device proved itself (its current token): a new token.
    Renewed(DeviceRecord),
    /// A known installId without that proof: the device and its token are left as they are.
    Taken,
}

/// What became of a claim of a schedule's firing.
#[derive(Debug, Clone)]
pub enum FireOutcome {
    /// Claimed already (fired by this node before a restart, or by another node).
    Taken,
    /// Claimed and recorded as missed: nothing sent.
    Missed,
    /// Claimed and committed.
    Fired(Fired),
}

/// What became of a cancel of a schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cancelled {
    Cancelled,
    /// The app has no schedule of that id.
    NotFound,
    /// It is no longer waiting.
    NotWaiting(ScheduleStatus),
}

#[async_trait::async_trait]
pub trait Store: ledger::Ledger {
    async fn setting(&self, name: &str) -> StoreResult<Option<String>>;
    /// Stores `value` unless the setting exists; returns the value now in force.
    async fn init_setting(&self, name: &str, value: &str) -> StoreResult<String>;

    async fn create_app(&self, app: AppRecord, first_key: ApiKeyRecord) -> StoreResult<()>;
    async fn app(&self, app_id: &AppId) -> StoreResult<Option<AppRecord>>;
    /// Every app, oldest first.
    async fn apps(&self) -> StoreResult<Vec<AppRecord>>;
    async fn create_api_key(&self, key: ApiKeyRecord) -> StoreResult<()>;
    async fn api_key(&self, key_id: &KeyId) -> StoreResult<Option<ApiKeyRecord>>;
    /// The app's keys, oldest first.
    async fn api_keys(&self, app_id: &AppId) -> StoreResult<Vec<ApiKeyRecord>>;
    /// Returns false when the app has no such key.
    async fn revoke_api_key(&self, app_id: &AppId, key_id: &KeyId, now: i64) -> StoreResult<bool>;
    /// Renames an app or sets whether it trusts client binds; false when there is no such app.
    async fn update_app(&self, app_id: &AppId, update: AppUpdate) -> StoreResult<bool>;
    /// Stores a console session; expired ones are dropped on the way.
    async fn put_console_session(&self, session: ConsoleSession, now: i64) -> StoreResult<()>;
    /// The session of that hash unless it has expired at `now`.
    async fn console_session(&self, id_hash: &str, now: i64) -> StoreResult<Option<ConsoleSession>>;
    /// Ends a session (sign-out); false when there was none.
    async fn end_console_session(&self, id_hash: &str) -> StoreResult<bool>;
    /// Device connections per node and the leases, for the operator.
    async fn cluster(&self) -> StoreResult<ClusterView>;
    /// Every lease row: (name, holder, expires_at), by name. Cheap: one row per lease.
    async fn leases(&self) -> StoreResult<Vec<(String, String, i64)>>;

    /// Registers a device; a known installId gets a new token only when the registration
    /// proves it is that device (`proof_token_hash` is its current token's hash).
    async fn register_device(&self, reg: DeviceRegistration) -> StoreResult<Registered>;
    async fn device_by_token_hash(&self, token_hash: &str) -> StoreResult<Option<DeviceRecord>>;
    async fn device(&self, app_id: &AppId, device_id: &DeviceId) -> StoreResult<Option<DeviceRecord>>;
    /// The app and token hash of a device, for the MQTT CONNECT check.
    async fn device_credentials(&self, device_id: &DeviceId) -> StoreResult<Option<(AppId, String)>>;
    /// Updates what the device reported (vendor tokens are merged into the known ones; a
    /// null removes one); false when the app has no such device.
    async fn report_device(
        &self,
        app_id: &AppId,
        device_id: &DeviceId,
        app_version: Option<String>,
        vendor_tokens: Option<serde_json::Map<String, serde_json::Value>>,
    ) -> StoreResult<bool>;
    /// Binds `user_id` to the device (replacing an earlier user) and creates deliveries of
    /// the user's messages still within their validity; returns them with the device's
    /// presence. `None` when there is no such device. Ordered after every status update
    /// queued before the call.
    async fn bind_user(
        &self,
        app_id: &AppId,
        device_id: &DeviceId,
        user_id: &UserId,
        now: i64,
    ) -> StoreResult<Option<Bound>>;
    /// Unbinds the device's user; pending user-targeted deliveries to it are dropped.
    /// False when there is no such device.
    async fn unbind_user(&self, app_id: &AppId, device_id: &DeviceId, now: i64) -> StoreResult<bool>;
    async fn user_devices(&self, app_id: &AppId, user_id: &UserId) -> StoreResult<Vec<DeviceRecord>>;
    /// One page of the app's devices that `filter` selects (newest first), and how many it
    /// selects in all.
    async fn devices(
        &self,
        app_id: &AppId,
        filter: &DeviceFilter,
        offset: u64,
        limit: u64,
    ) -> StoreResult<(u64, Vec<DeviceRecord>)>;

    /// Records that `presence` now holds the device's connection (and `last_seen`);
    /// returns the presence it replaced when that was another connection, whose node
    /// must close it. Committed before it returns: a push that commits later sees it.
    async fn device_connected(
        &self,
        device_id: &DeviceId,
        presence: &Presence,
        now: i64,
    ) -> StoreResult<Option<Presence>>;
    /// Clears the presence a node left behind (called at its start, before it serves);
    /// returns how many devices it named.
    async fn node_started(&self, node: &str) -> StoreResult<u64>;
    /// Devices connected to `node` with a delivery open since before `created_before`, or a
    /// live broadcast created in [`broadcasts_since`, `created_before`) that they qualify for
    /// and have not acknowledged (a doorbell that never rang): at most `limit`. Broadcasts are
    /// windowed because checking one costs a probe per connected device: the caller looks
    /// at each broadcast in a few sweeps, not in every sweep of its life.
    async fn stale_pending(
        &self,
        node: &str,
        created_before: i64,
        broadcasts_since: i64,
        now: i64,
        limit: usize,
    ) -> StoreResult<Vec<DeviceId>>;

    /// Commits a broadcast (its task and one row), or finds the earlier one of the same
    /// msgkey within its validity.
    async fn commit_broadcast(&self, b: NewBroadcast, now: i64) -> StoreResult<BroadcastCommitted>;
    /// The devices connected to `node` that broadcast `message_id` reaches.
    async fn broadcast_recipients(&self, message_id: &MessageId, node: &str) -> StoreResult<Vec<DeviceId>>;

    /// Revokes the app's notifications that `what` names, created since `since` and not
    /// revoked before: pending deliveries become `revoked`; devices that got one (or hold a
    /// connection that may be writing it) get a control message, returned for dispatch.
    /// `None` when the app has no such message or task in the window.
    async fn revoke(&self, app_id: &AppId, what: RevokeTarget, now: i64, since: i64)
    -> StoreResult<Option<Revocation>>;

    async fn create_schedule(&self, s: ScheduleRecord) -> StoreResult<()>;
    /// Waiting schedules due at `now`, earliest first.
    async fn due_schedules(&self, now: i64, limit: usize) -> StoreResult<Vec<ScheduleRecord>>;
    /// Claims a firing and commits what it sends, in one transaction.
    async fn fire_schedule(&self, claim: FireClaim, now: i64) -> StoreResult<FireOutcome>;
    /// The app's schedules with a push time in `from..=to`; or, with `unique_id`, that
    /// schedule and its firings.
    async fn schedules(
        &self,
        app_id: &AppId,
        unique_id: Option<&str>,
        from: i64,
        to: i64,
    ) -> StoreResult<Vec<ScheduleRecord>>;
    /// Cancels a waiting schedule.
    async fn cancel_schedule(&self, app_id: &AppId, unique_id: &str) -> StoreResult<Cancelled>;
    /// A waiting schedule of the app uses the template.
    async fn template_in_use(&self, app_id: &AppId, name: &str) -> StoreResult<bool>;

    /// Creates a template unless the app has one of that name or `max_per_app` already.
    async fn create_template(&self, t: TemplateRecord, max_per_app: usize) -> StoreResult<TemplateCreated>;
    async fn template(&self, app_id: &AppId, name: &str) -> StoreResult<Option<TemplateRecord>>;
    /// The app's templates by name.
    async fn templates(&self, app_id: &AppId) -> StoreResult<Vec<TemplateRecord>>;
    /// Replaces the text of an existing template (its `created_at` stays); false when none.
    async fn update_template(&self, t: TemplateRecord) -> StoreResult<bool>;
    /// False when the app has no such template.
    async fn delete_template(&self, app_id: &AppId, name: &str) -> StoreResult<bool>;

    /// Commits a push: task, messages and deliveries in one transaction.
    async fn commit_push(&self, push: NewPush, now: i64) -> StoreResult<CommittedPush>;
    /// Deliveries not yet acknowledged and within their validity, oldest first, broadcasts
    /// the device qualifies for included. Ordered after every status update queued before
    /// the call.
    async fn pending_deliveries(
        &self,
        device_id: &DeviceId,
        now: i64,
        limit: usize,
    ) -> StoreResult<Vec<PendingDelivery>>;
    /// Queues an update; it is committed, in the order recorded, with the store's next
    /// writes.
    fn record(&self, update: StatusUpdate);
    /// Marks deliveries past their validity `expired`; returns how many.
    async fn expire_due(&self, now: i64) -> StoreResult<u64>;
    async fn task(&self, app_id: &AppId, task_id: &TaskId) -> StoreResult<Option<TaskView>>;
    /// One page of the app's tasks that `filter` selects (newest first), and how many it
    /// selects in all.
    async fn tasks(
        &self,
        app_id: &AppId,
        filter: &TaskFilter,
        offset: u64,
        limit: u64,
    ) -> StoreResult<(u64, Vec<TaskSummary>)>;
    async fn message(&self, app_id: &AppId, message_id: &MessageId) -> StoreResult<Option<MessageView>>;
    /// Waits until everything queued so far is committed.
    async fn flush(&self) -> StoreResult<()>;

    /// Records the nonce of a signed request of `key_id` until `expires_at`; false when it
    /// is recorded already (a replay). Holds across every node that shares the store.
    async fn claim_nonce(&self, key_id: &KeyId, nonce: &str, now: i64, expires_at: i64) -> StoreResult<bool>;
    /// Takes or renews the lease `name` for `holder` until `now + ttl_ms`; false while
    /// another holder's lease runs. Work that must run once among nodes runs under a lease.
    async fn try_lease(&self, name: &str, holder: &str, now: i64, ttl_ms: i64) -> StoreResult<bool>;

    /// Creates or replaces an app's channel (its `created_at` stays; its last error clears).
    async fn put_channel(&self, channel: ChannelRecord) -> StoreResult<()>;
    async fn channel(&self, app_id: &AppId, kind: Channel) -> StoreResult<Option<ChannelRecord>>;
    /// The app's channels by kind.
    async fn channels(&self, app_id: &AppId) -> StoreResult<Vec<ChannelRecord>>;
    /// False when the app has no such channel. Sends waiting for it fail when tried.
    async fn delete_channel(&self, app_id: &AppId, kind: Channel) -> StoreResult<bool>;
    /// `None` when there is no such app.
    async fn routing(&self, app_id: &AppId) -> StoreResult<Option<Routing>>;
    /// False when there is no such app.
    async fn set_routing(&self, app_id: &AppId, routing: Routing) -> StoreResult<bool>;
    /// Claims `channel`'s vendor sends due at `now` until `now + lease_ms`, at most `limit`, each with
    /// its payload; among nodes sharing a store, each send is claimed by one at a time.
    async fn claim_vendor_sends(
        &self,
        channel: Channel,
        now: i64,
        lease_ms: i64,
        limit: usize,
    ) -> StoreResult<Vec<VendorSend>>;
    /// Records how claimed sends ended, or when each is tried again, in one transaction.
    async fn finish_vendor_sends(&self, done: Vec<VendorSendDone>) -> StoreResult<()>;
    /// The app's tokens that vendors called invalid, newest first: (total, the page).
    async fn invalid_tokens(&self, app_id: &AppId, offset: u64, limit: u64) -> StoreResult<(u64, Vec<InvalidToken>)>;
}
