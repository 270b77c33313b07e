-- When each API key last signed an accepted request (to the minute: a node records a key's
-- use at most once a minute).
ALTER TABLE api_keys ADD COLUMN last_used_at BIGINT;
