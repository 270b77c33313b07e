//! The behaviour suite of `tests/behaviour/` again, with every server on the PostgreSQL store
//! (each in a schema of its own in the database of `HERALD_TEST_POSTGRES_URL`). Without that
//! variable every test prints that it was skipped; with it set and PostgreSQL down, they fail.

/// This build of the suite runs on PostgreSQL.
pub const BACKEND: herald_testkit::Backend = herald_testkit::Backend::Postgres;

#[path = "behaviour/common.rs"]
mod common;

#[path = "behaviour/analytics.rs"]
mod analytics;
#[path = "behaviour/bad_input.rs"]
mod bad_input;
#[path = "behaviour/broadcast.rs"]
mod broadcast;
#[path = "behaviour/devices.rs"]
mod devices;
#[path = "behaviour/durability.rs"]
mod durability;
#[path = "behaviour/flow_control.rs"]
mod flow_control;
#[path = "behaviour/gateway.rs"]
mod gateway;
#[path = "behaviour/http_limits.rs"]
mod http_limits;
#[path = "behaviour/mps_compat.rs"]
mod mps_compat;
#[path = "behaviour/openapi.rs"]
mod openapi;
#[path = "behaviour/receipts.rs"]
mod receipts;
#[path = "behaviour/revoke.rs"]
mod revoke;
#[path = "behaviour/schedules.rs"]
mod schedules;
#[path = "behaviour/simple_push.rs"]
mod simple_push;
#[path = "behaviour/templates.rs"]
mod templates;
#[path = "behaviour/vendor_receipts.rs"]
mod vendor_receipts;
#[path = "behaviour/vendors.rs"]
mod vendors;
