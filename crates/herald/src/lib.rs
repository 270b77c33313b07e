//! Herald: a self-hosted mobile push service.
//!
//! The data flow, module by module:
//! - [`api`]: HTTP — signed server API `/v1`, device API `/device/v1`, admin `/admin/v1`;
//! - [`push`]: validation of push requests and the payload a device receives; [`template`]: `#name#` templates;
//! - [`dispatch`]: commit to the store, then hand to the connections of this node ([`dispatch::Hub`])
//!   and ring the nodes holding the others over the [`bus`] (NATS in a cluster);
//! - [`store`]: the truth ([`store::Store`]; SQLite with group commit, or PostgreSQL);
//! - [`gateway`]: MQTT 3.1.1 connections of devices (codec in the `herald-mqtt` crate);
//! - [`node`]: wiring of one node; [`config`]: typed configuration; [`cli`]: the `herald` command;
//! - [`bench`]: `herald bench`, the load generator behind docs/PERFORMANCE.md;
//! - [`ids`], [`error`], [`crypto`], [`metrics`], [`shutdown`], [`http_client`]: shared pieces.

pub mod api;
pub mod bench;
pub mod bus;
pub mod cli;
pub mod config;
pub mod crypto;
pub mod dispatch;
pub mod error;
pub mod gateway;
pub mod http_client;
pub mod ids;
pub mod metrics;
pub mod node;
pub mod push;
pub mod schedule;
pub mod shutdown;
pub mod store;
pub mod template;

/// Wall-clock time in Unix milliseconds.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}
