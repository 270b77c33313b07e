//! Herald's test kit, for the behaviour tests and the load generator.
//!
//! - [`TestServer`]: a node in the test process, on port 0, with a store of its own (many
//!   run at once); [`TestProcess`]: `herald serve` as a process, for what needs one (kill -9,
//!   SIGTERM, restarts, the CLI);
//! - [`Cluster`]: nodes sharing a PostgreSQL schema and a NATS;
//! - [`TestApp`] and [`Creds`]: the signed API and the device API, one method per call;
//!   [`TestDevice`]: a real MQTT client (rumqttc) connected as a device;
//! - [`ScratchSchema`]: a PostgreSQL schema made for one test and dropped after it;
//! - [`soak`]: pushes while the node is killed and restarted, and the ledger of what arrived.
//!
//! PostgreSQL and NATS are named by `HERALD_TEST_POSTGRES_URL` and `HERALD_TEST_NATS_URL`:
//! unset, a test that needs them says it is skipped and returns; set and the service down,
//! it fails.

mod client;
mod cluster;
mod device;
pub mod fakes;
mod logs;
mod node;
mod process;
pub mod proxy;
mod receiver;
mod services;
pub mod soak;

use std::time::Duration;

pub use client::{Creds, Endpoint, TestApp};
pub use cluster::{Cluster, ClusterNode, ClusterOptions, NATS_URL};
pub use device::{Seen, TestDevice, publish_event};
pub use herald_store::scratch::{ScratchSchema, TEST_POSTGRES_URL};
pub use logs::Log;
pub use node::TestServer;
pub use process::TestProcess;
pub use proxy::TcpProxy;
pub use receiver::{Delivery, Receiver};
pub use services::{TestNats, TestPostgres};

/// How long a test waits for anything before it fails.
pub const WAIT: Duration = Duration::from_secs(10);
/// The admin token of every node the kit starts.
pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789";

/// The store a node runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    /// A fresh schema of the database of `HERALD_TEST_POSTGRES_URL`.
    Postgres,
}

/// The path of the `herald` binary, for [`TestProcess`]: only the tests of the crate that
/// builds it know it (`CARGO_BIN_EXE_herald`), so they name it.
#[macro_export]
macro_rules! herald_bin {
    () => {
        std::path::Path::new(env!("CARGO_BIN_EXE_herald"))
    };
}

/// Polls `check` until it returns `Some`, or panics after [`WAIT`] with `what`.
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}
