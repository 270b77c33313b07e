//! Each sender against its vendor's fake (herald-testkit's `fakes`, strict about what it
//! receives): success, every invalid-token answer, 429 with Retry-After, 5xx, a connection
//! dropped mid-request, and HTTP/2 GOAWAY, each turned into the outcome the dispatcher acts
//! on. Retries, back-off and validity are the dispatcher's and are tested through the binary
//! (crates/herald/tests/behaviour/vendors.rs).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use herald_channels::{ChannelsConfig, Credential, Senders, setup};
use herald_core::channel::{VendorNotification, VendorOutcome, tokens};
use herald_core::ids::{AppId, DeviceId, MessageId};
use herald_core::state::Channel;
use herald_testkit::fakes::{self, Expect, FakeVendor, Scripted, TestCa, Vendor};
use serde_json::{Value, json};

/// A sender, its vendor's fake, one app's credential and one notification for one device.
struct Rig {
    fake: FakeVendor,
    senders: Arc<Senders>,
    credential: Credential,
    n: VendorNotification,
    _dir: tempfile::TempDir,
}

impl Rig {
    async fn new(vendor: Vendor) -> Rig {
        let ca = TestCa::new();
        let expect = Expect {
            hms: Some(("10001".into(), "hsecret".into())),
            xiaomi: Some(("xsecret".into(), "com.example.app".into())),
            ..Expect::default()
        };
        let fake = FakeVendor::start(vendor, &ca, expect, false).await;
        let dir = tempfile::tempdir().unwrap();
        let url = fake.url();
        let config = ChannelsConfig {
            apns_url: url.clone(),
            apns_sandbox_url: url.clone(),
            fcm_url: url.clone(),
            hms_url: url.clone(),
            hms_token_url: format!("{url}/oauth2/v3/token"),
            xiaomi_url: url.clone(),
            ca_file: Some(ca.write_pem(dir.path())),
            request_timeout_secs: 3,
            ..ChannelsConfig::default()
        };
        let (kind, body, token) = match vendor {
            Vendor::Apns => {
                let (body, expect) = fakes::apns_token_channel("production");
                fake.expect().apns_key = expect.apns_key;
                (Channel::Apns, body, json!("ab".repeat(32)))
            }
            Vendor::Fcm => {
                let (account, _) = fakes::service_account(&fake, "proj-1");
                (Channel::Fcm, json!({"serviceAccount": account}), json!("fcm-token-1"))
            }
            Vendor::Hms => (Channel::Hms, json!({"appId": "10001", "clientSecret": "hsecret"}), json!("hms-token-1")),
            Vendor::Xiaomi => {
                (Channel::Xiaomi, json!({"appSecret": "xsecret", "packageName": "com.example.app"}), json!("regid-1"))
            }
            Vendor::WebPush => {
                let sub = fakes::subscription(&fake, "s1");
                (Channel::WebPush, json!({"subject": "mailto:ops@example.com"}), sub)
            }
        };
        let now = herald_core::now_ms();
        let s = setup::parse(kind, &body, now, None).expect("a valid channel");
        let credential = Credential::open(kind, &s.settings, &s.secret, 1).expect("opens");
        let message_id = MessageId::generate(now);
        let payload = json!({"messageId": message_id.as_str(), "msgKey": "k1", "taskId": "t1", "title": "Hello",
            "content": "World", "extendedParams": {"orderId": "7"}});
        let n = VendorNotification {
            app_id: AppId::new("app1"),
            device_id: DeviceId::new("dev1"),
            message_id,
            channel: kind,
            token: tokens::stored_form(kind, &token).expect("a valid token"),
            payload: Bytes::from(payload.to_string()),
            expires_at: now + 300_000,
            recall: false,
        };
        Rig { fake, senders: Senders::new(config).unwrap(), credential, n, _dir: dir }
    }

    async fn send(&self) -> VendorOutcome {
        self.senders.send(&self.credential, &self.n).await
    }

    /// Scripts `status`/`body` (and Retry-After), sends once: the outcome.
    async fn answered(&self, status: u16, retry_after: Option<&str>, body: Value) -> VendorOutcome {
        let headers = retry_after.map(|r| vec![("retry-after".to_string(), r.to_string())]).unwrap_or_default();
        let body = if body.is_null() { String::new() } else { body.to_string() };
        self.fake.script(Scripted::Answer { status, headers, body });
        self.send().await
    }
}

const VENDORS: [Vendor; 5] = [Vendor::Apns, Vendor::Fcm, Vendor::Hms, Vendor::Xiaomi, Vendor::WebPush];

/// The answers each vendor documents for a token that is gone.
fn invalid_token_answers(vendor: Vendor) -> Vec<(u16, Value)> {
    let fcm = |status: u16, rpc: &str, code: &str| {
        json!({"error": {"code": status, "message": "x", "status": rpc,
            "details": [{"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": code}]}})
    };
    match vendor {
        Vendor::Apns => vec![
            (410, json!({"reason": "Unregistered", "timestamp": 1})),
            (400, json!({"reason": "BadDeviceToken"})),
            (400, json!({"reason": "DeviceTokenNotForTopic"})),
        ],
        Vendor::Fcm => vec![
            (404, fcm(404, "NOT_FOUND", "UNREGISTERED")),
            (400, fcm(400, "INVALID_ARGUMENT", "UNREGISTERED")),
            (403, fcm(403, "PERMISSION_DENIED", "SENDER_ID_MISMATCH")),
        ],
        Vendor::Hms => vec![
            (200, json!({"code": "80300007", "msg": "All the tokens are invalid", "requestId": "r"})),
            (
                200,
                json!({"code": "80100000", "requestId": "r",
                    "msg": "{\"success\":0,\"failure\":1,\"illegal_tokens\":[\"hms-token-1\"]}"}),
            ),
        ],
        Vendor::Xiaomi => vec![(
            200,
            json!({"result": "error", "code": 20301, "reason": "Invalid regId: regid-1", "description": "发送消息失败"}),
        )],
        Vendor::WebPush => vec![(404, Value::Null), (410, Value::Null)],
    }
}

#[tokio::test]
async fn each_vendor_accepts_and_names_its_invalid_tokens() {
    for vendor in VENDORS {
        let rig = Rig::new(vendor).await;
        match rig.send().await {
            VendorOutcome::Accepted { vendor_id: Some(id) } => assert!(!id.is_empty(), "{vendor:?}"),
            other => panic!("{vendor:?}: {other:?} {:?}", rig.fake.problems()),
        }
        for (status, body) in invalid_token_answers(vendor) {
            let outcome = rig.answered(status, None, body.clone()).await;
            assert!(matches!(outcome, VendorOutcome::InvalidToken { .. }), "{vendor:?} {status} {body}: {outcome:?}");
        }
        // A refusal that says nothing about the token is not taken for one.
        let outcome = rig.answered(400, None, json!({"reason": "BadTopic", "code": "80100003"})).await;
        assert!(matches!(outcome, VendorOutcome::Failed { .. }), "{vendor:?}: {outcome:?}");
        assert!(rig.fake.problems().is_empty(), "{vendor:?}: {:?}", rig.fake.problems());
    }
}

#[tokio::test]
async fn each_vendor_throttles_on_429_and_retries_after_5xx() {
    for vendor in VENDORS {
        let rig = Rig::new(vendor).await;
        match rig.answered(429, Some("7"), json!({"reason": "TooManyRequests"})).await {
            VendorOutcome::Retry { after, throttled: true, .. } => {
                assert_eq!(after, Some(Duration::from_secs(7)), "{vendor:?}: Retry-After honoured")
            }
            other => panic!("{vendor:?}: {other:?}"),
        }
        for status in [500, 502, 503] {
            match rig.answered(status, None, json!({"reason": "InternalServerError"})).await {
                VendorOutcome::Retry { throttled: false, .. } => {}
                other => panic!("{vendor:?} {status}: {other:?}"),
            }
        }
        // Then the vendor is back: accepted.
        assert!(matches!(rig.send().await, VendorOutcome::Accepted { .. }), "{vendor:?}");
        assert!(rig.fake.problems().is_empty(), "{vendor:?}: {:?}", rig.fake.problems());
    }
}

#[tokio::test]
async fn a_dropped_connection_is_retried_and_a_goaway_moves_to_a_new_connection() {
    for vendor in VENDORS {
        let rig = Rig::new(vendor).await;
        assert!(matches!(rig.send().await, VendorOutcome::Accepted { .. }), "{vendor:?} {:?}", rig.fake.problems());
        // Dropped mid-request: no answer, so the send is retried (never taken as sent).
        rig.fake.script(Scripted::Drop);
        match rig.send().await {
            VendorOutcome::Retry { throttled: false, reason, .. } => {
                assert!(reason.contains("unreachable"), "{reason}")
            }
            other => panic!("{vendor:?}: {other:?}"),
        }
        assert!(matches!(rig.send().await, VendorOutcome::Accepted { .. }), "{vendor:?}: after a drop");
        // GOAWAY after an answer: the answer counts, and the requests that would have used
        // that connection open a new one instead of failing on the old one (APNs uses a few
        // connections in turn: each gets its turn within 8 sends).
        rig.fake.script(Scripted::GoAway);
        assert!(matches!(rig.send().await, VendorOutcome::Accepted { .. }), "{vendor:?}: the GOAWAY's answer");
        let before = rig.fake.connections();
        tokio::time::sleep(Duration::from_millis(100)).await;
        for _ in 0..8 {
            assert!(matches!(rig.send().await, VendorOutcome::Accepted { .. }), "{vendor:?}: after GOAWAY");
        }
        assert!(rig.fake.connections() > before, "{vendor:?}: a new connection after GOAWAY");
        assert!(rig.fake.problems().is_empty(), "{vendor:?}: {:?}", rig.fake.problems());
    }
}

#[tokio::test]
async fn apns_certificate_auth_presents_the_p12_as_client_certificate() {
    let ca = TestCa::new();
    let fake = FakeVendor::start(Vendor::Apns, &ca, Expect::default(), true).await;
    let dir = tempfile::tempdir().unwrap();
    let config = ChannelsConfig {
        apns_url: fake.url(),
        apns_sandbox_url: fake.url(),
        ca_file: Some(ca.write_pem(dir.path())),
        ..ChannelsConfig::default()
    };
    let p12 = fakes::apns_p12_base64(&ca, "Apple Push Services: com.example.app", 3650, "s3cret");
    let body = json!({"authType": "certificate", "bundleId": "com.example.app", "environment": "production",
        "certificate": p12, "password": "s3cret"});
    let now = herald_core::now_ms();
    let s = setup::parse(Channel::Apns, &body, now, None).expect("opens with its password");
    assert!(s.settings["subject"].as_str().unwrap().contains("Apple Push Services: com.example.app"), "{s:?}");
    assert!(s.settings["notAfter"].as_i64().unwrap() > now + 365 * 86_400_000);
    assert!(s.warnings.is_empty());
    let wrong = json!({"authType": "certificate", "bundleId": "com.example.app", "environment": "production",
        "certificate": p12, "password": "wrong"});
    assert!(setup::parse(Channel::Apns, &wrong, now, None).unwrap_err().0.contains("password"));
    // Expired: refused; within 30 days: warned.
    let old = fakes::apns_p12_base64(&ca, "old", -1, "p");
    let expired = json!({"authType": "certificate", "bundleId": "b", "environment": "production",
        "certificate": old, "password": "p"});
    assert!(setup::parse(Channel::Apns, &expired, now, None).unwrap_err().0.contains("expired"));
    let soon = fakes::apns_p12_base64(&ca, "soon", 10, "p");
    let near = setup::parse(
        Channel::Apns,
        &json!({"authType": "certificate", "bundleId": "b",
        "environment": "production", "certificate": soon, "password": "p"}),
        now,
        None,
    )
    .unwrap();
    assert_eq!(near.warnings.len(), 1, "{near:?}");

    let credential = Credential::open(Channel::Apns, &s.settings, &s.secret, 1).unwrap();
    let n = VendorNotification {
        app_id: AppId::new("app1"),
        device_id: DeviceId::new("dev1"),
        message_id: MessageId::generate(now),
        channel: Channel::Apns,
        token: "ab".repeat(32),
        payload: Bytes::from(json!({"title": "Hello", "content": "World"}).to_string()),
        expires_at: now + 60_000,
        recall: false,
    };
    let senders = Senders::new(config).unwrap();
    let outcome = senders.send(&credential, &n).await;
    assert!(matches!(outcome, VendorOutcome::Accepted { .. }), "{outcome:?} {:?}", fake.problems());
    let got = fake.received();
    assert!(got[0].client_cert, "the .p12's certificate was presented");
    assert_eq!(got[0].header("authorization"), None, "no provider token with certificate auth");
    assert_eq!(got[0].header("apns-topic"), Some("com.example.app"));
    assert!(fake.problems().is_empty(), "{:?}", fake.problems());
}

/// What a notification is replaced by on the device: the key a later copy must repeat.
fn replacement_key(vendor: Vendor, r: &fakes::Received) -> Option<String> {
    match vendor {
        Vendor::Apns => r.header("apns-collapse-id").map(str::to_string),
        Vendor::Fcm => r.json()["message"]["android"]["notification"]["tag"].as_str().map(str::to_string),
        Vendor::Hms => r.json()["message"]["android"]["notification"]["notify_id"].as_i64().map(|i| i.to_string()),
        Vendor::Xiaomi => r.form("notify_id"),
        Vendor::WebPush => r.header("topic").map(str::to_string),
    }
}

/// The text the device shows (or, for Web Push, the `revoked` flag its service worker reads).
fn shown(vendor: Vendor, r: &fakes::Received) -> Value {
    match vendor {
        Vendor::Apns => json!([r.json()["aps"]["alert"]["body"], r.json()["herald"]["revoked"]]),
        Vendor::Fcm => json!([r.json()["message"]["notification"]["body"], r.json()["message"]["data"]["revoked"]]),
        Vendor::Hms => {
            let data: Value = serde_json::from_str(r.json()["message"]["data"].as_str().unwrap_or("null")).unwrap();
            json!([r.json()["message"]["android"]["notification"]["body"], data["revoked"]])
        }
        Vendor::Xiaomi => {
            let payload: Value = serde_json::from_str(&r.form("payload").unwrap_or_default()).unwrap_or_default();
            json!([r.form("description"), payload["revoked"]])
        }
        Vendor::WebPush => {
            let plain: Value = serde_json::from_str(r.plaintext.as_deref().unwrap_or("null")).unwrap();
            json!([Value::Null, plain["revoked"]])
        }
    }
}

#[tokio::test]
async fn a_recall_replaces_the_copy_each_vendor_took() {
    for vendor in VENDORS {
        let mut rig = Rig::new(vendor).await;
        assert!(matches!(rig.send().await, VendorOutcome::Accepted { .. }), "{vendor:?} {:?}", rig.fake.problems());
        rig.n.recall = true;
        assert!(matches!(rig.send().await, VendorOutcome::Accepted { .. }), "{vendor:?} {:?}", rig.fake.problems());
        let got = rig.fake.received();
        let (original, recall) = (&got[got.len() - 2], &got[got.len() - 1]);
        let key = replacement_key(vendor, original);
        assert!(key.is_some(), "{vendor:?}: the original carries a replacement key");
        assert_eq!(replacement_key(vendor, recall), key, "{vendor:?}: the recall repeats it");
        let expected = match vendor {
            Vendor::WebPush => json!([null, true]),
            Vendor::Apns | Vendor::Xiaomi => json!(["This message was withdrawn.", true]),
            _ => json!(["This message was withdrawn.", "true"]),
        };
        assert_eq!(shown(vendor, recall), expected, "{vendor:?}");
        assert_ne!(shown(vendor, original)[1], shown(vendor, recall)[1], "{vendor:?}: the original is not revoked");
        assert!(rig.fake.problems().is_empty(), "{vendor:?}: {:?}", rig.fake.problems());
    }
}
