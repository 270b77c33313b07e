-- Vendor channels. Per app and vendor: what may be shown (settings, JSON) and the secrets
-- sealed with the master key (JSON, sealed as a whole), plus the channel's health as the
-- senders last saw it.
CREATE TABLE channels (
    app_id        TEXT NOT NULL REFERENCES apps (app_id),
    kind          TEXT NOT NULL,
    settings      TEXT NOT NULL,
    secret_sealed TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL,
    last_success  BIGINT,
    last_error_at BIGINT,
    last_error    TEXT,
    PRIMARY KEY (app_id, kind)
);
-- How an app's messages choose between the own channel and a vendor (RoutingPolicy).
ALTER TABLE apps ADD COLUMN routing_policy TEXT NOT NULL DEFAULT 'ownFirst';
ALTER TABLE apps ADD COLUMN android_order TEXT NOT NULL DEFAULT 'hms,xiaomi,fcm';

-- The vendor outbox: one row per message and device that a vendor is to carry, written in
-- the transaction that commits the push. A sender claims due rows (claimed_until: a lease,
-- so that a node that dies mid-send leaves them to another) and records the vendor's
-- answer. status: VendorSendStatus.
CREATE TABLE vendor_sends (
    message_id    TEXT NOT NULL,
    device_id     TEXT NOT NULL,
    app_id        TEXT NOT NULL,
    channel       TEXT NOT NULL,
    token         TEXT NOT NULL,
    status        TEXT NOT NULL,
    attempts      BIGINT NOT NULL,
    next_at       BIGINT NOT NULL,
    claimed_until BIGINT,
    vendor_id     TEXT,
    reason        TEXT,
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL,
    expires_at    BIGINT NOT NULL,
    PRIMARY KEY (message_id, device_id)
);
CREATE INDEX vendor_sends_due ON vendor_sends (next_at) WHERE status = 'waiting';

-- Tokens a vendor called invalid: never used again (removed from the device), listed for
-- the app until the device reports a fresh one.
CREATE TABLE invalid_tokens (
    app_id     TEXT NOT NULL,
    channel    TEXT NOT NULL,
    token      TEXT NOT NULL,
    device_id  TEXT NOT NULL,
    reason     TEXT NOT NULL,
    at         BIGINT NOT NULL,
    PRIMARY KEY (app_id, channel, token)
);
CREATE INDEX invalid_tokens_by_app ON invalid_tokens (app_id, at);

-- The channel a delivery went through (own or a vendor), once it went through one.
ALTER TABLE deliveries ADD COLUMN channel TEXT;
ALTER TABLE broadcast_acks ADD COLUMN channel TEXT;
