//! The SQL of scheduled pushes, shared by the backends (`?N` parameters; PostgreSQL gets
//! `$N` through [`super::broadcast_sql::pg`]).

pub const COLUMNS: &str = "unique_id, parent_id, app_id, push_type, delivery_type, template_name, title, content, \
     body, strategy_type, strategy, push_time, expires_ms, status, task_id, created_at";

pub const INSERT: &str = "INSERT INTO schedules (unique_id, parent_id, app_id, push_type, delivery_type, template_name, \
     title, content, body, strategy_type, strategy, push_time, expires_ms, status, task_id, created_at) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)";

/// ?1 now, ?2 limit: waiting schedules whose time has come, earliest first.
pub fn due() -> String {
    format!("SELECT {COLUMNS} FROM schedules WHERE status = 0 AND push_time <= ?1 ORDER BY push_time LIMIT ?2")
}

/// Claims a firing: ?1 id, ?2 the push_time it is due at, ?3 new status, ?4 task, ?5 new
/// push_time. Changes nothing (0 rows) when another node or an earlier run took it.
pub const CLAIM: &str = "UPDATE schedules SET status = ?3, task_id = COALESCE(?4, task_id), push_time = ?5 \
     WHERE unique_id = ?1 AND status = 0 AND push_time = ?2";

/// The record of one firing of a recurring parent: ?1 new id, ?2 parent, ?3 push time,
/// ?4 status, ?5 task, ?6 now.
pub const CHILD: &str = "INSERT INTO schedules (unique_id, parent_id, app_id, push_type, delivery_type, template_name, \
     title, content, body, strategy_type, strategy, push_time, expires_ms, status, task_id, created_at) \
     SELECT ?1, unique_id, app_id, push_type, delivery_type, template_name, title, content, body, strategy_type, \
     strategy, ?3, expires_ms, ?4, ?5, ?6 FROM schedules WHERE unique_id = ?2";

/// ?1 app, ?2 from, ?3 to (push time): the app's schedules, earliest first.
pub fn of_app() -> String {
    format!(
        "SELECT {COLUMNS} FROM schedules WHERE app_id = ?1 AND push_time >= ?2 AND push_time <= ?3 ORDER BY push_time, unique_id"
    )
}

/// ?1 app, ?2 id: a schedule and, for a parent, its firings.
pub fn family() -> String {
    format!(
        "SELECT {COLUMNS} FROM schedules WHERE app_id = ?1 AND (unique_id = ?2 OR parent_id = ?2) ORDER BY push_time, unique_id"
    )
}

pub const CANCEL: &str = "UPDATE schedules SET status = 2 WHERE app_id = ?1 AND unique_id = ?2 AND status = 0";
pub const STATUS: &str = "SELECT status FROM schedules WHERE app_id = ?1 AND unique_id = ?2";
pub const TEMPLATE_IN_USE: &str =
    "SELECT 1 FROM schedules WHERE app_id = ?1 AND template_name = ?2 AND status = 0 LIMIT 1";
