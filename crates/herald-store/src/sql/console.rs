//! Statements of app changes, console sessions and the cluster view.

use crate::tx::Sql;

/// $1 app, $2 new name or NULL, $3 new trust_client_bind or NULL, $4 new workspace_id or
/// NULL ('' clears it).
pub(crate) static UPDATE_APP: Sql = Sql::new(
    "UPDATE apps SET name = COALESCE($2, name), trust_client_bind = COALESCE($3, trust_client_bind), \
     workspace_id = NULLIF(COALESCE($4, workspace_id), '') WHERE app_id = $1",
);
pub(crate) static INSERT_SESSION: Sql =
    Sql::new("INSERT INTO console_sessions (id_hash, who, created_at, expires_at) VALUES ($1, $2, $3, $4)");
/// $1 now.
pub(crate) static DROP_EXPIRED_SESSIONS: Sql = Sql::new("DELETE FROM console_sessions WHERE expires_at <= $1");
/// $1 id hash, $2 now.
pub(crate) static SESSION: Sql = Sql::new(
    "SELECT id_hash, who, created_at, expires_at FROM console_sessions WHERE id_hash = $1 AND expires_at > $2",
);
pub(crate) static END_SESSION: Sql = Sql::new("DELETE FROM console_sessions WHERE id_hash = $1");
/// Device connections per node (the partial index `devices_online` holds exactly these).
pub(crate) static CONNECTIONS_PER_NODE: Sql = Sql::new(
    "SELECT online_node, COUNT(*) FROM devices WHERE online_node IS NOT NULL GROUP BY online_node ORDER BY online_node",
);
pub(crate) static LEASES: Sql = Sql::new("SELECT name, holder, expires_at FROM leases ORDER BY name");
