-- An app's devices listed newest first (GET /v1/devices).
CREATE INDEX devices_by_app_created ON devices (app_id, created_at);
