//! Receipt webhooks through the real binary and a real HTTP receiver: signatures that the
//! documented recipe (docs/examples/verify_receipt.py) verifies, batches, a receiver that
//! fails and recovers, a dead one given up and replayed, kill -9 with receipts waiting.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::{Value, json};

use crate::common::*;

/// Quick batches, retries and counting, for tests.
fn quick(cfg: &mut herald::config::Config) {
    cfg.analytics.flush_ms = 100;
    cfg.receipts.batch_size = 3;
    cfg.receipts.batch_delay_ms = 300;
    cfg.receipts.backoff_ms = 50;
    cfg.receipts.max_backoff_secs = 1;
}

/// Sets the app's webhook; its secret.
async fn webhook(app: &TestApp, url: &str) -> String {
    let r = app.signed("PUT", "/v1/receipts", &json!({"url": url}).to_string()).await;
    assert_eq!(r.status, 200, "{:?}", r.json());
    let secret = r.json()["resultContent"]["data"]["secret"].as_str().unwrap().to_owned();
    let again = app.signed("GET", "/v1/receipts", "").await.json();
    assert_eq!(again["resultContent"]["data"]["secret"], "********", "shown once");
    secret
}

/// Waits until the receiver accepted `n` receipts.
async fn accepted(receiver: &Receiver, n: usize) -> Vec<Value> {
    eventually(&format!("{n} receipts accepted"), || async {
        let got = receiver.accepted();
        (got.len() >= n).then_some(got)
    })
    .await
}

/// The docs' Python recipe verifies the request.
fn verifies(secret: &str, d: &Delivery) -> bool {
    use std::io::Write;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/examples/verify_receipt.py");
    let mut child = std::process::Command::new("python3")
        .args([script, secret, &d.timestamp, &d.signature])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .expect("python3 runs");
    child.stdin.take().unwrap().write_all(&d.body).unwrap();
    child.wait().unwrap().success()
}

/// Each (messageId, status) once, and per message in the order of its life.
fn once_in_order(receipts: &[Value]) {
    let mut seen: HashMap<(String, String), usize> = HashMap::new();
    let mut last: HashMap<String, usize> = HashMap::new();
    let rank = |s: &str| ["sent", "delivered", "opened", "ignored", "expired"].iter().position(|x| *x == s).unwrap();
    for r in receipts {
        let (m, s) = (r["messageId"].as_str().unwrap().to_owned(), r["status"].as_str().unwrap().to_owned());
        *seen.entry((m.clone(), s.clone())).or_default() += 1;
        let before = last.insert(m.clone(), rank(&s)).unwrap_or(0);
        assert!(rank(&s) >= before, "{m}: {s} after a later status");
    }
    assert!(seen.values().all(|n| *n == 1), "a receipt twice: {seen:?}");
}

#[tokio::test]
async fn receipts_are_signed_batched_and_survive_a_failing_receiver_exactly_once() {
    let receiver = Receiver::start(5).await;
    let Some(server) = TestServer::start_with(crate::BACKEND, quick).await else { return };
    let app = server.create_app().await;
    let secret = webhook(&app, receiver.url()).await;
    let creds = app.register("i1").await;
    let device = TestDevice::connect(&creds).await;
    let mut ids = Vec::new();
    for i in 0..4 {
        let (_, m) = app.push_to_device(&creds.device_id, &format!("k{i}"), "hello").await;
        app.wait_status(&m, "delivered").await;
        ids.push(m);
    }
    for m in &ids[..2] {
        publish_event(&device, &creds.device_id, json!({"messageId": m, "event": "opened"})).await;
        publish_event(&device, &creds.device_id, json!({"messageId": m, "event": "opened"})).await;
    }
    let got = accepted(&receiver, 6).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    let got_later = receiver.accepted();
    assert_eq!(got_later.len(), 6, "nothing more: {got_later:?}");
    once_in_order(&got);
    let all = receiver.deliveries();
    assert!(all.iter().filter(|d| !d.accepted).count() >= 5, "the first five were refused");
    for d in &all {
        assert!(d.receipts().len() <= 3, "a batch holds at most batch_size");
        assert!(verifies(&secret, d), "the documented recipe verifies {d:?}");
        assert!(!verifies("another secret", d), "and only with the app's secret");
    }
    let r = &got[0];
    assert_eq!((r["messageId"].as_str(), r["status"].as_str()), (Some(ids[0].as_str()), Some("delivered")));
    assert_eq!((r["msgKey"].as_str(), r["channel"].as_str()), (Some("k0"), Some("own")));
    assert_eq!(r["deviceId"], creds.device_id.as_str());
    assert_eq!(r["target"], creds.device_id.as_str());
    assert!(r["taskId"].as_str().is_some_and(|t| !t.is_empty()) && r["at"].as_i64().is_some());
    let view = app.signed("GET", "/v1/receipts", "").await.json();
    let health = &view["resultContent"]["data"]["health"];
    assert!(health["lastSuccess"].as_i64().is_some() && health["lastError"] == "HTTP 503", "{health}");
    assert_eq!(view["resultContent"]["data"]["waiting"], 0);
    let metrics = server.call("GET", "/metrics", &[], bytes::Bytes::new()).await;
    let text = String::from_utf8_lossy(&metrics.body).into_owned();
    assert!(text.contains("\nherald_receipts_posted_total 6\n"), "{text}");
    let failed = text.lines().find_map(|l| l.strip_prefix("herald_receipt_posts_failed_total ")).unwrap();
    assert!(failed.parse::<u64>().unwrap() >= 5, "{text}");
}

#[tokio::test]
async fn a_dead_receiver_is_given_up_listed_and_replayed() {
    let receiver = Receiver::start(0).await;
    receiver.set_down(true);
    let Some(server) = TestServer::start_with(crate::BACKEND, |cfg| {
        quick(cfg);
        cfg.receipts.max_age_secs = 1;
    })
    .await
    else {
        return;
    };
    let app = server.create_app().await;
    webhook(&app, receiver.url()).await;
    let creds = app.register("i1").await;
    let _device = TestDevice::connect(&creds).await;
    for i in 0..2 {
        let (_, m) = app.push_to_device(&creds.device_id, &format!("k{i}"), "hello").await;
        app.wait_status(&m, "delivered").await;
    }
    let failures = eventually("two receipts given up", || async {
        let f = app.signed("GET", "/v1/receipts/failures", "").await.json();
        (f["resultContent"]["data"]["totalCount"] == 2).then_some(f)
    })
    .await;
    let list = failures["resultContent"]["data"]["list"].as_array().unwrap().clone();
    assert!(list[0]["reason"].as_str().unwrap().contains("HTTP 503"), "{list:?}");
    assert_eq!(list[0]["receipt"]["status"], "delivered");
    assert!(receiver.accepted().is_empty() && !receiver.deliveries().is_empty());
    receiver.set_down(false);
    let first = list[0]["id"].as_i64().unwrap();
    let r = app.signed("POST", "/v1/receipts/replay", &json!({"ids": [first]}).to_string()).await.json();
    assert_eq!(r["resultContent"]["data"]["replayed"], 1);
    assert_eq!(accepted(&receiver, 1).await[0], list[0]["receipt"]);
    let r = app.signed("POST", "/v1/receipts/replay", "{}").await.json();
    assert_eq!(r["resultContent"]["data"]["replayed"], 1);
    let got = accepted(&receiver, 2).await;
    assert_eq!(got[1], list[1]["receipt"]);
    let f = app.signed("GET", "/v1/receipts/failures", "").await.json();
    assert_eq!(f["resultContent"]["data"]["totalCount"], 0);
}

#[tokio::test]
async fn webhook_settings_are_checked_and_rotated() {
    let Some(server) = start_server().await else { return };
    let app = server.create_app().await;
    let r = app.signed("GET", "/v1/receipts", "").await;
    assert_eq!((r.status, r.json()["resultCode"].as_str()), (404, Some("WEBHOOK_NOT_CONFIGURED")));
    for bad in [
        json!({"url": "ftp://x/"}),
        json!({"enabled": true}),
        json!({"url": "https://e.com/".to_owned() + &"a".repeat(3000)}),
    ] {
        let r = app.signed("PUT", "/v1/receipts", &bad.to_string()).await;
        assert_eq!((r.status, r.json()["resultCode"].as_str()), (400, Some("WEBHOOK_URL_INVALID")), "{bad}");
    }
    let r = app.signed("PUT", "/v1/receipts", &json!({"url": "https://e.com/", "colour": 1}).to_string()).await;
    assert_eq!(r.json()["resultCode"], "INVALID_PARAM");
    let first = webhook(&app, "https://e.com/hook").await;
    let off = app.signed("PUT", "/v1/receipts", &json!({"enabled": false}).to_string()).await.json();
    let data = &off["resultContent"]["data"];
    assert_eq!(
        (data["enabled"].as_bool(), data["url"].as_str(), data["secret"].as_str()),
        (Some(false), Some("https://e.com/hook"), Some("********"))
    );
    let rotated = app.signed("PUT", "/v1/receipts", &json!({"rotateSecret": true}).to_string()).await.json();
    let second = rotated["resultContent"]["data"]["secret"].as_str().unwrap();
    assert!(second != first && second.len() >= 32);
    // The operator sees and sets the same through the admin API.
    let a = server.admin("GET", &format!("/admin/v1/apps/{}/receipts", app.app_id), Value::Null).await;
    assert_eq!(a.json()["data"]["url"], "https://e.com/hook");
    let a = server.admin("PUT", &format!("/admin/v1/apps/{}/receipts", app.app_id), json!({"enabled": true})).await;
    assert_eq!(a.json()["data"]["enabled"], true);
}

#[tokio::test]
async fn receipts_waiting_in_the_outbox_survive_kill_9() {
    let receiver = Receiver::start(0).await;
    receiver.set_down(true);
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("herald.toml");
    std::fs::write(
        &config,
        "[analytics]\nflush_ms = 100\n[receipts]\nbatch_delay_ms = 100\nbackoff_ms = 50\nmax_backoff_secs = 1\n",
    )
    .unwrap();
    let Some(mut server) =
        TestProcess::start_with(herald_bin!(), crate::BACKEND, &["--config", config.to_str().unwrap()]).await
    else {
        return;
    };
    let app = server.create_app().await;
    webhook(&app, receiver.url()).await;
    let creds = app.register("i1").await;
    let device = TestDevice::connect(&creds).await;
    let mut ids = Vec::new();
    for i in 0..3 {
        let (_, m) = app.push_to_device(&creds.device_id, &format!("k{i}"), "hello").await;
        app.wait_status(&m, "delivered").await;
        ids.push(m);
    }
    eventually("three receipts waiting", || async {
        let v = app.signed("GET", "/v1/receipts", "").await.json();
        (v["resultContent"]["data"]["waiting"] == 3).then_some(())
    })
    .await;
    device.stop();
    server.kill9();
    receiver.set_down(false);
    let server = server.restart().await;
    let _app = app.via(&server);
    let got = accepted(&receiver, 3).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(receiver.accepted().len(), 3);
    once_in_order(&got);
    let mut delivered: Vec<String> = got.iter().map(|r| r["messageId"].as_str().unwrap().to_owned()).collect();
    delivered.sort();
    ids.sort();
    assert_eq!(delivered, ids);
}

#[tokio::test]
async fn the_cli_sets_and_shows_the_webhook() {
    let Some(server) = start_process().await else { return };
    let app = server.create_app().await;
    let run = |args: &[&str]| {
        let out = std::process::Command::new(herald_bin!())
            .arg("receipts")
            .args(args)
            .args(["--app", &app.app_id, "--server", &format!("http://{}", server.http)])
            .env("HERALD_ADMIN_TOKEN", ADMIN_TOKEN)
            .output()
            .unwrap();
        let json: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        (out.status.success(), json, String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let (ok, set, err) = run(&["set", "--url", "https://hooks.example.com/herald"]);
    assert!(ok, "{err} {set}");
    let secret = set["data"]["secret"].as_str().unwrap().to_owned();
    assert!(secret.len() >= 32 && secret != "********", "{set}");
    let (ok, off, _) = run(&["set", "--disable"]);
    assert!(ok && off["data"]["enabled"] == false && off["data"]["secret"] == "********", "{off}");
    let (ok, shown, _) = run(&["get"]);
    assert!(ok && shown["data"]["url"] == "https://hooks.example.com/herald" && shown["data"]["enabled"] == false);
    let (ok, refused, err) = run(&["set", "--url", "ftp://nope"]);
    assert!(!ok && err.contains("400") && refused["resultCode"] == "WEBHOOK_URL_INVALID", "{err} {refused}");
}
