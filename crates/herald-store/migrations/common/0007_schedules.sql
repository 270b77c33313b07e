-- Scheduled pushes. A one-off push is one row; a recurring push is a parent row whose
-- push_time is its next firing, plus one child row per firing (or missed firing).
-- status: 0 waiting, 1 executed, 2 cancelled, 3 missed.
CREATE TABLE schedules (
    unique_id     TEXT PRIMARY KEY,
    parent_id     TEXT,
    app_id        TEXT NOT NULL REFERENCES apps (app_id),
    push_type     TEXT NOT NULL,
    delivery_type BIGINT NOT NULL,
    template_name TEXT,
    title         TEXT,
    content       TEXT,
    body          TEXT NOT NULL,
    strategy_type BIGINT NOT NULL,
    strategy      TEXT NOT NULL,
    push_time     BIGINT NOT NULL,
    expires_ms    BIGINT NOT NULL,
    status        BIGINT NOT NULL,
    task_id       TEXT,
    created_at    BIGINT NOT NULL
);
CREATE INDEX schedules_due ON schedules (push_time) WHERE status = 0;
CREATE INDEX schedules_by_app ON schedules (app_id, push_time);
CREATE INDEX schedules_by_parent ON schedules (parent_id);
