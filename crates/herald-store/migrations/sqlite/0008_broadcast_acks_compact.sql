-- Acknowledgements arrive at the rate devices acknowledge broadcasts, one row each: keep
-- them in one B-tree keyed by (message, device) (WITHOUT ROWID) rather than a rowid table
-- plus the index of its primary key. The insert selects its message from broadcasts, so
-- the foreign key check (one more lookup per row) is dropped.
CREATE TABLE broadcast_acks_compact (
    message_id   TEXT NOT NULL,
    device_id    TEXT NOT NULL,
    status       TEXT NOT NULL,
    sent_at      BIGINT,
    delivered_at BIGINT,
    updated_at   BIGINT NOT NULL,
    PRIMARY KEY (message_id, device_id)
) WITHOUT ROWID;
INSERT INTO broadcast_acks_compact (message_id, device_id, status, sent_at, delivered_at, updated_at)
    SELECT message_id, device_id, status, sent_at, delivered_at, updated_at FROM broadcast_acks;
DROP TABLE broadcast_acks;
ALTER TABLE broadcast_acks_compact RENAME TO broadcast_acks;
