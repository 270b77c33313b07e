//! Analytics against ground truth, through the real binary: a known mix of pushes (devices
//! online and offline, one expiring, opened and ignored, Android and iOS, two app versions,
//! the own channel and APNs, Simple, Template, Multiple and Broadcast) and every counter,
//! rate and filter checked against it, per minute and rolled up to hours and days.

use serde_json::{Value, json};

use crate::common::fakes::{self, FakeVendor, TestCa, Vendor};
use crate::common::*;

/// A node whose APNs is a fake, counting every 100 ms and expiring every second.
async fn node(ca: &TestCa, apns: &FakeVendor) -> Option<(TestProcess, tempfile::TempDir)> {
    let dir = tempfile::tempdir().unwrap();
    let ca_file = ca.write_pem(dir.path());
    let text = format!(
        "[channels]\nca_file = {:?}\npoll_ms = 200\napns_url = {:?}\napns_sandbox_url = {:?}\n\
         [analytics]\nflush_ms = 100\n[store]\nexpiry_sweep_secs = 1\n",
        ca_file.to_str().unwrap(),
        apns.url(),
        apns.url()
    );
    let config = dir.path().join("herald.toml");
    std::fs::write(&config, text).unwrap();
    let p = TestProcess::start_with(herald_bin!(), crate::BACKEND, &["--config", config.to_str().unwrap()]).await?;
    Some((p, dir))
}

async fn device(app: &TestApp, install: &str, platform: &str, version: &str, tokens: Value) -> Creds {
    let body = json!({"platform": platform, "installId": install, "appVersion": version, "vendorTokens": tokens});
    let r = app.register_raw(body).await;
    assert_eq!(r.status, 200, "{:?}", r.json());
    let j = r.json();
    Creds {
        app_id: app.app_id.clone(),
        device_id: j["deviceId"].as_str().unwrap().to_string(),
        token: j["deviceToken"].as_str().unwrap().to_string(),
        mqtt: app.mqtt.clone(),
        http: app.http.clone(),
    }
}

async fn ok(app: &TestApp, path: &str, body: Value) -> Value {
    let r = app.signed("POST", path, &body.to_string()).await;
    assert_eq!(r.status, 200, "{path}: {:?}", r.json());
    r.json()
}

/// The message id of the task's message to `target`.
async fn message(app: &TestApp, task: &str, target: &Creds) -> String {
    let t = app.task(task).await.json();
    let targets = t["resultContent"]["data"]["targets"].as_array().unwrap().clone();
    let m = targets.iter().find(|t| t["target"] == target.device_id.as_str()).expect("a message to the target");
    m["messageId"].as_str().unwrap().to_owned()
}

fn counts(data: &Value) -> [i64; 7] {
    ["pushTotalNum", "pushNum", "arrivalNum", "openNum", "ignoreNum", "expiredNum", "failedNum"]
        .map(|k| data[k].as_i64().unwrap_or_else(|| panic!("{k} in {data}")))
}

#[tokio::test]
async fn every_counter_and_rate_matches_a_known_mix_of_pushes() {
    let ca = TestCa::new();
    let (channel, expect) = fakes::apns_token_channel("sandbox");
    let apns = FakeVendor::start(Vendor::Apns, &ca, expect, false).await;
    let Some((server, _dir)) = node(&ca, &apns).await else { return };
    let app = server.create_app().await;
    let r = app.signed("PUT", "/v1/channels/apns", &channel.to_string()).await;
    assert_eq!(r.status, 200, "{:?}", r.json());
    let start = herald_core::now_ms();
    let a1 = device(&app, "a1", "android", "1.0", json!({})).await;
    let a2 = device(&app, "a2", "android", "2.0", json!({})).await;
    let i1 = device(&app, "i1", "ios", "1.0", json!({"apns": "ab".repeat(32)})).await;
    let i2 = device(&app, "i2", "ios", "2.0", json!({})).await;
    let (d1, d2) = (TestDevice::connect(&a1).await, TestDevice::connect(&a2).await);
    ok(&app, "/v1/templates", json!({"templateName": "t", "title": "Hi #who#", "content": "#what#"})).await;
    let simple = |d: &Creds, key: &str, ttl: u32| {
        json!({"deliveryType": 1, "targetMsgkey": {d.device_id.clone(): key}, "title": "T", "content": "C",
            "expiredSeconds": ttl})
    };
    // Simple to a1 (opened) and a2 (ignored); one to i2 that never connects (expires).
    let s1 = ok(&app, "/v1/push/simple", simple(&a1, "s1", 300)).await;
    let s2 = ok(&app, "/v1/push/simple", simple(&a2, "s2", 300)).await;
    let mut e = simple(&i2, "e", 1);
    e["deliveryType"] = json!(2);
    ok(&app, "/v1/push/simple", e).await;
    // Template to i1 through APNs: it reports arrival, then opens it.
    let t1 = ok(
        &app,
        "/v1/push/template",
        json!({"deliveryType": 2, "templateName": "t", "templateKeyValue": {"who": "i", "what": "w"},
            "targetMsgkey": {i1.device_id.clone(): "t1"}, "expiredSeconds": 300}),
    )
    .await;
    // Multiple to a1 (opened) and a2.
    let multi = ok(
        &app,
        "/v1/push/multiple",
        json!({"deliveryType": 1, "templateName": "t", "expiredSeconds": 300, "targetMsg": [
            {"target": a1.device_id, "msgKey": "m1", "templateKeyValue": {"who": "1", "what": "x"}},
            {"target": a2.device_id, "msgKey": "m2", "templateKeyValue": {"who": "2", "what": "y"}}]}),
    )
    .await;
    // Broadcast to Android: a1 and a2, both connected.
    let b = ok(
        &app,
        "/v1/push/broadcast",
        json!({"deliveryType": 1, "templateName": "t", "templateKeyValue": {"who": "all", "what": "z"},
            "msgkey": "b", "pushStatus": 1, "expiredSeconds": 300}),
    )
    .await;
    let task = |j: &Value| j["pushResult"]["data"].as_str().unwrap().to_owned();
    let (s1m, s2m, t1m) = (
        message(&app, &task(&s1), &a1).await,
        message(&app, &task(&s2), &a2).await,
        message(&app, &task(&t1), &i1).await,
    );
    let (m1, m2) = (message(&app, &task(&multi), &a1).await, message(&app, &task(&multi), &a2).await);
    for m in [&s1m, &s2m, &m1, &m2] {
        app.wait_status(m, "delivered").await;
    }
    publish_event(&d1, &a1.device_id, json!({"messageId": s1m, "event": "opened"})).await;
    publish_event(&d2, &a2.device_id, json!({"messageId": s2m, "event": "ignored"})).await;
    publish_event(&d1, &a1.device_id, json!({"messageId": m1, "event": "opened"})).await;
    // a2 reporting a1's message changes nothing.
    publish_event(&d2, &a2.device_id, json!({"messageId": s1m, "event": "ignored"})).await;
    let vendor = eventually("APNs took t1", || async { (apns.received_count() >= 1).then_some(()) });
    vendor.await;
    app.wait_status(&t1m, "sent").await;
    for event in ["arrived", "opened", "opened"] {
        let r = i1.device_call("/device/v1/events", json!([{"messageId": t1m, "event": event}])).await;
        assert_eq!(r.status, 200, "{:?}", r.json());
    }

    // pushed: s1 s2 e t1 m1 m2 + 2 broadcast = 8; sent/arrived: all but e = 7; opened s1 t1
    // m1; ignored s2; expired e.
    let end = herald_core::now_ms() + 120_000;
    let core = |filters: &'static str| {
        let app = &app;
        async move {
            let q = format!("/v1/analytics/core?startTime={}&endTime={end}{filters}", start - 120_000);
            let j = app.signed("GET", &q, "").await.json();
            j["resultContent"]["data"].clone()
        }
    };
    let all = eventually("every change counted", || async {
        let d = core("").await;
        (counts(&d) == [8, 7, 7, 3, 1, 1, 0]).then_some(d)
    })
    .await;
    assert_eq!((all["openRate"].as_f64(), all["ignoreRate"].as_f64()), (Some(0.4286), Some(0.1429)));
    assert_eq!(counts(&core("&platform=IOS").await), [2, 1, 1, 1, 0, 1, 0]);
    assert_eq!(counts(&core("&platform=android").await), [6, 6, 6, 2, 1, 0, 0]);
    assert_eq!(counts(&core("&channel=apns").await), [1, 1, 1, 1, 0, 0, 0]);
    assert_eq!(counts(&core("&channel=ANDROID").await), [7, 6, 6, 2, 1, 1, 0], "own channel (MPS name)");
    assert_eq!(counts(&core("&pushType=broadcast").await), [2, 2, 2, 0, 0, 0, 0]);
    assert_eq!(counts(&core("&type=MULTIPLE").await), [2, 2, 2, 1, 0, 0, 0]);
    assert_eq!(counts(&core("&pushType=template").await), [1, 1, 1, 1, 0, 0, 0]);
    assert_eq!(counts(&core("&pushType=simple").await), [3, 2, 2, 1, 1, 1, 0]);
    let by_task = format!("&taskId={}", task(&multi));
    let q = format!("/v1/analytics/core?startTime={}&endTime={end}{by_task}", start - 120_000);
    assert_eq!(counts(&app.signed("GET", &q, "").await.json()["resultContent"]["data"]), [2, 2, 2, 1, 0, 0, 0]);

    // The series of each granularity add up to the totals.
    for g in ["minute", "hour", "day"] {
        let from = start - 86_400_000;
        let q = format!("/v1/analytics/series?granularity={g}&startTime={from}&endTime={end}");
        let s = app.signed("GET", &q, "").await.json();
        let list = s["resultContent"]["data"].as_array().unwrap().clone();
        let sum = |k: &str| list.iter().map(|p| p[k].as_i64().unwrap()).sum::<i64>();
        let sums = ["pushNum", "sentNum", "arrivalNum", "openNum", "ignoreNum", "expiredNum", "failedNum"].map(sum);
        assert_eq!(sums, [8, 7, 7, 3, 1, 1, 0], "{g}: {list:?}");
        assert!(list.windows(2).all(|w| w[0]["time"].as_i64() < w[1]["time"].as_i64()));
    }

    // Tasks: the Multiple and the Broadcast (MPS's task analytics; `analytics.task_counts`),
    // and the Multiple one in detail. A Simple task has no counters of its own: asking for
    // them says so instead of answering zeros.
    let q = format!("/v1/analytics/tasks?startTime={}&endTime={end}", start - 120_000);
    let tasks = app.signed("GET", &q, "").await.json();
    assert_eq!(tasks["resultContent"]["data"]["totalCount"], 2, "{tasks}");
    let types: Vec<&str> = tasks["resultContent"]["data"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["type"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["broadcast", "multiple"], "newest first");
    let by_simple = format!("/v1/analytics/core?startTime={}&endTime={end}&taskId={}", start - 120_000, task(&s1));
    for q in [by_simple, format!("/v1/analytics/tasks/{}", task(&t1))] {
        let r = app.signed("GET", &q, "").await;
        assert_eq!((r.status, r.json()["resultCode"].as_str()), (404, Some("TASK_NOT_COUNTED")), "{q}");
    }
    let none = app.signed("GET", "/v1/analytics/tasks/t0000000000000000000000000", "").await;
    assert_eq!(none.json()["resultCode"], "TASK_NOT_EXIST");
    for t in tasks["resultContent"]["data"]["list"].as_array().unwrap() {
        // Whole days in a list: the task's last day with a count ends after now.
        assert!(t["endTime"].as_i64().unwrap() > herald_core::now_ms(), "{t}");
        assert_eq!(t["endTime"].as_i64().unwrap() % 86_400_000, 0, "{t}");
    }
    let detail = app.signed("GET", &format!("/v1/analytics/tasks/{}", task(&multi)), "").await.json();
    let d = &detail["resultContent"]["data"];
    assert_eq!(
        (d["pushNum"].as_i64(), d["pushSuccessNum"].as_i64(), d["pushArrivalNum"].as_i64()),
        (Some(2), Some(2), Some(2))
    );
    assert_eq!(d["type"], "multiple");
    assert!(d["endTime"].as_i64().unwrap() > d["startTime"].as_i64().unwrap());
    let b_detail = app.signed("GET", &format!("/v1/analytics/tasks/{}", task(&b)), "").await.json();
    assert_eq!(b_detail["resultContent"]["data"]["pushNum"], 2);

    // Spans: too long, reversed, missing, an unknown filter.
    for q in [
        format!("startTime=0&endTime={}", 91 * 86_400_000i64),
        "startTime=10&endTime=5".to_owned(),
        "endTime=5".to_owned(),
        format!("startTime={start}&endTime={end}&channel=OPPO"),
    ] {
        let r = app.signed("GET", &format!("/v1/analytics/core?{q}"), "").await;
        assert_eq!((r.status, r.json()["resultCode"].as_str()), (400, Some("ANALYTICS_SPAN_INVALID")), "{q}");
    }
}
