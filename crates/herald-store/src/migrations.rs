//! The schema's migrations. Most are the same SQL for both backends (`migrations/common/`);
//! the rest are one backend's own: PostgreSQL's nonces table (a SQLite file serves one node,
//! which keeps nonces in memory), SQLite's rebuild of `broadcast_acks` without a rowid, and
//! the journal's sequence (a rowid on SQLite, an identity column on PostgreSQL).
//! A version number means the same change on both.

use crate::tx::Sql;

pub(crate) const SQLITE: &[(i64, &str)] = &[
    (1, include_str!("../migrations/common/0001_init.sql")),
    (2, include_str!("../migrations/sqlite/0002_leases.sql")),
    (3, include_str!("../migrations/common/0003_presence.sql")),
    (4, include_str!("../migrations/common/0004_templates.sql")),
    (5, include_str!("../migrations/common/0005_revoke.sql")),
    (6, include_str!("../migrations/common/0006_broadcasts.sql")),
    (7, include_str!("../migrations/common/0007_schedules.sql")),
    (8, include_str!("../migrations/sqlite/0008_broadcast_acks_compact.sql")),
    (9, include_str!("../migrations/common/0009_channels.sql")),
    (10, include_str!("../migrations/common/0010_vendor_recall.sql")),
    (11, include_str!("../migrations/common/0011_vendor_sends_by_app.sql")),
    (12, include_str!("../migrations/common/0012_ledger.sql")),
    (13, include_str!("../migrations/sqlite/0013_journal.sql")),
    (14, include_str!("../migrations/sqlite/0014_task_counts.sql")),
    (15, include_str!("../migrations/common/0015_task_list.sql")),
    (16, include_str!("../migrations/common/0016_device_list.sql")),
    (17, include_str!("../migrations/common/0017_key_last_used.sql")),
    (18, include_str!("../migrations/common/0018_console_sessions.sql")),
    (19, include_str!("../migrations/common/0019_app_workspace.sql")),
];

pub(crate) const POSTGRES: &[(i64, &str)] = &[
    (1, include_str!("../migrations/common/0001_init.sql")),
    (2, include_str!("../migrations/postgres/0002_cluster.sql")),
    (3, include_str!("../migrations/common/0003_presence.sql")),
    (4, include_str!("../migrations/common/0004_templates.sql")),
    (5, include_str!("../migrations/common/0005_revoke.sql")),
    (6, include_str!("../migrations/common/0006_broadcasts.sql")),
    (7, include_str!("../migrations/common/0007_schedules.sql")),
    (9, include_str!("../migrations/common/0009_channels.sql")),
    (10, include_str!("../migrations/common/0010_vendor_recall.sql")),
    (11, include_str!("../migrations/common/0011_vendor_sends_by_app.sql")),
    (12, include_str!("../migrations/common/0012_ledger.sql")),
    (13, include_str!("../migrations/postgres/0013_journal.sql")),
    (14, include_str!("../migrations/postgres/0014_task_counts.sql")),
    (15, include_str!("../migrations/common/0015_task_list.sql")),
    (16, include_str!("../migrations/common/0016_device_list.sql")),
    (17, include_str!("../migrations/common/0017_key_last_used.sql")),
    (18, include_str!("../migrations/common/0018_console_sessions.sql")),
    (19, include_str!("../migrations/common/0019_app_workspace.sql")),
];

/// Creates the table that records applied migrations (the same on both backends).
pub(crate) const CREATE_LEDGER: &str =
    "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)";

/// Whether a migration is applied: `$1` version.
pub(crate) static APPLIED: Sql = Sql::new("SELECT version FROM schema_migrations WHERE version = $1");

/// Records a migration as applied: `$1` version, `$2` time.
pub(crate) static RECORD: Sql = Sql::new("INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)");

#[cfg(test)]
mod tests {
    use herald_core::state::DeliveryStatus;

    /// The partial indexes over open deliveries name the open states by their stored form,
    /// as `herald_core::state` declares them (the statements that use the indexes do).
    #[test]
    fn the_schema_names_open_deliveries_as_the_states_do() {
        let open: Vec<String> =
            DeliveryStatus::ALL.iter().filter(|s| s.is_open()).map(|s| format!("'{}'", s.as_str())).collect();
        let predicate = format!("WHERE status IN ({})", open.join(", "));
        let init = include_str!("../migrations/common/0001_init.sql");
        assert_eq!(init.matches(&predicate).count(), 2, "{predicate}");
        assert_eq!(herald_core::delivery_status!(Pending, Sent), open.join(", "));
    }
}
