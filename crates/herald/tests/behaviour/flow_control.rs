//! Per-app flow control: an app over its request or push rate gets 429 `FLOW_CONTROL` with
//! `Retry-After`, nothing of the refused request is done, and other apps are not held back.

use std::time::Duration;

use serde_json::json;

use crate::common::*;

#[tokio::test]
async fn an_app_over_its_request_rate_is_refused_and_another_app_is_not() {
    let Some(server) = TestServer::start_with(crate::BACKEND, |cfg| {
        cfg.limits.app_requests_per_second = 5;
        cfg.limits.app_request_burst = 5;
    })
    .await
    else {
        return;
    };
    let (busy, quiet) = (server.create_app().await, server.create_app().await);
    // Forged requests cost the app nothing: its bucket is spent only once a signature holds.
    for _ in 0..10 {
        let forged = TestApp { secret: "not the secret".into(), ..busy.clone() };
        assert_eq!(forged.signed("GET", "/v1/templates", "").await.status, 401);
    }
    for i in 0..5 {
        let r = busy.signed("GET", "/v1/templates", "").await;
        assert_eq!(r.status, 200, "request {i} is within the burst: {:?}", r.json());
    }
    let refused = busy.signed("GET", "/v1/templates", "").await;
    assert_eq!((refused.status, refused.json()["resultCode"].as_str()), (429, Some("FLOW_CONTROL")));
    assert_eq!(refused.header("retry-after"), Some("1"));
    assert!(refused.json()["resultMessage"].as_str().unwrap().contains("5 requests a second"), "{:?}", refused.json());
    assert_eq!(quiet.signed("GET", "/v1/templates", "").await.status, 200, "another app has its own bucket");
    // One token comes back every 200 ms.
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert_eq!(busy.signed("GET", "/v1/templates", "").await.status, 200);
}

#[tokio::test]
async fn a_push_beyond_the_push_rate_is_refused_and_not_delivered() {
    let Some(server) = TestServer::start_with(crate::BACKEND, |cfg| {
        cfg.limits.app_pushes_per_second = 1;
        cfg.limits.app_push_burst = 20;
    })
    .await
    else {
        return;
    };
    let app = server.create_app().await;
    let mut devices = Vec::new();
    for i in 0..10 {
        devices.push(app.register(&format!("rated-{i}")).await);
    }
    let mut online = TestDevice::connect(&devices[0]).await;
    let to_ten = |msg: &str| {
        let targets: serde_json::Map<String, serde_json::Value> =
            devices.iter().map(|d| (d.device_id.clone(), json!(msg))).collect();
        json!({"deliveryType": 1, "targetMsgkey": targets, "title": "t", "content": "c", "expiredSeconds": 300})
    };
    // 10 targets each: two pushes spend the burst of 20.
    for msg in ["first", "second"] {
        let r = app.push_simple(to_ten(msg)).await;
        assert_eq!(r.status, 200, "{:?}", r.json());
        assert_eq!(online.next_push().await.1["msgKey"], msg);
    }
    let refused = app.push_simple(to_ten("third")).await;
    assert_eq!((refused.status, refused.json()["resultCode"].as_str()), (429, Some("FLOW_CONTROL")));
    assert_eq!(refused.header("retry-after"), Some("10"), "10 targets at 1 a second");
    assert!(online.quiet_for(Duration::from_millis(300)).await, "nothing of a refused push is delivered");
    // A broadcast counts one target; the bucket has none yet.
    let r = app.signed("POST", "/v1/push/broadcast", &json!({"msgkey": "b", "templateName": "none"}).to_string()).await;
    assert_eq!(r.json()["resultCode"], "TEMPLATE_NOT_EXIST", "validated before it is counted: {:?}", r.json());
}
