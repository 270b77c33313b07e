//! Revoke: before delivery nothing reaches the device; after delivery the device gets a
//! `revoke` control message, at once or when it next connects.

use std::time::Duration;

use serde_json::{Value, json};

use crate::common::*;

async fn revoke(app: &TestApp, msg_key: &str, target: &str) -> (u16, Value) {
    let r = app.signed("POST", "/v1/push/revoke", &json!({"messageId": msg_key, "targetId": target}).to_string()).await;
    (r.status, r.json())
}

#[tokio::test]
async fn a_message_revoked_before_delivery_never_arrives() {
    let Some(server) = start_server().await else { return };
    let app = server.create_app().await;
    let creds = app.register("d").await;
    let (_, m) = app.push_to_device(&creds.device_id, "k1", "to revoke").await;
    let (_, kept) = app.push_to_device(&creds.device_id, "k2", "to keep").await;
    let (status, j) = revoke(&app, "k1", &creds.device_id).await;
    assert_eq!(status, 200, "{j}");
    assert_eq!((j["pushResult"]["withdrawn"].as_u64(), j["pushResult"]["recalled"].as_u64()), (Some(1), Some(0)));
    let mut device = TestDevice::connect(&creds).await;
    assert_eq!(device.next_push().await.1["messageId"], kept.as_str());
    assert!(device.quiet_for(Duration::from_millis(500)).await, "the revoked message must not arrive");
    assert_eq!(app.message_status(&m).await, "revoked");
    let view = app.message(&m).await.json();
    assert_eq!(view["resultContent"]["data"]["deliveries"][0]["status"], "revoked");
    // Revoking again changes nothing; an unknown msgKey or target is not found.
    let (status, j) = revoke(&app, "k1", &creds.device_id).await;
    assert_eq!((status, j["pushResult"]["withdrawn"].as_u64()), (200, Some(0)));
    assert_eq!(revoke(&app, "nope", &creds.device_id).await.1["resultCode"], "MESSAGE_NOT_EXIST");
    assert_eq!(revoke(&app, "k1", "other-device").await.1["resultCode"], "MESSAGE_NOT_EXIST");
}

#[tokio::test]
async fn a_delivered_message_is_recalled_at_once_or_at_the_next_connect() {
    let Some(server) = start_server().await else { return };
    let app = server.create_app().await;
    let online = app.register("online").await;
    let offline = app.register("offline").await;
    let mut on = TestDevice::connect(&online).await;
    let mut off = TestDevice::connect(&offline).await;
    let body = json!({"deliveryType": 1, "targetMsgkey": {online.device_id.clone(): "k", offline.device_id.clone(): "k"},
        "title": "t", "content": "c", "expiredSeconds": 300});
    let r = app.push_simple(body).await;
    assert_eq!(r.status, 200);
    let first = on.next_push().await.1["messageId"].as_str().unwrap().to_string();
    let second = off.next_push().await.1["messageId"].as_str().unwrap().to_string();
    app.wait_status(&first, "delivered").await;
    app.wait_status(&second, "delivered").await;
    off.stop();
    tokio::time::sleep(Duration::from_millis(200)).await;

    assert_eq!(revoke(&app, "k", &online.device_id).await.0, 200);
    let (_, control) = on.next_push().await;
    assert_eq!((control["type"].as_str(), control["messageId"].as_str()), (Some("revoke"), Some(first.as_str())));
    assert_eq!(control["msgKey"], "k");
    assert_eq!(app.message_status(&first).await, "revoked");

    assert_eq!(revoke(&app, "k", &offline.device_id).await.0, 200);
    let mut again = TestDevice::connect(&offline).await;
    let (_, control) = again.next_push().await;
    assert_eq!((control["type"].as_str(), control["messageId"].as_str()), (Some("revoke"), Some(second.as_str())));
    assert!(again.quiet_for(Duration::from_millis(300)).await, "only the control message, once");
}

#[tokio::test]
async fn revoking_a_task_withdraws_every_target_and_a_late_bind_gets_nothing() {
    let Some(server) = start_server().await else { return };
    let app = server.create_app().await;
    let r = app
        .push_simple(json!({"deliveryType": 3, "targetMsgkey": {"carol": "k1", "dave": "k2"}, "title": "t",
            "content": "c", "expiredSeconds": 300}))
        .await;
    let task_id = r.json()["pushResult"]["data"].as_str().unwrap().to_string();
    let r = app.signed("POST", "/v1/push/revoke-task", &json!({"taskId": task_id}).to_string()).await;
    assert_eq!(r.status, 200, "{:?}", r.json());
    assert_eq!(r.json()["pushResult"]["revokedMessages"].as_array().unwrap().len(), 2);
    let creds = app.register("carol-phone").await;
    assert_eq!(app.device_bind(&creds, "carol").await.status, 200);
    let mut device = TestDevice::connect(&creds).await;
    assert!(device.quiet_for(Duration::from_millis(500)).await, "a revoked user message must not follow a bind");
    let task = app.task(&task_id).await.json();
    let statuses: Vec<&str> = task["resultContent"]["data"]["targets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, vec!["revoked", "revoked"]);
    let r = app.signed("POST", "/v1/push/revoke-task", &json!({"taskId": "t-nope"}).to_string()).await;
    assert_eq!((r.status, r.json()["resultCode"].as_str()), (404, Some("TASK_NOT_EXIST")));
    let other = server.create_app().await;
    let r = other.signed("POST", "/v1/push/revoke-task", &json!({"taskId": task_id}).to_string()).await;
    assert_eq!(r.json()["resultCode"], "TASK_NOT_EXIST", "another app's task");
}
