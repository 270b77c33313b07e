//! The Java device client (`clients/java`) against the `herald` binary: its JUnit 5 suite
//! (built with `javac --release 8`, run with Debian's JUnit platform console), started here
//! so that `cargo test` runs it. Needs `HERALD_TEST_JUNIT` (set by `.ci/run`); unset:
//! skipped, saying so. SQLite only: the store plays no part in what it checks.

use std::time::Duration;

use crate::common::*;

#[tokio::test]
async fn the_java_clients_junit_suite_passes_against_the_binary() {
    if crate::BACKEND != Backend::Sqlite {
        return;
    }
    let Some(junit) = tool("HERALD_TEST_JUNIT") else { return };
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../clients/java/test.sh");
    let run = tokio::process::Command::new("bash")
        .arg(&script)
        .env("HERALD_BIN", herald_bin!())
        .env("JUNIT_JAR", junit)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(300), run).await.expect("the suite ends in time").unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "clients/java/test.sh failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains(" 0 tests failed") && !stdout.contains(" 0 tests successful"), "{stdout}");
}
