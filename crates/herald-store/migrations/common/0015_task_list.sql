-- An app's tasks listed newest first (GET /v1/tasks): without it, every page scanned every
-- task of the node.
CREATE INDEX tasks_by_app_created ON tasks (app_id, created_at);
