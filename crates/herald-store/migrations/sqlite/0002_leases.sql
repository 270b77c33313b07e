-- Leases: background work that must run once among the nodes sharing a store. (A SQLite
-- file has one node, but the contract is the same for every backend.)
CREATE TABLE leases (
    name       TEXT PRIMARY KEY,
    holder     TEXT NOT NULL,
    expires_at BIGINT NOT NULL
);
