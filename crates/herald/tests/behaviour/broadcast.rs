//! Broadcast push: every qualifying device of the app, online at once, offline at its next
//! connect, never a device registered later; counts without a row per device up front.

use std::time::Duration;

use serde_json::{Value, json};

use crate::common::*;

async fn template(app: &TestApp) {
    let body = json!({"templateName": "news", "title": "News for #who#", "content": "#what#"});
    let r = app.signed("POST", "/v1/templates", &body.to_string()).await;
    assert_eq!(r.status, 200, "{:?}", r.json());
}

async fn broadcast(app: &TestApp, extra: Value) -> Value {
    let mut body = json!({"deliveryType": 1, "templateName": "news", "templateKeyValue": {"who": "all", "what": "hi"},
        "msgkey": "b1", "expiredSeconds": 300});
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    app.signed("POST", "/v1/push/broadcast", &body.to_string()).await.json()
}

async fn ios(app: &TestApp, install: &str) -> Creds {
    let r = app.register_raw(json!({"platform": "ios", "installId": install})).await;
    let j = r.json();
    Creds {
        app_id: app.app_id.clone(),
        device_id: j["deviceId"].as_str().unwrap().into(),
        token: j["deviceToken"].as_str().unwrap().into(),
        mqtt: app.mqtt.clone(),
        http: app.http.clone(),
    }
}

#[tokio::test]
async fn a_broadcast_reaches_online_and_offline_devices_but_not_later_ones() {
    let Some(server) = start_server().await else { return };
    let app = server.create_app().await;
    template(&app).await;
    let online = app.register("online").await;
    let offline = app.register("offline").await;
    let unbound = app.register("unbound").await;
    let iphone = ios(&app, "iphone").await;
    for (c, u) in [(&online, "u1"), (&offline, "u2"), (&iphone, "u3")] {
        assert_eq!(app.device_bind(c, u).await.status, 200);
    }
    let mut on = TestDevice::connect(&online).await;
    let mut not_bound = TestDevice::connect(&unbound).await;
    let mut apple = TestDevice::connect(&iphone).await;

    let j = broadcast(&app, json!({})).await;
    assert_eq!(j["resultCode"], "OK", "{j}");
    let (task_id, message_id) = (
        j["pushResult"]["data"].as_str().unwrap().to_string(),
        j["pushResult"]["messageId"].as_str().unwrap().to_string(),
    );
    let (_, p) = on.next_push().await;
    assert_eq!((p["messageId"].as_str(), p["pushType"].as_str()), (Some(message_id.as_str()), Some("broadcast")));
    assert_eq!(p["title"], "News for all");
    assert!(not_bound.quiet_for(Duration::from_millis(300)).await, "pushStatus 0: bound devices only");
    assert!(apple.quiet_for(Duration::from_millis(100)).await, "deliveryType 1: Android only");

    // Registered (and bound) after the broadcast: not in its audience.
    let later = app.register("later").await;
    assert_eq!(app.device_bind(&later, "u4").await.status, 200);
    let mut late = TestDevice::connect(&later).await;
    let mut off = TestDevice::connect(&offline).await;
    assert_eq!(off.next_push().await.1["messageId"], message_id.as_str(), "the offline device gets it on connect");
    assert!(late.quiet_for(Duration::from_millis(300)).await, "a device registered later must not get it");

    let counts = eventually("both deliveries acknowledged", || async {
        let t = app.task(&task_id).await.json();
        let data = &t["resultContent"]["data"];
        (data["counts"]["delivered"] == 2).then(|| data.clone())
    })
    .await;
    assert_eq!(counts["type"], "broadcast");
    assert_eq!(counts["broadcast"]["eligible"], 2, "{counts}");
    assert!(counts["counts"].get("pending").is_none_or(|p| p == 0), "{counts}");
    // The same msgkey again within its validity: the earlier broadcast, nothing sent twice.
    let again = broadcast(&app, json!({})).await;
    assert_eq!(
        (again["pushResult"]["status"].as_str(), again["pushResult"]["data"].as_str()),
        (Some("duplicate"), Some(task_id.as_str()))
    );
    assert!(on.quiet_for(Duration::from_millis(300)).await);
}

#[tokio::test]
async fn push_status_selects_bound_unbound_or_all() {
    let Some(server) = start_server().await else { return };
    let app = server.create_app().await;
    template(&app).await;
    let bound = app.register("bound").await;
    assert_eq!(app.device_bind(&bound, "u").await.status, 200);
    let free = app.register("free").await;
    let mut b = TestDevice::connect(&bound).await;
    let mut f = TestDevice::connect(&free).await;
    let unbound_only = broadcast(&app, json!({"msgkey": "unbound", "pushStatus": 2})).await;
    assert_eq!(unbound_only["resultCode"], "OK", "{unbound_only}");
    assert_eq!(f.next_push().await.1["msgKey"], "unbound");
    assert!(b.quiet_for(Duration::from_millis(300)).await);
    broadcast(&app, json!({"msgkey": "everyone", "pushStatus": 1})).await;
    assert_eq!(f.next_push().await.1["msgKey"], "everyone");
    assert_eq!(b.next_push().await.1["msgKey"], "everyone");

    let user = broadcast(&app, json!({"msgkey": "u", "deliveryType": 3})).await;
    assert_eq!(user["resultCode"], "BROADCAST_ONLY_SUPPORT_BY_DEVICE");
    let bad = broadcast(&app, json!({"msgkey": "p", "pushStatus": 5})).await;
    assert_eq!(bad["resultCode"], "INVALID_PARAM");
    let no_template = broadcast(&app, json!({"msgkey": "t", "templateName": "nope"})).await;
    assert_eq!(no_template["resultCode"], "TEMPLATE_NOT_EXIST");
}

#[tokio::test]
async fn a_revoked_broadcast_stops_and_is_recalled_where_it_arrived() {
    let Some(server) = start_server().await else { return };
    let app = server.create_app().await;
    template(&app).await;
    let got = app.register("got").await;
    let away = app.register("away").await;
    for (c, u) in [(&got, "u1"), (&away, "u2")] {
        assert_eq!(app.device_bind(c, u).await.status, 200);
    }
    let mut device = TestDevice::connect(&got).await;
    let j = broadcast(&app, json!({})).await;
    let task_id = j["pushResult"]["data"].as_str().unwrap().to_string();
    let message_id = device.next_push().await.1["messageId"].as_str().unwrap().to_string();
    eventually("the delivery acknowledged", || async {
        (app.task(&task_id).await.json()["resultContent"]["data"]["counts"]["delivered"] == 1).then_some(())
    })
    .await;
    let r = app.signed("POST", "/v1/push/revoke-task", &json!({"taskId": task_id}).to_string()).await;
    assert_eq!(r.status, 200, "{:?}", r.json());
    // Delivery is at least once (docs/device-protocol.md): the store read at CONNECT and the
    // fan-out can both hand the connection the broadcast, and once the first copy is
    // acknowledged and the connection idle a second copy may follow. A device skips it.
    let control = loop {
        let (_, v) = device.next_push().await;
        if (v["type"].as_str(), v["messageId"].as_str()) != (Some("notification"), Some(message_id.as_str())) {
            break v;
        }
    };
    assert_eq!((control["type"].as_str(), control["messageId"].as_str()), (Some("revoke"), Some(message_id.as_str())));
    let mut later = TestDevice::connect(&away).await;
    assert!(later.quiet_for(Duration::from_millis(400)).await, "a revoked broadcast reaches nobody new");
    let t = app.task(&task_id).await.json();
    assert_eq!(t["resultContent"]["data"]["counts"]["revoked"], 1, "{t}");
}
