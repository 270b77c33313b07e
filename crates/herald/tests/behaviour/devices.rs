//! Device API and server-side device calls: register, bind (proof), unbind, report,
//! device and user views.

use serde_json::{Value, json};

use crate::common::*;

#[tokio::test]
async fn registering_an_install_again_needs_its_current_token() {
    let Some(server) = start_server().await else { return };
    let app = server.create_app().await;
    let first = app.register("install-1").await;
    let again = |token: &str| {
        let headers = vec![("authorization".to_string(), format!("Bearer {token}"))];
        let app = app.clone();
        async move { app.register_raw_with(json!({"platform": "android", "installId": "install-1"}), &headers).await }
    };
    // The device itself (its current token): the same device, a new token; the old one ends.
    let r = again(&first.token).await;
    assert_eq!(r.status, 200, "{:?}", r.json());
    assert_eq!(r.json()["deviceId"], first.device_id.as_str());
    let renewed = r.json()["deviceToken"].as_str().unwrap().to_string();
    assert_ne!(renewed, first.token);
    let r = first.device_call("/device/v1/report", json!({"appVersion": "2.0"})).await;
    assert_eq!((r.status, r.json()["resultCode"].as_str()), (401, Some("DEVICE_TOKEN_INVALID")));
    let other = app.register("install-2").await;
    assert_ne!(other.device_id, first.device_id);
}

/// Anyone with the app key (it ships in every app) and a device's installId used to get a
/// new token for that device, lock the device out and receive its user's messages.
#[tokio::test]
async fn an_install_id_alone_does_not_take_a_device_over() {
    let Some(server) = start_server().await else { return };
    let app = server.create_app().await;
    let victim = app.register("install-1").await;
    assert_eq!(app.device_bind(&victim, "vic").await.status, 200);
    let stranger = app.register("install-2").await;
    for proof in [None, Some(stranger.token.as_str()), Some("forged")] {
        let headers: Vec<(String, String)> =
            proof.iter().map(|t| ("authorization".to_string(), format!("Bearer {t}"))).collect();
        let r = app.register_raw_with(json!({"platform": "android", "installId": "install-1"}), &headers).await;
        assert_eq!((r.status, r.json()["resultCode"].as_str()), (409, Some("DEVICE_ALREADY_REGISTERED")), "{proof:?}");
    }
    // The device, its token and its user are as they were: its messages reach it.
    let r = victim.device_call("/device/v1/report", json!({"appVersion": "2.0"})).await;
    assert_eq!(r.status, 200, "{:?}", r.json());
    let m = app.push_to_user("vic", "k", "for the victim").await;
    let mut device = TestDevice::connect(&victim).await;
    assert_eq!(device.next_push().await.1["messageId"], m.as_str());
}

#[tokio::test]
async fn register_refuses_a_wrong_app_key_and_bad_fields() {
    let Some(server) = start_server().await else { return };
    let app = server.create_app().await;
    let mut wrong = app.clone();
    wrong.app_key = "nope".into();
    let r = wrong.register_raw(json!({"platform": "android", "installId": "i"})).await;
    assert_eq!((r.status, r.json()["resultCode"].as_str()), (401, Some("APP_KEY_INVALID")));
    let r = app.register_raw(json!({"platform": "symbian", "installId": "i"})).await;
    assert_eq!(r.json()["resultCode"], "INVALID_PARAM");
    let r = app.register_raw(json!({"platform": "ios", "installId": "i", "vendorTokens": {"pigeon": "x"}})).await;
    assert_eq!(r.json()["resultCode"], "INVALID_PARAM");
}

#[tokio::test]
async fn bind_needs_a_valid_proof_unless_the_app_trusts_clients() {
    let Some(server) = start_server().await else { return };
    let app = server.create_app().await;
    let creds = app.register("i").await;
    let r = creds.device_call("/device/v1/bind", json!({"userId": "alice"})).await;
    assert_eq!((r.status, r.json()["resultCode"].as_str()), (403, Some("BIND_PROOF_INVALID")));
    let expires_at = herald_core::now_ms() + 60_000;
    let proof_for_bob =
        herald_core::signing::bind_proof(app.bind_secret.as_bytes(), &creds.device_id, "bob", expires_at);
    let r = creds
        .device_call("/device/v1/bind", json!({"userId": "alice", "bindProof": proof_for_bob, "expiresAt": expires_at}))
        .await;
    assert_eq!(r.json()["resultCode"], "BIND_PROOF_INVALID");
    let stale = herald_core::now_ms() - 1;
    let proof = herald_core::signing::bind_proof(app.bind_secret.as_bytes(), &creds.device_id, "alice", stale);
    let r =
        creds.device_call("/device/v1/bind", json!({"userId": "alice", "bindProof": proof, "expiresAt": stale})).await;
    assert_eq!(r.json()["resultCode"], "BIND_PROOF_INVALID");
    assert_eq!(app.device_bind(&creds, "alice").await.status, 200);

    let trusting = server.create_app_with(true).await;
    let c2 = trusting.register("i").await;
    let r = c2.device_call("/device/v1/bind", json!({"userId": "carol"})).await;
    assert_eq!(r.status, 200, "{:?}", r.json());
}

/// Issue 12: a proof's `expiresAt` had no upper bound, so a proof seen once could bind for
/// ever. Now it is valid at most `limits.bind_proof_max_secs` (600 s) and binds once.
#[tokio::test]
async fn a_bind_proof_is_valid_ten_minutes_at_most_and_binds_once() {
    let Some(server) = start_server().await else { return };
    let app = server.create_app().await;
    let creds = app.register("i").await;
    let bind = |user: &str, expires_at: i64| {
        let proof = herald_core::signing::bind_proof(app.bind_secret.as_bytes(), &creds.device_id, user, expires_at);
        creds.device_call("/device/v1/bind", json!({"userId": user, "bindProof": proof, "expiresAt": expires_at}))
    };
    let r = bind("alice", herald_core::now_ms() + 601_000).await;
    assert_eq!((r.status, r.json()["resultCode"].as_str()), (403, Some("BIND_PROOF_INVALID")));
    assert!(r.json()["resultMessage"].as_str().unwrap().contains("600 s"), "{:?}", r.json());
    let r = bind("alice", i64::MAX).await;
    assert_eq!(r.json()["resultCode"], "BIND_PROOF_INVALID");

    let expires_at = herald_core::now_ms() + 590_000;
    assert_eq!(bind("alice", expires_at).await.status, 200);
    let again = bind("alice", expires_at).await;
    assert_eq!((again.status, again.json()["resultCode"].as_str()), (403, Some("BIND_PROOF_INVALID")));
    assert!(again.json()["resultMessage"].as_str().unwrap().contains("already used"), "{:?}", again.json());
    // A new proof from the app's server binds.
    assert_eq!(bind("alice", expires_at + 1).await.status, 200);
}

#[tokio::test]
async fn device_view_shows_platform_versions_user_online_and_last_seen() {
    let Some(server) = start_server().await else { return };
    let app = server.create_app().await;
    let creds = app.register("i").await;
    let r = creds.device_call("/device/v1/report", json!({"appVersion": "2.1", "vendorTokens": {"fcm": "tok"}})).await;
    assert_eq!(r.status, 200, "{:?}", r.json());
    assert_eq!(app.device_bind(&creds, "dave").await.status, 200);
    let view = |r: herald::http_client::Response| r.json()["resultContent"]["data"].clone();
    let v = view(app.signed("GET", &format!("/v1/devices/{}", creds.device_id), "").await);
    assert_eq!(v["platform"], "android");
    assert_eq!(v["appVersion"], "2.1");
    assert_eq!(v["userId"], "dave");
    assert_eq!(v["online"], false);
    assert_eq!(v["vendorChannels"], json!(["fcm"]));
    let device = TestDevice::connect(&creds).await;
    let v = eventually("device online with lastSeen", || async {
        let v = view(app.signed("GET", &format!("/v1/devices/{}", creds.device_id), "").await);
        (v["online"] == true && v["lastSeen"].is_i64()).then_some(v)
    })
    .await;
    assert!(v["lastSeen"].as_i64().unwrap() > 0);
    device.stop();
    let r = creds.device_call("/device/v1/unbind", json!({})).await;
    assert_eq!(r.status, 200);
    let v = view(app.signed("GET", &format!("/v1/devices/{}", creds.device_id), "").await);
    assert!(v["userId"].is_null());
    let list = app.signed("GET", "/v1/users/dave/devices", "").await.json();
    assert_eq!(list["resultContent"]["data"]["devices"], json!([]));
}

#[tokio::test]
async fn server_unbind_stops_pending_user_messages_for_that_device() {
    let Some(server) = start_server().await else { return };
    let app = server.create_app().await;
    let creds = app.register("i").await;
    let bind = app
        .signed("POST", &format!("/v1/devices/{}/bind", creds.device_id), &json!({"userId": "erin"}).to_string())
        .await;
    assert_eq!(bind.status, 200);
    let r = app
        .push_simple(json!({"deliveryType": 3, "targetMsgkey": {"erin": "private"}, "title": "t", "content": "c", "expiredSeconds": 300}))
        .await;
    let private = r.json()["pushResult"]["targets"][0]["messageId"].as_str().unwrap().to_string();
    let r = app.signed("POST", &format!("/v1/devices/{}/unbind", creds.device_id), "").await;
    assert_eq!(r.status, 200, "{:?}", r.json());
    let (_, fresh) = app.push_to_device(&creds.device_id, "k", "device message").await;
    let mut device = TestDevice::connect(&creds).await;
    assert_eq!(
        device.next_push().await.1["messageId"],
        fresh.as_str(),
        "erin's message must not reach an unbound device"
    );
    assert_eq!(app.message_status(&private).await, "pending");
}

#[tokio::test]
async fn device_events_move_a_delivery_to_opened() {
    let Some(server) = start_server().await else { return };
    let app = server.create_app().await;
    let creds = app.register("i").await;
    let mut device = TestDevice::connect(&creds).await;
    let (_, m1) = app.push_to_device(&creds.device_id, "k1", "one").await;
    device.next_push().await;
    app.wait_status(&m1, "delivered").await;
    let r = creds.device_call("/device/v1/events", json!([{"messageId": m1, "event": "opened"}])).await;
    assert_eq!(r.status, 200, "{:?}", r.json());
    app.wait_status(&m1, "opened").await;
    let r = creds.device_call("/device/v1/events", json!([{"messageId": m1, "event": "exploded"}])).await;
    assert_eq!(r.json()["resultCode"], "INVALID_PARAM");
}

/// A device's event time is its own, unless it is before the message was made or later than
/// the server's clock allows: then the time the report arrived.
#[tokio::test]
async fn device_event_times_outside_the_messages_life_take_the_servers_time() {
    let Some(server) = start_server().await else { return };
    let app = server.create_app().await;
    let creds = app.register("i").await;
    let times = |m: Value| -> (i64, i64) {
        let d = &m["resultContent"]["data"]["deliveries"][0];
        (d["deliveredAt"].as_i64().unwrap_or(-1), d["updatedAt"].as_i64().unwrap_or(-1))
    };
    let in_2100 = 4_102_444_800_000_i64;
    for (key, at) in [("k1", in_2100), ("k2", 1), ("k3", -7)] {
        let (_, m) = app.push_to_device(&creds.device_id, key, "one").await;
        let before = herald_core::now_ms();
        let r = creds.device_call("/device/v1/events", json!([{"messageId": m, "event": "opened", "at": at}])).await;
        assert_eq!(r.status, 200, "{:?}", r.json());
        app.wait_status(&m, "opened").await;
        let (delivered, updated) = times(app.message(&m).await.json());
        for t in [delivered, updated] {
            assert!(t >= before && t <= herald_core::now_ms(), "{key}: at {at} stored as {t}");
        }
    }
    // A time within the message's life is kept as the device gave it.
    let (_, m) = app.push_to_device(&creds.device_id, "k4", "one").await;
    let at = herald_core::now_ms() + 1_000;
    creds.device_call("/device/v1/events", json!([{"messageId": m, "event": "opened", "at": at}])).await;
    app.wait_status(&m, "opened").await;
    assert_eq!(times(app.message(&m).await.json()), (at, at));
}

/// Issue 13: an app could not list its devices. `GET /v1/devices` pages them newest first,
/// filtered by deviceId, userId, installId or platform, and sees only the app's own.
#[tokio::test]
async fn devices_are_listed_newest_first_with_filters_and_pages() {
    let Some(server) = start_server().await else { return };
    let app = server.create_app().await;
    let other = server.create_app().await;
    let mut made = Vec::new();
    for i in 0..3 {
        made.push(app.register(&format!("install-{i}")).await.device_id);
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    other.register("theirs").await;
    let r = app.signed("POST", &format!("/v1/devices/{}/bind", made[0]), r#"{"userId":"alice"}"#).await;
    assert_eq!(r.status, 200, "{:?}", r.json());
    let list = |query: String| {
        let app = &app;
        async move { app.signed("GET", &format!("/v1/devices{query}"), "").await }
    };
    let ids = |r: &herald::http_client::Response| -> Vec<String> {
        r.json()["resultContent"]["data"]["list"]
            .as_array()
            .unwrap_or_else(|| panic!("{:?}", r.json()))
            .iter()
            .map(|d| d["deviceId"].as_str().unwrap().to_string())
            .collect()
    };
    let r = list("?pageSize=2".into()).await;
    assert_eq!(r.json()["resultContent"]["data"]["totalCount"], 3, "{:?}", r.json());
    assert_eq!(ids(&r), vec![made[2].clone(), made[1].clone()]);
    let first = &r.json()["resultContent"]["data"]["list"][0];
    assert_eq!((first["installId"].as_str(), first["platform"].as_str()), (Some("install-2"), Some("android")));
    assert_eq!(ids(&list("?pageSize=2&pageNumber=2".into()).await), vec![made[0].clone()]);
    assert_eq!(ids(&list("?userId=alice".into()).await), vec![made[0].clone()]);
    assert_eq!(ids(&list("?installId=install-1".into()).await), vec![made[1].clone()]);
    assert_eq!(ids(&list(format!("?deviceId={}", made[2])).await), vec![made[2].clone()]);
    assert!(ids(&list("?platform=ios".into()).await).is_empty());
    assert!(ids(&list("?installId=theirs".into()).await).is_empty(), "another app's device");
    let r = list("?platform=phone".into()).await;
    assert_eq!((r.status, r.json()["resultCode"].as_str()), (400, Some("INVALID_PARAM")), "{:?}", r.json());
}

/// Issue 13: `herald devices import` brings devices of another provider's export (CSV or
/// JSON) with their vendor tokens and users; a bad row is refused and summarized, an import
/// can run again, and an imported device's first registration takes its record over (same
/// deviceId, its user's pending message delivered) without a token.
#[tokio::test]
async fn devices_are_imported_from_an_export_and_claimed_by_their_first_registration() {
    let Some(server) = start_server().await else { return };
    let app = server.create_app().await;
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("export.csv");
    std::fs::write(
        &csv,
        "installId,platform,appVersion,userId,fcm,apns\n\
         old-1,android,3.1,alice,fcm-token-1,\n\
         old-2,ios,3.1,,,0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\n\
         old-3,fridge,1.0,,,\n",
    )
    .unwrap();
    let import = |file: &std::path::Path| {
        std::process::Command::new(env!("CARGO_BIN_EXE_herald"))
            .args(["devices", "import", "--app", &app.app_id, "--server", &format!("http://{}", app.http)])
            .arg(file)
            .env("HERALD_ADMIN_TOKEN", herald_testkit::ADMIN_TOKEN)
            .output()
            .unwrap()
    };
    let out = import(&csv);
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("3 devices: 2 imported, 0 updated, 1 refused"), "{stdout}");
    assert!(stdout.contains("INVALID_PARAM: 1") && stdout.contains("device 3 (installId \"old-3\")"), "{stdout}");

    let r = app.signed("GET", "/v1/devices?installId=old-1", "").await;
    let imported = r.json()["resultContent"]["data"]["list"][0].clone();
    assert_eq!(
        (imported["userId"].as_str(), imported["appVersion"].as_str()),
        (Some("alice"), Some("3.1")),
        "{imported}"
    );
    assert_eq!(imported["vendorChannels"], json!(["fcm"]));
    let device_id = imported["deviceId"].as_str().unwrap().to_string();

    // Again, as JSON: the two are updated, none is new.
    let json_file = dir.path().join("export.json");
    let rows = json!([{"installId": "old-1", "platform": "android", "userId": "alice"},
        {"installId": "old-2", "platform": "ios"}]);
    std::fs::write(&json_file, rows.to_string()).unwrap();
    let out = import(&json_file);
    assert!(String::from_utf8_lossy(&out.stdout).contains("2 devices: 0 imported, 2 updated, 0 refused"));

    // A message for alice waits; the app on old-1 registers (no token: it never had one).
    let m = app.push_to_user("alice", "k", "welcome back").await;
    let r = app.register_raw(json!({"platform": "android", "installId": "old-1", "appVersion": "4.0"})).await;
    assert_eq!(r.status, 200, "{:?}", r.json());
    assert_eq!(r.json()["deviceId"].as_str(), Some(device_id.as_str()), "the imported record, taken over");
    let creds = Creds {
        app_id: app.app_id.clone(),
        device_id: device_id.clone(),
        token: r.json()["deviceToken"].as_str().unwrap().to_string(),
        mqtt: app.mqtt.clone(),
        http: app.http.clone(),
    };
    let mut device = TestDevice::connect(&creds).await;
    assert_eq!(device.next_push().await.1["messageId"].as_str(), Some(m.as_str()));
    // Now it is registered: a registration without its token is refused, and an import
    // leaves it alone.
    let r = app.register_raw(json!({"platform": "android", "installId": "old-1"})).await;
    assert_eq!(r.status, 409, "{:?}", r.json());
    let out = import(&json_file);
    assert!(String::from_utf8_lossy(&out.stdout).contains("0 imported, 1 updated, 1 refused"));
}

/// A device's view lists what still waits for it: pushed while it was offline, gone once
/// it connected and acknowledged.
#[tokio::test]
async fn a_device_view_lists_the_messages_waiting_for_it() {
    let Some(server) = start_server().await else { return };
    let app = server.create_app().await;
    let device = app.register("install-waiting").await;
    assert_eq!(app.device_view(&device.device_id).await["waiting"], json!([]));
    let (_, message_id) = app.push_to_device(&device.device_id, "k1", "Still waiting").await;
    let waiting = app.device_view(&device.device_id).await["waiting"].clone();
    assert_eq!(waiting.as_array().map(Vec::len), Some(1), "{waiting}");
    assert_eq!(waiting[0]["messageId"], message_id.as_str());
    assert_eq!(
        (waiting[0]["type"].as_str(), waiting[0]["title"].as_str()),
        (Some("notification"), Some("Still waiting"))
    );
    assert_eq!(waiting[0]["sentBefore"], false);
    let mut mqtt = TestDevice::connect(&device).await;
    let (_, push) = mqtt.next_push().await;
    assert_eq!(push["messageId"], message_id.as_str());
    app.wait_status(&message_id, "delivered").await;
    assert_eq!(app.device_view(&device.device_id).await["waiting"], json!([]), "acknowledged");
}
