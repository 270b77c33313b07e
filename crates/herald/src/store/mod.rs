//! The store: the truth. Every accepted push is committed here before the API answers.
//!
//! [`Store`] is the contract; its SQL lives only inside the backend modules (`sqlite` now,
//! PostgreSQL next, with the same schema in `migrations/<backend>/`). Writes are group
//! committed: many operations share one transaction and one fsync. Status updates that
//! nobody waits for ([`Store::record`]) are queued and committed in order with the rest.

mod broadcast_sql;
mod postgres;
mod schedule_sql;
mod sqlite;
#[cfg(test)]
pub(crate) mod suite;

use serde::Serialize;

pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;

use crate::ids::{AppId, DeviceId, KeyId, MessageId, TaskId, UserId};

/// Opens the store the configuration names: `postgres://` (or `postgresql://`) for
/// PostgreSQL, else SQLite (`sqlite://PATH` or `<data_dir>/herald.db`). The one place that
/// chooses a backend.
pub async fn open(cfg: &crate::config::Config) -> StoreResult<std::sync::Arc<dyn Store>> {
    match cfg.store_url.as_deref() {
        Some(url) if cfg.is_postgres() => {
            Ok(std::sync::Arc::new(PostgresStore::open(url, cfg.store.postgres_connections, None).await?))
        }
        _ => {
            let (path, store_cfg) = (cfg.sqlite_path(), cfg.store.clone());
            let store = tokio::task::spawn_blocking(move || SqliteStore::open(&path, &store_cfg))
                .await
                .map_err(|e| StoreError::Internal(format!("opening SQLite: {e}")))??;
            Ok(std::sync::Arc::new(store))
        }
    }
}

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

#[derive(Debug, Clone)]
pub struct AppRecord {
    pub app_id: AppId,
    pub name: String,
    /// SHA-256 of the device-facing app key.
    pub app_key_hash: String,
    /// The bind secret, sealed with the master key.
    pub bind_secret_sealed: String,
    /// Devices may bind a user without a server-issued proof (MPS behaviour).
    pub trust_client_bind: bool,
    pub created_at: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyKind {
    Hmac,
    Rsa,
}

impl KeyKind {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyKind::Hmac => "hmac",
            KeyKind::Rsa => "rsa",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "hmac" => Some(KeyKind::Hmac),
            "rsa" => Some(KeyKind::Rsa),
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct ApiKeyRecord {
    pub key_id: KeyId,
    pub app_id: AppId,
    pub kind: KeyKind,
    /// HMAC: the secret sealed with the master key. RSA: base64url of the public key DER.
    pub material: String,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceRecord {
    pub device_id: DeviceId,
    pub app_id: AppId,
    pub install_id: String,
    pub platform: String,
    pub app_version: Option<String>,
    pub os_version: Option<String>,
    pub model: Option<String>,
    /// Vendor tokens by channel (`apns`, `fcm`, `hms`, `xiaomi`, `webpush`).
    pub vendor_tokens: serde_json::Map<String, serde_json::Value>,
    pub user_id: Option<UserId>,
    pub bound_at: Option<i64>,
    pub created_at: i64,
    pub last_seen: Option<i64>,
}

#[derive(Debug, Clone)]
pub struct DeviceRegistration {
    pub app_id: AppId,
    pub install_id: String,
    /// Used when the installId is new; an existing device keeps its id.
    pub new_device_id: DeviceId,
    pub token_hash: String,
    pub platform: String,
    pub app_version: Option<String>,
    pub os_version: Option<String>,
    pub model: Option<String>,
    pub vendor_tokens: Option<serde_json::Map<String, serde_json::Value>>,
    pub now: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TargetKind {
    Device,
    User,
}

impl TargetKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TargetKind::Device => "device",
            TargetKind::User => "user",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "device" => Some(TargetKind::Device),
            "user" => Some(TargetKind::User),
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct NewTask {
    pub task_id: TaskId,
    pub app_id: AppId,
    pub push_type: &'static str,
    pub task_name: Option<String>,
    pub delivery_type: i64,
    pub created_at: i64,
    pub expires_at: i64,
}

#[derive(Debug, Clone)]
pub struct NewMessage {
    pub message_id: MessageId,
    pub msg_key: String,
    pub target_kind: TargetKind,
    pub target: String,
    /// The JSON a device receives (UTF-8), shared with the deliveries made at commit.
    pub payload: bytes::Bytes,
}

#[derive(Debug, Clone)]
pub struct NewPush {
    pub task: NewTask,
    pub messages: Vec<NewMessage>,
    /// A firing of a schedule: no idempotency claim (a recurring push repeats its msgKeys on
    /// purpose; the schedule's own claim makes each firing happen once).
    pub skip_idempotency: bool,
}

/// A template of an app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateRecord {
    pub app_id: AppId,
    pub name: String,
    pub title: String,
    pub content: String,
    pub uri: Option<String>,
    pub desc_info: Option<String>,
    pub push_style: i64,
    pub silent: i64,
    pub created_at: i64,
    pub updated_at: i64,
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

/// A broadcast to every device of an app that qualifies: one row, whatever the audience.
#[derive(Debug, Clone)]
pub struct NewBroadcast {
    pub task: NewTask,
    pub message_id: MessageId,
    pub msg_key: String,
    /// `android`, `ios` or `harmonyos`.
    pub platform: &'static str,
    /// 0 bound devices, 1 all, 2 unbound.
    pub push_status: i64,
    /// Bound since (pushStatus 0), if limited.
    pub bind_since: Option<i64>,
    /// Unbound since (pushStatus 1 and 2), if limited.
    pub unbind_since: Option<i64>,
    pub payload: bytes::Bytes,
    /// As in [`NewPush::skip_idempotency`].
    pub skip_idempotency: bool,
}

#[derive(Debug, Clone)]
pub struct BroadcastCommitted {
    pub task_id: TaskId,
    pub message_id: MessageId,
    /// The same msgkey was broadcast within its validity: this is the earlier one.
    pub replayed: bool,
}

/// A broadcast as its task shows it.
#[derive(Debug, Clone)]
pub struct BroadcastView {
    pub message_id: MessageId,
    pub msg_key: String,
    /// Devices that qualify now.
    pub eligible: u64,
    /// Acknowledgement counts by status (sent, delivered, opened, ignored).
    pub counts: Vec<(String, u64)>,
    pub revoked_at: Option<i64>,
}

/// A scheduled push as stored: the request body (without its strategy) is validated
/// again and committed when it fires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleRecord {
    pub unique_id: String,
    /// For a firing of a recurring push: the recurring push.
    pub parent_id: Option<String>,
    pub app_id: AppId,
    /// simple, template, multiple or broadcast.
    pub push_type: String,
    pub delivery_type: i64,
    pub template_name: Option<String>,
    pub title: Option<String>,
    pub content: Option<String>,
    pub body: String,
    pub strategy_type: i64,
    pub strategy: String,
    /// The next (or, once done, the last) firing, Unix ms.
    pub push_time: i64,
    /// The validity of what it sends: a firing missed by more than this is not sent.
    pub expires_ms: i64,
    /// 0 waiting, 1 executed, 2 cancelled, 3 missed.
    pub status: i64,
    pub task_id: Option<String>,
    pub created_at: i64,
}

pub const SCHEDULE_WAITING: i64 = 0;
pub const SCHEDULE_EXECUTED: i64 = 1;
pub const SCHEDULE_CANCELLED: i64 = 2;
pub const SCHEDULE_MISSED: i64 = 3;

/// What a firing commits.
#[derive(Debug, Clone)]
pub enum Firing {
    Push(NewPush),
    Broadcast(NewBroadcast),
}

#[derive(Debug, Clone)]
pub enum Fired {
    Push(CommittedPush),
    Broadcast(BroadcastCommitted),
}

/// One firing (or missed firing) of a schedule, claimed and committed in one transaction.
#[derive(Debug, Clone)]
pub struct FireClaim {
    pub unique_id: String,
    /// The push_time it is due at (a claim of an older time finds nothing).
    pub due: i64,
    /// The next firing of a recurring push (`None`: this was the last, or a one-off).
    pub next: Option<i64>,
    pub recurring: bool,
    /// `None`: recorded as missed, nothing sent.
    pub firing: Option<Firing>,
}

/// The writes of a claimed firing: what the schedule row becomes, and the child row of a
/// recurring push. Shared by the backends.
pub(crate) struct FirePlan {
    /// The schedule row's new status, task and push time.
    pub status: i64,
    pub row_task: Option<String>,
    pub push_time: i64,
    /// For a recurring push: the child row's status and task.
    pub outcome: i64,
    pub task_id: Option<String>,
}

impl FireClaim {
    pub(crate) fn plan(&self) -> FirePlan {
        let task_id = match &self.firing {
            Some(Firing::Push(p)) => Some(p.task.task_id.as_str().to_owned()),
            Some(Firing::Broadcast(b)) => Some(b.task.task_id.as_str().to_owned()),
            None => None,
        };
        let outcome = if self.firing.is_some() { SCHEDULE_EXECUTED } else { SCHEDULE_MISSED };
        if self.recurring {
            let status = if self.next.is_some() { SCHEDULE_WAITING } else { SCHEDULE_EXECUTED };
            FirePlan { status, row_task: None, push_time: self.next.unwrap_or(self.due), outcome, task_id }
        } else {
            FirePlan { status: outcome, row_task: task_id.clone(), push_time: self.due, outcome, task_id }
        }
    }
}

/// What a revoke names.
#[derive(Debug, Clone)]
pub enum RevokeTarget {
    /// The messages of (msgKey, target) (Simple and Template pushes).
    Message { msg_key: String, target: String },
    /// Every message of a task.
    Task(TaskId),
}

/// A control message telling devices that already got a message to withdraw it.
#[derive(Debug, Clone)]
pub struct Recall {
    pub message_id: MessageId,
    pub payload: bytes::Bytes,
    pub expires_at: i64,
    pub devices: Vec<Recipient>,
}

/// The revoke of a task's broadcast: `None` when the task has none in the window,
/// `Some(None)` when it was revoked before, else its id and the recall for devices that got it.
pub(crate) type BroadcastRevoke = Option<Option<(MessageId, Option<Recall>)>>;

/// What a revoke did.
#[derive(Debug, Clone, Default)]
pub struct Revocation {
    /// The messages revoked now (none when nothing matched within the window).
    pub messages: Vec<MessageId>,
    /// Deliveries that were still pending and will never be delivered.
    pub withdrawn: u64,
    /// Control messages for devices that already got (or may be getting) a message.
    pub recalls: Vec<Recall>,
}

/// A message being revoked, as its recall needs it.
pub(crate) struct Revoked<'a> {
    pub message_id: &'a str,
    pub app: &'a str,
    pub task_id: &'a str,
    pub msg_key: &'a str,
    pub target_kind: &'a str,
    pub target: &'a str,
    pub expires_at: i64,
}

/// The control payload that withdraws `revoked` from a device: `messageId` names the
/// withdrawn message, `revokeId` the control message itself (what the device acknowledges).
pub(crate) fn recall_payload(revoked: &str, msg_key: &str, task_id: &str, control: &MessageId, now: i64) -> String {
    serde_json::json!({
        "type": "revoke",
        "messageId": revoked,
        "msgKey": msg_key,
        "taskId": task_id,
        "revokeId": control,
        "sentAt": now,
    })
    .to_string()
}

/// The row of a task (SQLite parameters; PostgreSQL's through `broadcast_sql::pg`).
pub(crate) const INSERT_TASK: &str = "INSERT INTO tasks (task_id, app_id, push_type, task_name, delivery_type, \
     created_at, expires_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)";

/// A device a message is now pending for, and the node holding its connection, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recipient {
    pub device_id: DeviceId,
    /// Read under a share lock on the device row: a connect that records its presence
    /// after this read waits for the push to commit, and then reads the delivery.
    pub online_node: Option<String>,
}

/// Which connection of which node holds a device, as recorded in the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Presence {
    pub node: String,
    /// The node's number for the connection: a newer connection of the device on the
    /// same node has a higher one.
    pub generation: u64,
}

/// What a bind hands to the dispatcher.
#[derive(Debug, Clone)]
pub struct Bound {
    /// The user's deliveries now pending for the device.
    pub pending: Vec<PendingDelivery>,
    /// The node holding the device's connection, if any.
    pub online_node: Option<String>,
}

/// What became of one target of a push.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetOutcome {
    /// Stored; `devices` are the devices it is now pending for (none yet for a user
    /// without bound devices: it waits for a bind within its validity).
    Accepted { devices: Vec<Recipient> },
    /// No such device in this app. Recorded, never delivered.
    Undeliverable,
    /// The same (app, msgKey, target) is already within its validity: not sent twice.
    Duplicate { message_id: MessageId },
}

#[derive(Debug, Clone)]
pub struct CommittedPush {
    pub task_id: TaskId,
    /// The request repeated an earlier one whole; `task_id` is the earlier task.
    pub replayed: bool,
    /// In the order of the request's messages.
    pub outcomes: Vec<(MessageId, TargetOutcome)>,
}

/// The answer to a push whose every target repeats one earlier request (a client retry):
/// that request's task, every target a duplicate. `earlier` holds, per target, the
/// (messageId, taskId) of the earlier message still within its validity, if any. Shared by
/// the backends so that they agree on what a retry is.
pub(crate) fn replay_of(earlier: &[Option<(String, String)>]) -> Option<CommittedPush> {
    let Some(Some((_, first_task))) = earlier.first() else { return None };
    if !earlier.iter().all(|e| matches!(e, Some((_, t)) if t == first_task)) {
        return None;
    }
    let outcomes = earlier
        .iter()
        .flatten()
        .map(|(mid, _)| {
            let mid = MessageId::new(mid.clone());
            (mid.clone(), TargetOutcome::Duplicate { message_id: mid })
        })
        .collect();
    Some(CommittedPush { task_id: TaskId::new(first_task.clone()), replayed: true, outcomes })
}

/// The presence a connect replaced, from the (node, generation) read before it: `None`
/// when there was none or it was this very connection.
pub(crate) fn replaced(before: Option<(Option<String>, Option<i64>)>, now: &Presence) -> Option<Presence> {
    match before {
        Some((Some(node), Some(generation))) => {
            let old = Presence { node, generation: generation as u64 };
            (old != *now).then_some(old)
        }
        _ => None,
    }
}

/// The unicast and broadcast deliveries of a device merged in message order (ids are
/// time-ordered), at most `limit`.
pub(crate) fn merge_pending(
    mut a: Vec<PendingDelivery>,
    b: Vec<PendingDelivery>,
    limit: usize,
) -> Vec<PendingDelivery> {
    if !b.is_empty() {
        a.extend(b);
        a.sort_by(|x, y| x.message_id.order_key().cmp(y.message_id.order_key()));
        a.truncate(limit);
    }
    a
}

/// A delivery waiting for a device, as read when it connects or binds.
#[derive(Debug, Clone)]
pub struct PendingDelivery {
    pub message_id: MessageId,
    pub payload: String,
    pub expires_at: i64,
    /// It was written to a connection before without an acknowledgement: resend with DUP.
    pub sent_before: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceEvent {
    Arrived,
    Opened,
    Ignored,
}

impl DeviceEvent {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "arrived" => Some(DeviceEvent::Arrived),
            "opened" => Some(DeviceEvent::Opened),
            "ignored" => Some(DeviceEvent::Ignored),
            _ => None,
        }
    }
}

/// Updates that nobody waits for; committed in order with the next group.
#[derive(Debug, Clone)]
pub enum StatusUpdate {
    /// Written to a connection that closed before acknowledging it: the next delivery
    /// carries DUP. (Deliveries acknowledged in time skip this write.)
    Sent { message_id: MessageId, device_id: DeviceId, at: i64 },
    /// Acknowledged by the device (PUBACK) after being written at `sent_at`.
    Delivered { message_id: MessageId, device_id: DeviceId, sent_at: i64, at: i64 },
    /// Reported by the device: arrived, opened or ignored.
    Event { message_id: MessageId, device_id: DeviceId, event: DeviceEvent, at: i64 },
    /// The connection `presence` of the device closed: the presence is cleared unless a
    /// newer connection replaced it; `last_seen` is set.
    Disconnected { device_id: DeviceId, presence: Presence, at: i64 },
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryView {
    pub device_id: DeviceId,
    pub status: String,
    pub created_at: i64,
    pub updated_at: i64,
    pub sent_at: Option<i64>,
    pub delivered_at: Option<i64>,
}

#[derive(Debug, Clone)]
pub struct MessageView {
    pub message_id: MessageId,
    pub task_id: TaskId,
    pub msg_key: String,
    pub target_kind: TargetKind,
    pub target: String,
    pub undeliverable: bool,
    /// When the message was revoked.
    pub revoked_at: Option<i64>,
    pub created_at: i64,
    pub expires_at: i64,
    pub deliveries: Vec<DeliveryView>,
}

#[derive(Debug, Clone)]
pub struct TaskView {
    pub task_id: TaskId,
    pub push_type: String,
    pub task_name: Option<String>,
    pub delivery_type: i64,
    pub created_at: i64,
    pub expires_at: i64,
    pub messages: Vec<MessageView>,
    /// For a broadcast task.
    pub broadcast: Option<BroadcastView>,
}

#[async_trait::async_trait]
pub trait Store: Send + Sync + 'static {
    async fn setting(&self, name: &str) -> StoreResult<Option<String>>;
    /// Stores `value` unless the setting exists; returns the value now in force.
    async fn init_setting(&self, name: &str, value: &str) -> StoreResult<String>;

    async fn create_app(&self, app: AppRecord, first_key: ApiKeyRecord) -> StoreResult<()>;
    async fn app(&self, app_id: &AppId) -> StoreResult<Option<AppRecord>>;
    async fn apps(&self) -> StoreResult<Vec<AppRecord>>;
    async fn create_api_key(&self, key: ApiKeyRecord) -> StoreResult<()>;
    async fn api_key(&self, key_id: &KeyId) -> StoreResult<Option<ApiKeyRecord>>;
    async fn api_keys(&self, app_id: &AppId) -> StoreResult<Vec<ApiKeyRecord>>;
    /// Returns false when the app has no such key.
    async fn revoke_api_key(&self, app_id: &AppId, key_id: &KeyId, now: i64) -> StoreResult<bool>;

    /// Registers a device, or renews the token of the app's device with that installId.
    async fn register_device(&self, reg: DeviceRegistration) -> StoreResult<DeviceRecord>;
    async fn device_by_token_hash(&self, token_hash: &str) -> StoreResult<Option<DeviceRecord>>;
    async fn device(&self, app_id: &AppId, device_id: &DeviceId) -> StoreResult<Option<DeviceRecord>>;
    /// The app and token hash of a device, for the MQTT CONNECT check.
    async fn device_credentials(&self, device_id: &DeviceId) -> StoreResult<Option<(AppId, String)>>;
    /// Updates what the device reported; false when the app has no such device.
    async fn report_device(
        &self,
        app_id: &AppId,
        device_id: &DeviceId,
        app_version: Option<String>,
        vendor_tokens: Option<serde_json::Map<String, serde_json::Value>>,
    ) -> StoreResult<bool>;
    /// Binds `user_id` to the device (replacing an earlier user) and creates deliveries of
    /// the user's messages still within their validity; returns them with the device's
    /// presence. `None` when there is no such device.
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
    /// Devices connected to `node` with a delivery pending since before `created_before`
    /// (a doorbell that never rang): at most `limit`.
    async fn stale_pending(
        &self,
        node: &str,
        created_before: i64,
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
    /// Claims a firing and commits what it sends, in one transaction: `None` when the
    /// claim found nothing (fired already, by this node before a restart or by another).
    async fn fire_schedule(&self, claim: FireClaim, now: i64) -> StoreResult<Option<Option<Fired>>>;
    /// The app's schedules with a push time in `from..=to`; or, with `unique_id`, that
    /// schedule and its firings.
    async fn schedules(
        &self,
        app_id: &AppId,
        unique_id: Option<&str>,
        from: i64,
        to: i64,
    ) -> StoreResult<Vec<ScheduleRecord>>;
    /// Cancels a waiting schedule. `Err(status)` when it is not waiting; `Ok(false)` when
    /// the app has none of that id.
    async fn cancel_schedule(&self, app_id: &AppId, unique_id: &str) -> StoreResult<Result<bool, i64>>;
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
    /// Queues an update; it is committed with the next group.
    fn record(&self, update: StatusUpdate);
    /// Marks deliveries past their validity `expired`; returns how many.
    async fn expire_due(&self, now: i64) -> StoreResult<u64>;
    async fn task(&self, app_id: &AppId, task_id: &TaskId) -> StoreResult<Option<TaskView>>;
    async fn message(&self, app_id: &AppId, message_id: &MessageId) -> StoreResult<Option<MessageView>>;
    /// Waits until everything queued so far is committed.
    async fn flush(&self) -> StoreResult<()>;

    /// Records the nonce of a signed request of `key_id` until `expires_at`; false when it
    /// is recorded already (a replay). Holds across every node that shares the store.
    async fn claim_nonce(&self, key_id: &KeyId, nonce: &str, now: i64, expires_at: i64) -> StoreResult<bool>;
    /// Takes or renews the lease `name` for `holder` until `now + ttl_ms`; false while
    /// another holder's lease runs. Work that must run once among nodes runs under a lease.
    async fn try_lease(&self, name: &str, holder: &str, now: i64, ttl_ms: i64) -> StoreResult<bool>;
}

#[cfg(test)]
mod backends {
    use std::sync::Arc;

    use super::{PostgresStore, SqliteStore, Store};

    /// A fresh SQLite file per test, removed with the guard.
    async fn open_sqlite() -> Option<(Arc<dyn Store>, tempfile::TempDir)> {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = SqliteStore::open(&dir.path().join("herald.db"), &Default::default()).expect("open SQLite");
        Some((Arc::new(store), dir))
    }

    /// The environment variable that points the PostgreSQL tests at a server.
    pub const POSTGRES_URL: &str = "HERALD_TEST_POSTGRES_URL";

    /// A fresh schema per test in the database of `HERALD_TEST_POSTGRES_URL`, dropped with
    /// the guard. Unset: the test is skipped and says why; set but unreachable: it fails.
    async fn open_postgres() -> Option<(Arc<dyn Store>, SchemaGuard)> {
        let (store, guard) = open_postgres_store(2).await?;
        Some((Arc::new(store), guard))
    }

    async fn open_postgres_store(connections: usize) -> Option<(PostgresStore, SchemaGuard)> {
        let Ok(url) = std::env::var(POSTGRES_URL) else {
            eprintln!("skipped: {POSTGRES_URL} is not set, so the PostgreSQL store is not tested here");
            return None;
        };
        let schema = format!("herald_test_{}", crate::crypto::random_alnum(12));
        let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
            .unwrap_or_else(|e| panic!("{POSTGRES_URL} is set but PostgreSQL does not answer: {e}"));
        tokio::spawn(connection);
        client.batch_execute(&format!("CREATE SCHEMA {schema}")).await.expect("create the test schema");
        let store = PostgresStore::open(&url, connections, Some(&format!("-c search_path={schema}")))
            .await
            .unwrap_or_else(|e| panic!("opening the PostgreSQL store: {e}"));
        Some((store, SchemaGuard { url, schema }))
    }

    pub struct SchemaGuard {
        url: String,
        schema: String,
    }

    impl Drop for SchemaGuard {
        fn drop(&mut self) {
            let (url, schema) = (self.url.clone(), self.schema.clone());
            // Drop runs inside the test's runtime: do the async cleanup on a thread of its own.
            let done = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
                rt.block_on(async move {
                    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await?;
                    tokio::spawn(connection);
                    client.batch_execute(&format!("SET lock_timeout = '10s'; DROP SCHEMA {schema} CASCADE")).await
                })
            })
            .join();
            if !matches!(done, Ok(Ok(()))) {
                eprintln!("could not drop test schema {}: {done:?}", self.schema);
            }
        }
    }

    #[tokio::test]
    async fn sqlite_scheduler_fires_each_occurrence_once() {
        let (store, _dir) = open_sqlite().await.unwrap();
        super::suite::scheduler_fires_each_occurrence_once(store.clone()).await;
        store.flush().await.unwrap();
    }

    #[tokio::test]
    async fn postgres_scheduler_fires_each_occurrence_once() {
        let Some((store, guard)) = open_postgres().await else { return };
        super::suite::scheduler_fires_each_occurrence_once(store.clone()).await;
        store.flush().await.unwrap();
        drop(store);
        drop(guard);
    }

    crate::store_suite!(sqlite, super::open_sqlite());
    crate::store_suite!(postgres, super::open_postgres());

    /// The push/connect race of a cluster: a connect that records its presence while a
    /// push that read the device's (old) presence is still open waits for that push, and
    /// its read of pending deliveries then finds it. Without the share lock the connect
    /// would read nothing, and the push would ring no node: the delivery would be stranded.
    #[tokio::test]
    async fn postgres_a_connect_during_a_push_waits_for_it_and_then_reads_it() {
        use super::suite;
        use super::{Presence, TargetKind, TargetOutcome};
        let Some((store, guard)) = open_postgres_store(3).await else { return };
        let store = Arc::new(store);
        let (a, k) = suite::app("a1");
        store.create_app(a, k).await.unwrap();
        let d = suite::device(store.as_ref(), "a1", "i1").await;
        let push = suite::push("a1", TargetKind::Device, &[(d.as_str(), "k")], 100, 60_000);
        let (held_tx, held) = tokio::sync::oneshot::channel();
        let (release, release_rx) = tokio::sync::oneshot::channel();
        let pushing = tokio::spawn({
            let store = store.clone();
            async move { store.commit_push_held(push, 100, held_tx, release_rx).await.unwrap() }
        });
        held.await.unwrap();
        let connecting = tokio::spawn({
            let (store, d) = (store.clone(), d.clone());
            async move {
                let presence = Presence { node: "n2".into(), generation: 1 };
                store.device_connected(&d, &presence, 110).await.unwrap();
                store.pending_deliveries(&d, 110, 10).await.unwrap()
            }
        });
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        assert!(!connecting.is_finished(), "the connect must wait for the open push");
        release.send(()).unwrap();
        let committed = pushing.await.unwrap();
        let TargetOutcome::Accepted { devices } = &committed.outcomes[0].1 else { panic!("{committed:?}") };
        assert_eq!(devices[0].online_node, None, "the push read the presence before the connect");
        assert_eq!(connecting.await.unwrap().len(), 1, "so the connect reads the delivery");
        store.flush().await.unwrap();
        drop(store);
        drop(guard);
    }
}
