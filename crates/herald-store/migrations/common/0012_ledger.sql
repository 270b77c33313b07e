-- Receipts and analytics (DESIGN §8). A status change stashes the status it left in
-- `prior_status` (an UPDATE's SET reads the old row, its RETURNING the new one), so that the
-- journal entry written beside it knows which stages the change crossed.
ALTER TABLE deliveries ADD COLUMN prior_status TEXT;
ALTER TABLE broadcast_acks ADD COLUMN prior_status TEXT;

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
