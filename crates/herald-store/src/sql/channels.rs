//! The statements of vendor channels: channel settings, the routing policy, the vendor
//! outbox and invalid tokens (see `migrations/common/0009_channels.sql`).

use herald_core::{audience, delivery_status, vendor_send_status};

use crate::tx::{Lock, Sql};

macro_rules! channel_columns {
    () => {
        "app_id, kind, settings, secret_sealed, created_at, updated_at, last_success, last_error_at, last_error"
    };
}

/// $1 app, $2 kind, $3 settings, $4 sealed secret, $5 now. A new configuration clears the
/// last error (it was the old one's).
pub(crate) static PUT_CHANNEL: Sql = Sql::new(
    "INSERT INTO channels (app_id, kind, settings, secret_sealed, created_at, updated_at) \
     VALUES ($1, $2, $3, $4, $5, $5) ON CONFLICT (app_id, kind) DO UPDATE SET settings = excluded.settings, \
     secret_sealed = excluded.secret_sealed, updated_at = excluded.updated_at, last_error_at = NULL, last_error = NULL",
);
pub(crate) static CHANNEL: Sql =
    Sql::new(concat!("SELECT ", channel_columns!(), " FROM channels WHERE app_id = $1 AND kind = $2"));
pub(crate) static CHANNELS: Sql =
    Sql::new(concat!("SELECT ", channel_columns!(), " FROM channels WHERE app_id = $1 ORDER BY kind"));
/// The kinds an app has configured, read by a push.
pub(crate) static CHANNEL_KINDS: Sql = Sql::new("SELECT kind FROM channels WHERE app_id = $1 ORDER BY kind");
pub(crate) static DELETE_CHANNEL: Sql = Sql::new("DELETE FROM channels WHERE app_id = $1 AND kind = $2");
/// $1 app, $2 kind, $3 at.
pub(crate) static CHANNEL_SUCCESS: Sql = Sql::new(
    "UPDATE channels SET last_success = $3 WHERE app_id = $1 AND kind = $2 \
     AND (last_success IS NULL OR last_success < $3)",
);
/// $1 app, $2 kind, $3 at, $4 error.
pub(crate) static CHANNEL_ERROR: Sql =
    Sql::new("UPDATE channels SET last_error_at = $3, last_error = $4 WHERE app_id = $1 AND kind = $2");

pub(crate) static ROUTING: Sql = Sql::new("SELECT routing_policy, android_order FROM apps WHERE app_id = $1");
/// $1 app, $2 policy, $3 Android order.
pub(crate) static SET_ROUTING: Sql =
    Sql::new("UPDATE apps SET routing_policy = $2, android_order = $3 WHERE app_id = $1");

/// $1 message, $2 device, $3 app, $4 channel, $5 token, $6 now, $7 expires at.
pub(crate) static INSERT_VENDOR_SEND: Sql = Sql::new(concat!(
    "INSERT INTO vendor_sends (message_id, device_id, app_id, channel, token, status, attempts, next_at, \
     created_at, updated_at, expires_at) VALUES ($1, $2, $3, $4, $5, ",
    vendor_send_status!(Waiting),
    ", 0, $6, $6, $6, $7) ON CONFLICT (message_id, device_id) DO NOTHING"
));
/// Waiting sends that are due and not claimed by a live claim.
macro_rules! claimable {
    () => {
        concat!(
            "status = ",
            vendor_send_status!(Waiting),
            " AND channel = $4 AND next_at <= $1 AND (claimed_until IS NULL OR claimed_until < $1)"
        )
    };
}
/// A claim of the due sends within `$scope` (a condition ending in AND, or nothing).
macro_rules! claim {
    ($scope:literal) => {
        concat!(
            "UPDATE vendor_sends SET claimed_until = $2 WHERE ",
            $scope,
            claimable!(),
            " AND (message_id, device_id) IN (SELECT message_id, device_id FROM vendor_sends WHERE ",
            $scope,
            claimable!(),
            " ORDER BY next_at LIMIT $3) \
             RETURNING message_id, device_id, app_id, channel, token, attempts, expires_at, recall"
        )
    };
}
/// $1 now, $2 claimed until, $3 limit, $4 channel (each vendor's sends are claimed apart:
/// a slow vendor never holds another's). The outer condition is checked again on the row a
/// concurrent claim committed (PostgreSQL), so two nodes never claim one send.
pub(crate) static CLAIM_VENDOR_SENDS: Sql = Sql::new(claim!(""));
/// As [`CLAIM_VENDOR_SENDS`], for one app: $5 the app.
pub(crate) static CLAIM_APP_VENDOR_SENDS: Sql = Sql::new(claim!("app_id = $5 AND "));
/// $1 channel, $2 after this app id, $3 at most: apps with waiting sends of the vendor, in
/// app id order, found by skipping along `vendor_sends_by_app` (one index probe per app).
pub(crate) static WAITING_APPS: Sql = Sql::new(concat!(
    "WITH RECURSIVE apps(app_id) AS (SELECT MIN(app_id) FROM vendor_sends WHERE status = ",
    vendor_send_status!(Waiting),
    " AND channel = $1 AND app_id > $2 UNION ALL SELECT (SELECT MIN(v.app_id) FROM vendor_sends v \
     WHERE v.status = ",
    vendor_send_status!(Waiting),
    " AND v.channel = $1 AND v.app_id > apps.app_id) FROM apps WHERE apps.app_id IS NOT NULL) \
     SELECT app_id FROM apps WHERE app_id IS NOT NULL LIMIT $3"
));
pub(crate) static MESSAGE_PAYLOAD: Sql =
    Sql::new("SELECT payload FROM messages WHERE message_id = $1 AND revoked_at IS NULL");
pub(crate) static BROADCAST_PAYLOAD: Sql =
    Sql::new("SELECT payload FROM broadcasts WHERE message_id = $1 AND revoked_at IS NULL");
/// A recall is built from the revoked message's payload (its title, whether it was silent).
pub(crate) static MESSAGE_PAYLOAD_REVOKED: Sql = Sql::new("SELECT payload FROM messages WHERE message_id = $1");
pub(crate) static BROADCAST_PAYLOAD_REVOKED: Sql = Sql::new("SELECT payload FROM broadcasts WHERE message_id = $1");
/// $1 message, $2 device, $3 status, $4 attempts, $5 next at, $6 vendor id, $7 reason,
/// $8 at. Only a waiting send changes (a revoke may have ended it meanwhile).
pub(crate) static FINISH_VENDOR_SEND: Sql = Sql::new(concat!(
    "UPDATE vendor_sends SET status = $3, attempts = $4, next_at = $5, vendor_id = $6, reason = $7, \
     updated_at = $8, claimed_until = NULL WHERE message_id = $1 AND device_id = $2 AND status = ",
    vendor_send_status!(Waiting)
));
/// $1 message, $2 device, $3 channel, $4 at: a vendor took a unicast message.
pub(crate) static DELIVERY_VIA_VENDOR: Sql = Sql::new(concat!(
    "UPDATE deliveries SET prior_status = status, status = ",
    delivery_status!(Sent),
    ", channel = $3, sent_at = $4, updated_at = $4 WHERE message_id = $1 AND device_id = $2 AND status = ",
    delivery_status!(Pending),
    changed!()
));
/// As [`DELIVERY_VIA_VENDOR`], for a broadcast.
pub(crate) static BROADCAST_VIA_VENDOR: Sql = Sql::new(concat!(
    "INSERT INTO broadcast_acks (message_id, device_id, status, sent_at, updated_at, channel) VALUES ($1, $2, ",
    delivery_status!(Sent),
    ", $4, $4, $3) ON CONFLICT (message_id, device_id) DO NOTHING",
    changed!()
));
/// $1 message, $2 at: sends of a revoked message not made yet are not made.
pub(crate) static REVOKE_VENDOR_SENDS: Sql = Sql::new(concat!(
    "UPDATE vendor_sends SET status = ",
    vendor_send_status!(Revoked),
    ", updated_at = $2, claimed_until = NULL WHERE message_id = $1 AND status = ",
    vendor_send_status!(Waiting)
));
/// $1 message, $2 now, $3 the recall's end: sends of a revoked message a vendor already
/// took are sent again as recalls (a copy that replaces the one the vendor took).
pub(crate) static RECALL_VENDOR_SENDS: Sql = Sql::new(concat!(
    "UPDATE vendor_sends SET status = ",
    vendor_send_status!(Waiting),
    ", recall = 1, attempts = 0, next_at = $2, claimed_until = NULL, reason = NULL, updated_at = $2, expires_at = $3 \
     WHERE message_id = $1 AND status = ",
    vendor_send_status!(Sent)
));
pub(crate) static MESSAGE_VENDOR_SENDS: Sql = Sql::new(
    "SELECT device_id, channel, status, attempts, vendor_id, reason, updated_at FROM vendor_sends \
     WHERE message_id = $1 ORDER BY device_id",
);
/// $1 broadcast, $2 also devices online now: the devices a broadcast reaches that have a
/// vendor token (platform and tokens, for routing).
pub(crate) static BROADCAST_VENDOR_AUDIENCE: Sql = Sql::new(concat!(
    "SELECT v.device_id, v.platform, v.vendor_tokens FROM broadcasts b JOIN devices v ON v.app_id = b.app_id \
     WHERE b.message_id = $1 AND ($2 OR v.online_node IS NULL) AND v.vendor_tokens <> '{}' AND ",
    eligible!(),
    " ORDER BY v.device_id"
));

/// A device's tokens, locked: a token a vendor called invalid is removed.
pub(crate) static DEVICE_TOKENS: Sql =
    Sql::locking("SELECT vendor_tokens FROM devices WHERE device_id = $1", Lock::Update);
pub(crate) static SET_DEVICE_TOKENS: Sql = Sql::new("UPDATE devices SET vendor_tokens = $2 WHERE device_id = $1");
/// $1 app, $2 channel, $3 token, $4 device, $5 reason, $6 at.
pub(crate) static INSERT_INVALID_TOKEN: Sql = Sql::new(
    "INSERT INTO invalid_tokens (app_id, channel, token, device_id, reason, at) VALUES ($1, $2, $3, $4, $5, $6) \
     ON CONFLICT (app_id, channel, token) DO UPDATE SET device_id = excluded.device_id, reason = excluded.reason, \
     at = excluded.at",
);
/// $1 app, $2 device, $3 channel: the device reported a fresh token.
pub(crate) static CLEAR_INVALID_TOKEN: Sql =
    Sql::new("DELETE FROM invalid_tokens WHERE app_id = $1 AND device_id = $2 AND channel = $3");
/// $1 app, $2 limit, $3 offset; newest first.
pub(crate) static INVALID_TOKENS: Sql = Sql::new(
    "SELECT device_id, channel, token, reason, at FROM invalid_tokens WHERE app_id = $1 \
     ORDER BY at DESC, channel, token LIMIT $2 OFFSET $3",
);
pub(crate) static INVALID_TOKEN_COUNT: Sql = Sql::new("SELECT COUNT(*) FROM invalid_tokens WHERE app_id = $1");

/// Every statement above, for the tests that prepare each on both backends.
#[cfg(test)]
pub(crate) static ALL: &[&Sql] = &[
    &PUT_CHANNEL,
    &CHANNEL,
    &CHANNELS,
    &CHANNEL_KINDS,
    &DELETE_CHANNEL,
    &CHANNEL_SUCCESS,
    &CHANNEL_ERROR,
    &ROUTING,
    &SET_ROUTING,
    &INSERT_VENDOR_SEND,
    &CLAIM_VENDOR_SENDS,
    &MESSAGE_PAYLOAD,
    &BROADCAST_PAYLOAD,
    &FINISH_VENDOR_SEND,
    &RECALL_VENDOR_SENDS,
    &WAITING_APPS,
    &CLAIM_APP_VENDOR_SENDS,
    &MESSAGE_PAYLOAD_REVOKED,
    &BROADCAST_PAYLOAD_REVOKED,
    &DELIVERY_VIA_VENDOR,
    &BROADCAST_VIA_VENDOR,
    &REVOKE_VENDOR_SENDS,
    &MESSAGE_VENDOR_SENDS,
    &BROADCAST_VENDOR_AUDIENCE,
    &DEVICE_TOKENS,
    &SET_DEVICE_TOKENS,
    &INSERT_INVALID_TOKEN,
    &CLEAR_INVALID_TOKEN,
    &INVALID_TOKENS,
    &INVALID_TOKEN_COUNT,
];
