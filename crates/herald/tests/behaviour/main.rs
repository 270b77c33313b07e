//! Behaviour tests through the public API: nodes on port 0 in the test process (processes
//! where a test kills or signals one), real MQTT clients, real SQLite.
//! `tests/behaviour_postgres.rs` runs the same modules against PostgreSQL.

/// This build of the suite runs on SQLite.
pub const BACKEND: herald_testkit::Backend = herald_testkit::Backend::Sqlite;

mod common;

mod analytics;
mod bad_input;
mod broadcast;
mod browser;
mod client;
mod console;
mod devices;
mod durability;
mod flow_control;
mod gateway;
mod http_limits;
mod java_client;
mod mps_compat;
mod mqtt5;
mod openapi;
mod receipts;
mod revoke;
mod schedules;
mod simple_push;
mod templates;
mod tls;
mod vendor_receipts;
mod vendors;
mod web_client;
mod websocket;
