//! The kit of the behaviour suite (`herald-testkit`), and the store this build of the suite
//! runs on: every test starts its own node with [`start_server`] (in the test process) or,
//! where only a process shows it, [`start_process`].

pub use herald_testkit::*;

/// A node in the test process on this suite's store; `None` when that store is not
/// configured here (the test is skipped and says why).
pub async fn start_server() -> Option<TestServer> {
    TestServer::start(crate::BACKEND).await
}

/// A node as a `herald serve` process on this suite's store (kill -9, SIGTERM, restarts).
pub async fn start_process() -> Option<TestProcess> {
    TestProcess::start(herald_bin!(), crate::BACKEND).await
}

/// The tool named by `var` (a client of `tests/clients`, installed by `.ci/run`), or `None`
/// and a line saying the test is skipped when unset.
pub fn tool(var: &str) -> Option<std::path::PathBuf> {
    match std::env::var(var) {
        Ok(path) => Some(std::path::PathBuf::from(path)),
        Err(_) => {
            eprintln!("skipped: {var} is not set (.ci/run installs the clients of tests/clients)");
            None
        }
    }
}
