//! Scheduled pushes through the real binary: a fixed-time push fires once at its time, is
//! listed and cannot be cancelled after; a cancelled one never fires; one scheduled before
//! a SIGKILL fires after the restart; a template a waiting schedule uses cannot be deleted.
//! (Recurrences are driven by a test clock in the store suite: no waiting for days here.)

use std::time::Duration;

use serde_json::{Value, json};

use crate::common::*;

fn at(ms_from_now: i64) -> i64 {
    herald_core::now_ms() + ms_from_now
}

async fn schedule(app: &TestApp, device: &str, key: &str, fixed_time: i64) -> Value {
    let body = json!({"deliveryType": 1, "targetMsgkey": {device: key}, "title": "later", "content": "c",
        "expiredSeconds": 300, "strategyType": 1, "strategyContent": {"fixedTime": fixed_time}});
    let r = app.push_simple(body).await;
    assert_eq!(r.status, 200, "{:?}", r.json());
    r.json()
}

async fn listed(app: &TestApp, unique_id: &str) -> Value {
    let r = app.signed("GET", &format!("/v1/schedules?uniqueId={unique_id}"), "").await;
    assert_eq!(r.status, 200, "{:?}", r.json());
    r.json()["resultContent"]["data"]["list"][0].clone()
}

#[tokio::test]
async fn a_fixed_time_push_fires_once_at_its_time() {
    let Some(server) = start_server().await else { return };
    let app = server.create_app().await;
    let creds = app.register("d").await;
    let mut device = TestDevice::connect(&creds).await;
    let fire_at = at(1_500);
    let j = schedule(&app, &creds.device_id, "k", fire_at).await;
    let unique_id = j["pushResult"]["scheduled"]["uniqueId"].as_str().unwrap().to_string();
    assert_eq!(j["pushResult"]["scheduled"]["pushTime"], fire_at);
    let waiting = listed(&app, &unique_id).await;
    assert_eq!((waiting["executedStatus"].as_i64(), waiting["strategyType"].as_i64()), (Some(0), Some(1)));
    assert!(device.quiet_for(Duration::from_millis(800)).await, "not before its time");
    let (_, p) = device.next_push().await;
    assert!(herald_core::now_ms() >= fire_at, "fired at or after fixedTime");
    assert_eq!((p["title"].as_str(), p["msgKey"].as_str()), (Some("later"), Some("k")));
    assert!(device.quiet_for(Duration::from_millis(1_500)).await, "fired exactly once");
    let done = listed(&app, &unique_id).await;
    assert_eq!(done["executedStatus"], 1);
    let task_id = done["taskId"].as_str().unwrap();
    assert_eq!(app.task(task_id).await.status, 200);
    let r = app.signed("DELETE", &format!("/v1/schedules/{unique_id}"), "").await;
    assert_eq!((r.status, r.json()["resultCode"].as_str()), (409, Some("SCHEDULE_NOT_CANCELLABLE")));
    let r = app.signed("DELETE", "/v1/schedules/s-nope", "").await;
    assert_eq!(r.json()["resultCode"], "SCHEDULE_NOT_EXIST");
}

#[tokio::test]
async fn a_cancelled_schedule_never_fires_and_holds_its_template_until_then() {
    let Some(server) = start_server().await else { return };
    let app = server.create_app().await;
    let t = json!({"templateName": "remind", "title": "Hi #n#", "content": "c"});
    assert_eq!(app.signed("POST", "/v1/templates", &t.to_string()).await.status, 200);
    let creds = app.register("d").await;
    let mut device = TestDevice::connect(&creds).await;
    let body = json!({"deliveryType": 1, "templateName": "remind", "templateKeyValue": {"n": "x"},
        "targetMsgkey": {creds.device_id.clone(): "k"}, "expiredSeconds": 300,
        "strategyType": 1, "strategyContent": {"fixedTime": at(1_000)}});
    let r = app.signed("POST", "/v1/push/template", &body.to_string()).await;
    assert_eq!(r.status, 200, "{:?}", r.json());
    let unique_id = r.json()["pushResult"]["scheduled"]["uniqueId"].as_str().unwrap().to_string();
    let r = app.signed("DELETE", "/v1/templates/remind", "").await;
    assert_eq!((r.status, r.json()["resultCode"].as_str()), (409, Some("TEMPLATE_IN_USE")));
    let r = app.signed("DELETE", &format!("/v1/schedules/{unique_id}"), "").await;
    assert_eq!(r.status, 200, "{:?}", r.json());
    assert!(device.quiet_for(Duration::from_millis(2_000)).await, "a cancelled schedule must not fire");
    assert_eq!(listed(&app, &unique_id).await["executedStatus"], 2);
    assert_eq!(app.signed("DELETE", "/v1/templates/remind", "").await.status, 200);
    // Validation happens when the push is scheduled, not when it fires.
    let mut bad = body.clone();
    bad["templateName"] = json!("gone");
    bad["strategyContent"] = json!({"fixedTime": at(60_000)});
    assert_eq!(
        app.signed("POST", "/v1/push/template", &bad.to_string()).await.json()["resultCode"],
        "TEMPLATE_NOT_EXIST"
    );
    let past = json!({"deliveryType": 1, "targetMsgkey": {creds.device_id.clone(): "p"}, "title": "t", "content": "c",
        "expiredSeconds": 300, "strategyType": 1, "strategyContent": {"fixedTime": at(-1_000)}});
    assert_eq!(app.push_simple(past).await.json()["resultCode"], "INVALID_PARAM");
}

#[tokio::test]
async fn a_push_scheduled_before_a_crash_fires_after_the_restart() {
    let Some(mut server) = start_process().await else { return };
    let app = server.create_app().await;
    let creds = app.register("d").await;
    let j = schedule(&app, &creds.device_id, "k", at(1_000)).await;
    let unique_id = j["pushResult"]["scheduled"]["uniqueId"].as_str().unwrap().to_string();
    server.kill9();
    // Down past the firing time; the push's validity (300 s) has not ended.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let server = server.restart().await;
    let (app, creds) = (app.via(&server), creds.on(&server));
    let mut device = TestDevice::connect(&creds).await;
    assert_eq!(device.next_push().await.1["msgKey"], "k");
    assert!(device.quiet_for(Duration::from_millis(1_500)).await, "once");
    assert_eq!(listed(&app, &unique_id).await["executedStatus"], 1);
}

#[tokio::test]
async fn revoking_a_scheduled_task_cancels_what_it_has_not_sent() {
    let Some(server) = start_server().await else { return };
    let app = server.create_app().await;
    let creds = app.register("d").await;
    let j = schedule(&app, &creds.device_id, "k", at(60_000)).await;
    let unique_id = j["pushResult"]["scheduled"]["uniqueId"].as_str().unwrap().to_string();
    let r = app.signed("POST", "/v1/push/revoke-task", &json!({"taskId": unique_id}).to_string()).await;
    assert_eq!(r.status, 200, "{:?}", r.json());
    assert_eq!(r.json()["pushResult"]["scheduleCancelled"], true);
    assert_eq!(listed(&app, &unique_id).await["executedStatus"], 2);
}
