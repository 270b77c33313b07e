//! The binary on the PostgreSQL store: delivery online, offline, to users and late binds,
//! and nothing accepted lost to SIGKILL. Skipped (and says so) without HERALD_TEST_POSTGRES_URL.

use serde_json::json;

use crate::common::*;

#[tokio::test]
async fn pushes_are_delivered_online_offline_and_to_late_binders_on_postgres() {
    let Some(server) = TestServer::start_postgres().await else { return };
    let app = server.create_app().await;
    let online = app.register("online").await;
    let offline = app.register("offline").await;
    let mut device = TestDevice::connect(&online).await;
    let (_, m1) = app.push_to_device(&online.device_id, "k1", "now").await;
    assert_eq!(device.next_push().await.1["messageId"], m1.as_str());
    app.wait_status(&m1, "delivered").await;
    let (_, m2) = app.push_to_device(&offline.device_id, "k2", "later").await;
    assert_eq!(app.message_status(&m2).await, "pending");
    let mut late = TestDevice::connect(&offline).await;
    assert_eq!(late.next_push().await.1["messageId"], m2.as_str());
    let r = app
        .push_simple(json!({"deliveryType": 3, "targetMsgkey": {"pat": "u1"}, "title": "t", "content": "c", "expiredSeconds": 60}))
        .await;
    let m3 = r.json()["pushResult"]["targets"][0]["messageId"].as_str().unwrap().to_string();
    assert_eq!(app.device_bind(&online, "pat").await.status, 200);
    assert_eq!(device.next_push().await.1["messageId"], m3.as_str());
    app.wait_status(&m3, "delivered").await;
    let again = app.push_to_device(&online.device_id, "k1", "repeat").await;
    assert_eq!(again.1, m1, "idempotent on PostgreSQL too");
}

#[tokio::test]
async fn a_push_answered_200_survives_sigkill_on_postgres() {
    let Some(mut server) = TestServer::start_postgres().await else { return };
    let mut app = server.create_app().await;
    let mut creds = app.register("i").await;
    let (_, m) = app.push_to_device(&creds.device_id, "k", "survive").await;
    server.kill9();
    let server = server.restart().await;
    (creds.mqtt, creds.http, app.http) = (server.mqtt.clone(), server.http.clone(), server.http.clone());
    let mut device = TestDevice::connect(&creds).await;
    assert_eq!(device.next_push().await.1["messageId"], m.as_str());
    app.wait_status(&m, "delivered").await;
}
