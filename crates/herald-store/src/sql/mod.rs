//! Every statement of the store, written once for both backends (see [`Sql`] for how each
//! is rendered). States come from their declarations in `herald_core::state`
//! (`delivery_status!(Pending)` is `'pending'`), so no state is spelled out here.
//!
//! Parameters are listed in each statement's comment when it has more than two.

use herald_core::{audience, delivery_status, message_kind, schedule_status, target_kind};

use crate::tx::{Lock, Sql};

// Column lists, shared by the statements and the row mappers of `rows`.
macro_rules! app_columns {
    () => {
        "app_id, name, app_key_hash, bind_secret_sealed, trust_client_bind, created_at, workspace_id"
    };
}
macro_rules! key_columns {
    () => {
        "key_id, app_id, kind, material, created_at, revoked_at, last_used_at"
    };
}
macro_rules! device_columns {
    () => {
        "device_id, app_id, install_id, platform, app_version, os_version, model, vendor_tokens, user_id, bound_at, \
         created_at, last_seen, online_node"
    };
}
macro_rules! template_columns {
    () => {
        "app_id, name, title, content, uri, desc_info, push_style, silent, created_at, updated_at"
    };
}
macro_rules! schedule_columns {
    () => {
        "unique_id, parent_id, app_id, push_type, delivery_type, template_name, title, content, body, strategy_type, \
         strategy, push_time, expires_ms, status, task_id, created_at"
    };
}
macro_rules! message_columns {
    () => {
        "message_id, task_id, msg_key, target_kind, target, undeliverable, created_at, expires_at, revoked_at"
    };
}
/// Deliveries still to be written to their device.
macro_rules! open {
    () => {
        concat!("(", delivery_status!(Pending, Sent), ")")
    };
}
/// Devices `v` that broadcast `b` reaches: same app and platform, registered before it was
/// sent, and in its audience (pushStatus) and periods. A device never bound counts as
/// unbound since its registration.
macro_rules! eligible {
    () => {
        concat!(
            "v.app_id = b.app_id AND v.platform = b.platform AND v.created_at <= b.created_at AND ( \
             (b.push_status = ",
            audience!(Bound),
            " AND v.user_id IS NOT NULL AND (b.bind_since IS NULL OR v.bound_at >= b.bind_since)) \
             OR (b.push_status = ",
            audience!(All),
            " AND (v.user_id IS NOT NULL OR b.unbind_since IS NULL \
                 OR COALESCE(v.unbound_at, v.created_at) >= b.unbind_since)) \
             OR (b.push_status = ",
            audience!(Unbound),
            " AND v.user_id IS NULL AND (b.unbind_since IS NULL \
                 OR COALESCE(v.unbound_at, v.created_at) >= b.unbind_since)))"
        )
    };
}

/// An event's time: the device's (`$3`), unless it is before the delivery was made, then the
/// time the report arrived (`$4`).
macro_rules! event_at {
    ($made:literal) => {
        concat!("CASE WHEN CAST($3 AS BIGINT) < ", $made, " THEN CAST($4 AS BIGINT) ELSE CAST($3 AS BIGINT) END")
    };
}
/// What a changed delivery row stashes of the status it leaves (read back as the journal's
/// `prior`): an expired delivery that had been written counts as `sent`, one that had not as
/// `pending`, so that a late acknowledgement crosses exactly the stages it had not.
macro_rules! stash_prior {
    () => {
        concat!(
            "prior_status = CASE WHEN status = ",
            delivery_status!(Expired),
            " THEN CASE WHEN sent_at IS NULL THEN ",
            delivery_status!(Pending),
            " ELSE ",
            delivery_status!(Sent),
            " END ELSE status END, "
        )
    };
}
/// What a changed row gives back for its journal entry (`rows::changed`).
macro_rules! changed {
    () => {
        " RETURNING prior_status, channel, updated_at"
    };
}
/// As [`changed!`], for statements that change many rows (`rows::changed_delivery`).
macro_rules! changed_many {
    () => {
        " RETURNING message_id, device_id, prior_status, channel, updated_at"
    };
}
pub(crate) mod broadcasts;
pub(crate) mod channels;
pub(crate) mod console;
pub(crate) mod group;
pub(crate) mod ledger;
pub(crate) use broadcasts::*;
pub(crate) use channels::*;
pub(crate) use console::*;
pub(crate) use ledger::*;

// --- settings, leases

pub(crate) static SETTING: Sql = Sql::new("SELECT value FROM settings WHERE name = $1");
pub(crate) static INIT_SETTING: Sql =
    Sql::new("INSERT INTO settings (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING");
/// $1 name, $2 holder, $3 until, $4 now: taken or renewed unless another holder's runs.
pub(crate) static TRY_LEASE: Sql = Sql::new(
    "INSERT INTO leases (name, holder, expires_at) VALUES ($1, $2, $3) \
     ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at \
     WHERE leases.holder = excluded.holder OR leases.expires_at <= $4",
);

// --- apps and keys

pub(crate) static INSERT_APP: Sql =
    Sql::new(concat!("INSERT INTO apps (", app_columns!(), ") VALUES ($1, $2, $3, $4, $5, $6, $7)"));
pub(crate) static APP: Sql = Sql::new(concat!("SELECT ", app_columns!(), " FROM apps WHERE app_id = $1"));
pub(crate) static APPS: Sql = Sql::new(concat!("SELECT ", app_columns!(), " FROM apps ORDER BY created_at, app_id"));
/// Serialises template creations of one app (PostgreSQL; SQLite's writer does anyway).
pub(crate) static LOCK_APP: Sql = Sql::locking("SELECT app_id FROM apps WHERE app_id = $1", Lock::Update);
pub(crate) static INSERT_KEY: Sql =
    Sql::new(concat!("INSERT INTO api_keys (", key_columns!(), ") VALUES ($1, $2, $3, $4, $5, $6, $7)"));
pub(crate) static API_KEY: Sql = Sql::new(concat!("SELECT ", key_columns!(), " FROM api_keys WHERE key_id = $1"));
pub(crate) static API_KEYS: Sql =
    Sql::new(concat!("SELECT ", key_columns!(), " FROM api_keys WHERE app_id = $1 ORDER BY created_at, key_id"));
pub(crate) static KEY_OF_APP: Sql = Sql::new("SELECT 1 FROM api_keys WHERE app_id = $1 AND key_id = $2");
/// $1 key, $2 when it signed an accepted request (never moves back).
pub(crate) static KEY_USED: Sql =
    Sql::new("UPDATE api_keys SET last_used_at = $2 WHERE key_id = $1 AND (last_used_at IS NULL OR last_used_at < $2)");
/// $1 app, $2 key, $3 now.
pub(crate) static REVOKE_KEY: Sql =
    Sql::new("UPDATE api_keys SET revoked_at = $3 WHERE app_id = $1 AND key_id = $2 AND revoked_at IS NULL");

// --- devices

pub(crate) static DEVICE_BY_TOKEN: Sql =
    Sql::new(concat!("SELECT ", device_columns!(), " FROM devices WHERE token_hash = $1"));
pub(crate) static DEVICE: Sql =
    Sql::new(concat!("SELECT ", device_columns!(), " FROM devices WHERE device_id = $1 AND app_id = $2"));
pub(crate) static DEVICE_FOR_UPDATE: Sql = Sql::locking(
    concat!("SELECT ", device_columns!(), " FROM devices WHERE device_id = $1 AND app_id = $2"),
    Lock::Update,
);
pub(crate) static DEVICE_BY_INSTALL: Sql =
    Sql::new(concat!("SELECT ", device_columns!(), " FROM devices WHERE app_id = $1 AND install_id = $2"));
/// The device and token hash of an installId, locked while a registration decides.
pub(crate) static INSTALL_TOKEN: Sql =
    Sql::locking("SELECT device_id, token_hash FROM devices WHERE app_id = $1 AND install_id = $2", Lock::Update);
pub(crate) static DEVICE_CREDENTIALS: Sql = Sql::new("SELECT app_id, token_hash FROM devices WHERE device_id = $1");
/// $1 device, $2 app, $3 install, $4 token hash, $5 platform, $6 app version, $7 OS
/// version, $8 model, $9 vendor tokens, $10 now. Does nothing when the install exists.
pub(crate) static INSERT_DEVICE: Sql = Sql::new(
    "INSERT INTO devices (device_id, app_id, install_id, token_hash, platform, app_version, os_version, model, \
     vendor_tokens, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
     ON CONFLICT (app_id, install_id) DO NOTHING",
);
/// $1 device, $2 token hash, $3 platform, $4 app version, $5 OS version, $6 model, $7
/// vendor tokens: a registration again by the device itself (absent fields keep theirs).
pub(crate) static RENEW_DEVICE: Sql = Sql::new(
    "UPDATE devices SET token_hash = $2, platform = $3, app_version = COALESCE($4, app_version), \
     os_version = COALESCE($5, os_version), model = COALESCE($6, model), \
     vendor_tokens = COALESCE($7, vendor_tokens) WHERE device_id = $1",
);
/// $1 device, $2 app version (absent: kept), $3 vendor tokens.
pub(crate) static REPORT_DEVICE: Sql =
    Sql::new("UPDATE devices SET app_version = COALESCE($2, app_version), vendor_tokens = $3 WHERE device_id = $1");
/// $1 device, $2 app, $3 user: the device's undelivered deliveries of messages to the user.
pub(crate) static DROP_USER_DELIVERIES: Sql = Sql::new(concat!(
    "DELETE FROM deliveries WHERE device_id = $1 AND status IN ",
    open!(),
    " AND message_id IN (SELECT message_id FROM messages WHERE app_id = $2 AND target_kind = ",
    target_kind!(User),
    " AND target = $3)"
));
/// $1 device, $2 user, $3 now.
pub(crate) static BIND: Sql =
    Sql::new("UPDATE devices SET user_id = $2, bound_at = $3, unbound_at = NULL WHERE device_id = $1");
/// $1 device, $2 now, $3 app, $4 user: deliveries of the user's messages still within their
/// validity, for a device that binds the user (MPS: they reach it too).
pub(crate) static USER_BACKLOG: Sql = Sql::new(concat!(
    "INSERT INTO deliveries (message_id, device_id, status, created_at, updated_at, expires_at) \
     SELECT message_id, $1, ",
    delivery_status!(Pending),
    ", $2, $2, expires_at FROM messages WHERE app_id = $3 AND target_kind = ",
    target_kind!(User),
    " AND target = $4 AND expires_at > $2 AND kind = ",
    message_kind!(Notification),
    " AND revoked_at IS NULL ON CONFLICT (message_id, device_id) DO NOTHING RETURNING message_id"
));
/// $1 device, $2 now, $3 app, $4 user: the device's open deliveries of the user's messages.
pub(crate) static USER_PENDING: Sql = Sql::new(concat!(
    "SELECT d.message_id, m.payload, d.expires_at, d.status FROM deliveries d \
     JOIN messages m ON m.message_id = d.message_id WHERE d.device_id = $1 AND d.status IN ",
    open!(),
    " AND d.expires_at > $2 AND m.app_id = $3 AND m.target_kind = ",
    target_kind!(User),
    " AND m.target = $4 ORDER BY d.message_id"
));
pub(crate) static ONLINE_NODE: Sql = Sql::new("SELECT online_node FROM devices WHERE device_id = $1");
pub(crate) static UNBIND: Sql = Sql::new("UPDATE devices SET user_id = NULL, unbound_at = $2 WHERE device_id = $1");
/// A page of the app's devices, newest first: $1 app, $2 limit, $3 offset (in the order of
/// the index on (app_id, created_at)).
pub(crate) static DEVICE_PAGE: Sql = Sql::new(concat!(
    "SELECT ",
    device_columns!(),
    " FROM devices WHERE app_id = $1 ORDER BY created_at DESC, device_id DESC LIMIT $2 OFFSET $3"
));
/// The same of one platform: $1 app, $2 platform, $3 limit, $4 offset.
pub(crate) static DEVICE_PAGE_OF_PLATFORM: Sql = Sql::new(concat!(
    "SELECT ",
    device_columns!(),
    " FROM devices WHERE app_id = $1 AND platform = $2 ORDER BY created_at DESC, device_id DESC LIMIT $3 OFFSET $4"
));
/// Counted from the index alone.
pub(crate) static DEVICE_COUNT: Sql = Sql::new("SELECT COUNT(*) FROM devices WHERE app_id = $1");
pub(crate) static DEVICE_COUNT_OF_PLATFORM: Sql =
    Sql::new("SELECT COUNT(*) FROM devices WHERE app_id = $1 AND platform = $2");
pub(crate) static USER_DEVICES: Sql = Sql::new(concat!(
    "SELECT ",
    device_columns!(),
    " FROM devices WHERE app_id = $1 AND user_id = $2 ORDER BY device_id"
));

// --- presence

/// The presence a connect is about to replace (SQLite: read, then [`CONNECT`]).
pub(crate) static PRESENCE: Sql = Sql::new("SELECT online_node, online_gen FROM devices WHERE device_id = $1");
/// $1 device, $2 node, $3 generation, $4 now.
pub(crate) static CONNECT: Sql =
    Sql::new("UPDATE devices SET online_node = $2, online_gen = $3, last_seen = $4 WHERE device_id = $1");
/// [`CONNECT`] returning the presence it replaced, the row locked in between: one round
/// trip. PostgreSQL only: SQLite's RETURNING sees only the new row.
pub(crate) static CONNECT_RETURNING_OLD: Sql = Sql::new(
    "UPDATE devices d SET online_node = $2, online_gen = $3, last_seen = $4 \
     FROM (SELECT online_node, online_gen FROM devices WHERE device_id = $1 FOR UPDATE) old \
     WHERE d.device_id = $1 RETURNING old.online_node, old.online_gen",
);
/// $1 device, $2 node, $3 generation, $4 now: the connection closed; its presence goes
/// unless a newer connection replaced it.
pub(crate) static DISCONNECTED: Sql = Sql::new(
    "UPDATE devices SET last_seen = $4, \
     online_node = CASE WHEN online_node = $2 AND online_gen = $3 THEN NULL ELSE online_node END, \
     online_gen = CASE WHEN online_node = $2 AND online_gen = $3 THEN NULL ELSE online_gen END \
     WHERE device_id = $1",
);
pub(crate) static NODE_STARTED: Sql =
    Sql::new("UPDATE devices SET online_node = NULL, online_gen = NULL WHERE online_node = $1");
/// $1 node, $2 created before, $3 now, $4 limit: devices connected to the node with a
/// delivery open since before the cut (a doorbell that never rang).
pub(crate) static STALE_UNICAST: Sql = Sql::new(concat!(
    "SELECT v.device_id FROM devices v WHERE v.online_node = $1 AND EXISTS \
     (SELECT 1 FROM deliveries d WHERE d.device_id = v.device_id AND d.status IN ",
    open!(),
    " AND d.created_at < $2 AND d.expires_at > $3) LIMIT $4"
));
/// $1 node, $2 created before, $3 now, $4 limit, $5 created since: devices connected to the
/// node that a live broadcast sent in [$5, $2) reaches and that have not acknowledged it (its
/// bus event was lost while this node stayed connected to the bus).
pub(crate) static STALE_BROADCAST: Sql = Sql::new(concat!(
    "SELECT DISTINCT v.device_id FROM broadcasts b JOIN devices v ON v.online_node = $1 \
     WHERE b.created_at < $2 AND b.created_at >= $5 AND b.expires_at > $3 AND b.revoked_at IS NULL AND ",
    eligible!(),
    " AND NOT EXISTS (SELECT 1 FROM broadcast_acks a WHERE a.message_id = b.message_id \
     AND a.device_id = v.device_id AND a.status <> ",
    delivery_status!(Sent),
    ") LIMIT $4"
));

// --- pushes

/// $1 app, $2 msgKey, $3 target kind, $4 target, $5 message, $6 task, $7 expires at, $8
/// now: claims the key for this message unless an earlier one is still valid (0 rows).
pub(crate) static CLAIM_KEY: Sql = Sql::new(
    "INSERT INTO idempotency (app_id, msg_key, target_kind, target, message_id, task_id, expires_at) \
     VALUES ($1, $2, $3, $4, $5, $6, $7) \
     ON CONFLICT (app_id, msg_key, target_kind, target) DO UPDATE SET \
     message_id = excluded.message_id, task_id = excluded.task_id, expires_at = excluded.expires_at \
     WHERE idempotency.expires_at <= $8",
);
/// $1 app, $2 msgKey, $3 target kind, $4 target: the message holding a key.
pub(crate) static KEY_HOLDER: Sql = Sql::new(
    "SELECT message_id, task_id FROM idempotency \
     WHERE app_id = $1 AND msg_key = $2 AND target_kind = $3 AND target = $4",
);
/// $1 task, $2 app, $3 push type, $4 name, $5 delivery type, $6 created at, $7 expires at.
pub(crate) static INSERT_TASK: Sql = Sql::new(
    "INSERT INTO tasks (task_id, app_id, push_type, task_name, delivery_type, created_at, expires_at) \
     VALUES ($1, $2, $3, $4, $5, $6, $7)",
);
/// A device target and where it is connected, under a share lock: a connect recording its
/// presence after this read waits until the push commits, then reads the delivery.
pub(crate) static TARGET_DEVICE: Sql = Sql::locking(
    "SELECT device_id, online_node, platform, vendor_tokens FROM devices WHERE app_id = $1 AND device_id = $2",
    Lock::Share,
);
/// A user target's devices, as [`TARGET_DEVICE`].
pub(crate) static TARGET_USER: Sql = Sql::locking(
    "SELECT device_id, online_node, platform, vendor_tokens FROM devices WHERE app_id = $1 AND user_id = $2 \
     ORDER BY device_id",
    Lock::Share,
);
/// $1 message, $2 app, $3 task, $4 msgKey, $5 target kind, $6 target, $7 payload, $8
/// undeliverable, $9 created at, $10 expires at.
pub(crate) static INSERT_MESSAGE: Sql = Sql::new(
    "INSERT INTO messages (message_id, app_id, task_id, msg_key, target_kind, target, payload, undeliverable, \
     created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
);
/// $1 message, $2 device, $3 created at, $4 expires at.
pub(crate) static INSERT_DELIVERY: Sql = Sql::new(concat!(
    "INSERT INTO deliveries (message_id, device_id, status, created_at, updated_at, expires_at) \
     VALUES ($1, $2, ",
    delivery_status!(Pending),
    ", $3, $3, $4)"
));
/// $1 device, $2 now, $3 limit: the device's unicast deliveries still to write.
pub(crate) static PENDING_UNICAST: Sql = Sql::new(concat!(
    "SELECT d.message_id, m.payload, d.expires_at, d.status FROM deliveries d \
     JOIN messages m ON m.message_id = d.message_id \
     WHERE d.device_id = $1 AND d.status IN ",
    open!(),
    " AND d.expires_at > $2 ORDER BY d.message_id LIMIT $3"
));
/// $1 now: deliveries past their validity, never acknowledged.
pub(crate) static EXPIRE: Sql = Sql::new(concat!(
    "UPDATE deliveries SET ",
    stash_prior!(),
    "status = ",
    delivery_status!(Expired),
    ", updated_at = $1 WHERE status IN ",
    open!(),
    " AND expires_at <= $1",
    changed_many!()
));

// --- status updates of unicast deliveries ($1 message, $2 device, $3 at unless noted)

pub(crate) static MARK_SENT: Sql = Sql::new(concat!(
    "UPDATE deliveries SET ",
    stash_prior!(),
    "status = ",
    delivery_status!(Sent),
    ", sent_at = $3, updated_at = $3 WHERE message_id = $1 AND device_id = $2 AND status = ",
    delivery_status!(Pending),
    changed!()
));
/// $3 sent at, $4 at. A copy written before the validity ended and acknowledged after it
/// still counts as delivered.
pub(crate) static MARK_DELIVERED: Sql = Sql::new(concat!(
    "UPDATE deliveries SET ",
    stash_prior!(),
    "status = ",
    delivery_status!(Delivered),
    ", sent_at = COALESCE(sent_at, $3), delivered_at = $4, updated_at = $4 \
     WHERE message_id = $1 AND device_id = $2 AND (status IN ",
    open!(),
    " OR (status = ",
    delivery_status!(Expired),
    " AND $3 < expires_at))",
    changed!()
));
/// $1 message, $2 device, $3 the device's time, $4 the report's arrival.
pub(crate) static EVENT_ARRIVED: Sql = Sql::new(concat!(
    "UPDATE deliveries SET ",
    stash_prior!(),
    "status = ",
    delivery_status!(Delivered),
    ", delivered_at = ",
    event_at!("created_at"),
    ", updated_at = ",
    event_at!("created_at"),
    " WHERE message_id = $1 AND device_id = $2 AND (status IN ",
    open!(),
    " OR (status = ",
    delivery_status!(Expired),
    " AND sent_at IS NOT NULL))",
    changed!()
));
pub(crate) static EVENT_OPENED: Sql = Sql::new(concat!(
    "UPDATE deliveries SET ",
    stash_prior!(),
    "status = ",
    delivery_status!(Opened),
    ", delivered_at = COALESCE(delivered_at, ",
    event_at!("created_at"),
    "), updated_at = ",
    event_at!("created_at"),
    " WHERE message_id = $1 AND device_id = $2 AND status IN (",
    delivery_status!(Pending, Sent, Delivered, Ignored),
    ")",
    changed!()
));
pub(crate) static EVENT_IGNORED: Sql = Sql::new(concat!(
    "UPDATE deliveries SET ",
    stash_prior!(),
    "status = ",
    delivery_status!(Ignored),
    ", delivered_at = COALESCE(delivered_at, ",
    event_at!("created_at"),
    "), updated_at = ",
    event_at!("created_at"),
    " WHERE message_id = $1 AND device_id = $2 AND status IN (",
    delivery_status!(Pending, Sent, Delivered),
    ")",
    changed!()
));

// --- revoke

/// $1 app, $2 msgKey, $3 target, $4 since: the notifications of a (msgKey, target).
pub(crate) static REVOCABLE_BY_KEY: Sql = Sql::locking(
    concat!(
        "SELECT message_id, task_id, msg_key, target_kind, target, expires_at, revoked_at FROM messages \
         WHERE app_id = $1 AND msg_key = $2 AND target = $3 AND kind = ",
        message_kind!(Notification),
        " AND created_at >= $4 ORDER BY message_id"
    ),
    Lock::Update,
);
/// $1 app, $2 task, $3 since: the notifications of a task.
pub(crate) static REVOCABLE_OF_TASK: Sql = Sql::locking(
    concat!(
        "SELECT message_id, task_id, msg_key, target_kind, target, expires_at, revoked_at FROM messages \
         WHERE app_id = $1 AND task_id = $2 AND kind = ",
        message_kind!(Notification),
        " AND created_at >= $3 ORDER BY message_id"
    ),
    Lock::Update,
);
pub(crate) static MARK_MESSAGE_REVOKED: Sql = Sql::new("UPDATE messages SET revoked_at = $2 WHERE message_id = $1");
/// Devices a message was written to at some point, or is open for while they are connected
/// (the connection may be writing it this instant): they get a recall.
pub(crate) static RECALL_TARGETS: Sql = Sql::new(concat!(
    "SELECT d.device_id, v.online_node FROM deliveries d JOIN devices v ON v.device_id = d.device_id \
     WHERE d.message_id = $1 AND (d.status IN (",
    delivery_status!(Sent, Delivered, Opened, Ignored),
    ") OR (d.status = ",
    delivery_status!(Pending),
    " AND v.online_node IS NOT NULL)) ORDER BY d.device_id"
));
/// $1 message, $2 now.
pub(crate) static WITHDRAW: Sql = Sql::new(concat!(
    "UPDATE deliveries SET ",
    stash_prior!(),
    "status = ",
    delivery_status!(Revoked),
    ", updated_at = $2 WHERE message_id = $1 AND status IN ",
    open!(),
    changed_many!()
));
/// $1 control message, $2 app, $3 task, $4 msgKey, $5 target kind, $6 target, $7 payload,
/// $8 now, $9 expires at.
pub(crate) static INSERT_RECALL: Sql = Sql::new(concat!(
    "INSERT INTO messages (message_id, app_id, task_id, msg_key, target_kind, target, payload, undeliverable, \
     created_at, expires_at, kind) VALUES ($1, $2, $3, $4, $5, $6, $7, FALSE, $8, $9, ",
    message_kind!(Revoke),
    ")"
));

// --- status views

pub(crate) static TASK: Sql = Sql::new(
    "SELECT task_id, push_type, task_name, delivery_type, created_at, expires_at FROM tasks \
     WHERE task_id = $1 AND app_id = $2",
);
/// $1 app, $2 push type ('' for any), $3..$4 created in [from, to), $5..$6 expiring in
/// (after, by]; $7 limit, $8 offset. Newest first.
pub(crate) static TASK_LIST: Sql = Sql::new(
    "SELECT task_id, push_type, task_name, delivery_type, created_at, expires_at FROM tasks \
     WHERE app_id = $1 AND ($2 = '' OR push_type = $2) AND created_at >= $3 AND created_at < $4 \
     AND expires_at > $5 AND expires_at <= $6 ORDER BY created_at DESC, task_id DESC LIMIT $7 OFFSET $8",
);
/// TASK_LIST's count: $1..$6 as there.
pub(crate) static TASK_LIST_COUNT: Sql = Sql::new(
    "SELECT COUNT(*) FROM tasks WHERE app_id = $1 AND ($2 = '' OR push_type = $2) AND created_at >= $3 \
     AND created_at < $4 AND expires_at > $5 AND expires_at <= $6",
);
pub(crate) static TASK_MESSAGES: Sql = Sql::new(concat!(
    "SELECT ",
    message_columns!(),
    " FROM messages WHERE task_id = $1 AND app_id = $2 AND kind = ",
    message_kind!(Notification),
    " ORDER BY message_id"
));
pub(crate) static MESSAGE: Sql = Sql::new(concat!(
    "SELECT ",
    message_columns!(),
    " FROM messages WHERE message_id = $1 AND app_id = $2 AND kind = ",
    message_kind!(Notification)
));
pub(crate) static MESSAGE_DELIVERIES: Sql = Sql::new(
    "SELECT device_id, status, created_at, updated_at, sent_at, delivered_at FROM deliveries \
     WHERE message_id = $1 ORDER BY device_id",
);

// --- templates

pub(crate) static TEMPLATE_EXISTS: Sql = Sql::new("SELECT 1 FROM templates WHERE app_id = $1 AND name = $2");
pub(crate) static TEMPLATE_COUNT: Sql = Sql::new("SELECT COUNT(*) FROM templates WHERE app_id = $1");
pub(crate) static INSERT_TEMPLATE: Sql = Sql::new(concat!(
    "INSERT INTO templates (",
    template_columns!(),
    ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
));
pub(crate) static TEMPLATE: Sql =
    Sql::new(concat!("SELECT ", template_columns!(), " FROM templates WHERE app_id = $1 AND name = $2"));
pub(crate) static TEMPLATES: Sql =
    Sql::new(concat!("SELECT ", template_columns!(), " FROM templates WHERE app_id = $1 ORDER BY name"));
/// $1 app, $2 name, $3 title, $4 content, $5 uri, $6 description, $7 style, $8 silent, $9 now.
pub(crate) static UPDATE_TEMPLATE: Sql = Sql::new(
    "UPDATE templates SET title = $3, content = $4, uri = $5, desc_info = $6, push_style = $7, silent = $8, \
     updated_at = $9 WHERE app_id = $1 AND name = $2",
);
pub(crate) static DELETE_TEMPLATE: Sql = Sql::new("DELETE FROM templates WHERE app_id = $1 AND name = $2");

// --- schedules

pub(crate) static INSERT_SCHEDULE: Sql = Sql::new(concat!(
    "INSERT INTO schedules (",
    schedule_columns!(),
    ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)"
));
/// $1 now, $2 limit: waiting schedules whose time has come, earliest first.
pub(crate) static DUE_SCHEDULES: Sql = Sql::new(concat!(
    "SELECT ",
    schedule_columns!(),
    " FROM schedules WHERE status = ",
    schedule_status!(Waiting),
    " AND push_time <= $1 ORDER BY push_time LIMIT $2"
));
/// Claims a firing: $1 id, $2 the push time it is due at, $3 new status, $4 task, $5 new
/// push time. Changes nothing when another node or an earlier run took it.
pub(crate) static CLAIM_FIRING: Sql = Sql::new(concat!(
    "UPDATE schedules SET status = $3, task_id = COALESCE($4, task_id), push_time = $5 \
     WHERE unique_id = $1 AND status = ",
    schedule_status!(Waiting),
    " AND push_time = $2"
));
/// The record of one firing of a recurring parent: $1 new id, $2 parent, $3 push time, $4
/// status, $5 task, $6 now.
pub(crate) static INSERT_FIRING: Sql = Sql::new(concat!(
    "INSERT INTO schedules (",
    schedule_columns!(),
    ") SELECT $1, unique_id, app_id, push_type, delivery_type, template_name, title, content, body, strategy_type, \
     strategy, $3, expires_ms, $4, $5, $6 FROM schedules WHERE unique_id = $2"
));
/// $1 app, $2 from, $3 to (push time): the app's schedules, earliest first.
pub(crate) static SCHEDULES_OF_APP: Sql = Sql::new(concat!(
    "SELECT ",
    schedule_columns!(),
    " FROM schedules WHERE app_id = $1 AND push_time >= $2 AND push_time <= $3 ORDER BY push_time, unique_id"
));
/// $1 app, $2 id: a schedule and, for a parent, its firings.
pub(crate) static SCHEDULE_FAMILY: Sql = Sql::new(concat!(
    "SELECT ",
    schedule_columns!(),
    " FROM schedules WHERE app_id = $1 AND (unique_id = $2 OR parent_id = $2) ORDER BY push_time, unique_id"
));
pub(crate) static CANCEL_SCHEDULE: Sql = Sql::new(concat!(
    "UPDATE schedules SET status = ",
    schedule_status!(Cancelled),
    " WHERE app_id = $1 AND unique_id = $2 AND status = ",
    schedule_status!(Waiting)
));
pub(crate) static SCHEDULE_STATUS: Sql = Sql::new("SELECT status FROM schedules WHERE app_id = $1 AND unique_id = $2");
pub(crate) static TEMPLATE_IN_USE: Sql = Sql::new(concat!(
    "SELECT 1 FROM schedules WHERE app_id = $1 AND template_name = $2 AND status = ",
    schedule_status!(Waiting),
    " LIMIT 1"
));

// --- nonces (PostgreSQL only: a SQLite file serves one node, which keeps them in memory)

/// $1 key, $2 nonce, $3 expires at, $4 now: false (0 rows) while the nonce is remembered.
pub(crate) static CLAIM_NONCE: Sql = Sql::new(
    "INSERT INTO nonces (key_id, nonce, expires_at) VALUES ($1, $2, $3) \
     ON CONFLICT (key_id, nonce) DO UPDATE SET expires_at = excluded.expires_at \
     WHERE nonces.expires_at <= $4",
);
pub(crate) static PURGE_NONCES: Sql = Sql::new("DELETE FROM nonces WHERE expires_at <= $1");

/// Every statement, for the tests that prepare each on both backends.
#[cfg(test)]
pub(crate) static ALL: &[&Sql] = &[
    &SETTING,
    &INIT_SETTING,
    &TRY_LEASE,
    &INSERT_APP,
    &APP,
    &APPS,
    &LOCK_APP,
    &INSERT_KEY,
    &API_KEY,
    &API_KEYS,
    &KEY_OF_APP,
    &REVOKE_KEY,
    &UPDATE_APP,
    &INSERT_SESSION,
    &DROP_EXPIRED_SESSIONS,
    &SESSION,
    &END_SESSION,
    &CONNECTIONS_PER_NODE,
    &LEASES,
    &DEVICE_BY_TOKEN,
    &DEVICE,
    &DEVICE_FOR_UPDATE,
    &DEVICE_BY_INSTALL,
    &INSTALL_TOKEN,
    &DEVICE_CREDENTIALS,
    &INSERT_DEVICE,
    &RENEW_DEVICE,
    &REPORT_DEVICE,
    &DROP_USER_DELIVERIES,
    &BIND,
    &USER_BACKLOG,
    &USER_PENDING,
    &ONLINE_NODE,
    &UNBIND,
    &USER_DEVICES,
    &PRESENCE,
    &CONNECT,
    &DISCONNECTED,
    &NODE_STARTED,
    &STALE_UNICAST,
    &STALE_BROADCAST,
    &CLAIM_KEY,
    &KEY_HOLDER,
    &INSERT_TASK,
    &TARGET_DEVICE,
    &TARGET_USER,
    &INSERT_MESSAGE,
    &INSERT_DELIVERY,
    &PENDING_UNICAST,
    &EXPIRE,
    &MARK_SENT,
    &MARK_DELIVERED,
    &EVENT_ARRIVED,
    &EVENT_OPENED,
    &EVENT_IGNORED,
    &REVOCABLE_BY_KEY,
    &REVOCABLE_OF_TASK,
    &MARK_MESSAGE_REVOKED,
    &RECALL_TARGETS,
    &WITHDRAW,
    &INSERT_RECALL,
    &TASK,
    &TASK_MESSAGES,
    &MESSAGE,
    &MESSAGE_DELIVERIES,
    &TEMPLATE_EXISTS,
    &TEMPLATE_COUNT,
    &INSERT_TEMPLATE,
    &TEMPLATE,
    &TEMPLATES,
    &UPDATE_TEMPLATE,
    &DELETE_TEMPLATE,
    &INSERT_SCHEDULE,
    &DUE_SCHEDULES,
    &CLAIM_FIRING,
    &INSERT_FIRING,
    &SCHEDULES_OF_APP,
    &SCHEDULE_FAMILY,
    &CANCEL_SCHEDULE,
    &SCHEDULE_STATUS,
    &TEMPLATE_IN_USE,
    &crate::migrations::APPLIED,
    &crate::migrations::RECORD,
];

/// The statements only PostgreSQL runs.
#[cfg(test)]
pub(crate) static POSTGRES_ONLY: &[&Sql] = &[&CONNECT_RETURNING_OLD, &CLAIM_NONCE, &PURGE_NONCES];
