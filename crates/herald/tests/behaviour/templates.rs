//! Templates, Template push and Multiple push through the real binary and MQTT clients.

use serde_json::{Value, json};

use crate::common::*;

async fn create(app: &TestApp, body: Value) -> (u16, Value) {
    let r = app.signed("POST", "/v1/templates", &body.to_string()).await;
    (r.status, r.json())
}

fn code(j: &Value) -> &str {
    j["resultCode"].as_str().unwrap_or("")
}

#[tokio::test]
async fn templates_are_created_listed_replaced_and_deleted() {
    let Some(server) = start_server().await else { return };
    let app = server.create_app().await;
    let other = server.create_app().await;
    let body = json!({"templateName": "order_paid", "title": "Hi #name#", "content": "You paid #money# for #item#",
        "uri": "app://orders/#order#", "descInfo": "receipt", "pushStyle": 1, "showStyle": 0});
    let (status, j) = create(&app, body.clone()).await;
    assert_eq!(status, 200, "{j}");
    let t = &j["resultContent"]["data"];
    assert_eq!(t["variables"], "name,money,item,order");
    assert_eq!((t["descInfo"].as_str(), t["pushStyle"].as_i64()), (Some("receipt"), Some(1)));

    let (status, j) = create(&app, body.clone()).await;
    assert_eq!((status, code(&j)), (409, "TEMPLATE_EXISTS"));
    assert_eq!(create(&other, body.clone()).await.0, 200, "names are per app");
    let (status, j) = create(&app, json!({"templateName": "bad,name", "title": "t", "content": "c"})).await;
    assert_eq!((status, code(&j)), (400, "TEMPLATE_NAME_INVALID"));
    let (_, j) = create(&app, json!({"templateName": "x".repeat(201), "title": "t", "content": "c"})).await;
    assert_eq!(code(&j), "TEMPLATE_NAME_INVALID");
    let (_, j) = create(&app, json!({"templateName": "empty", "title": "", "content": "c"})).await;
    assert_eq!(code(&j), "PAYLOAD_NOT_ENOUGH");

    let r = app.signed("GET", "/v1/templates/order_paid", "").await;
    assert_eq!(r.json()["resultContent"]["data"]["title"], "Hi #name#");
    let r = app
        .signed("PUT", "/v1/templates/order_paid", &json!({"title": "Hello #name#", "content": "Paid"}).to_string())
        .await;
    assert_eq!(r.status, 200, "{:?}", r.json());
    assert_eq!(r.json()["resultContent"]["data"]["variables"], "name");
    let r = app.signed("PUT", "/v1/templates/nope", &json!({"title": "t", "content": "c"}).to_string()).await;
    assert_eq!(code(&r.json()), "TEMPLATE_NOT_EXIST");
    let list = app.signed("GET", "/v1/templates", "").await.json();
    assert_eq!(list["resultContent"]["data"]["totalCount"], 1);

    let r = app.signed("DELETE", "/v1/templates/order_paid", "").await;
    assert_eq!(r.status, 200);
    let r = app.signed("DELETE", "/v1/templates/order_paid", "").await;
    assert_eq!((r.status, code(&r.json())), (404, "TEMPLATE_NOT_EXIST"));
    let r = other.signed("GET", "/v1/templates/order_paid", "").await;
    assert_eq!(r.status, 200, "the other app's template stays");
}

/// Issue 12: a template's uri had no length limit (a thousand templates of megabytes each
/// grew the data directory by hundreds of MB). It holds `limits.max_uri_chars` (2048).
#[tokio::test]
async fn a_template_uri_is_at_most_2048_characters() {
    let Some(server) = start_server().await else { return };
    let app = server.create_app().await;
    let (status, answer) =
        create(&app, json!({"templateName": "long", "title": "t", "content": "c", "uri": "u".repeat(2049)})).await;
    assert_eq!((status, answer["resultCode"].as_str()), (400, Some("INVALID_PARAM")), "{answer}");
    assert!(answer["resultMessage"].as_str().unwrap().contains("2048"), "{answer}");
    let (status, answer) =
        create(&app, json!({"templateName": "long", "title": "t", "content": "c", "uri": "u".repeat(2048)})).await;
    assert_eq!(status, 200, "{answer}");
}

#[tokio::test]
async fn an_app_holds_at_most_100_templates() {
    let Some(server) = start_server().await else { return };
    let app = server.create_app().await;
    for i in 0..100 {
        let (status, j) = create(&app, json!({"templateName": format!("t{i}"), "title": "t", "content": "c"})).await;
        assert_eq!(status, 200, "{j}");
    }
    let (status, j) = create(&app, json!({"templateName": "t100", "title": "t", "content": "c"})).await;
    assert_eq!((status, code(&j)), (409, "TEMPLATE_LIMIT_EXCEEDED"));
}

#[tokio::test]
async fn a_template_push_fills_the_placeholders_for_every_target() {
    let Some(server) = start_server().await else { return };
    let app = server.create_app().await;
    let (status, _) = create(
        &app,
        json!({"templateName": "win", "title": "Congrats #name#", "content": "You won #money#", "uri": "app://w/#money#"}),
    )
    .await;
    assert_eq!(status, 200);
    let creds = app.register("d1").await;
    let mut device = TestDevice::connect(&creds).await;
    let body = json!({"deliveryType": 1, "templateName": "win", "templateKeyValue": {"name": "Zhang", "money": 200},
        "targetMsgkey": {creds.device_id.clone(): "k1"}, "expiredSeconds": 300, "extendedParams": {"a": "b"}});
    let r = app.signed("POST", "/v1/push/template", &body.to_string()).await;
    assert_eq!(r.status, 200, "{:?}", r.json());
    let (_, payload) = device.next_push().await;
    assert_eq!(payload["title"], "Congrats Zhang");
    assert_eq!(payload["content"], "You won 200");
    assert_eq!(payload["uri"], "app://w/200");
    assert_eq!((payload["pushType"].as_str(), payload["templateName"].as_str()), (Some("template"), Some("win")));
    assert_eq!(payload["extendedParams"]["a"], "b");
    // The same request again: a duplicate within the validity, not sent twice.
    let again = app.signed("POST", "/v1/push/template", &body.to_string()).await.json();
    assert_eq!(again["pushResult"]["targets"][0]["status"], "duplicate");

    let mut missing = body.clone();
    missing["templateKeyValue"] = json!({"name": "Zhang"});
    missing["targetMsgkey"] = json!({creds.device_id.clone(): "k2"});
    let r = app.signed("POST", "/v1/push/template", &missing.to_string()).await;
    assert_eq!((r.status, code(&r.json())), (400, "TEMPLATEKV_NOT_ENOUGH"));
    let mut unknown = body.clone();
    unknown["templateName"] = json!("nope");
    let r = app.signed("POST", "/v1/push/template", &unknown.to_string()).await;
    assert_eq!((r.status, code(&r.json())), (404, "TEMPLATE_NOT_EXIST"));
    let mut unnamed = body.clone();
    unnamed.as_object_mut().unwrap().remove("templateName");
    let r = app.signed("POST", "/v1/push/template", &unnamed.to_string()).await;
    assert_eq!(code(&r.json()), "NEED_TEMPLATE");
    let mut eleven = body.clone();
    eleven["targetMsgkey"] = Value::Object((0..11).map(|i| (format!("d{i}"), json!(format!("k{i}")))).collect());
    let r = app.signed("POST", "/v1/push/template", &eleven.to_string()).await;
    assert_eq!(code(&r.json()), "SINGLE_PUSH_TARGET_TOO_MUCH");
    // Another app cannot use this app's template.
    let other = server.create_app().await;
    let r = other.signed("POST", "/v1/push/template", &body.to_string()).await;
    assert_eq!(code(&r.json()), "TEMPLATE_NOT_EXIST");
}

#[tokio::test]
async fn a_multiple_push_sends_each_target_its_own_text_under_one_task() {
    let Some(server) = start_server().await else { return };
    let app = server.create_app().await;
    assert_eq!(
        create(&app, json!({"templateName": "bill", "title": "Bill for #name#", "content": "#amount# due"})).await.0,
        200
    );
    let mut devices = Vec::new();
    let mut items = Vec::new();
    for (i, name) in ["ann", "bob"].iter().enumerate() {
        let creds = app.register(name).await;
        devices.push(TestDevice::connect(&creds).await);
        items.push(json!({"target": creds.device_id, "msgKey": format!("bill-{i}"),
            "templateKeyValue": {"name": name, "amount": (i + 1) * 10}, "extendedParams": {"row": i.to_string()}}));
    }
    // A device this app does not have: recorded as undeliverable, like in a Simple push.
    items.push(json!({"target": "ghost-device", "msgKey": "bill-2", "templateKeyValue": {"name": "x", "amount": 1}}));
    let body = json!({"deliveryType": 1, "templateName": "bill", "expiredSeconds": 300, "taskName": "bills",
        "extendedParams": {"common": "yes", "row": "overridden"}, "targetMsg": items});
    let r = app.signed("POST", "/v1/push/multiple", &body.to_string()).await;
    assert_eq!(r.status, 200, "{:?}", r.json());
    let j = r.json();
    let task_id = j["pushResult"]["data"].as_str().unwrap().to_string();
    let statuses: Vec<&str> =
        j["pushResult"]["targets"].as_array().unwrap().iter().map(|t| t["status"].as_str().unwrap()).collect();
    assert_eq!(statuses, vec!["accepted", "accepted", "undeliverable"]);
    for (i, (device, name)) in devices.iter_mut().zip(["ann", "bob"]).enumerate() {
        let (_, p) = device.next_push().await;
        assert_eq!(p["title"], format!("Bill for {name}"));
        assert_eq!(p["content"], format!("{} due", (i + 1) * 10));
        assert_eq!(p["taskId"], task_id.as_str());
        assert_eq!(p["pushType"], "multiple");
        assert_eq!(
            (p["extendedParams"]["common"].as_str(), p["extendedParams"]["row"].as_str()),
            (Some("yes"), Some(i.to_string().as_str()))
        );
    }
    let task = app.task(&task_id).await.json();
    let data = &task["resultContent"]["data"];
    assert_eq!((data["type"].as_str(), data["taskName"].as_str()), (Some("multiple"), Some("bills")), "{task}");
    assert_eq!(data["targets"].as_array().unwrap().len(), 3, "per-target status under one task");
    let page = app.signed("GET", &format!("/v1/tasks/{task_id}?pageNumber=2&pageSize=2"), "").await.json();
    let page = &page["resultContent"]["data"];
    assert_eq!((page["totalCount"].as_u64(), page["targets"].as_array().unwrap().len()), (Some(3), 1), "{page}");
    assert_eq!(
        page["counts"]["accepted"].as_u64().unwrap_or(0)
            + page["counts"]["pending"].as_u64().unwrap_or(0)
            + page["counts"]["delivered"].as_u64().unwrap_or(0)
            + page["counts"]["undeliverable"].as_u64().unwrap_or(0),
        3,
        "counts cover every target"
    );

    let too_many: Vec<Value> =
        (0..101).map(|i| json!({"target": format!("d{i}"), "msgKey": format!("k{i}"), "templateKeyValue": {"name": "n", "amount": 1}})).collect();
    let mut b = body.clone();
    b["targetMsg"] = json!(too_many);
    assert_eq!(
        code(&app.signed("POST", "/v1/push/multiple", &b.to_string()).await.json()),
        "MULTIPLE_PUSH_TARGET_TOO_MUCH"
    );
    let ten: serde_json::Map<String, Value> = (0..10).map(|i| (format!("e{i}"), json!("v"))).collect();
    b["targetMsg"] =
        json!([{"target": "d", "msgKey": "k", "templateKeyValue": {"name": "n", "amount": 1}, "extendedParams": ten}]);
    assert_eq!(
        code(&app.signed("POST", "/v1/push/multiple", &b.to_string()).await.json()),
        "MULTIPLE_INNER_EXTEND_PARAM_TO_MUCH"
    );
    b["targetMsg"] = json!([{"target": "d", "msgKey": "k", "templateKeyValue": {"name": "n"}}]);
    assert_eq!(code(&app.signed("POST", "/v1/push/multiple", &b.to_string()).await.json()), "TEMPLATEKV_NOT_ENOUGH");
    b["targetMsg"] = json!([]);
    assert_eq!(code(&app.signed("POST", "/v1/push/multiple", &b.to_string()).await.json()), "TOKEN_OR_USERID_NULL");
}

/// Issue 13: `herald push simple|template` builds, signs and sends a push; the device gets it,
/// and a refused push makes the command fail.
#[tokio::test]
async fn the_cli_sends_simple_and_template_pushes_signed() {
    let Some(server) = start_server().await else { return };
    let app = server.create_app().await;
    let creds = app.register("cli").await;
    let (status, j) =
        create(&app, json!({"templateName": "greet", "title": "Hi #name#", "content": "From #who#"})).await;
    assert_eq!(status, 200, "{j}");
    let mut device = TestDevice::connect(&creds).await;
    let herald = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_herald"))
            .arg("push")
            .args(args)
            .args(["--server", &format!("http://{}", app.http)])
            .env("HERALD_KEY_ID", &app.key_id)
            .env("HERALD_API_SECRET", &app.secret)
            .output()
            .unwrap()
    };
    let to = format!("{}=cli-1", creds.device_id);
    let out = herald(&["simple", "--to", &to, "--title", "From the CLI", "--content", "c", "--param", "orderId=42"]);
    assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let (_, payload) = device.next_push().await;
    assert_eq!((payload["title"].as_str(), payload["msgKey"].as_str()), (Some("From the CLI"), Some("cli-1")));
    assert_eq!(payload["extendedParams"]["orderId"], "42");

    let to = format!("{}=cli-2", creds.device_id);
    let out = herald(&["template", "--template", "greet", "--var", "name=Ann", "--var", "who=Herald", "--to", &to]);
    assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let (_, payload) = device.next_push().await;
    assert_eq!((payload["title"].as_str(), payload["content"].as_str()), (Some("Hi Ann"), Some("From Herald")));

    let out = herald(&[
        "broadcast",
        "--template",
        "greet",
        "--var",
        "name=all",
        "--var",
        "who=us",
        "--msgkey",
        "b1",
        "--audience",
        "all",
    ]);
    assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let (_, payload) = device.next_push().await;
    assert_eq!((payload["title"].as_str(), payload["pushType"].as_str()), (Some("Hi all"), Some("broadcast")));

    // A placeholder without a value: the server refuses, the command fails and says why.
    let out = herald(&["template", "--template", "greet", "--var", "name=Ann", "--to", &to]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("TEMPLATEKV_NOT_ENOUGH"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}
