-- Console sign-ins. A session is known by the SHA-256 of its cookie (the cookie itself is
-- never stored); `who` is what the operator called themselves at sign-in, for the log.
CREATE TABLE console_sessions (
    id_hash    TEXT PRIMARY KEY,
    who        TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX console_sessions_by_expiry ON console_sessions (expires_at);
