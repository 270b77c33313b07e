//! The statements of broadcasts: the broadcast itself, its audience, and the sparse
//! acknowledgements of the devices it reached (`migrations/common/0006_broadcasts.sql`).

use herald_core::{audience, delivery_status};

use crate::tx::{Lock, Sql};

/// $1 message, $2 task, $3 app, $4 msgkey, $5 platform, $6 audience, $7 bound since, $8
/// unbound since, $9 payload, $10 created at, $11 expires at.
pub(crate) static INSERT_BROADCAST: Sql = Sql::new(
    "INSERT INTO broadcasts (message_id, task_id, app_id, msg_key, platform, push_status, bind_since, \
     unbind_since, payload, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
);
/// $1 message, $2 node: the devices of the broadcast connected to the node, in device
/// order (their acknowledgements then arrive nearly in the order of the acks' key).
pub(crate) static BROADCAST_RECIPIENTS: Sql = Sql::new(concat!(
    "SELECT v.device_id FROM broadcasts b JOIN devices v ON v.online_node = $2 \
     WHERE b.message_id = $1 AND b.revoked_at IS NULL AND ",
    eligible!(),
    " ORDER BY v.device_id"
));
/// $1 device, $2 now: the live broadcasts the device qualifies for and has not acknowledged
/// (message id, payload, expiry, and `sent` when written before without an acknowledgement).
pub(crate) static PENDING_BROADCASTS: Sql = Sql::new(concat!(
    "SELECT b.message_id, b.payload, b.expires_at, COALESCE(a.status, ",
    delivery_status!(Pending),
    ") FROM devices v \
     JOIN broadcasts b ON b.app_id = v.app_id AND b.expires_at > $2 AND b.revoked_at IS NULL \
     LEFT JOIN broadcast_acks a ON a.message_id = b.message_id AND a.device_id = v.device_id \
     WHERE v.device_id = $1 AND (a.status IS NULL OR a.status = ",
    delivery_status!(Sent),
    ") AND ",
    eligible!(),
    " ORDER BY b.message_id"
));
/// $1 message: how many devices qualify now.
pub(crate) static BROADCAST_AUDIENCE: Sql = Sql::new(concat!(
    "SELECT COUNT(*) FROM broadcasts b JOIN devices v ON v.app_id = b.app_id WHERE b.message_id = $1 AND ",
    eligible!()
));
pub(crate) static BROADCAST_COUNTS: Sql =
    Sql::new("SELECT status, COUNT(*) FROM broadcast_acks WHERE message_id = $1 GROUP BY status ORDER BY status");
/// $1 task, $2 app.
pub(crate) static BROADCAST_OF_TASK: Sql =
    Sql::new("SELECT message_id, msg_key, expires_at, revoked_at FROM broadcasts WHERE task_id = $1 AND app_id = $2");
/// $1 task, $2 app, $3 since: the broadcast of a task sent within the revoke window.
pub(crate) static REVOCABLE_BROADCAST: Sql = Sql::locking(
    "SELECT message_id, msg_key, expires_at, revoked_at FROM broadcasts \
     WHERE task_id = $1 AND app_id = $2 AND created_at >= $3",
    Lock::Update,
);
pub(crate) static REVOKE_BROADCAST: Sql = Sql::new("UPDATE broadcasts SET revoked_at = $2 WHERE message_id = $1");
/// Devices that got (or were being written) a broadcast, for its recall.
pub(crate) static BROADCAST_RECALL_TARGETS: Sql = Sql::new(
    "SELECT a.device_id, v.online_node FROM broadcast_acks a \
     JOIN devices v ON v.device_id = a.device_id WHERE a.message_id = $1 ORDER BY a.device_id",
);
/// The gateway's record of a broadcast copy written and not acknowledged ($3 sent at). The
/// id is the gateway's own: one single-row insert, without looking the broadcast up.
pub(crate) static ACK_SENT: Sql = Sql::new(concat!(
    "INSERT INTO broadcast_acks (message_id, device_id, status, sent_at, updated_at) VALUES ($1, $2, ",
    delivery_status!(Sent),
    ", $3, $3) ON CONFLICT (message_id, device_id) DO NOTHING",
    changed!()
));
/// The gateway's record of a PUBACK ($3 sent at, $4 at), as [`ACK_SENT`].
pub(crate) static ACK_DELIVERED: Sql = Sql::new(concat!(
    "INSERT INTO broadcast_acks (message_id, device_id, status, sent_at, delivered_at, updated_at) \
     VALUES ($1, $2, ",
    delivery_status!(Delivered),
    ", $3, $4, $4) ON CONFLICT (message_id, device_id) DO UPDATE SET prior_status = broadcast_acks.status, status = ",
    delivery_status!(Delivered),
    ", delivered_at = excluded.delivered_at, updated_at = excluded.updated_at WHERE broadcast_acks.status = ",
    delivery_status!(Sent),
    changed!()
));
/// The broadcast `$1` when device `$2` is of its app and platform and was registered before
/// it: what a device reports about another app's broadcast (or an id of its choosing) is not
/// written.
macro_rules! broadcast_of_device {
    () => {
        " FROM broadcasts b JOIN devices v ON v.device_id = $2 WHERE b.message_id = $1 AND v.app_id = b.app_id \
         AND v.platform = b.platform AND v.created_at <= b.created_at"
    };
}
/// $1 broadcast, $2 device, $3 the device's time, $4 the report's arrival.
pub(crate) static BROADCAST_ARRIVED: Sql = Sql::new(concat!(
    "INSERT INTO broadcast_acks (message_id, device_id, status, sent_at, delivered_at, updated_at) \
     SELECT b.message_id, v.device_id, ",
    delivery_status!(Delivered),
    ", ",
    event_at!("b.created_at"),
    ", ",
    event_at!("b.created_at"),
    ", ",
    event_at!("b.created_at"),
    broadcast_of_device!(),
    " ON CONFLICT (message_id, device_id) DO UPDATE SET prior_status = broadcast_acks.status, status = ",
    delivery_status!(Delivered),
    ", delivered_at = excluded.delivered_at, updated_at = excluded.updated_at WHERE broadcast_acks.status = ",
    delivery_status!(Sent),
    changed!()
));
/// Opened or ignored, from the statuses it may follow.
macro_rules! broadcast_event {
    ($status:ident, $($from:ident),+) => {
        concat!(
            "INSERT INTO broadcast_acks (message_id, device_id, status, delivered_at, updated_at) \
             SELECT b.message_id, v.device_id, ",
            delivery_status!($status),
            ", ",
            event_at!("b.created_at"),
            ", ",
            event_at!("b.created_at"),
            broadcast_of_device!(),
            " ON CONFLICT (message_id, device_id) DO UPDATE SET prior_status = broadcast_acks.status, status = ",
            delivery_status!($status),
            ", updated_at = excluded.updated_at WHERE broadcast_acks.status IN (",
            delivery_status!($($from),+),
            ")",
            changed!()
        )
    };
}
pub(crate) static BROADCAST_OPENED: Sql = Sql::new(broadcast_event!(Opened, Sent, Delivered, Ignored));
pub(crate) static BROADCAST_IGNORED: Sql = Sql::new(broadcast_event!(Ignored, Sent, Delivered));

/// Every statement above, for the tests that prepare each on both backends.
#[cfg(test)]
pub(crate) static ALL: &[&Sql] = &[
    &INSERT_BROADCAST,
    &BROADCAST_RECIPIENTS,
    &PENDING_BROADCASTS,
    &BROADCAST_AUDIENCE,
    &BROADCAST_COUNTS,
    &BROADCAST_OF_TASK,
    &REVOCABLE_BROADCAST,
    &REVOKE_BROADCAST,
    &BROADCAST_RECALL_TARGETS,
    &ACK_SENT,
    &ACK_DELIVERED,
    &BROADCAST_ARRIVED,
    &BROADCAST_OPENED,
    &BROADCAST_IGNORED,
];
