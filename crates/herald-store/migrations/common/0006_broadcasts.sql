-- Broadcast: one row per broadcast, not one per device. Devices that qualify are found when
-- they connect (and, for those connected, when it is sent); what happened per device is
-- written only when something happens (sparse acknowledgements).
CREATE TABLE broadcasts (
    message_id   TEXT PRIMARY KEY,
    task_id      TEXT NOT NULL REFERENCES tasks (task_id),
    app_id       TEXT NOT NULL REFERENCES apps (app_id),
    msg_key      TEXT NOT NULL,
    platform     TEXT NOT NULL,
    push_status  BIGINT NOT NULL,
    bind_since   BIGINT,
    unbind_since BIGINT,
    payload      TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL,
    revoked_at   BIGINT
);
CREATE INDEX broadcasts_live ON broadcasts (app_id, expires_at);
CREATE INDEX broadcasts_by_task ON broadcasts (task_id);

CREATE TABLE broadcast_acks (
    message_id   TEXT NOT NULL REFERENCES broadcasts (message_id),
    device_id    TEXT NOT NULL,
    status       TEXT NOT NULL,
    sent_at      BIGINT,
    delivered_at BIGINT,
    updated_at   BIGINT NOT NULL,
    PRIMARY KEY (message_id, device_id)
);
