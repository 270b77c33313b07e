//! Vendor receipts in, through the real binary: Huawei's signed receipt callbacks and
//! Xiaomi's per-message callbacks, with the documented bodies, turn a vendor's delivery into
//! `delivered` (and Xiaomi's click into `opened`); forged ones are refused or change nothing.

use base64::Engine;
use bytes::Bytes;
use serde_json::{Value, json};

use crate::common::fakes::{Expect, FakeVendor, TestCa, Vendor};
use crate::common::*;

const BASE: &str = "https://push.example.com";

struct Setup {
    hms: FakeVendor,
    mi: FakeVendor,
    server: TestProcess,
    app: TestApp,
    _dir: tempfile::TempDir,
}

async fn setup() -> Option<Setup> {
    let ca = TestCa::new();
    let hms_expect = Expect { hms: Some(("10001".into(), "hsecret".into())), ..Expect::default() };
    let hms = FakeVendor::start(Vendor::Hms, &ca, hms_expect, false).await;
    let mi_expect = Expect { xiaomi: Some(("xsecret".into(), "com.example.app".into())), ..Expect::default() };
    let mi = FakeVendor::start(Vendor::Xiaomi, &ca, mi_expect, false).await;
    let dir = tempfile::tempdir().unwrap();
    let ca_file = ca.write_pem(dir.path());
    let text = format!(
        "[channels]\nca_file = {:?}\npoll_ms = 200\nhms_url = {:?}\nhms_token_url = \"{}/oauth2/v3/token\"\n\
         xiaomi_url = {:?}\nreceipt_base_url = {BASE:?}\n[analytics]\nflush_ms = 100\n",
        ca_file.to_str().unwrap(),
        hms.url(),
        hms.url(),
        mi.url()
    );
    let config = dir.path().join("herald.toml");
    std::fs::write(&config, text).unwrap();
    let server =
        TestProcess::start_with(herald_bin!(), crate::BACKEND, &["--config", config.to_str().unwrap()]).await?;
    let app = server.create_app().await;
    for (kind, body) in [
        (
            "hms",
            json!({"appId": "10001", "clientSecret": "hsecret", "callbackUserName": "herald", "callbackKey": "cbkey"}),
        ),
        ("xiaomi", json!({"appSecret": "xsecret", "packageName": "com.example.app"})),
    ] {
        let r = app.signed("PUT", &format!("/v1/channels/{kind}"), &body.to_string()).await;
        assert_eq!(r.status, 200, "{kind}: {:?}", r.json());
        assert_eq!(r.json()["resultContent"]["data"]["settings"].get("callbackKey").is_some(), kind == "hms");
    }
    Some(Setup { hms, mi, server, app, _dir: dir })
}

async fn device(app: &TestApp, install: &str, tokens: Value) -> String {
    let r = app.register_raw(json!({"platform": "android", "installId": install, "vendorTokens": tokens})).await;
    assert_eq!(r.status, 200, "{:?}", r.json());
    r.json()["deviceId"].as_str().unwrap().to_owned()
}

/// Pushes to the device; the message id once a vendor took it.
async fn push_via_vendor(app: &TestApp, device: &str, key: &str) -> String {
    let (_, m) = app.push_to_device(device, key, "hello").await;
    app.wait_status(&m, "sent").await;
    m
}

/// The receipt URL a channel shows: the path under this node.
async fn receipt_path(app: &TestApp, kind: &str) -> String {
    let c = app.signed("GET", &format!("/v1/channels/{kind}"), "").await.json();
    let url = c["resultContent"]["data"]["receiptUrl"].as_str().unwrap().to_owned();
    assert!(url.starts_with(&format!("{BASE}/vendor/v1/receipts/{kind}/{}/", app.app_id)), "{url}");
    url.strip_prefix(BASE).unwrap().to_owned()
}

fn huawei_signature(user: &str, key: &str) -> String {
    let (ts, nonce) = (herald_core::now_ms().to_string(), "a07bfa17-6d82-4b53-a9a2-07cfef5ceef1");
    let mac = herald_core::crypto::hmac_sha256(key.as_bytes(), format!("{ts}{nonce}{user}").as_bytes());
    let value = base64::engine::general_purpose::STANDARD.encode(mac);
    format!("timestamp={ts}; nonce={nonce}; value={value}")
}

async fn post(server: &TestProcess, path: &str, headers: &[(String, String)], body: String) -> (u16, Value) {
    let r = server.call("POST", path, headers, Bytes::from(body)).await;
    (r.status, r.json())
}

#[tokio::test]
async fn huawei_receipts_verified_by_their_signature_mark_deliveries_delivered() {
    let Some(Setup { hms, server, app, _dir, .. }) = setup().await else { return };
    let device = device(&app, "h", json!({"hms": "hms-token-1"})).await;
    let m = push_via_vendor(&app, &device, "k1").await;
    assert_eq!(hms.received()[0].json()["message"]["android"]["bi_tag"], m.as_str(), "the message named");
    let path = receipt_path(&app, "hms").await;
    let body = |bi_tag: &str, status: i64| {
        json!({"statuses": [{"biTag": bi_tag, "appid": "10001", "token": "hms-token-1", "status": status,
            "timestamp": herald_core::now_ms(), "requestId": "157440"}]})
        .to_string()
    };
    let signed = vec![("X-HUAWEI-CALLBACK-ID".to_owned(), huawei_signature("herald", "cbkey"))];
    // Forged: another key, no signature, another URL token.
    let forged = vec![("X-HUAWEI-CALLBACK-ID".to_owned(), huawei_signature("herald", "guess"))];
    assert_eq!(post(&server, &path, &forged, body(&m, 0)).await.1["resultCode"], "SIGNATURE_MISMATCH");
    assert_eq!(post(&server, &path, &[], body(&m, 0)).await.0, 401);
    let wrong = format!("{}x", path.trim_end_matches(|c| c != '/'));
    assert_eq!(post(&server, &wrong, &signed, body(&m, 0)).await.0, 401);
    assert_eq!(app.message_status(&m).await, "sent", "nothing forged changed it");
    // A receipt for a message Herald did not send there changes nothing.
    assert_eq!(post(&server, &path, &signed, body("m-unknown", 0)).await.0, 200);
    let (status, answer) = post(&server, &path, &signed, body(&m, 0)).await;
    assert_eq!((status, answer["errno"].as_str()), (200, Some("0")));
    app.wait_status(&m, "delivered").await;
    // Version 2 bodies, and a failure code counted as failed with the vendor's reason.
    let m2 = push_via_vendor(&app, &device, "k2").await;
    let v2 = json!({"statuses": [{"token": "hms-token-1", "pushType": 0, "appPackageName": "com.example.app",
        "biTag": m2, "requestId": "1", "deliveryStatus": {"result": 2, "timestamp": herald_core::now_ms()}}]});
    assert_eq!(post(&server, &path, &signed, v2.to_string()).await.0, 200);
    let now = herald_core::now_ms();
    let q = format!("/v1/analytics/core?startTime={}&endTime={}&channel=HMS", now - 3_600_000, now + 60_000);
    eventually("the failure counted", || async {
        let d = app.signed("GET", &q, "").await.json()["resultContent"]["data"].clone();
        (d["failedNum"] == 1 && d["arrivalNum"] == 1).then_some(())
    })
    .await;
    assert_eq!(app.message_status(&m2).await, "sent");
    assert!(hms.problems().is_empty(), "{:?}", hms.problems());
}

#[tokio::test]
async fn xiaomi_receipts_at_the_url_herald_gave_mark_delivered_then_opened() {
    let Some(Setup { mi, server, app, _dir, .. }) = setup().await else { return };
    let device = device(&app, "x", json!({"xiaomi": "regid-1"})).await;
    let m = push_via_vendor(&app, &device, "k1").await;
    let path = receipt_path(&app, "xiaomi").await;
    let sent = &mi.received()[0];
    assert_eq!(sent.form("extra.callback").as_deref(), Some(format!("{BASE}{path}").as_str()));
    assert_eq!(
        (sent.form("extra.callback.param"), sent.form("extra.callback.type")),
        (Some(m.clone()), Some("3".into()))
    );
    let form = |kind: i64, param: &str, targets: &str| {
        let data = json!({"scm01b8": {"param": param, "type": kind, "targets": targets, "jobkey": "",
            "barStatus": "Enable", "timestamp": herald_core::now_ms()}});
        serde_urlencoded::to_string([("data", data.to_string())]).unwrap()
    };
    // Forged: the URL's token; another device's regId; a message of another app or none.
    let wrong = format!("{}x", path.trim_end_matches(|c| c != '/'));
    assert_eq!(post(&server, &wrong, &[], form(1, &m, "regid-1")).await.0, 401);
    assert_eq!(post(&server, &path, &[], form(1, &m, "regid-other")).await.1["applied"], 0);
    assert_eq!(post(&server, &path, &[], form(1, "m-unknown", "regid-1")).await.1["applied"], 0);
    assert_eq!(post(&server, &path, &[], "data=not-json".into()).await.1["resultCode"], "INVALID_PARAM");
    assert_eq!(app.message_status(&m).await, "sent");
    assert_eq!(post(&server, &path, &[], form(1, &m, "regid-1")).await.1["applied"], 1);
    app.wait_status(&m, "delivered").await;
    assert_eq!(post(&server, &path, &[], form(2, &m, "regid-1")).await.1["applied"], 1);
    app.wait_status(&m, "opened").await;
    assert!(mi.problems().is_empty(), "{:?}", mi.problems());
}
