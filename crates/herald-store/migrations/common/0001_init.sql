-- Herald schema, version 1, for both backends: portable SQL, the same tables and columns
-- on SQLite and PostgreSQL. Times are Unix milliseconds (BIGINT).

CREATE TABLE settings (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE apps (
    app_id             TEXT PRIMARY KEY,
    name               TEXT NOT NULL,
    app_key_hash       TEXT NOT NULL,
    bind_secret_sealed TEXT NOT NULL,
    trust_client_bind  BOOLEAN NOT NULL,
    created_at         BIGINT NOT NULL
);

CREATE TABLE api_keys (
    key_id     TEXT PRIMARY KEY,
    app_id     TEXT NOT NULL REFERENCES apps (app_id),
    kind       TEXT NOT NULL,
    material   TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    revoked_at BIGINT
);
CREATE INDEX api_keys_by_app ON api_keys (app_id);

CREATE TABLE devices (
    device_id     TEXT PRIMARY KEY,
    app_id        TEXT NOT NULL REFERENCES apps (app_id),
    install_id    TEXT NOT NULL,
    token_hash    TEXT NOT NULL UNIQUE,
    platform      TEXT NOT NULL,
    app_version   TEXT,
    os_version    TEXT,
    model         TEXT,
    vendor_tokens TEXT NOT NULL,
    user_id       TEXT,
    bound_at      BIGINT,
    unbound_at    BIGINT,
    created_at    BIGINT NOT NULL,
    last_seen     BIGINT,
    UNIQUE (app_id, install_id)
);
CREATE INDEX devices_by_user ON devices (app_id, user_id);

CREATE TABLE tasks (
    task_id       TEXT PRIMARY KEY,
    app_id        TEXT NOT NULL,
    push_type     TEXT NOT NULL,
    task_name     TEXT,
    delivery_type BIGINT NOT NULL,
    created_at    BIGINT NOT NULL,
    expires_at    BIGINT NOT NULL
);

-- One rendered payload for one target.
CREATE TABLE messages (
    message_id    TEXT PRIMARY KEY,
    app_id        TEXT NOT NULL,
    task_id       TEXT NOT NULL,
    msg_key       TEXT NOT NULL,
    target_kind   TEXT NOT NULL,
    target        TEXT NOT NULL,
    payload       TEXT NOT NULL,
    undeliverable BOOLEAN NOT NULL,
    created_at    BIGINT NOT NULL,
    expires_at    BIGINT NOT NULL
);
CREATE INDEX messages_by_task ON messages (task_id);
-- Partial: only user-targeted messages are looked up by target (when a device binds).
CREATE INDEX messages_by_user ON messages (app_id, target, expires_at) WHERE target_kind = 'user';

-- The last message of each (app, msgKey, target): a repeat within its validity is not sent.
CREATE TABLE idempotency (
    app_id      TEXT NOT NULL,
    msg_key     TEXT NOT NULL,
    target_kind TEXT NOT NULL,
    target      TEXT NOT NULL,
    message_id  TEXT NOT NULL,
    task_id     TEXT NOT NULL,
    expires_at  BIGINT NOT NULL,
    PRIMARY KEY (app_id, msg_key, target_kind, target)
);

-- One message on its way to one device.
-- status: pending | sent | delivered | opened | ignored | expired
CREATE TABLE deliveries (
    message_id   TEXT NOT NULL,
    device_id    TEXT NOT NULL,
    status       TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL,
    sent_at      BIGINT,
    delivered_at BIGINT,
    expires_at   BIGINT NOT NULL,
    PRIMARY KEY (message_id, device_id)
);
-- Partial indexes over the open deliveries only: an acknowledged delivery leaves them,
-- so they stay small and a push touches few index pages.
CREATE INDEX deliveries_open ON deliveries (device_id, message_id) WHERE status IN ('pending', 'sent');
CREATE INDEX deliveries_expiry ON deliveries (expires_at) WHERE status IN ('pending', 'sent');
