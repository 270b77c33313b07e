//! Simple push: online and offline delivery, user targets and late binds, expiry,
//! idempotency, status views, and isolation between apps.

use serde_json::json;

use crate::common::*;

#[tokio::test]
async fn online_device_gets_every_field_at_once_and_status_becomes_delivered() {
    let Some(server) = start_server().await else { return };
    let app = server.create_app().await;
    let creds = app.register("install-1").await;
    let mut device = TestDevice::connect(&creds).await;
    let r = app
        .push_simple(json!({
            "taskName": "welcome", "deliveryType": 1, "targetMsgkey": {creds.device_id.clone(): "order-1"},
            "title": "Hello", "content": "Your order shipped", "uri": "app://orders/1", "pushAction": 1,
            "pushStyle": 1, "silent": 0, "notifyType": "transparent", "extendedParams": {"orderId": "1", "n": 2},
            "expiredSeconds": 600
        }))
        .await;
    assert_eq!(r.status, 200, "{:?}", r.json());
    let j = r.json();
    assert_eq!(j["resultCode"], "OK");
    let task_id = j["pushResult"]["data"].as_str().unwrap().to_string();
    let message_id = j["pushResult"]["targets"][0]["messageId"].as_str().unwrap().to_string();
    assert_eq!(j["pushResult"]["targets"][0]["status"], "accepted");

    let (publish, payload) = device.next_push().await;
    assert_eq!(publish.topic, format!("push/{}", creds.device_id));
    assert_eq!(publish.qos, rumqttc::QoS::AtLeastOnce);
    assert!(!publish.dup);
    assert_eq!(payload["type"], "notification");
    assert_eq!(payload["messageId"], message_id.as_str());
    assert_eq!(payload["taskId"], task_id.as_str());
    assert_eq!(payload["msgKey"], "order-1");
    assert_eq!(payload["pushType"], "simple");
    assert_eq!(payload["title"], "Hello");
    assert_eq!(payload["content"], "Your order shipped");
    assert_eq!(payload["uri"], "app://orders/1");
    assert_eq!(payload["pushAction"], 1);
    assert_eq!(payload["pushStyle"], 1);
    assert_eq!(payload["silent"], 0);
    assert_eq!(payload["notifyType"], "transparent");
    assert_eq!(payload["extendedParams"], json!({"orderId": "1", "n": 2}));
    assert!(payload["expiresAt"].as_i64().unwrap() - payload["sentAt"].as_i64().unwrap() == 600_000);

    app.wait_status(&message_id, "delivered").await;
    let m = app.message(&message_id).await.json();
    let d = &m["resultContent"]["data"]["deliveries"][0];
    assert_eq!(d["deviceId"], creds.device_id.as_str());
    assert!(d["deliveredAt"].as_i64().unwrap() >= d["sentAt"].as_i64().unwrap());

    let t = app.task(&task_id).await.json();
    let t = &t["resultContent"]["data"];
    assert_eq!(t["type"], "simple");
    assert_eq!(t["taskName"], "welcome");
    assert_eq!(t["counts"]["delivered"], 1);
    assert_eq!(t["targets"][0]["target"], creds.device_id.as_str());
}

#[tokio::test]
async fn offline_device_gets_pending_messages_oldest_first_when_it_connects() {
    let Some(server) = start_server().await else { return };
    let app = server.create_app().await;
    let creds = app.register("install-1").await;
    let (_, first) = app.push_to_device(&creds.device_id, "k1", "first").await;
    let (_, second) = app.push_to_device(&creds.device_id, "k2", "second").await;
    assert_eq!(app.message_status(&first).await, "pending");
    let mut device = TestDevice::connect(&creds).await;
    assert_eq!(device.next_push().await.1["messageId"], first.as_str());
    assert_eq!(device.next_push().await.1["messageId"], second.as_str());
    app.wait_status(&first, "delivered").await;
    app.wait_status(&second, "delivered").await;
}

#[tokio::test]
async fn user_push_reaches_every_bound_device_and_a_device_that_binds_later() {
    let Some(server) = start_server().await else { return };
    let app = server.create_app().await;
    let a = app.register("phone").await;
    let b = app.register("tablet").await;
    let late = app.register("laptop").await;
    assert_eq!(app.device_bind(&a, "alice").await.status, 200);
    let r =
        app.signed("POST", &format!("/v1/devices/{}/bind", b.device_id), &json!({"userId": "alice"}).to_string()).await;
    assert_eq!(r.status, 200, "{:?}", r.json());
    let mut da = TestDevice::connect(&a).await;
    let r = app
        .push_simple(json!({"deliveryType": 3, "targetMsgkey": {"alice": "promo-7"}, "title": "Hi Alice",
            "content": "A deal", "expiredSeconds": 300}))
        .await;
    assert_eq!(r.status, 200, "{:?}", r.json());
    let message_id = r.json()["pushResult"]["targets"][0]["messageId"].as_str().unwrap().to_string();
    assert_eq!(da.next_push().await.1["messageId"], message_id.as_str());
    // b was offline: it gets the message when it connects.
    let mut db = TestDevice::connect(&b).await;
    assert_eq!(db.next_push().await.1["messageId"], message_id.as_str());
    // A device that binds alice later, within the validity, gets it too, while connected.
    let mut dl = TestDevice::connect(&late).await;
    assert_eq!(app.device_bind(&late, "alice").await.status, 200);
    assert_eq!(dl.next_push().await.1["messageId"], message_id.as_str());
    eventually("three deliveries acknowledged", || async {
        let m = app.message(&message_id).await.json();
        let deliveries = m["resultContent"]["data"]["deliveries"].as_array().unwrap().clone();
        (deliveries.len() == 3 && deliveries.iter().all(|d| d["status"] == "delivered")).then_some(())
    })
    .await;
    let users = app.signed("GET", "/v1/users/alice/devices", "").await.json();
    assert_eq!(users["resultContent"]["data"]["devices"].as_array().unwrap().len(), 3);
}

#[tokio::test]
async fn a_user_push_without_devices_waits_for_a_bind() {
    let Some(server) = start_server().await else { return };
    let app = server.create_app().await;
    let r = app
        .push_simple(json!({"deliveryType": "user", "targetMsgkey": {"bob": "k"}, "title": "t", "content": "c",
            "expiredSeconds": 300}))
        .await;
    let message_id = r.json()["pushResult"]["targets"][0]["messageId"].as_str().unwrap().to_string();
    assert_eq!(app.message_status(&message_id).await, "pending");
    let creds = app.register("bobs-phone").await;
    assert_eq!(app.device_bind(&creds, "bob").await.status, 200);
    let mut device = TestDevice::connect(&creds).await;
    assert_eq!(device.next_push().await.1["messageId"], message_id.as_str());
    app.wait_status(&message_id, "delivered").await;
}

#[tokio::test]
async fn an_expired_message_is_never_delivered_and_shows_expired() {
    let Some(server) = start_server().await else { return };
    let app = server.create_app().await;
    let creds = app.register("install-1").await;
    let r = app
        .push_simple(json!({"deliveryType": 1, "targetMsgkey": {creds.device_id.clone(): "short"}, "title": "t",
            "content": "c", "expiredSeconds": 1}))
        .await;
    let expired = r.json()["pushResult"]["targets"][0]["messageId"].as_str().unwrap().to_string();
    app.wait_status(&expired, "expired").await;
    // Oldest first: had the expired message been delivered, it would come before this one.
    let (_, fresh) = app.push_to_device(&creds.device_id, "fresh", "fresh").await;
    let mut device = TestDevice::connect(&creds).await;
    assert_eq!(device.next_push().await.1["messageId"], fresh.as_str());
    app.wait_status(&fresh, "delivered").await;
    assert_eq!(app.message_status(&expired).await, "expired");
    let m = app.message(&expired).await.json();
    assert_eq!(m["resultContent"]["data"]["deliveries"][0]["status"], "expired");
}

#[tokio::test]
async fn the_same_msgkey_and_target_is_not_sent_twice_within_the_validity() {
    let Some(server) = start_server().await else { return };
    let app = server.create_app().await;
    let creds = app.register("install-1").await;
    let (task1, m1) = app.push_to_device(&creds.device_id, "same-key", "one").await;
    let (task2, m2) = app.push_to_device(&creds.device_id, "same-key", "one again").await;
    assert_eq!(task1, task2, "a whole repeat answers with the first task");
    assert_eq!(m1, m2);
    // A request that mixes a repeat with a new target makes a new task; the repeat is skipped.
    let other = app.register("install-2").await;
    let r = app
        .push_simple(json!({"deliveryType": 1, "targetMsgkey": {creds.device_id.clone(): "same-key", other.device_id.clone(): "same-key"},
            "title": "t", "content": "c", "expiredSeconds": 60}))
        .await;
    let targets = r.json()["pushResult"]["targets"].as_array().unwrap().clone();
    let status_of =
        |id: &str| targets.iter().find(|t| t["target"] == id).unwrap()["status"].as_str().unwrap().to_string();
    assert_eq!(status_of(&creds.device_id), "duplicate");
    assert_eq!(status_of(&other.device_id), "accepted");
    let (_, m3) = app.push_to_device(&creds.device_id, "next-key", "next").await;
    let mut device = TestDevice::connect(&creds).await;
    assert_eq!(device.next_push().await.1["messageId"], m1.as_str());
    assert_eq!(device.next_push().await.1["messageId"], m3.as_str(), "the repeat must not be delivered");
}

#[tokio::test]
async fn one_app_can_never_reach_or_read_another_apps_devices_tasks_or_messages() {
    let Some(server) = start_server().await else { return };
    let app1 = server.create_app().await;
    let app2 = server.create_app().await;
    let victim = app2.register("victim").await;
    let mut victim_device = TestDevice::connect(&victim).await;
    let own = app1.register("own").await;

    let r = app1
        .push_simple(
            json!({"deliveryType": 1, "targetMsgkey": {victim.device_id.clone(): "x", own.device_id.clone(): "y"},
            "title": "t", "content": "c", "expiredSeconds": 60}),
        )
        .await;
    assert_eq!(r.status, 200);
    let targets = r.json()["pushResult"]["targets"].as_array().unwrap().clone();
    let foreign = targets.iter().find(|t| t["target"] == victim.device_id.as_str()).unwrap();
    assert_eq!(foreign["status"], "undeliverable");
    let foreign_message = foreign["messageId"].as_str().unwrap().to_string();
    assert_eq!(app1.message_status(&foreign_message).await, "undeliverable");

    let r = app1.signed("GET", &format!("/v1/devices/{}", victim.device_id), "").await;
    assert_eq!((r.status, r.json()["resultCode"].as_str()), (404, Some("DEVICE_NOT_EXIST")));
    let r = app1
        .signed("POST", &format!("/v1/devices/{}/bind", victim.device_id), &json!({"userId": "u"}).to_string())
        .await;
    assert_eq!(r.status, 404);

    let (task2, message2) = app2.push_to_device(&victim.device_id, "k", "own app").await;
    assert_eq!(app1.task(&task2).await.json()["resultCode"], "TASK_NOT_EXIST");
    assert_eq!(app1.message(&message2).await.json()["resultCode"], "MESSAGE_NOT_EXIST");
    // The victim received only its own app's message.
    assert_eq!(victim_device.next_push().await.1["messageId"], message2.as_str());
}

#[tokio::test]
async fn a_msgkey_is_free_again_once_its_message_expired() {
    let Some(server) = start_server().await else { return };
    let app = server.create_app().await;
    let creds = app.register("install-1").await;
    let body = |secs: i64| {
        json!({"deliveryType": 1, "targetMsgkey": {creds.device_id.clone(): "daily"}, "title": "t", "content": "c",
            "expiredSeconds": secs})
    };
    let first = app.push_simple(body(1)).await.json();
    let first_id = first["pushResult"]["targets"][0]["messageId"].as_str().unwrap().to_string();
    app.wait_status(&first_id, "expired").await;
    let again = app.push_simple(body(60)).await.json();
    let target = &again["pushResult"]["targets"][0];
    assert_eq!(target["status"], "accepted");
    assert_ne!(target["messageId"], first_id.as_str());
    assert_ne!(again["pushResult"]["data"], first["pushResult"]["data"]);
}

#[tokio::test]
async fn every_device_delivery_type_and_each_limit_itself_is_accepted() {
    let Some(server) = start_server().await else { return };
    let app = server.create_app().await;
    let creds = app.register("install-1").await;
    let mut device = TestDevice::connect(&creds).await;
    // Ten targets (nine unknown ones), twenty extended parameters, 72 hours: all at the limit.
    let mut targets: serde_json::Map<String, serde_json::Value> =
        (0..9).map(|i| (format!("dunknown{i}"), json!(format!("k{i}")))).collect();
    targets.insert(creds.device_id.clone(), json!("limits"));
    let params: serde_json::Map<String, serde_json::Value> = (0..20).map(|i| (format!("p{i}"), json!(i))).collect();
    let r = app
        .push_simple(json!({"deliveryType": 7, "targetMsgkey": targets, "title": "x".repeat(200), "content": "c",
            "extendedParams": params, "expiredSeconds": 259_200}))
        .await;
    assert_eq!(r.status, 200, "{:?}", r.json());
    let (_, payload) = device.next_push().await;
    assert_eq!(payload["msgKey"], "limits");
    assert_eq!(payload["extendedParams"].as_object().unwrap().len(), 20);
    assert_eq!(payload["expiresAt"].as_i64().unwrap() - payload["sentAt"].as_i64().unwrap(), 259_200_000);
    for (i, delivery_type) in [json!(1), json!(2), json!("2"), json!("device")].into_iter().enumerate() {
        let r = app
            .push_simple(
                json!({"deliveryType": delivery_type, "targetMsgkey": {creds.device_id.clone(): format!("t{i}")},
                "title": "t", "content": "c", "expiredSeconds": 60}),
            )
            .await;
        assert_eq!(r.status, 200, "deliveryType {delivery_type}: {:?}", r.json());
        assert_eq!(device.next_push().await.1["msgKey"], format!("t{i}"));
    }
}

/// Issue 13: an app could not list its tasks. `GET /v1/tasks` pages them newest first, with
/// filters, and sees only the app's own.
#[tokio::test]
async fn tasks_are_listed_newest_first_with_filters_and_pages() {
    let Some(server) = start_server().await else { return };
    let app = server.create_app().await;
    let other = server.create_app().await;
    let creds = app.register("i").await;
    let mut made = Vec::new();
    for i in 0..3 {
        made.push(app.push_to_device(&creds.device_id, &format!("k{i}"), &format!("t{i}")).await.0);
        // Distinct creation times.
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    other.push_to_device("dnobody", "k", "t").await;
    let list = |query: &str| {
        let (app, query) = (&app, query.to_string());
        async move { app.signed("GET", &format!("/v1/tasks{query}"), "").await }
    };
    let r = list("?pageSize=2").await;
    assert_eq!(r.status, 200, "{:?}", r.json());
    let data = &r.json()["resultContent"]["data"];
    assert_eq!((data["totalCount"].as_u64(), data["pageSize"].as_u64()), (Some(3), Some(2)), "{data}");
    let ids = |data: &serde_json::Value| -> Vec<String> {
        data["list"].as_array().unwrap().iter().map(|t| t["taskId"].as_str().unwrap().to_string()).collect()
    };
    assert_eq!(ids(data), vec![made[2].clone(), made[1].clone()]);
    let first = &data["list"][0];
    assert_eq!(
        (first["type"].as_str(), first["status"].as_str(), first["deliveryType"].as_i64()),
        (Some("simple"), Some("active"), Some(1))
    );
    let r = list("?pageSize=2&pageNumber=2").await;
    assert_eq!(ids(&r.json()["resultContent"]["data"]), vec![made[0].clone()]);
    for (query, want) in
        [("?type=broadcast", 0), ("?type=simple&status=active", 3), ("?status=expired", 0), ("?to=1", 0)]
    {
        let r = list(query).await;
        assert_eq!(r.json()["resultContent"]["data"]["totalCount"], want, "{query}: {:?}", r.json());
    }
    for bad in ["?type=loud", "?status=soon", "?from=yesterday"] {
        let r = list(bad).await;
        assert_eq!((r.status, r.json()["resultCode"].as_str()), (400, Some("INVALID_PARAM")), "{bad}: {:?}", r.json());
    }
}

/// Issue 13: an operator could not tell whether an API key is in use. A key's accepted
/// signed requests set its `lastUsedAt` (to the minute), shown by the admin API.
#[tokio::test]
async fn an_api_key_shows_when_it_last_signed_a_request() {
    let Some(server) = start_server().await else { return };
    let app = server.create_app().await;
    let last_used = || async {
        let r = server.admin("GET", &format!("/admin/v1/apps/{}/keys", app.app_id), serde_json::Value::Null).await;
        r.json()["keys"][0]["lastUsedAt"].as_i64()
    };
    assert_eq!(last_used().await, None, "never used yet");
    let before = herald_core::now_ms();
    let r = app.signed("GET", "/v1/tasks", "").await;
    assert_eq!(r.status, 200);
    let at = eventually("the key's use to be recorded", || async { last_used().await }).await;
    assert!(at >= before && at <= herald_core::now_ms(), "lastUsedAt {at}");
    // The app's view shows the same.
    let shown = server.admin("GET", &format!("/admin/v1/apps/{}", app.app_id), serde_json::Value::Null).await;
    assert_eq!(shown.json()["keys"][0]["lastUsedAt"].as_i64(), Some(at));
}
