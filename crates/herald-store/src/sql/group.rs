//! PostgreSQL only: the writes of many pushes, and many request nonces, each in one
//! statement (`postgres::group`). Every column comes as an array, one element per row, in
//! the order the rows are written.

use herald_core::delivery_status;

use crate::tx::Sql;

/// Columns of `tasks`, as [`super::INSERT_TASK`].
pub(crate) static INSERT_TASKS: Sql = Sql::new(
    "INSERT INTO tasks (task_id, app_id, push_type, task_name, delivery_type, created_at, expires_at) \
     SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::int8[], $6::int8[], $7::int8[])",
);
/// Columns of `messages`, as [`super::INSERT_MESSAGE`].
pub(crate) static INSERT_MESSAGES: Sql = Sql::new(
    "INSERT INTO messages (message_id, app_id, task_id, msg_key, target_kind, target, payload, undeliverable, \
     created_at, expires_at) SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], \
     $6::text[], $7::text[], $8::bool[], $9::int8[], $10::int8[])",
);
/// $1 messages, $2 devices, $3 created at, $4 expires at: pending deliveries.
pub(crate) static INSERT_DELIVERIES: Sql = Sql::new(concat!(
    "INSERT INTO deliveries (message_id, device_id, status, created_at, updated_at, expires_at) \
     SELECT m, d, ",
    delivery_status!(Pending),
    ", c, c, e FROM UNNEST($1::text[], $2::text[], $3::int8[], $4::int8[]) AS r(m, d, c, e)"
));
/// $1 messages, $2 devices, $3 the change, $4 prior statuses, $5 channels, $6 at: journal
/// entries without a reason, as [`super::JOURNAL`].
pub(crate) static JOURNAL_MANY: Sql = Sql::new(
    "INSERT INTO delivery_events (message_id, device_id, status, prior, channel, reason, at) \
     SELECT m, d, $3, p, c, NULL, a FROM UNNEST($1::text[], $2::text[], $4::text[], $5::text[], $6::int8[]) \
     AS r(m, d, p, c, a)",
);
/// $1 messages, $2 devices, $3 sent at, $4 at: unicast deliveries acknowledged, as
/// [`super::MARK_DELIVERED`] for each (no pair may come twice).
pub(crate) static MARK_DELIVERED_MANY: Sql = Sql::new(concat!(
    "UPDATE deliveries SET ",
    stash_prior!(),
    "status = ",
    delivery_status!(Delivered),
    ", sent_at = COALESCE(sent_at, u_sent), delivered_at = u_at, updated_at = u_at \
     FROM UNNEST($1::text[], $2::text[], $3::int8[], $4::int8[]) AS u(u_message, u_device, u_sent, u_at) \
     WHERE message_id = u_message AND device_id = u_device AND (status IN ",
    open!(),
    " OR (status = ",
    delivery_status!(Expired),
    " AND u_sent < expires_at))",
    changed_many!()
));
/// $1 broadcasts, $2 devices, $3 sent at: copies written, as [`super::ACK_SENT`] for each (no
/// pair may come twice).
pub(crate) static ACK_SENT_MANY: Sql = Sql::new(concat!(
    "INSERT INTO broadcast_acks (message_id, device_id, status, sent_at, updated_at) SELECT m, d, ",
    delivery_status!(Sent),
    ", s, s FROM UNNEST($1::text[], $2::text[], $3::int8[]) AS u(m, d, s) \
     ON CONFLICT (message_id, device_id) DO NOTHING",
    changed_many!()
));
/// $1 broadcasts, $2 devices, $3 sent at, $4 at: copies acknowledged, as
/// [`super::ACK_DELIVERED`] for each (no pair may come twice).
pub(crate) static ACK_DELIVERED_MANY: Sql = Sql::new(concat!(
    "INSERT INTO broadcast_acks (message_id, device_id, status, sent_at, delivered_at, updated_at) SELECT m, d, ",
    delivery_status!(Delivered),
    ", s, a, a FROM UNNEST($1::text[], $2::text[], $3::int8[], $4::int8[]) AS u(m, d, s, a) \
     ON CONFLICT (message_id, device_id) DO UPDATE SET prior_status = broadcast_acks.status, status = ",
    delivery_status!(Delivered),
    ", delivered_at = excluded.delivered_at, updated_at = excluded.updated_at WHERE broadcast_acks.status = ",
    delivery_status!(Sent),
    changed_many!()
));
/// $1 keys, $2 nonces, $3 expiry, $4 now: the nonces claimed (as [`super::CLAIM_NONCE`]; no
/// pair may come twice).
pub(crate) static CLAIM_NONCES: Sql = Sql::new(
    "INSERT INTO nonces (key_id, nonce, expires_at) SELECT * FROM UNNEST($1::text[], $2::text[], $3::int8[]) \
     ON CONFLICT (key_id, nonce) DO UPDATE SET expires_at = excluded.expires_at \
     WHERE nonces.expires_at <= $4 RETURNING key_id, nonce",
);

/// $1 apps, $2 msgKeys, $3 target kinds, $4 targets, $5 messages, $6 tasks, $7 expiry, $8 now:
/// the idempotency claims of many messages, as [`super::CLAIM_KEY`] each (no key may come
/// twice); the messages whose claim was made.
pub(crate) static CLAIM_KEYS: Sql = Sql::new(
    "INSERT INTO idempotency (app_id, msg_key, target_kind, target, message_id, task_id, expires_at) \
     SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::int8[]) \
     ON CONFLICT (app_id, msg_key, target_kind, target) DO UPDATE SET \
     message_id = excluded.message_id, task_id = excluded.task_id, expires_at = excluded.expires_at \
     WHERE idempotency.expires_at <= $8 RETURNING message_id",
);
/// $1 apps, $2 device ids, $3 their places in the request: the devices targeted, as
/// [`super::TARGET_DEVICE`] each (under a share lock), each with its place last.
pub(crate) static TARGET_DEVICES: Sql = Sql::new(
    "SELECT d.device_id, d.online_node, d.platform, d.vendor_tokens, q.i \
     FROM UNNEST($1::text[], $2::text[], $3::int8[]) AS q(app, target, i) \
     JOIN devices d ON d.app_id = q.app AND d.device_id = q.target FOR SHARE OF d",
);
/// $1 apps, $2 user ids, $3 their places in the request: the devices of each user, as
/// [`super::TARGET_USER`] each (under a share lock), each with its place last.
pub(crate) static TARGET_USERS: Sql = Sql::new(
    "SELECT d.device_id, d.online_node, d.platform, d.vendor_tokens, q.i \
     FROM UNNEST($1::text[], $2::text[], $3::int8[]) AS q(app, target, i) \
     JOIN devices d ON d.app_id = q.app AND d.user_id = q.target ORDER BY q.i, d.device_id FOR SHARE OF d",
);

#[cfg(test)]
pub(crate) static ALL: &[&Sql] = &[
    &INSERT_TASKS,
    &INSERT_MESSAGES,
    &INSERT_DELIVERIES,
    &JOURNAL_MANY,
    &MARK_DELIVERED_MANY,
    &ACK_SENT_MANY,
    &ACK_DELIVERED_MANY,
    &CLAIM_NONCES,
    &CLAIM_KEYS,
    &TARGET_DEVICES,
    &TARGET_USERS,
];
