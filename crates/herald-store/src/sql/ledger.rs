//! The statements of receipts and analytics (see `migrations/common/0012_ledger.sql` and
//! `0013_journal.sql`): the journal of status changes, the counters, the webhooks and their
//! outboxes.

use herald_core::{audience, channel, message_kind};

use crate::tx::Sql;

/// $1 message, $2 device, $3 change, $4 prior status, $5 channel, $6 reason, $7 at.
pub(crate) static JOURNAL: Sql = Sql::new(
    "INSERT INTO delivery_events (message_id, device_id, status, prior, channel, reason, at) \
     VALUES ($1, $2, $3, $4, $5, $6, $7)",
);
/// $1 at most: the oldest journal entries.
pub(crate) static JOURNAL_HEAD: Sql = Sql::new(
    "SELECT seq, message_id, device_id, status, prior, channel, reason, at FROM delivery_events ORDER BY seq LIMIT $1",
);
/// $1 message: what its entries are counted by (app, task, push type), its msgKey and
/// target. A control message (a recall) finds nothing: its entries are dropped.
pub(crate) static MESSAGE_DIMS: Sql = Sql::new(concat!(
    "SELECT m.app_id, m.task_id, t.push_type, m.msg_key, m.target FROM messages m \
     LEFT JOIN tasks t ON t.task_id = m.task_id WHERE m.message_id = $1 AND m.kind = ",
    message_kind!(Notification)
));
/// As [`MESSAGE_DIMS`], for a broadcast (no target).
pub(crate) static BROADCAST_DIMS: Sql = Sql::new(
    "SELECT b.app_id, b.task_id, t.push_type, b.msg_key, NULL FROM broadcasts b \
     LEFT JOIN tasks t ON t.task_id = b.task_id WHERE b.message_id = $1",
);
/// $1 app: whether its webhook is on (its changes become receipts).
pub(crate) static WEBHOOK_ON: Sql = Sql::new("SELECT COUNT(*) FROM webhooks WHERE app_id = $1 AND enabled");
/// $1 device: its platform and app version.
pub(crate) static DEVICE_DIMS: Sql = Sql::new("SELECT platform, app_version FROM devices WHERE device_id = $1");
/// $1 broadcast: its audience by platform, app version and the channel it was routed to
/// (the vendor sends written with it, else the own channel): a broadcast is pushed once,
/// for every device it reaches, without a row per device.
pub(crate) static BROADCAST_AUDIENCE_BY_VERSION: Sql = Sql::new(concat!(
    "SELECT v.platform, COALESCE(v.app_version, ''), COALESCE(s.channel, ",
    channel!(Own),
    "), COUNT(*) FROM broadcasts b JOIN devices v ON v.app_id = b.app_id \
     LEFT JOIN vendor_sends s ON s.message_id = b.message_id AND s.device_id = v.device_id \
     WHERE b.message_id = $1 AND ",
    eligible!(),
    " GROUP BY v.platform, COALESCE(v.app_version, ''), COALESCE(s.channel, ",
    channel!(Own),
    ")"
));
/// $1 first, $2 last: journal entries read and counted (a run of consecutive seqs).
pub(crate) static JOURNAL_DONE: Sql = Sql::new("DELETE FROM delivery_events WHERE seq >= $1 AND seq <= $2");
/// $1 app, $2 granularity, $3 bucket, $4 platform, $5 app version, $6 channel, $7 push type,
/// $8 task, $9..$15 the counts to add.
pub(crate) static ADD_COUNTS: Sql = Sql::new(
    "INSERT INTO analytics (app_id, granularity, bucket, platform, app_version, channel, push_type, task_id, \
     pushed, sent, arrived, opened, ignored, expired, failed) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15) \
     ON CONFLICT (app_id, granularity, bucket, platform, app_version, channel, push_type, task_id) DO UPDATE SET \
     pushed = analytics.pushed + excluded.pushed, sent = analytics.sent + excluded.sent, \
     arrived = analytics.arrived + excluded.arrived, opened = analytics.opened + excluded.opened, \
     ignored = analytics.ignored + excluded.ignored, expired = analytics.expired + excluded.expired, \
     failed = analytics.failed + excluded.failed",
);
/// $1 app, $2 granularity, $3 before: an app's counters past their retention (by the
/// primary key's prefix: the table has no other index, to keep counting cheap).
pub(crate) static DROP_COUNTS: Sql =
    Sql::new("DELETE FROM analytics WHERE app_id = $1 AND granularity = $2 AND task_id = '' AND bucket < $3");
/// $1 app, $2 the first task id kept: per-task counters of tasks created before (task ids
/// are time-ordered, so this is one range of the key).
pub(crate) static DROP_TASK_COUNTS: Sql =
    Sql::new("DELETE FROM analytics WHERE app_id = $1 AND granularity = 'task' AND task_id < $2");

/// The filters of an analytics query: $1 app, $2 granularity ('task' for one task's own
/// rows), $3 from (inclusive), $4 to (exclusive), $5 platform, $6 channel, $7 push type
/// (each NULL for any), $8 task ('' for the app's rows).
macro_rules! counted {
    () => {
        concat!(
            " FROM analytics WHERE app_id = $1 AND granularity = $2 AND task_id = $8 AND bucket >= $3 AND bucket < $4",
            dimension_filters!()
        )
    };
}
/// $5 platform, $6 channel, $7 push type, each NULL for any.
macro_rules! dimension_filters {
    () => {
        " AND (CAST($5 AS TEXT) IS NULL OR platform = $5) AND (CAST($6 AS TEXT) IS NULL OR channel = $6) \
         AND (CAST($7 AS TEXT) IS NULL OR push_type = $7)"
    };
}
/// The rows of the tasks created in a span: $1 app, $2 'task', $3 and $4 the first task id of
/// the span and the first after it (task ids are time-ordered: one range of the key), $5..$7
/// as [`counted!`], $8 one task or NULL for all.
macro_rules! counted_tasks {
    () => {
        concat!(
            " FROM analytics WHERE app_id = $1 AND granularity = $2 AND task_id >= $3 AND task_id < $4 \
             AND (CAST($8 AS TEXT) IS NULL OR task_id = $8)",
            dimension_filters!()
        )
    };
}
/// The counters summed (PostgreSQL sums BIGINT as NUMERIC: cast back).
macro_rules! sums {
    () => {
        "CAST(COALESCE(SUM(pushed), 0) AS BIGINT), CAST(COALESCE(SUM(sent), 0) AS BIGINT), \
         CAST(COALESCE(SUM(arrived), 0) AS BIGINT), CAST(COALESCE(SUM(opened), 0) AS BIGINT), \
         CAST(COALESCE(SUM(ignored), 0) AS BIGINT), CAST(COALESCE(SUM(expired), 0) AS BIGINT), \
         CAST(COALESCE(SUM(failed), 0) AS BIGINT)"
    };
}
pub(crate) static COUNTS_TOTAL: Sql = Sql::new(concat!("SELECT ", sums!(), counted!()));
/// As [`COUNTS_TOTAL`], per bucket of $9 ms (a task's minute rows summed by the hour or the
/// day), at most $10 buckets.
pub(crate) static COUNTS_SERIES: Sql =
    Sql::new(concat!("SELECT bucket - bucket % $9 AS b, ", sums!(), counted!(), " GROUP BY b ORDER BY b LIMIT $10"));
/// Each task's counts over its life, newest task first: $9 at most, $10 skipped.
pub(crate) static COUNTS_BY_TASK: Sql = Sql::new(concat!(
    "SELECT task_id, MIN(bucket), MAX(bucket), ",
    sums!(),
    counted_tasks!(),
    " GROUP BY task_id ORDER BY task_id DESC LIMIT $9 OFFSET $10"
));
/// How many tasks [`COUNTS_BY_TASK`] pages through.
pub(crate) static COUNTED_TASKS: Sql =
    Sql::new(concat!("SELECT COUNT(*) FROM (SELECT task_id", counted_tasks!(), " GROUP BY task_id) x"));
/// $1 app, $2 task: the task's counts and its first and last minute.
pub(crate) static TASK_COUNTS: Sql = Sql::new(concat!(
    "SELECT MIN(bucket), MAX(bucket), ",
    sums!(),
    " FROM analytics WHERE app_id = $1 AND granularity = 'task' AND task_id = $2"
));
/// $1 app, $2 task: the task's name, type and creation.
pub(crate) static TASK_HEAD: Sql =
    Sql::new("SELECT task_name, push_type, created_at FROM tasks WHERE task_id = $1 AND app_id = $2");

// --- webhooks

macro_rules! webhook_columns {
    () => {
        "app_id, url, enabled, secret_sealed, created_at, updated_at, attempts, next_at, last_success, \
         last_error_at, last_error"
    };
}
pub(crate) static WEBHOOK: Sql = Sql::new(concat!("SELECT ", webhook_columns!(), " FROM webhooks WHERE app_id = $1"));
/// $1 app, $2 url, $3 enabled, $4 sealed secret, $5 now. A changed configuration is tried at
/// once.
pub(crate) static PUT_WEBHOOK: Sql = Sql::new(
    "INSERT INTO webhooks (app_id, url, enabled, secret_sealed, created_at, updated_at, attempts, next_at) \
     VALUES ($1, $2, $3, $4, $5, $5, 0, $5) ON CONFLICT (app_id) DO UPDATE SET url = excluded.url, \
     enabled = excluded.enabled, secret_sealed = excluded.secret_sealed, updated_at = excluded.updated_at, \
     attempts = 0, next_at = excluded.next_at",
);
/// $1 now, $2 node, $3 at most: apps whose webhook is on and due, with receipts waiting,
/// that no other node is sending.
pub(crate) static DUE_WEBHOOKS: Sql = Sql::new(
    "SELECT w.app_id FROM webhooks w WHERE w.enabled AND w.next_at <= $1 \
     AND (w.claimed_until IS NULL OR w.claimed_until < $1 OR w.claimed_by = $2) \
     AND EXISTS (SELECT 1 FROM receipt_outbox o WHERE o.app_id = w.app_id) ORDER BY w.next_at LIMIT $3",
);
/// $1 app, $2 node, $3 until, $4 now: the app's sending, for this node.
pub(crate) static CLAIM_WEBHOOK: Sql = Sql::new(
    "UPDATE webhooks SET claimed_by = $2, claimed_until = $3 WHERE app_id = $1 AND enabled \
     AND (claimed_until IS NULL OR claimed_until < $4 OR claimed_by = $2)",
);
/// $1 app, $2 node: the app's sending, given back.
pub(crate) static RELEASE_WEBHOOK: Sql =
    Sql::new("UPDATE webhooks SET claimed_until = NULL WHERE app_id = $1 AND claimed_by = $2");
/// $1 app, $2 at: a batch was acknowledged.
pub(crate) static WEBHOOK_OK: Sql =
    Sql::new("UPDATE webhooks SET attempts = 0, next_at = $2, last_success = $2 WHERE app_id = $1");
/// $1 app, $2 attempts, $3 next at, $4 at, $5 error.
pub(crate) static WEBHOOK_FAILED: Sql =
    Sql::new("UPDATE webhooks SET attempts = $2, next_at = $3, last_error_at = $4, last_error = $5 WHERE app_id = $1");
/// $1 app, $2 receipt (JSON), $3 at.
pub(crate) static INSERT_RECEIPT: Sql =
    Sql::new("INSERT INTO receipt_outbox (app_id, receipt, created_at) VALUES ($1, $2, $3)");
/// $1 app, $2 at most: the head of the app's outbox.
pub(crate) static OUTBOX_HEAD: Sql =
    Sql::new("SELECT seq, receipt, created_at FROM receipt_outbox WHERE app_id = $1 ORDER BY seq LIMIT $2");
/// $1 app, $2 first, $3 last: receipts acknowledged (a run of consecutive seqs).
pub(crate) static RECEIPTS_DONE: Sql =
    Sql::new("DELETE FROM receipt_outbox WHERE app_id = $1 AND seq >= $2 AND seq <= $3");
/// $1 app, $2 created before, $3 reason, $4 now: receipts past the age limit are given up.
pub(crate) static GIVE_UP_RECEIPTS: Sql = Sql::new(
    "INSERT INTO receipt_failures (app_id, receipt, reason, created_at, failed_at) \
     SELECT app_id, receipt, $3, created_at, $4 FROM receipt_outbox WHERE app_id = $1 AND created_at < $2 \
     ORDER BY seq",
);
pub(crate) static DROP_GIVEN_UP: Sql = Sql::new("DELETE FROM receipt_outbox WHERE app_id = $1 AND created_at < $2");
pub(crate) static OUTBOX_SIZE: Sql = Sql::new("SELECT COUNT(*) FROM receipt_outbox WHERE app_id = $1");
/// $1 app, $2 at most, $3 skipped.
pub(crate) static FAILURES: Sql = Sql::new(
    "SELECT seq, receipt, reason, created_at, failed_at FROM receipt_failures WHERE app_id = $1 \
     ORDER BY seq LIMIT $2 OFFSET $3",
);
pub(crate) static FAILURE_COUNT: Sql = Sql::new("SELECT COUNT(*) FROM receipt_failures WHERE app_id = $1");
/// $1 app, $2 now, $3 one failure's seq (NULL: all): back to the outbox's tail, with a new
/// age.
pub(crate) static REPLAY: Sql = Sql::new(
    "INSERT INTO receipt_outbox (app_id, receipt, created_at) SELECT app_id, receipt, $2 FROM receipt_failures \
     WHERE app_id = $1 AND (CAST($3 AS BIGINT) IS NULL OR seq = $3) ORDER BY seq",
);
/// $1 app, $2 one failure's seq (NULL: all).
pub(crate) static DROP_REPLAYED: Sql =
    Sql::new("DELETE FROM receipt_failures WHERE app_id = $1 AND (CAST($2 AS BIGINT) IS NULL OR seq = $2)");
/// $1 app, $2 now: replayed receipts are tried at once.
pub(crate) static WEBHOOK_NOW: Sql = Sql::new("UPDATE webhooks SET attempts = 0, next_at = $2 WHERE app_id = $1");

/// $1 message, $2 app, $3 channel, $4 token: the device a vendor send went to (a vendor's
/// receipt names the message and the token).
pub(crate) static VENDOR_DEVICE: Sql = Sql::new(
    "SELECT device_id FROM vendor_sends WHERE message_id = $1 AND app_id = $2 AND channel = $3 AND token = $4",
);

/// Every statement above, for the tests that prepare each on both backends.
#[cfg(test)]
pub(crate) static ALL: &[&Sql] = &[
    &JOURNAL,
    &JOURNAL_HEAD,
    &MESSAGE_DIMS,
    &BROADCAST_DIMS,
    &DEVICE_DIMS,
    &WEBHOOK_ON,
    &BROADCAST_AUDIENCE_BY_VERSION,
    &JOURNAL_DONE,
    &ADD_COUNTS,
    &DROP_COUNTS,
    &DROP_TASK_COUNTS,
    &COUNTS_TOTAL,
    &COUNTS_SERIES,
    &COUNTS_BY_TASK,
    &COUNTED_TASKS,
    &TASK_COUNTS,
    &TASK_HEAD,
    &WEBHOOK,
    &PUT_WEBHOOK,
    &DUE_WEBHOOKS,
    &CLAIM_WEBHOOK,
    &RELEASE_WEBHOOK,
    &WEBHOOK_OK,
    &WEBHOOK_FAILED,
    &INSERT_RECEIPT,
    &OUTBOX_HEAD,
    &RECEIPTS_DONE,
    &GIVE_UP_RECEIPTS,
    &DROP_GIVEN_UP,
    &OUTBOX_SIZE,
    &FAILURES,
    &FAILURE_COUNT,
    &REPLAY,
    &DROP_REPLAYED,
    &WEBHOOK_NOW,
    &VENDOR_DEVICE,
];
