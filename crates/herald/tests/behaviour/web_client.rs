//! The web device client (`clients/web`) against the `herald` binary: its vitest suite in
//! Node (MQTT.js over WebSocket, fetch), and its demo page in headless Chromium (the client
//! in a real browser: IndexedDB, CORS on the device API, a notification shown, opened by a
//! click, withdrawn by a revoke). Needs `HERALD_TEST_WEB_CLIENT` naming `clients/web` with
//! its `node_modules` and `dist` (`npm ci && npm run build`, done by `.ci/run`); unset:
//! skipped, saying so. SQLite only: the store plays no part in what they check.

use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};

use crate::common::*;

fn web_client() -> Option<std::path::PathBuf> {
    if crate::BACKEND != Backend::Sqlite {
        return None;
    }
    tool("HERALD_TEST_WEB_CLIENT")
}

#[tokio::test]
async fn the_web_clients_vitest_suite_passes_against_the_binary() {
    let Some(dir) = web_client() else { return };
    let run = tokio::process::Command::new("npx")
        .args(["vitest", "run"])
        .current_dir(&dir)
        .env("HERALD_BIN", herald_bin!())
        .output();
    let out = tokio::time::timeout(Duration::from_secs(300), run).await.expect("the suite ends in time").unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "vitest failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("passed") && !stdout.contains("failed"), "{stdout}");
}

#[tokio::test]
async fn the_demo_page_receives_a_push_in_chromium_reports_it_opened_and_withdraws_it() {
    let Some(dir) = web_client() else { return };
    let Some(server) = start_process().await else { return };
    let Some(browser) = crate::browser::Browser::start(&server.http).await else { return };
    let app = server.create_app().await;
    // The demo's own server (another origin than Herald's: the device API answers CORS).
    let mut demo = tokio::process::Command::new("node")
        .arg("demo/serve.mjs")
        .current_dir(&dir)
        .env("PORT", "0")
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(demo.stdout.take().unwrap()).lines();
    let first = tokio::time::timeout(WAIT, lines.next_line()).await.unwrap().unwrap().unwrap();
    let page =
        first.split_whitespace().find(|w| w.starts_with("http://")).unwrap().split('?').next().unwrap().to_string();
    let http = format!("http://{}", server.http.trim_start_matches("http://").trim_end_matches('/'));
    let url = format!(
        "{page}?http={http}&mqtt={}/mqtt&app={}&key={}",
        http.replace("http://", "ws://"),
        app.app_id,
        app.app_key
    );
    browser.c.goto(&url).await.unwrap();
    browser.wait_text("#state", "online").await;
    let device_id = browser.text("#device-id").await;
    assert!(device_id.starts_with('d'), "{device_id}");

    let (_, message_id) = app.push_to_device(&device_id, "k-1", "In the browser").await;
    let item = format!("li[data-message-id=\"{message_id}\"]");
    assert_eq!(browser.text(&item).await, "In the browser: In the browser body");
    app.wait_status(&message_id, "delivered").await;
    browser.click(&item).await;
    app.wait_status(&message_id, "opened").await;

    let revoke = serde_json::json!({"messageId": "k-1", "targetId": device_id}).to_string();
    assert_eq!(app.signed("POST", "/v1/push/revoke", &revoke).await.status, 200);
    let deadline = tokio::time::Instant::now() + WAIT;
    while !browser.c.find_all(fantoccini::Locator::Css(&item)).await.unwrap().is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "the revoked notification is still shown");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The identity is the browser's own (IndexedDB): a reload keeps the device.
    browser.c.refresh().await.unwrap();
    browser.wait_text("#state", "online").await;
    assert_eq!(browser.text("#device-id").await, device_id);
}
