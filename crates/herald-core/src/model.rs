//! The records the store keeps and the answers it gives: the vocabulary that the API, the
//! dispatcher, the gateway and the store share. Plain data; every state is a type from
//! [`crate::state`].

use bytes::Bytes;
use serde_json::{Map, Value};

use crate::ids::{AppId, DeviceId, KeyId, MessageId, TaskId, UserId};
use crate::state::{
    BroadcastAudience, Channel, DeliveryStatus, DeviceEvent, KeyKind, Platform, PushType, ScheduleStatus, StrategyKind,
    TargetKind, VendorSendStatus,
};

/// An app: the tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
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
    /// The MPS workspace the app answers for (`WorkspaceId` of the MPS endpoint); `None`:
    /// any.
    pub workspace_id: Option<String>,
}

/// What an app change sets (`None`: left as it is).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AppUpdate {
    pub name: Option<String>,
    pub trust_client_bind: Option<bool>,
    /// A new workspace; `Some("")` clears it.
    pub workspace_id: Option<String>,
}

/// The cluster as the store sees it: device connections per node (from the devices'
/// presence) and the leases of work that one node does.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterView {
    /// `(node, devices it holds)`, by node.
    pub connections: Vec<(String, u64)>,
    /// `(lease, holder, expires_at)`, by lease.
    pub leases: Vec<(String, String, i64)>,
}

/// A console sign-in, known by the SHA-256 of its cookie.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsoleSession {
    pub id_hash: String,
    /// What the operator called themselves at sign-in (for the log).
    pub who: String,
    pub created_at: i64,
    pub expires_at: i64,
}

/// An API key of an app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyRecord {
    pub key_id: KeyId,
    pub app_id: AppId,
    pub kind: KeyKind,
    /// HMAC: the secret sealed with the master key. RSA: base64url of the public key DER.
    pub material: String,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
    /// When it last signed an accepted request (to the minute).
    pub last_used_at: Option<i64>,
}

/// Which of an app's devices a list shows: each field, when set, must match exactly.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DeviceFilter {
    pub device_id: Option<String>,
    pub user_id: Option<String>,
    pub install_id: Option<String>,
    pub platform: Option<crate::state::Platform>,
}

/// A registered device.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceRecord {
    pub device_id: DeviceId,
    pub app_id: AppId,
    pub install_id: String,
    pub platform: Platform,
    pub app_version: Option<String>,
    pub os_version: Option<String>,
    pub model: Option<String>,
    /// Vendor tokens by channel (the vendor names of [`crate::state::Channel`]).
    pub vendor_tokens: Map<String, Value>,
    pub user_id: Option<UserId>,
    pub bound_at: Option<i64>,
    pub created_at: i64,
    pub last_seen: Option<i64>,
    /// The node of the cluster that holds the device's connection, as the store records it.
    pub online_node: Option<String>,
}

/// A registration of a device (new, or again by an install that proves it is that device).
#[derive(Debug, Clone)]
pub struct DeviceRegistration {
    pub app_id: AppId,
    pub install_id: String,
    /// Used when the installId is new; an existing device keeps its id.
    pub new_device_id: DeviceId,
    pub token_hash: String,
    /// SHA-256 of the device token the call presented: an installId registered before is
    /// renewed only when this is its current token.
    pub proof_token_hash: Option<String>,
    pub platform: Platform,
    pub app_version: Option<String>,
    pub os_version: Option<String>,
    pub model: Option<String>,
    pub vendor_tokens: Option<Map<String, Value>>,
    pub now: i64,
}

/// One push request as stored.
#[derive(Debug, Clone)]
pub struct NewTask {
    pub task_id: TaskId,
    pub app_id: AppId,
    pub push_type: PushType,
    pub task_name: Option<String>,
    pub delivery_type: i64,
    pub created_at: i64,
    pub expires_at: i64,
}

/// One rendered payload for one target.
#[derive(Debug, Clone)]
pub struct NewMessage {
    pub message_id: MessageId,
    pub msg_key: String,
    pub target_kind: TargetKind,
    pub target: String,
    /// The JSON a device receives (UTF-8), shared with the deliveries made at commit.
    pub payload: Bytes,
    /// A vendor channel may carry it (`notifyType` notify).
    pub vendor: bool,
}

/// A push to a list of targets (Simple, Template or Multiple).
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

/// A broadcast to every device of an app that qualifies: one row, whatever the audience.
#[derive(Debug, Clone)]
pub struct NewBroadcast {
    pub task: NewTask,
    pub message_id: MessageId,
    pub msg_key: String,
    pub platform: Platform,
    pub audience: BroadcastAudience,
    /// Bound since (the bound audience), if limited.
    pub bind_since: Option<i64>,
    /// Unbound since (the others), if limited.
    pub unbind_since: Option<i64>,
    pub payload: Bytes,
    /// As in [`NewMessage::vendor`].
    pub vendor: bool,
    /// As in [`NewPush::skip_idempotency`].
    pub skip_idempotency: bool,
}

/// What became of a broadcast's commit.
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
    pub counts: Vec<(DeliveryStatus, u64)>,
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
    pub push_type: PushType,
    pub delivery_type: i64,
    pub template_name: Option<String>,
    pub title: Option<String>,
    pub content: Option<String>,
    pub body: String,
    pub strategy_kind: StrategyKind,
    pub strategy: String,
    /// The next (or, once done, the last) firing, Unix ms.
    pub push_time: i64,
    /// The validity of what it sends: a firing missed by more than this is not sent.
    pub expires_ms: i64,
    pub status: ScheduleStatus,
    pub task_id: Option<String>,
    pub created_at: i64,
}

/// What a firing commits.
#[derive(Debug, Clone)]
pub enum Firing {
    Push(NewPush),
    Broadcast(NewBroadcast),
}

/// What a firing committed.
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
    pub payload: Bytes,
    pub expires_at: i64,
    pub devices: Vec<Recipient>,
}

/// What a revoke did.
#[derive(Debug, Clone, Default)]
pub struct Revocation {
    /// The messages revoked now (none when nothing matched within the window).
    pub messages: Vec<MessageId>,
    /// Deliveries that were still pending and will never be delivered.
    pub withdrawn: u64,
    /// Control messages for devices that already got (or may be getting) a message.
    pub recalls: Vec<Recall>,
    /// Sends a vendor had already taken: a recall (a copy that replaces it on the device)
    /// is queued for each; each vendor send then says `recalled`, or why not.
    pub vendor_recalls: u64,
}

/// A device a message is now pending for, and the node holding its connection, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recipient {
    pub device_id: DeviceId,
    /// Read under a share lock on the device row: a connect that records its presence
    /// after this read waits for the push to commit, and then reads the delivery.
    pub online_node: Option<String>,
    /// The vendor that was given the message for this device too (its send is in the
    /// store's vendor outbox), if any.
    pub vendor: Option<Channel>,
    /// The own channel's copy goes to the device's connection now (false when the app's
    /// policy lets the vendor go first; the copy still waits in the store).
    pub own_now: bool,
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

impl TargetOutcome {
    /// The `status` of the target in a push's answer.
    pub fn answer(&self) -> &'static str {
        match self {
            TargetOutcome::Accepted { .. } => "accepted",
            TargetOutcome::Undeliverable => crate::state::TargetStatus::Undeliverable.as_str(),
            TargetOutcome::Duplicate { .. } => "duplicate",
        }
    }
}

/// What became of a push.
#[derive(Debug, Clone)]
pub struct CommittedPush {
    pub task_id: TaskId,
    /// The request repeated an earlier one whole; `task_id` is the earlier task.
    pub replayed: bool,
    /// In the order of the request's messages.
    pub outcomes: Vec<(MessageId, TargetOutcome)>,
}

/// A delivery waiting for a device, as read when it connects or binds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingDelivery {
    pub message_id: MessageId,
    pub payload: String,
    pub expires_at: i64,
    /// It was written to a connection before without an acknowledgement: resend with DUP.
    pub sent_before: bool,
}

/// Updates that nobody waits for; the store commits them in order with its next writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StatusUpdate {
    /// Written to a connection that closed before acknowledging it: the next delivery
    /// carries DUP. (Deliveries acknowledged in time skip this write.)
    Sent { message_id: MessageId, device_id: DeviceId, at: i64 },
    /// Acknowledged by the device (PUBACK) after being written at `sent_at`.
    Delivered { message_id: MessageId, device_id: DeviceId, sent_at: i64, at: i64 },
    /// Reported by the device: arrived, opened or ignored.
    /// `at` is the device's time for it (never past `received_at` beyond a small skew, see
    /// `events::MAX_SKEW_MS`); one before the message was sent is stored as `received_at`.
    Event { message_id: MessageId, device_id: DeviceId, event: DeviceEvent, at: i64, received_at: i64 },
    /// The API key signed an accepted request at `at` (a node sends this at most once a
    /// minute per key).
    KeyUsed { key_id: KeyId, at: i64 },
    /// The connection `presence` of the device closed: the presence is cleared unless a
    /// newer connection replaced it; `last_seen` is set.
    Disconnected { device_id: DeviceId, presence: Presence, at: i64 },
}

/// One delivery of a message, as a status query shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryView {
    pub device_id: DeviceId,
    pub status: DeliveryStatus,
    pub created_at: i64,
    pub updated_at: i64,
    pub sent_at: Option<i64>,
    pub delivered_at: Option<i64>,
}

/// One message (target) of a task, with its deliveries.
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
    /// What the vendors were asked to carry, and what they answered.
    pub vendor_sends: Vec<VendorSendView>,
}

/// A task as a list of tasks shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskSummary {
    pub task_id: TaskId,
    pub push_type: PushType,
    pub task_name: Option<String>,
    pub delivery_type: i64,
    pub created_at: i64,
    pub expires_at: i64,
}

/// Which of an app's tasks a list shows: of one type (or any), made in
/// `[created_from, created_to)`, with `expires_at` in `(expires_after, expires_by]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskFilter {
    pub push_type: Option<PushType>,
    pub created_from: i64,
    pub created_to: i64,
    pub expires_after: i64,
    pub expires_by: i64,
}

impl Default for TaskFilter {
    /// Every task.
    fn default() -> Self {
        TaskFilter {
            push_type: None,
            created_from: i64::MIN,
            created_to: i64::MAX,
            expires_after: i64::MIN,
            expires_by: i64::MAX,
        }
    }
}

/// A task with its messages (and its broadcast, for a broadcast task).
#[derive(Debug, Clone)]
pub struct TaskView {
    pub summary: TaskSummary,
    pub messages: Vec<MessageView>,
    pub broadcast: Option<BroadcastView>,
}

/// A vendor channel of an app, as stored: what may be shown, and the secrets sealed.
#[derive(Debug, Clone, PartialEq)]
pub struct ChannelRecord {
    pub app_id: AppId,
    pub kind: Channel,
    /// The settings that may be shown (ids, bundle id, environment, certificate facts…).
    pub settings: Map<String, Value>,
    /// The secrets (keys, passwords, client secrets) as one JSON object, sealed.
    pub secret_sealed: String,
    pub created_at: i64,
    pub updated_at: i64,
    pub health: ChannelHealth,
}

/// What the senders last saw of a channel.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChannelHealth {
    pub last_success: Option<i64>,
    pub last_error_at: Option<i64>,
    pub last_error: Option<String>,
}

/// A vendor send claimed for sending, with what it carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VendorSend {
    pub message_id: MessageId,
    pub device_id: DeviceId,
    pub app_id: AppId,
    pub channel: Channel,
    pub token: String,
    /// Attempts made before this one.
    pub attempts: i64,
    pub expires_at: i64,
    /// The device's JSON; `None` when the message was revoked (or is gone).
    pub payload: Option<String>,
    /// A recall of a copy the vendor took before the message was revoked.
    pub recall: bool,
}

/// How a vendor send ended (or when it is tried again).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VendorSendDone {
    pub message_id: MessageId,
    pub device_id: DeviceId,
    pub app_id: AppId,
    pub channel: Channel,
    pub token: String,
    /// `Waiting` for a retry at `next_at`; otherwise final.
    pub status: VendorSendStatus,
    pub attempts: i64,
    pub next_at: i64,
    pub vendor_id: Option<String>,
    pub reason: Option<String>,
    pub at: i64,
}

/// A token a vendor called invalid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidToken {
    pub device_id: DeviceId,
    pub channel: Channel,
    pub token: String,
    pub reason: String,
    pub at: i64,
}

/// One vendor send of a message, as a status query shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VendorSendView {
    pub device_id: DeviceId,
    pub channel: Channel,
    pub status: VendorSendStatus,
    pub attempts: i64,
    pub vendor_id: Option<String>,
    pub reason: Option<String>,
    pub updated_at: i64,
}
