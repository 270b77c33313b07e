-- Templates of an app: title, content and uri with #name# placeholders.
CREATE TABLE templates (
    app_id      TEXT NOT NULL REFERENCES apps (app_id),
    name        TEXT NOT NULL,
    title       TEXT NOT NULL,
    content     TEXT NOT NULL,
    uri         TEXT,
    desc_info   TEXT,
    push_style  BIGINT NOT NULL,
    silent      BIGINT NOT NULL,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    PRIMARY KEY (app_id, name)
);
