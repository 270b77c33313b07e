//! The SQL of broadcasts, shared by the backends: written with `?N` parameters (SQLite) and
//! turned into `$N` for PostgreSQL by [`pg`]. One place defines which devices a broadcast
//! reaches, so the backends cannot disagree.

/// Devices `v` that broadcast `b` reaches: same app and platform, registered before it was
/// sent, and in the audience of its pushStatus (0 bound, 1 all, 2 unbound) and periods. A
/// device never bound counts as unbound since its registration.
pub const ELIGIBLE: &str = "v.app_id = b.app_id AND v.platform = b.platform AND v.created_at <= b.created_at AND ( \
     (b.push_status = 0 AND v.user_id IS NOT NULL AND (b.bind_since IS NULL OR v.bound_at >= b.bind_since)) \
     OR (b.push_status = 1 AND (v.user_id IS NOT NULL OR b.unbind_since IS NULL \
         OR COALESCE(v.unbound_at, v.created_at) >= b.unbind_since)) \
     OR (b.push_status = 2 AND v.user_id IS NULL AND (b.unbind_since IS NULL \
         OR COALESCE(v.unbound_at, v.created_at) >= b.unbind_since)))";

pub const INSERT: &str = "INSERT INTO broadcasts (message_id, task_id, app_id, msg_key, platform, push_status, \
     bind_since, unbind_since, payload, created_at, expires_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)";

/// ?1 message id, ?2 node: the devices of broadcast ?1 connected to node ?2, in device
/// order: handed to connections in that order, their acknowledgements arrive nearly in the
/// order of the acknowledgement table's key.
pub fn recipients() -> String {
    format!(
        "SELECT v.device_id FROM broadcasts b JOIN devices v ON v.online_node = ?2 \
         WHERE b.message_id = ?1 AND b.revoked_at IS NULL AND {ELIGIBLE} ORDER BY v.device_id"
    )
}

/// ?1 device, ?2 now: the live broadcasts the device has not acknowledged (message id,
/// payload, expiry, 'sent' when written before without an acknowledgement).
pub fn pending() -> String {
    format!(
        "SELECT b.message_id, b.payload, b.expires_at, COALESCE(a.status, 'pending') FROM devices v \
         JOIN broadcasts b ON b.app_id = v.app_id AND b.expires_at > ?2 AND b.revoked_at IS NULL \
         LEFT JOIN broadcast_acks a ON a.message_id = b.message_id AND a.device_id = v.device_id \
         WHERE v.device_id = ?1 AND (a.status IS NULL OR a.status = 'sent') AND {ELIGIBLE} \
         ORDER BY b.message_id"
    )
}

/// ?1 message id: how many devices qualify now.
pub fn eligible_count() -> String {
    format!(
        "SELECT COUNT(*) FROM broadcasts b JOIN devices v ON v.app_id = b.app_id WHERE b.message_id = ?1 AND {ELIGIBLE}"
    )
}

pub const COUNTS: &str =
    "SELECT status, COUNT(*) FROM broadcast_acks WHERE message_id = ?1 GROUP BY status ORDER BY status";

/// The gateway's record of a broadcast copy it wrote and saw unacknowledged (?1 message,
/// ?2 device, ?3 sent at). The id is the gateway's own, so the row is written without
/// looking the broadcast up: one single-row insert, the bulk of a broadcast's writes.
pub const ACK_SENT: &str = "INSERT INTO broadcast_acks (message_id, device_id, status, sent_at, updated_at) \
     VALUES (?1, ?2, 'sent', ?3, ?3) ON CONFLICT (message_id, device_id) DO NOTHING";
/// The gateway's record of a PUBACK (?1 message, ?2 device, ?3 sent at, ?4 at), as above.
pub const ACK_DELIVERED: &str = "INSERT INTO broadcast_acks (message_id, device_id, status, sent_at, delivered_at, updated_at) \
     VALUES (?1, ?2, 'delivered', ?3, ?4, ?4) \
     ON CONFLICT (message_id, device_id) DO UPDATE SET status = 'delivered', delivered_at = excluded.delivered_at, \
     updated_at = excluded.updated_at WHERE broadcast_acks.status = 'sent'";
/// What a device reports about a message id it names: written only when the id is a
/// broadcast's (the statement inserts nothing otherwise). ?1 message, ?2 device, ?3 at.
pub const EVENT_ARRIVED: &str = "INSERT INTO broadcast_acks (message_id, device_id, status, sent_at, delivered_at, updated_at) \
     SELECT message_id, CAST(?2 AS TEXT), 'delivered', CAST(?3 AS BIGINT), CAST(?3 AS BIGINT), CAST(?3 AS BIGINT) FROM broadcasts WHERE message_id = ?1 \
     ON CONFLICT (message_id, device_id) DO UPDATE SET status = 'delivered', delivered_at = excluded.delivered_at, \
     updated_at = excluded.updated_at WHERE broadcast_acks.status = 'sent'";
pub const EVENT_OPENED: &str = "INSERT INTO broadcast_acks (message_id, device_id, status, delivered_at, updated_at) \
     SELECT message_id, CAST(?2 AS TEXT), 'opened', CAST(?3 AS BIGINT), CAST(?3 AS BIGINT) FROM broadcasts WHERE message_id = ?1 \
     ON CONFLICT (message_id, device_id) DO UPDATE SET status = 'opened', updated_at = excluded.updated_at \
     WHERE broadcast_acks.status IN ('sent', 'delivered', 'ignored')";
pub const EVENT_IGNORED: &str = "INSERT INTO broadcast_acks (message_id, device_id, status, delivered_at, updated_at) \
     SELECT message_id, CAST(?2 AS TEXT), 'ignored', CAST(?3 AS BIGINT), CAST(?3 AS BIGINT) FROM broadcasts WHERE message_id = ?1 \
     ON CONFLICT (message_id, device_id) DO UPDATE SET status = 'ignored', updated_at = excluded.updated_at \
     WHERE broadcast_acks.status IN ('sent', 'delivered')";

/// ?1 task, ?2 app: the broadcast of a task.
pub const OF_TASK: &str = "SELECT message_id, msg_key, expires_at, revoked_at FROM broadcasts \
     WHERE task_id = ?1 AND app_id = ?2";

/// ?1 task, ?2 app, ?3 since: the broadcast of a task, if sent within the revoke window.
pub const REVOCABLE: &str = "SELECT message_id, msg_key, expires_at, revoked_at FROM broadcasts \
     WHERE task_id = ?1 AND app_id = ?2 AND created_at >= ?3";

/// ?1 message: devices that got (or were being written) the broadcast, for a recall.
pub const RECALL_DEVICES: &str = "SELECT a.device_id, v.online_node FROM broadcast_acks a \
     JOIN devices v ON v.device_id = a.device_id WHERE a.message_id = ?1 ORDER BY a.device_id";

/// `sql` with PostgreSQL's `$N` parameters.
pub fn pg(sql: &str) -> String {
    sql.replace('?', "$")
}
