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
