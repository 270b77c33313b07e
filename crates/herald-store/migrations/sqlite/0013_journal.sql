-- The journal of status changes, written in the transaction of each change and read (then
-- deleted) by the analytics counter, which also moves receipts into the outbox of each app
-- whose webhook is on. `seq` orders them: SQLite assigns it under the write lock, so it is
-- commit order.
CREATE TABLE delivery_events (
    seq        INTEGER PRIMARY KEY,
    message_id TEXT NOT NULL,
    device_id  TEXT,
    status     TEXT NOT NULL,
    prior      TEXT,
    channel    TEXT,
    reason     TEXT,
    at         BIGINT NOT NULL
);

-- Receipts to POST, per app in `seq` order; those given up go to `receipt_failures`.
CREATE TABLE receipt_outbox (
    seq        INTEGER PRIMARY KEY,
    app_id     TEXT NOT NULL,
    receipt    TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX receipt_outbox_by_app ON receipt_outbox (app_id, seq);

CREATE TABLE receipt_failures (
    seq        INTEGER PRIMARY KEY,
    app_id     TEXT NOT NULL,
    receipt    TEXT NOT NULL,
    reason     TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    failed_at  BIGINT NOT NULL
);
CREATE INDEX receipt_failures_by_app ON receipt_failures (app_id, seq);

-- Counters per bucket (a minute, an hour or a day, by its start in Unix ms) and dimension.
-- A node adds what it counted to a row; it never writes a total. One B-tree keyed by the
-- dimensions (WITHOUT ROWID): a new row is one insert, not a row and its key's index.
CREATE TABLE analytics (
    app_id      TEXT NOT NULL,
    granularity TEXT NOT NULL,
    bucket      BIGINT NOT NULL,
    platform    TEXT NOT NULL,
    app_version TEXT NOT NULL,
    channel     TEXT NOT NULL,
    push_type   TEXT NOT NULL,
    task_id     TEXT NOT NULL,
    pushed      BIGINT NOT NULL,
    sent        BIGINT NOT NULL,
    arrived     BIGINT NOT NULL,
    opened      BIGINT NOT NULL,
    ignored     BIGINT NOT NULL,
    expired     BIGINT NOT NULL,
    failed      BIGINT NOT NULL,
    PRIMARY KEY (app_id, granularity, bucket, platform, app_version, channel, push_type, task_id)
) WITHOUT ROWID;
