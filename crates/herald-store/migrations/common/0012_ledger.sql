-- Receipts and analytics (DESIGN §8). A status change stashes the status it left in
-- `prior_status` (an UPDATE's SET reads the old row, its RETURNING the new one), so that the
-- journal entry written beside it knows which stages the change crossed.
ALTER TABLE deliveries ADD COLUMN prior_status TEXT;
ALTER TABLE broadcast_acks ADD COLUMN prior_status TEXT;

-- Counters per bucket (a minute, an hour or a day, by its start in Unix ms) and dimension.
-- A node adds what it counted to a row; it never writes a total.
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
);
CREATE INDEX analytics_by_bucket ON analytics (granularity, bucket);

-- An app's receipt webhook, and the state of its sender: the head of its outbox is tried
-- again at `next_at` after `attempts` failures; one node at a time holds the app's sending
-- (`claimed_by` until `claimed_until`).
CREATE TABLE webhooks (
    app_id        TEXT PRIMARY KEY REFERENCES apps (app_id),
    url           TEXT NOT NULL,
    enabled       BOOLEAN NOT NULL,
    secret_sealed TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL,
    attempts      BIGINT NOT NULL,
    next_at       BIGINT NOT NULL,
    claimed_by    TEXT,
    claimed_until BIGINT,
    last_success  BIGINT,
    last_error_at BIGINT,
    last_error    TEXT
);
