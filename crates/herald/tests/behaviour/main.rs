//! Behaviour tests through the real binary: HTTP on port 0, real MQTT clients, real SQLite.
//! `tests/behaviour_postgres.rs` runs the same modules against PostgreSQL.

/// This build of the suite runs on SQLite.
pub const ON_POSTGRES: bool = false;

mod common;

mod bad_input;
mod broadcast;
mod devices;
mod durability;
mod gateway;
mod openapi;
mod revoke;
mod schedules;
mod simple_push;
mod templates;
