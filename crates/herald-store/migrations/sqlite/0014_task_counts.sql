-- Counters keyed task first. Rows of granularity minute, hour and day are the app's counts
-- (task_id ''): a few rows per bucket, updated in place. A task's own counts are rows of
-- granularity 'task' (minute buckets), one per task and minute: task ids are time-ordered,
-- so they are appended at the end of the tree, a task's counters are one range, and old
-- tasks are dropped as a range. Before, every change wrote per-task rows at all three
-- granularities; counting cost a push three inserts.
CREATE TABLE analytics_by_task (
    app_id      TEXT NOT NULL,
    granularity TEXT NOT NULL,
    task_id     TEXT NOT NULL,
    bucket      BIGINT NOT NULL,
    platform    TEXT NOT NULL,
    app_version TEXT NOT NULL,
    channel     TEXT NOT NULL,
    push_type   TEXT NOT NULL,
    pushed      BIGINT NOT NULL,
    sent        BIGINT NOT NULL,
    arrived     BIGINT NOT NULL,
    opened      BIGINT NOT NULL,
    ignored     BIGINT NOT NULL,
    expired     BIGINT NOT NULL,
    failed      BIGINT NOT NULL,
    PRIMARY KEY (app_id, granularity, task_id, bucket, platform, app_version, channel, push_type)
) WITHOUT ROWID;

INSERT INTO analytics_by_task
SELECT app_id, granularity, '', bucket, platform, app_version, channel, push_type,
       SUM(pushed), SUM(sent), SUM(arrived), SUM(opened), SUM(ignored), SUM(expired), SUM(failed)
FROM analytics GROUP BY app_id, granularity, bucket, platform, app_version, channel, push_type;

INSERT INTO analytics_by_task
SELECT app_id, 'task', task_id, bucket, platform, app_version, channel, push_type,
       pushed, sent, arrived, opened, ignored, expired, failed
FROM analytics WHERE granularity = 'minute' AND task_id <> '';

DROP TABLE analytics;
ALTER TABLE analytics_by_task RENAME TO analytics;
