//! Vendor channels end to end through the real binary: each fake vendor (herald-testkit's
//! `fakes`) on port 0 behind a test CA that the node trusts through `channels.ca_file`.

use std::time::Duration;

use serde_json::{Value, json};

use crate::common::fakes::{self, Expect, FakeVendor, Scripted, TestCa, Vendor};
use crate::common::*;

/// A node on this suite's store whose vendor endpoints are the fakes (and other `[channels]`
/// keys as given), and the directory of its configuration; `None` when that store is not
/// configured here.
async fn node(
    ca: &TestCa,
    apns: Option<&FakeVendor>,
    others: &[(&str, String)],
) -> Option<(TestProcess, tempfile::TempDir)> {
    let dir = tempfile::tempdir().unwrap();
    let ca_file = ca.write_pem(dir.path());
    let mut text = format!("[channels]\nca_file = {:?}\npoll_ms = 200\n", ca_file.to_str().unwrap());
    if let Some(a) = apns {
        text.push_str(&format!("apns_url = {:?}\napns_sandbox_url = {:?}\n", a.url(), a.url()));
    }
    for (key, value) in others {
        match value.parse::<u64>() {
            Ok(n) => text.push_str(&format!("{key} = {n}\n")),
            Err(_) => text.push_str(&format!("{key} = {value:?}\n")),
        }
    }
    let config = dir.path().join("herald.toml");
    std::fs::write(&config, text).unwrap();
    let p = TestProcess::start_with(herald_bin!(), crate::BACKEND, &["--config", config.to_str().unwrap()]).await?;
    Some((p, dir))
}

async fn register(app: &TestApp, install: &str, platform: &str, tokens: Value) -> Creds {
    let r = app.register_raw(json!({"platform": platform, "installId": install, "vendorTokens": tokens})).await;
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

async fn push(app: &TestApp, creds: &Creds, delivery_type: u8, key: &str, extra: Value) -> String {
    let mut body = json!({"deliveryType": delivery_type, "targetMsgkey": {creds.device_id.clone(): key},
        "title": "Hello", "content": "World", "expiredSeconds": 300, "extendedParams": {"orderId": "7"}});
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    let r = app.push_simple(body).await;
    assert_eq!(r.status, 200, "{:?}", r.json());
    let task = r.json()["pushResult"]["data"].as_str().unwrap().to_string();
    let t = app.task(&task).await.json();
    t["resultContent"]["data"]["targets"][0]["messageId"].as_str().unwrap().to_string()
}

async fn apns_channel(app: &TestApp, body: &Value) {
    let r = app.signed("PUT", "/v1/channels/apns", &body.to_string()).await;
    assert_eq!(r.status, 200, "{:?}", r.json());
    let data = &r.json()["resultContent"]["data"];
    assert_eq!(data["settings"]["privateKey"], "********", "the key is never shown");
    let pem = body["privateKey"].as_str().unwrap().as_bytes();
    assert!(!r.body.windows(10).any(|w| w == &pem[30..40]), "no part of the key in the answer");
}

/// A fake APNs that checks the app's key, a node that trusts it, and an app with the
/// token-auth channel set.
async fn apns_node() -> Option<(FakeVendor, TestProcess, TestApp, tempfile::TempDir)> {
    let ca = TestCa::new();
    let (body, expect) = fakes::apns_token_channel("sandbox");
    let apns = FakeVendor::start(Vendor::Apns, &ca, expect, false).await;
    let (server, dir) = node(&ca, Some(&apns), &[]).await?;
    let app = server.create_app().await;
    apns_channel(&app, &body).await;
    Some((apns, server, app, dir))
}

#[tokio::test]
async fn apns_carries_to_an_ios_device_that_is_not_connected_and_mqtt_to_one_that_is() {
    let Some((apns, server, app, _dir)) = apns_node().await else { return };

    let away = register(&app, "i1", "ios", json!({"apns": "ab".repeat(32)})).await;
    let mid = push(&app, &away, 2, "k1", json!({})).await;
    let send = wait_vendor(&app, &mid, "sent").await;
    assert_eq!(send["channel"], "apns");
    assert!(send["vendorId"].as_str().unwrap().starts_with("00000000-"), "{send}");
    let got = apns.received();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].path, format!("/3/device/{}", "ab".repeat(32)));
    let body = got[0].json();
    assert_eq!(body["aps"]["alert"], json!({"title": "Hello", "body": "World"}));
    assert_eq!((body["orderId"].clone(), body["herald"]["messageId"].clone()), (json!("7"), json!(mid)));
    assert_eq!(got[0].header("apns-push-type"), Some("alert"));
    let expiration: i64 = got[0].header("apns-expiration").unwrap().parse().unwrap();
    assert!((expiration - (herald_core::now_ms() / 1000 + 300)).abs() < 30, "from the validity: {expiration}");
    assert_eq!(app.message_status(&mid).await, "sent");

    // A connected device gets it on the own channel; APNs is not asked.
    let here = register(&app, "i2", "ios", json!({"apns": "cd".repeat(32)})).await;
    let mut device = TestDevice::connect(&here).await;
    push(&app, &here, 2, "k2", json!({})).await;
    let (_, payload) = device.next_push().await;
    assert_eq!(payload["title"], "Hello");
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(apns.received().len(), 1, "no second APNs request");
    assert!(apns.problems().is_empty(), "{:?}", apns.problems());
    let metrics = server.call("GET", "/metrics", &[], Default::default()).await;
    let text = String::from_utf8_lossy(&metrics.body).to_string();
    assert!(text.contains("herald_vendor_sends_total{channel=\"apns\""), "{text}");
    assert!(text.contains("herald_vendor_send_seconds_count{channel=\"apns\"} 1"), "{text}");
}

/// Polls the message until its first vendor send has `status`; that send.
async fn wait_vendor(app: &TestApp, message_id: &str, status: &str) -> Value {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let m = app.message(message_id).await.json();
        let send = m["resultContent"]["data"]["vendorSends"][0].clone();
        if send["status"] == status {
            return send;
        }
        assert!(tokio::time::Instant::now() < deadline, "no vendor send {status}: {m}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn apns_invalid_tokens_retries_and_validity() {
    let Some((apns, _server, app, _dir)) = apns_node().await else { return };

    // 410 Unregistered: the token is dropped, listed, never used again.
    apns.script(Scripted::Answer {
        status: 410,
        headers: vec![],
        body: r#"{"reason":"Unregistered","timestamp":1}"#.into(),
    });
    let gone = register(&app, "i1", "ios", json!({"apns": "ab".repeat(32)})).await;
    let mid = push(&app, &gone, 2, "k1", json!({})).await;
    let send = wait_vendor(&app, &mid, "invalidToken").await;
    assert!(send["reason"].as_str().unwrap().contains("410"), "{send}");
    let device = app.device_view(&gone.device_id).await;
    assert_eq!(device["vendorChannels"], json!([]), "{device}");
    let list = app.signed("GET", "/v1/devices/invalid-tokens", "").await.json();
    assert_eq!(list["resultContent"]["data"]["totalCount"], 1, "{list}");
    assert_eq!(list["resultContent"]["data"]["list"][0]["deviceId"], json!(gone.device_id));
    push(&app, &gone, 2, "k2", json!({})).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(apns.received().len(), 1, "an invalid token is never used again");
    // A fresh token replaces it.
    let r = gone.device_call("/device/v1/report", json!({"vendorTokens": {"apns": "ef".repeat(32)}})).await;
    assert_eq!(r.status, 200);
    let list = app.signed("GET", "/v1/devices/invalid-tokens", "").await.json();
    assert_eq!(list["resultContent"]["data"]["totalCount"], 0, "{list}");

    // 429 with Retry-After, then 503, then success: sent, three attempts.
    apns.script(Scripted::Answer {
        status: 429,
        headers: vec![("retry-after".into(), "1".into())],
        body: r#"{"reason":"TooManyRequests"}"#.into(),
    });
    apns.script(Scripted::Answer { status: 503, headers: vec![], body: r#"{"reason":"ServiceUnavailable"}"#.into() });
    let busy = register(&app, "i2", "ios", json!({"apns": "12".repeat(32)})).await;
    let mid = push(&app, &busy, 2, "k3", json!({})).await;
    let send = wait_vendor(&app, &mid, "sent").await;
    assert_eq!(send["attempts"], 3, "{send}");

    // A message whose validity ends while the vendor is down is never sent.
    apns.script(Scripted::Answer {
        status: 503,
        headers: vec![("retry-after".into(), "5".into())],
        body: r#"{"reason":"ServiceUnavailable"}"#.into(),
    });
    let late = register(&app, "i3", "ios", json!({"apns": "34".repeat(32)})).await;
    let before = apns.received().len();
    let mid = push(&app, &late, 2, "k4", json!({"expiredSeconds": 2})).await;
    let send = wait_vendor(&app, &mid, "expired").await;
    assert_eq!(send["attempts"], 1, "{send}");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(apns.received().len(), before + 1, "no attempt past the validity");
    assert!(apns.problems().is_empty(), "{:?}", apns.problems());
}

/// The Android (and Web Push) fakes, a node that sends to them, and an app with each channel.
struct Android {
    fcm: FakeVendor,
    hms: FakeVendor,
    mi: FakeVendor,
    web: Option<FakeVendor>,
    server: TestProcess,
    app: TestApp,
    _dir: tempfile::TempDir,
}

async fn android_node(with_web: bool) -> Option<Android> {
    let ca = TestCa::new();
    let fcm = FakeVendor::start(Vendor::Fcm, &ca, Expect::default(), false).await;
    let hms_expect = Expect { hms: Some(("10001".into(), "hsecret".into())), ..Expect::default() };
    let hms = FakeVendor::start(Vendor::Hms, &ca, hms_expect, false).await;
    let mi_expect = Expect { xiaomi: Some(("xsecret".into(), "com.example.app".into())), ..Expect::default() };
    let mi = FakeVendor::start(Vendor::Xiaomi, &ca, mi_expect, false).await;
    let web = match with_web {
        true => Some(FakeVendor::start(Vendor::WebPush, &ca, Expect::default(), false).await),
        false => None,
    };
    let others = [
        ("fcm_url", fcm.url()),
        ("hms_url", hms.url()),
        ("hms_token_url", format!("{}/oauth2/v3/token", hms.url())),
        ("xiaomi_url", mi.url()),
    ];
    let (server, dir) = node(&ca, None, &others).await?;
    let app = server.create_app().await;
    let (account, _) = fakes::service_account(&fcm, "proj-1");
    let mut channels = vec![
        ("fcm", json!({"serviceAccount": account})),
        ("hms", json!({"appId": "10001", "clientSecret": "hsecret"})),
        ("xiaomi", json!({"appSecret": "xsecret", "packageName": "com.example.app"})),
    ];
    if with_web {
        channels.push(("webpush", json!({"subject": "mailto:ops@example.com"})));
    }
    for (kind, body) in channels {
        let r = app.signed("PUT", &format!("/v1/channels/{kind}"), &body.to_string()).await;
        assert_eq!(r.status, 200, "{kind}: {:?}", r.json());
    }
    Some(Android { fcm, hms, mi, web, server, app, _dir: dir })
}

#[tokio::test]
async fn fcm_hms_and_xiaomi_carry_to_android_devices_by_the_token_they_have() {
    let Some(Android { fcm, hms, mi, app, server: _server, _dir, .. }) = android_node(false).await else { return };
    let huawei = register(&app, "h", "android", json!({"hms": "hms-token-1", "fcm": "fcm-token-9"})).await;
    let xiaomi = register(&app, "x", "android", json!({"xiaomi": "regid-1"})).await;
    let pixel = register(&app, "p", "android", json!({"fcm": "fcm-token-1"})).await;
    let m_h = push(&app, &huawei, 1, "k1", json!({})).await;
    let m_x = push(&app, &xiaomi, 1, "k2", json!({})).await;
    let m_p = push(&app, &pixel, 1, "k3", json!({})).await;
    assert_eq!(wait_vendor(&app, &m_h, "sent").await["channel"], "hms", "the phone maker's service first");
    assert_eq!(wait_vendor(&app, &m_x, "sent").await["channel"], "xiaomi");
    assert_eq!(wait_vendor(&app, &m_p, "sent").await["channel"], "fcm");

    let h = hms.received();
    assert_eq!(h.len(), 1);
    assert_eq!(h[0].json()["message"]["token"], json!(["hms-token-1"]));
    assert_eq!(h[0].json()["message"]["android"]["notification"]["title"], "Hello");
    let x = mi.received();
    assert_eq!(
        (x[0].form("registration_id").unwrap().as_str(), x[0].form("title").unwrap().as_str()),
        ("regid-1", "Hello")
    );
    assert!(x[0].form("payload").unwrap().contains(&m_x));
    let f = fcm.received();
    assert_eq!(f[0].json()["message"]["token"], "fcm-token-1");
    assert_eq!(f[0].json()["message"]["data"]["orderId"], "7");
    assert_eq!(fcm.token_requests(), 1);

    // FCM UNREGISTERED drops the token; a second message reuses the cached access token.
    fcm.script(Scripted::Answer {
        status: 404,
        headers: vec![],
        body: json!({"error": {"code": 404, "message": "Requested entity was not found.", "status": "NOT_FOUND",
            "details": [{"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": "UNREGISTERED"}]}})
        .to_string(),
    });
    let m = push(&app, &pixel, 1, "k4", json!({})).await;
    wait_vendor(&app, &m, "invalidToken").await;
    assert_eq!(fcm.token_requests(), 1, "the access token is cached");
    // HMS: every token invalid.
    hms.script(Scripted::Answer {
        status: 200,
        headers: vec![],
        body: json!({"code": "80300007", "msg": "All the tokens are invalid", "requestId": "r"}).to_string(),
    });
    let m = push(&app, &huawei, 1, "k5", json!({})).await;
    wait_vendor(&app, &m, "invalidToken").await;
    let device = app.device_view(&huawei.device_id).await;
    assert_eq!(device["vendorChannels"], json!(["fcm"]), "the next message goes through FCM");
    let m = push(&app, &huawei, 1, "k6", json!({})).await;
    assert_eq!(wait_vendor(&app, &m, "sent").await["channel"], "fcm");
    for fake in [&fcm, &hms, &mi] {
        assert!(fake.problems().is_empty(), "{:?}", fake.problems());
    }
}

#[tokio::test]
async fn web_push_encrypts_for_the_browser_and_signs_with_vapid() {
    let ca = TestCa::new();
    let wp = FakeVendor::start(Vendor::WebPush, &ca, Expect::default(), false).await;
    let Some((server, _dir)) = node(&ca, None, &[]).await else { return };
    let app = server.create_app().await;
    let r = app.signed("PUT", "/v1/channels/webpush", &json!({"subject": "mailto:ops@example.com"}).to_string()).await;
    assert_eq!(r.status, 200, "{:?}", r.json());
    let public = r.json()["resultContent"]["data"]["settings"]["publicKey"].as_str().unwrap().to_string();
    assert_eq!(herald_core::crypto::b64url_decode(&public).unwrap().len(), 65);
    // Setting the channel again keeps the key pair (browsers subscribed with it).
    let again =
        app.signed("PUT", "/v1/channels/webpush", &json!({"subject": "mailto:ops@example.com"}).to_string()).await;
    assert_eq!(again.json()["resultContent"]["data"]["settings"]["publicKey"], public.as_str());

    let sub = fakes::subscription(&wp, "s1");
    let browser = register(&app, "w", "web", json!({"webpush": sub})).await;
    let key = browser.device_call_get("/device/v1/webpush-key").await;
    assert_eq!(key.json()["publicKey"], public.as_str());
    let mid = push(&app, &browser, 1, "k1", json!({})).await;
    wait_vendor(&app, &mid, "sent").await;
    let got = wp.received();
    let plain: Value = serde_json::from_str(got[0].plaintext.as_deref().unwrap()).unwrap();
    assert_eq!((plain["messageId"].as_str(), plain["title"].as_str()), (Some(mid.as_str()), Some("Hello")));
    assert_eq!(got[0].header("urgency"), Some("high"));
    assert!(wp.problems().is_empty(), "{:?}", wp.problems());
}

#[tokio::test]
async fn a_broadcast_reaches_connected_and_vendor_only_devices_exactly_once_each() {
    let Some((apns, _server, app, _dir)) = apns_node().await else { return };
    let t = json!({"templateName": "news", "title": "News", "content": "today"});
    assert_eq!(app.signed("POST", "/v1/templates", &t.to_string()).await.status, 200);
    // Connected with a token: the own channel. Away with a token: APNs. Away without one:
    // at its next connect. All of them once.
    let here = register(&app, "here", "ios", json!({"apns": "a1".repeat(32)})).await;
    let away = register(&app, "away", "ios", json!({"apns": "b2".repeat(32)})).await;
    let later = register(&app, "later", "ios", json!({})).await;
    let mut here_device = TestDevice::connect(&here).await;
    let body =
        json!({"deliveryType": 2, "templateName": "news", "msgkey": "b1", "pushStatus": 1, "expiredSeconds": 300});
    let r = app.signed("POST", "/v1/push/broadcast", &body.to_string()).await;
    assert_eq!(r.status, 200, "{:?}", r.json());
    let mid = r.json()["pushResult"]["messageId"].as_str().unwrap().to_string();
    assert_eq!(here_device.next_push().await.1["messageId"], mid.as_str());
    let deadline = tokio::time::Instant::now() + WAIT;
    while apns.received().is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "APNs never asked");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut later_device = TestDevice::connect(&later).await;
    assert_eq!(later_device.next_push().await.1["messageId"], mid.as_str());
    assert!(here_device.quiet_for(Duration::from_millis(800)).await, "the connected device got it once");
    assert!(later_device.quiet_for(Duration::from_millis(100)).await);
    let got = apns.received();
    assert_eq!(got.len(), 1, "only the device without a connection went through APNs");
    assert_eq!(got[0].path, format!("/3/device/{}", "b2".repeat(32)));
    assert_eq!(got[0].json()["herald"]["messageId"], mid.as_str());
    assert!(away.device_id != here.device_id && apns.problems().is_empty(), "{:?}", apns.problems());
}

#[tokio::test]
async fn sends_waiting_for_a_vendor_survive_a_restart_and_none_is_sent_twice() {
    let Some((apns, server, app, _dir)) = apns_node().await else { return };
    let sent = register(&app, "i1", "ios", json!({"apns": "ab".repeat(32)})).await;
    let m_sent = push(&app, &sent, 2, "k1", json!({})).await;
    wait_vendor(&app, &m_sent, "sent").await;
    // APNs is down when the second message goes: it waits (back-off) for the next attempt.
    apns.script(Scripted::Answer {
        status: 503,
        headers: vec![("retry-after".into(), "3".into())],
        body: r#"{"reason":"ServiceUnavailable"}"#.into(),
    });
    let waiting = register(&app, "i2", "ios", json!({"apns": "cd".repeat(32)})).await;
    let m_waiting = push(&app, &waiting, 2, "k2", json!({})).await;
    // The 503 is recorded (one attempt, waiting for the next) before the node dies.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let send = wait_vendor(&app, &m_waiting, "waiting").await;
        if send["attempts"] == 1 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "no first attempt: {send}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // kill -9 while the send waits, then the node comes back on the same data.
    let mut server = server;
    server.kill9();
    let server = server.restart().await;
    let app = app.via(&server);
    let send = wait_vendor(&app, &m_waiting, "sent").await;
    assert_eq!(send["attempts"], 2, "{send}");
    tokio::time::sleep(Duration::from_millis(800)).await;
    let paths: Vec<String> = apns.received().iter().map(|r| r.path.clone()).collect();
    let first = format!("/3/device/{}", "ab".repeat(32));
    assert_eq!(paths.iter().filter(|p| **p == first).count(), 1, "the accepted one never again: {paths:?}");
    assert_eq!(paths.len(), 3, "{paths:?}");
    assert_eq!(app.message_status(&m_sent).await, "sent");
    assert!(apns.problems().is_empty(), "{:?}", apns.problems());
}

/// `herald channel …` against a running node: key files read from disk, the answer as the
/// admin API gives it.
fn cli(server: &TestProcess, args: &[&str]) -> (bool, Value, String) {
    let out = std::process::Command::new(herald_bin!())
        .args(["channel"])
        .args(args)
        .args(["--server", &format!("http://{}", server.http)])
        .env("HERALD_ADMIN_TOKEN", ADMIN_TOKEN)
        .env("HERALD_APNS_P12_PASSWORD", "s3cret")
        .output()
        .unwrap();
    let json = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    (out.status.success(), json, String::from_utf8_lossy(&out.stderr).into_owned())
}

#[tokio::test]
async fn the_cli_sets_channels_from_key_files() {
    let ca = TestCa::new();
    let Some((server, dir)) = node(&ca, None, &[]).await else { return };
    let app = server.create_app().await;
    let (token_body, _) = fakes::apns_token_channel("sandbox");
    let p8 = dir.path().join("AuthKey_KEY1234567.p8");
    std::fs::write(&p8, token_body["privateKey"].as_str().unwrap()).unwrap();
    let (ok, j, err) = cli(
        &server,
        &[
            "set",
            "apns",
            "--app",
            &app.app_id,
            "--bundle-id",
            "com.example.app",
            "--environment",
            "sandbox",
            "--p8",
            p8.to_str().unwrap(),
            "--key-id",
            "KEY1234567",
            "--team-id",
            "TEAM123456",
        ],
    );
    assert!(ok, "{err} {j}");
    assert_eq!(
        (j["data"]["settings"]["authType"].as_str(), j["data"]["settings"]["privateKey"].as_str()),
        (Some("token"), Some("********"))
    );

    // A .p12 that expires in 20 days: accepted, with its subject, expiry and a warning.
    let p12 = dir.path().join("apns.p12");
    std::fs::write(&p12, fakes::apns_p12(&ca, "Apple Push Services: com.example.app", 20, "s3cret")).unwrap();
    let (ok, j, err) = cli(
        &server,
        &["set", "apns", "--app", &app.app_id, "--bundle-id", "com.example.app", "--p12", p12.to_str().unwrap()],
    );
    assert!(ok, "{err} {j}");
    assert_eq!(j["data"]["settings"]["authType"], "certificate");
    assert!(j["data"]["settings"]["subject"].as_str().unwrap().contains("com.example.app"), "{j}");
    assert_eq!(j["data"]["warnings"].as_array().unwrap().len(), 1, "{j}");
    let seen = app.signed("GET", "/v1/channels/apns", "").await.json();
    assert_eq!(seen["resultContent"]["data"]["settings"]["notAfter"], j["data"]["settings"]["notAfter"]);
    let metrics = server.call("GET", "/metrics", &[], Default::default()).await;
    let text = String::from_utf8_lossy(&metrics.body).to_string();
    let line = format!("herald_apns_certificate_expiry_seconds{{app=\"{}\"}}", app.app_id);
    let left: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix(line.as_str()))
        .unwrap_or_else(|| panic!("{text}"))
        .trim()
        .parse()
        .unwrap();
    assert!((left - 20.0 * 86_400.0).abs() < 2.0 * 86_400.0, "{left}");

    // A service-account file; a wrong path is an error that names the file.
    let fcm = FakeVendor::start(Vendor::Fcm, &ca, Expect::default(), false).await;
    let (account, _) = fakes::service_account(&fcm, "proj-1");
    let file = dir.path().join("sa.json");
    std::fs::write(&file, account.to_string()).unwrap();
    let (ok, j, err) = cli(&server, &["set", "fcm", "--app", &app.app_id, "--service-account", file.to_str().unwrap()]);
    assert!(ok && j["data"]["settings"]["projectId"] == "proj-1", "{err} {j}");
    let (ok, _, err) = cli(&server, &["set", "fcm", "--app", &app.app_id, "--service-account", "/nonexistent.json"]);
    assert!(!ok && err.contains("/nonexistent.json"), "{err}");
    let (ok, j, _) = cli(&server, &["get", "--app", &app.app_id, "fcm"]);
    assert!(ok && j["data"]["settings"]["privateKey"] == "********", "{j}");
    let (ok, _, _) = cli(&server, &["delete", "--app", &app.app_id, "fcm"]);
    assert!(ok);
    let (ok, j, _) = cli(&server, &["get", "--app", &app.app_id, "fcm"]);
    assert!(!ok && j["resultCode"] == "CHANNEL_NOT_CONFIGURED", "{j}");
}

#[tokio::test]
async fn a_revoke_replaces_the_copy_apns_took_and_withdraws_the_ones_not_sent() {
    let Some((apns, _server, app, _dir)) = apns_node().await else { return };
    let away = register(&app, "i1", "ios", json!({"apns": "ab".repeat(32)})).await;
    let mid = push(&app, &away, 2, "k1", json!({})).await;
    wait_vendor(&app, &mid, "sent").await;
    let r = app
        .signed("POST", "/v1/push/revoke", &json!({"messageId": "k1", "targetId": away.device_id}).to_string())
        .await;
    assert_eq!(r.status, 200, "{:?}", r.json());
    assert_eq!(r.json()["pushResult"]["vendorRecalls"], 1, "{:?}", r.json());
    let send = wait_vendor(&app, &mid, "recalled").await;
    assert_eq!(send["attempts"], 1, "{send}");
    let got = apns.received();
    assert_eq!(got.len(), 2);
    assert_eq!(got[1].header("apns-collapse-id"), got[0].header("apns-collapse-id"), "the recall replaces the copy");
    let recall = got[1].json();
    assert_eq!(
        (recall["herald"]["messageId"].as_str(), recall["herald"]["revoked"].as_bool()),
        (Some(mid.as_str()), Some(true))
    );
    assert_eq!(recall["aps"]["alert"], json!({"title": "Hello", "body": "This message was withdrawn."}));

    // A send not made yet when the message is revoked is never made.
    apns.script(Scripted::Answer {
        status: 503,
        headers: vec![("retry-after".into(), "30".into())],
        body: r#"{"reason":"ServiceUnavailable"}"#.into(),
    });
    let later = register(&app, "i2", "ios", json!({"apns": "cd".repeat(32)})).await;
    let mid = push(&app, &later, 2, "k2", json!({})).await;
    let deadline = tokio::time::Instant::now() + WAIT;
    while wait_vendor(&app, &mid, "waiting").await["attempts"] != 1 {
        assert!(tokio::time::Instant::now() < deadline, "no first attempt");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let r = app
        .signed("POST", "/v1/push/revoke", &json!({"messageId": "k2", "targetId": later.device_id}).to_string())
        .await;
    assert_eq!(r.json()["pushResult"]["vendorRecalls"], 0, "{:?}", r.json());
    wait_vendor(&app, &mid, "revoked").await;
    assert!(apns.problems().is_empty(), "{:?}", apns.problems());
}

/// A fake APNs, a node with `tuning` in its `[channels]`, an app with the APNs channel and the
/// `news` template, and `n` iOS devices with APNs tokens and no connection.
async fn apns_audience(
    tuning: &[(&str, String)],
    n: usize,
) -> Option<(FakeVendor, TestProcess, TestApp, tempfile::TempDir)> {
    let ca = TestCa::new();
    let (body, expect) = fakes::apns_token_channel("sandbox");
    let apns = FakeVendor::start(Vendor::Apns, &ca, expect, false).await;
    let (server, dir) = node(&ca, Some(&apns), tuning).await?;
    let app = server.create_app().await;
    apns_channel(&app, &body).await;
    let t = json!({"templateName": "news", "title": "News", "content": "today"});
    assert_eq!(app.signed("POST", "/v1/templates", &t.to_string()).await.status, 200);
    for i in 0..n {
        register(&app, &format!("i{i}"), "ios", json!({"apns": format!("{i:064x}")})).await;
    }
    Some((apns, server, app, dir))
}

/// SIGTERM while a vendor's backlog is long: the node finishes the sends it has out and stops,
/// rather than draining the backlog first; the rest go after the restart.
#[tokio::test]
async fn a_stop_does_not_wait_for_a_vendor_backlog_and_loses_none_of_it() {
    let tuning = [("claim_batch", "4".to_string()), ("max_in_flight", "2".to_string())];
    let Some((apns, server, app, _dir)) = apns_audience(&tuning, 200).await else { return };
    apns.set_delay(Duration::from_millis(50));
    let body =
        json!({"deliveryType": 2, "templateName": "news", "msgkey": "b1", "pushStatus": 1, "expiredSeconds": 300});
    assert_eq!(app.signed("POST", "/v1/push/broadcast", &body.to_string()).await.status, 200);
    let deadline = tokio::time::Instant::now() + WAIT;
    while apns.received_count() < 6 {
        assert!(tokio::time::Instant::now() < deadline, "APNs never asked");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Two at a time, 50 ms each: the backlog would take 5 s.
    server.terminate();
    // Waited for off this runtime: the fake APNs answers on it.
    let (server, stopped) = tokio::task::spawn_blocking(move || {
        let mut server = server;
        let stopped = server.wait_exit(Duration::from_millis(1_500));
        (server, stopped)
    })
    .await
    .unwrap();
    assert!(stopped.is_some_and(|s| s.success()), "stopped with the sends out: {stopped:?}");
    let at_stop = apns.received_count();
    assert!(at_stop < 100, "the backlog was not drained first: {at_stop}");
    apns.set_delay(Duration::ZERO);
    let _server = server.restart().await;
    let deadline = tokio::time::Instant::now() + WAIT;
    while apns.received_count() < 200 {
        assert!(tokio::time::Instant::now() < deadline, "{} of 200 after the restart", apns.received_count());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let paths: std::collections::HashSet<String> = apns.received().iter().map(|r| r.path.clone()).collect();
    assert_eq!(paths.len(), 200, "every device once at least");
    assert!(apns.problems().is_empty(), "{:?}", apns.problems());
}

/// Each Android vendor and Web Push: a message whose validity ends while the vendor is down is
/// never sent; a send waiting for its next attempt survives kill -9 and goes once after.
#[tokio::test]
async fn every_vendor_expires_in_time_and_keeps_waiting_sends_across_a_restart() {
    let Some(Android { fcm, hms, mi, web, server, app, _dir }) = android_node(true).await else { return };
    let web = web.unwrap();
    let sub = fakes::subscription(&web, "s1");
    let devices = [
        (&hms, register(&app, "h", "android", json!({"hms": "hms-token-1"})).await),
        (&mi, register(&app, "x", "android", json!({"xiaomi": "regid-1"})).await),
        (&fcm, register(&app, "p", "android", json!({"fcm": "fcm-token-1"})).await),
        (&web, register(&app, "w", "web", json!({"webpush": sub})).await),
    ];
    let down = |after: &str| Scripted::Answer {
        status: 503,
        headers: vec![("retry-after".into(), after.into())],
        body: json!({"error": {"code": 503, "status": "UNAVAILABLE"}}).to_string(),
    };
    let mut waiting = Vec::new();
    for (i, (fake, device)) in devices.iter().enumerate() {
        fake.script(down("5"));
        let late = push(&app, device, 1, &format!("late{i}"), json!({"expiredSeconds": 2})).await;
        let send = wait_vendor(&app, &late, "expired").await;
        assert_eq!(send["attempts"], 1, "{send}");
        fake.script(down("2"));
        waiting.push(push(&app, device, 1, &format!("k{i}"), json!({})).await);
    }
    let deadline = tokio::time::Instant::now() + WAIT;
    for mid in &waiting {
        while wait_vendor(&app, mid, "waiting").await["attempts"] != 1 {
            assert!(tokio::time::Instant::now() < deadline, "no first attempt of {mid}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let mut server = server;
    server.kill9();
    let server = server.restart().await;
    let app = app.via(&server);
    for mid in &waiting {
        let send = wait_vendor(&app, mid, "sent").await;
        assert_eq!(send["attempts"], 2, "{send}");
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    for (fake, _) in &devices {
        let sends = fake.received().iter().filter(|r| !r.path.ends_with("/token")).count();
        assert_eq!(sends, 3, "the expired one once, the waiting one twice: {:?}", fake.received().len());
        assert!(fake.problems().is_empty(), "{:?}", fake.problems());
    }
}

/// `channels.max_per_second` spaces a vendor's requests.
#[tokio::test]
async fn a_vendor_rate_limit_spaces_the_sends() {
    let Some((apns, _server, app, _dir)) = apns_audience(&[("max_per_second", "20".into())], 30).await else { return };
    let started = std::time::Instant::now();
    let body =
        json!({"deliveryType": 2, "templateName": "news", "msgkey": "b1", "pushStatus": 1, "expiredSeconds": 300});
    assert_eq!(app.signed("POST", "/v1/push/broadcast", &body.to_string()).await.status, 200);
    let deadline = tokio::time::Instant::now() + WAIT;
    while apns.received_count() < 30 {
        assert!(tokio::time::Instant::now() < deadline, "{} of 30", apns.received_count());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // 30 sends at 20 a second: 29 gaps of 50 ms.
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(1_400), "took {took:?}");
    assert!(apns.problems().is_empty(), "{:?}", apns.problems());
}
