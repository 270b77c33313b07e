//! The MPS-compatible endpoint (`POST /`) driven by Alibaba Cloud's official mPaaS server SDKs
//! for Python (`alibabacloud-mpaas20201028`, and the older `aliyun-python-sdk-mpaas` with
//! `aliyun-python-sdk-core`, from PyPI through `tests/clients`), as an app backend written
//! for MPS calls them, against the `herald` binary: only the endpoint and the AccessKey pair
//! changed. Needs `HERALD_TEST_PYTHON` and `HERALD_TEST_CLIENTS` (set by `.ci/run`); unset:
//! skipped, saying so.

use std::time::Duration;

use serde_json::{Value, json};

use crate::common::*;

/// One action through the SDK: its `{"body": …}` or `{"error": {code, status, message}}`.
async fn call(app: &TestApp, secret: &str, action: &str, params: Value, headers: Option<Value>) -> Value {
    let mut args = vec![params.to_string()];
    args.extend(headers.map(|h| h.to_string()));
    run_client("mps_call.py", app, secret, action, args).await
}

/// One action through the older SDK (version 1 signature), with the nonce and timestamp
/// it signs when given.
async fn legacy_call(app: &TestApp, secret: &str, action: &str, params: Value, nonce_and_time: &[&str]) -> Value {
    let mut args = vec![params.to_string()];
    args.extend(nonce_and_time.iter().map(|s| s.to_string()));
    run_client("mps_legacy_call.py", app, secret, action, args).await
}

async fn run_client(script: &str, app: &TestApp, secret: &str, action: &str, rest: Vec<String>) -> Value {
    let (python, clients) = (tool("HERALD_TEST_PYTHON").unwrap(), tool("HERALD_TEST_CLIENTS").unwrap());
    let endpoint = app.http.trim_start_matches("http://").trim_end_matches('/').to_string();
    let script = clients.join(script);
    let mut args = vec![script.to_str().unwrap().to_string(), endpoint, app.key_id.clone(), secret.into()];
    args.push(action.to_string());
    args.extend(rest);
    let run = tokio::process::Command::new(&python).args(&args).output();
    let out = tokio::time::timeout(Duration::from_secs(60), run).await.expect("the SDK answers in time").unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{}: {stderr}{stdout}", script.display());
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout} {stderr}"))
}

/// A node with an app and one connected device; `None` when the SDK or the store is not
/// set up here (the test is skipped, saying why).
async fn connected() -> Option<(TestProcess, TestApp, Creds, TestDevice)> {
    tool("HERALD_TEST_PYTHON")?;
    tool("HERALD_TEST_CLIENTS")?;
    let server = start_process().await?;
    let app = server.create_app().await;
    let creds = app.register("install-1").await;
    let device = TestDevice::connect(&creds).await;
    Some((server, app, creds, device))
}

fn simple(app_id: &str, device_id: &str, msg_key: &str, title: &str) -> Value {
    json!({
        "AppId": app_id, "WorkspaceId": "default", "TaskName": "from mps", "DeliveryType": 1,
        "TargetMsgkey": json!({device_id: msg_key}).to_string(), "Title": title, "Content": "sent by the MPS SDK",
        "ExpiredSeconds": 300, "ExtendedParams": "{\"orderId\":\"7\"}"
    })
}

#[tokio::test]
async fn the_official_sdk_sends_a_simple_push_that_the_device_gets() {
    let Some((_server, app, creds, mut device)) = connected().await else { return };
    let answer =
        call(&app, &app.secret, "PushSimple", simple(&app.app_id, &creds.device_id, "m-1", "Hello"), None).await;
    let body = &answer["body"];
    assert_eq!(body["ResultCode"], "OK", "{answer}");
    assert_eq!(body["PushResult"]["Success"], true, "{answer}");
    let task_id = body["PushResult"]["Data"].as_str().unwrap_or_default().to_string();
    assert!(!task_id.is_empty(), "{answer}");
    assert!(body["RequestId"].as_str().is_some_and(|r| !r.is_empty()), "{answer}");

    let (_, payload) = device.next_push().await;
    assert_eq!((payload["title"].as_str(), payload["taskId"].as_str()), (Some("Hello"), Some(task_id.as_str())));
    assert_eq!(payload["msgKey"], "m-1");
    assert_eq!(payload["extendedParams"], json!({"orderId": "7"}));

    // TargetMsgkey given to the SDK as a map (it sends `TargetMsgkey.<device>=<msgKey>`).
    let mut as_map = simple(&app.app_id, &creds.device_id, "m-3", "As a map");
    as_map["TargetMsgkey"] = json!({creds.device_id.clone(): "m-3"});
    let answer = call(&app, &app.secret, "PushSimple", as_map, None).await;
    assert_eq!(answer["body"]["ResultCode"], "OK", "{answer}");
    let (_, payload) = device.next_push().await;
    assert_eq!((payload["title"].as_str(), payload["msgKey"].as_str()), (Some("As a map"), Some("m-3")));

    // MPS's fields Herald does not use yet: accepted, and named in ResultMessage.
    let mut with_sms = simple(&app.app_id, &creds.device_id, "m-4", "With SMS");
    with_sms["SmsSignName"] = json!("shop");
    with_sms["SmsTemplateCode"] = json!("SMS_1");
    with_sms["ActivityContentState"] = json!("{}");
    let answer = call(&app, &app.secret, "PushSimple", with_sms, None).await;
    assert_eq!(answer["body"]["ResultCode"], "OK", "{answer}");
    assert_eq!(
        answer["body"]["ResultMessage"],
        "OK; accepted and not used by Herald: ActivityContentState, SmsSignName, SmsTemplateCode",
        "{answer}"
    );
    let (_, payload) = device.next_push().await;
    assert_eq!(payload["title"], "With SMS");

    // What MPS refuses in its answer (not as an HTTP error): the code in ResultCode.
    let mut no_title = simple(&app.app_id, &creds.device_id, "m-2", "x");
    no_title.as_object_mut().unwrap().remove("Title");
    let answer = call(&app, &app.secret, "PushSimple", no_title, None).await;
    assert_eq!(answer["body"]["ResultCode"], "PAYLOAD_NOT_ENOUGH", "{answer}");
}

#[tokio::test]
async fn the_sdk_raises_on_a_wrong_secret_a_stale_date_a_replayed_nonce_another_apps_id_or_workspace() {
    if tool("HERALD_TEST_PYTHON").is_none() || tool("HERALD_TEST_CLIENTS").is_none() {
        return;
    }
    let Some(server) = start_process().await else { return };
    let (app, other) = (server.create_app().await, server.create_app().await);
    let creds = app.register("install-1").await;
    let push = |title: &str| simple(&app.app_id, &creds.device_id, title, title);
    let code =
        |answer: &Value| (answer["error"]["status"].as_u64(), answer["error"]["code"].as_str().map(str::to_owned));

    let answer = call(&app, "not-the-secret", "PushSimple", push("a"), None).await;
    assert_eq!(code(&answer), (Some(400), Some("SignatureDoesNotMatch".into())), "{answer}");

    let stale = json!({"x-acs-date": "2020-01-01T00:00:00Z"});
    let answer = call(&app, &app.secret, "PushSimple", push("b"), Some(stale)).await;
    assert_eq!(code(&answer), (Some(400), Some("InvalidTimeStamp.Expired".into())), "{answer}");

    let nonce = json!({"x-acs-signature-nonce": herald_core::crypto::random_alnum(32)});
    let first = call(&app, &app.secret, "PushSimple", push("c"), Some(nonce.clone())).await;
    assert_eq!(first["body"]["ResultCode"], "OK", "{first}");
    let again = call(&app, &app.secret, "PushSimple", push("d"), Some(nonce)).await;
    assert_eq!(code(&again), (Some(400), Some("SignatureNonceUsed".into())), "{again}");

    // The app's key, the other app's AppId.
    let answer = call(&app, &app.secret, "PushSimple", simple(&other.app_id, &creds.device_id, "e", "e"), None).await;
    assert_eq!(code(&answer), (Some(403), Some("Forbidden.AppId".into())), "{answer}");

    // Too large to read: the gateway's shape too, before any signature is looked at. Just
    // over limits.max_body_bytes (256 KiB): the node answers and closes without reading the
    // rest, and a body of 1 MiB was sometimes still being written then (a broken pipe, not
    // an answer, in a CI run).
    let big = bytes::Bytes::from(format!("AppId={}&Content={}", app.app_id, "x".repeat(257 << 10)));
    let answer = server.call("POST", "/", &[], big).await;
    let body = answer.json();
    assert_eq!((answer.status, body["Code"].as_str()), (413, Some("RequestEntityTooLarge")), "{body}");

    let unknown = TestApp { key_id: "no-such-key".into(), ..app.clone() };
    let answer = call(&unknown, "x", "PushSimple", push("f"), None).await;
    assert_eq!(code(&answer), (Some(404), Some("InvalidAccessKeyId.NotFound".into())), "{answer}");

    // An app given a workspace answers for that one only ("default" was accepted above, when
    // the app had none); cleared, any again.
    let path = format!("/admin/v1/apps/{}", app.app_id);
    let set = |w: &str| server.admin("PATCH", &path, json!({"workspaceId": w}));
    let changed = set("PROD").await;
    assert_eq!((changed.status, changed.json()["workspaceId"].as_str()), (200, Some("PROD")), "{changed:?}");
    let answer = call(&app, &app.secret, "PushSimple", push("g"), None).await;
    assert_eq!(code(&answer), (Some(403), Some("Forbidden.WorkspaceId".into())), "{answer}");
    let mut in_prod = push("h");
    in_prod["WorkspaceId"] = json!("PROD");
    let answer = call(&app, &app.secret, "PushSimple", in_prod, None).await;
    assert_eq!(answer["body"]["ResultCode"], "OK", "{answer}");
    assert_eq!(set("").await.status, 200);
    let answer = call(&app, &app.secret, "PushSimple", push("i"), None).await;
    assert_eq!(answer["body"]["ResultCode"], "OK", "{answer}");
    let bad = set("two words").await;
    assert_eq!((bad.status, bad.json()["resultCode"].as_str()), (400, Some("INVALID_PARAM")), "{bad:?}");
}

#[tokio::test]
async fn the_sdk_sends_template_multiple_and_broadcast_pushes_and_revokes_them() {
    let Some((_server, app, creds, mut device)) = connected().await else { return };
    let (app_id, device_id) = (app.app_id.as_str(), creds.device_id.as_str());
    // The template, made and read back through the SDK.
    let params = json!({"AppId": app_id, "WorkspaceId": "w", "TemplateName": "greet", "Title": "Hi #name#",
        "Content": "For #name#", "DescInfo": "a greeting"});
    let created = call(&app, &app.secret, "CreateTemplate", params, None).await;
    assert_eq!(
        (created["body"]["Success"].as_bool(), created["body"]["Data"].as_str()),
        (Some(true), Some("greet")),
        "{created}"
    );
    let params = json!({"AppId": app_id, "WorkspaceId": "w", "TemplateName": "greet"});
    let got = call(&app, &app.secret, "GetTemplate", params, None).await;
    let t = &got["body"]["Data"];
    assert_eq!(
        (t["Name"].as_str(), t["Title"].as_str(), t["Variables"].as_str()),
        (Some("greet"), Some("Hi #name#"), Some("name")),
        "{got}"
    );
    let params = json!({"AppId": app_id, "WorkspaceId": "w", "CurrentPage": 1, "PageSize": 10});
    let page = call(&app, &app.secret, "ListTemplatePage", params, None).await;
    assert_eq!(
        (page["body"]["TotalSize"].as_u64(), page["body"]["Data"][0]["Name"].as_str()),
        (Some(1), Some("greet")),
        "{page}"
    );
    let ok = |answer: &Value| {
        assert_eq!(answer["body"]["ResultCode"], "OK", "{answer}");
        answer["body"]["PushResult"]["Data"].as_str().unwrap_or_default().to_string()
    };

    let params = json!({"AppId": app_id, "WorkspaceId": "w", "DeliveryType": 1, "TemplateName": "greet",
        "TemplateKeyValue": json!({"name": "Ann"}).to_string(), "TargetMsgkey": json!({device_id: "t-1"}).to_string(),
        "ExpiredSeconds": 300});
    ok(&call(&app, &app.secret, "PushTemplate", params, None).await);
    let (_, payload) = device.next_push().await;
    assert_eq!((payload["title"].as_str(), payload["content"].as_str()), (Some("Hi Ann"), Some("For Ann")));
    let template_message = payload["messageId"].as_str().unwrap().to_string();

    // TargetMsg is a list of objects: the SDK flattens it (TargetMsg.1.Target=…).
    let params = json!({"AppId": app_id, "WorkspaceId": "w", "DeliveryType": 1, "TemplateName": "greet",
        "ExpiredSeconds": 300, "TaskName": "multi", "TargetMsg": [
            {"Target": device_id, "MsgKey": "mu-1", "TemplateKeyValue": json!({"name": "Bob"}).to_string(),
             "ExtendedParams": json!({"k": "v"}).to_string()}]});
    let multiple_task = ok(&call(&app, &app.secret, "PushMultiple", params, None).await);
    let (_, payload) = device.next_push().await;
    assert_eq!((payload["title"].as_str(), payload["taskId"].as_str()), (Some("Hi Bob"), Some(multiple_task.as_str())));
    assert_eq!(payload["extendedParams"], json!({"k": "v"}));

    let params = json!({"AppId": app_id, "WorkspaceId": "w", "DeliveryType": 1, "TemplateName": "greet",
        "TemplateKeyValue": json!({"name": "all"}).to_string(), "Msgkey": "b-1", "PushStatus": 1, "ExpiredSeconds": 300});
    // MPS's selection by a time range would reach other devices than Herald's periods: refused.
    let mut by_range = params.clone();
    by_range["TimeMode"] = json!(1);
    by_range["BindStartTime"] = json!(1_700_000_000_000_i64);
    let refused = call(&app, &app.secret, "PushBroadcast", by_range, None).await;
    assert_eq!(refused["body"]["ResultCode"], "INVALID_PARAM", "{refused}");
    ok(&call(&app, &app.secret, "PushBroadcast", params, None).await);
    let (_, payload) = device.next_push().await;
    assert_eq!((payload["title"].as_str(), payload["pushType"].as_str()), (Some("Hi all"), Some("broadcast")));

    // Revoke by MPS's MessageId (the caller's msgKey) and target, then the Multiple task.
    let params = json!({"AppId": app_id, "WorkspaceId": "w", "MessageId": "t-1", "TargetId": device_id});
    ok(&call(&app, &app.secret, "RevokePushMessage", params, None).await);
    let (_, control) = device.next_push().await;
    assert_eq!(
        (control["type"].as_str(), control["messageId"].as_str()),
        (Some("revoke"), Some(template_message.as_str()))
    );
    let params = json!({"AppId": app_id, "WorkspaceId": "w", "TaskId": multiple_task});
    let answer = call(&app, &app.secret, "RevokePushTask", params, None).await;
    assert_eq!(answer["body"]["ResultCode"], "OK", "{answer}");
    let (_, control) = device.next_push().await;
    assert_eq!(control["type"].as_str(), Some("revoke"), "{control}");

    // Deleted, the template is gone: MPS's refusal in the answer, not an HTTP error.
    let params = json!({"AppId": app_id, "WorkspaceId": "w", "TemplateName": "greet"});
    let deleted = call(&app, &app.secret, "DeleteTemplate", params.clone(), None).await;
    assert_eq!(deleted["body"]["Success"], true, "{deleted}");
    let gone = call(&app, &app.secret, "GetTemplate", params, None).await;
    assert_eq!(
        (gone["body"]["Success"].as_bool(), gone["body"]["Code"].as_str()),
        (Some(false), Some("TEMPLATE_NOT_EXIST")),
        "{gone}"
    );
}

#[tokio::test]
async fn the_sdk_schedules_a_push_lists_it_and_cancels_it() {
    let Some((_server, app, creds, _device)) = connected().await else { return };
    let app_id = app.app_id.as_str();
    let at = herald_core::now_ms() + 3_600_000;
    let mut params = simple(app_id, &creds.device_id, "later", "Later");
    params["StrategyType"] = json!(1);
    params["StrategyContent"] = json!(json!({"fixedTime": at}).to_string());
    let answer = call(&app, &app.secret, "PushSimple", params, None).await;
    let unique_id = answer["body"]["PushResult"]["Data"].as_str().unwrap_or_default().to_string();
    assert_eq!(answer["body"]["ResultCode"], "OK", "{answer}");

    for action in ["QueryPushSchedulerList", "QueryMpsSchedulerList"] {
        let params = json!({"AppId": app_id, "WorkspaceId": "w", "StartTime": at - 1, "EndTime": at + 1,
            "PageNumber": 1, "PageSize": 10, "Type": 0});
        let listed = call(&app, &app.secret, action, params, None).await;
        let data = &listed["body"]["ResultContent"]["Data"];
        assert_eq!(data["TotalCount"], 1, "{listed}");
        let item = &data["List"][0];
        assert_eq!((item["UniqueId"].as_str(), item["PushTime"].as_i64()), (Some(unique_id.as_str()), Some(at)));
        assert_eq!((item["PushTitle"].as_str(), item["ExecutedStatus"].as_str()), (Some("Later"), Some("0")));
    }

    let params = json!({"AppId": app_id, "WorkspaceId": "w", "UniqueIds": unique_id.clone(), "Type": 0});
    let cancelled = call(&app, &app.secret, "CancelPushScheduler", params.clone(), None).await;
    assert_eq!(
        (cancelled["body"]["ResultCode"].as_str(), cancelled["body"]["ResultContent"].as_str()),
        (Some("OK"), Some(unique_id.as_str())),
        "{cancelled}"
    );
    // Once cancelled it is no longer waiting: refused in the answer. The newer name
    // CancelMpsScheduler has no model in this SDK version: through its generic call.
    let again = call(&app, &app.secret, "CancelMpsScheduler", params, None).await;
    assert_eq!(again["body"]["ResultCode"], "SCHEDULE_NOT_CANCELLABLE", "{again}");
}

#[tokio::test]
async fn the_sdk_binds_a_user_pushes_to_them_reports_and_unbinds() {
    let Some((_server, app, creds, mut device)) = connected().await else { return };
    let (app_id, device_id) = (app.app_id.as_str(), creds.device_id.as_str());
    let base = json!({"AppId": app_id, "WorkspaceId": "w", "DeliveryToken": device_id});
    let with = |extra: Value| {
        let mut p = base.clone();
        p.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        p
    };
    let bound = call(&app, &app.secret, "PushBind", with(json!({"UserId": "alice", "OsType": 1})), None).await;
    assert_eq!(
        (bound["body"]["ResultCode"].as_str(), bound["body"]["PushResult"]["Data"].as_str()),
        (Some("OK"), Some(device_id)),
        "{bound}"
    );

    // A push to the user (DeliveryType 3) reaches the device bound through the SDK.
    let mut to_user = simple(app_id, "alice", "u-1", "For Alice");
    to_user["DeliveryType"] = json!(3);
    assert_eq!(call(&app, &app.secret, "PushSimple", to_user, None).await["body"]["ResultCode"], "OK");
    let (_, payload) = device.next_push().await;
    assert_eq!(payload["title"], "For Alice");

    let state = json!({"AppId": app_id, "WorkspaceId": "w", "Target": "alice", "TargetType": 2});
    let seen = call(&app, &app.secret, "PushQueryDeviceState", state.clone(), None).await;
    let data = &seen["body"]["Data"];
    assert_eq!(
        (data["DeviceId"].as_str(), data["UserId"].as_str(), data["Statue"].as_str()),
        (Some(device_id), Some("alice"), Some("online")),
        "{seen}"
    );

    let reported = call(&app, &app.secret, "PushReport", with(json!({"AppVersion": "2.5.0", "OsType": 1})), None).await;
    assert_eq!(reported["body"]["ResultCode"], "OK", "{reported}");
    assert_eq!(app.device_view(device_id).await["appVersion"], "2.5.0");
    let vendor = with(json!({"OsType": 1, "ThirdChannel": 5, "ThirdChannelDeviceToken": "tok"}));
    let refused = call(&app, &app.secret, "PushReport", vendor, None).await;
    assert_eq!(refused["body"]["ResultCode"], "INVALID_PARAM", "{refused}");

    let wrong = call(&app, &app.secret, "PushUnBind", with(json!({"UserId": "bob"})), None).await;
    assert_eq!(wrong["body"]["ResultCode"], "INVALID_PARAM", "{wrong}");
    let unbound = call(&app, &app.secret, "PushUnBind", with(json!({"UserId": "alice"})), None).await;
    assert_eq!(unbound["body"]["ResultCode"], "OK", "{unbound}");
    let gone = call(&app, &app.secret, "PushQueryDeviceState", state, None).await;
    assert_eq!(
        (gone["body"]["Success"].as_bool(), gone["body"]["Code"].as_str()),
        (Some(false), Some("DEVICE_NOT_EXIST")),
        "{gone}"
    );
}

#[tokio::test]
async fn the_sdk_reads_the_analysis_of_what_was_pushed() {
    let Some((_server, app, creds, mut device)) = connected().await else { return };
    let (app_id, device_id) = (app.app_id.as_str(), creds.device_id.as_str());
    let template = json!({"templateName": "greet", "title": "Hi #name#", "content": "For #name#"}).to_string();
    assert_eq!(app.signed("POST", "/v1/templates", &template).await.status, 200);
    let params = json!({"AppId": app_id, "WorkspaceId": "w", "DeliveryType": 1, "TemplateName": "greet",
        "ExpiredSeconds": 300, "TaskName": "counted", "TargetMsg": [
            {"Target": device_id, "MsgKey": "a-1", "TemplateKeyValue": json!({"name": "Ann"}).to_string()}]});
    let answer = call(&app, &app.secret, "PushMultiple", params, None).await;
    let task = answer["body"]["PushResult"]["Data"].as_str().unwrap_or_default().to_string();
    device.next_push().await;
    let now = herald_core::now_ms();
    let span = json!({"AppId": app_id, "WorkspaceId": "w", "StartTime": now - 3_600_000, "EndTime": now + 3_600_000});

    // Counted within about a second of the acknowledgement.
    let core = eventually("the push counted as arrived", || {
        let (app, span) = (app.clone(), span.clone());
        async move {
            let core = call(&app, &app.secret, "QueryPushAnalysisCoreIndex", span, None).await;
            (core["body"]["ResultContent"]["Data"]["ArrivalNum"].as_f64() == Some(1.0)).then_some(core)
        }
    })
    .await;
    let data = &core["body"]["ResultContent"]["Data"];
    assert_eq!((data["PushTotalNum"].as_f64(), data["PushNum"].as_f64()), (Some(1.0), Some(1.0)), "{core}");

    let mut since = span.clone();
    since.as_object_mut().unwrap().remove("EndTime");
    since["PageNumber"] = json!(1);
    since["PageSize"] = json!(10);
    let tasks = call(&app, &app.secret, "QueryPushAnalysisTaskList", since, None).await;
    let first = &tasks["body"]["ResultContent"]["Data"][0];
    assert_eq!(
        (first["TaskId"].as_str(), first["TaskName"].as_str(), first["Type"].as_i64()),
        (Some(task.as_str()), Some("counted"), Some(2)),
        "{tasks}"
    );

    let params = json!({"AppId": app_id, "WorkspaceId": "w", "TaskId": task.clone()});
    let detail = call(&app, &app.secret, "QueryPushAnalysisTaskDetail", params, None).await;
    let data = &detail["body"]["ResultContent"]["Data"];
    assert_eq!((data["PushNum"].as_f64(), data["PushArrivalNum"].as_f64()), (Some(1.0), Some(1.0)), "{detail}");
    assert!(data["Duration"].as_str().is_some(), "{detail}");
}

#[tokio::test]
async fn the_older_sdk_with_the_version_1_signature_pushes_and_is_refused_as_mps_would() {
    let Some((_server, app, creds, mut device)) = connected().await else { return };
    let other = _server.create_app().await;
    let push = |app_id: &str, title: &str| {
        json!({"AppId": app_id, "WorkspaceId": "w", "TaskName": "legacy", "DeliveryType": 1,
            "TargetMsgkey": json!({creds.device_id.clone(): title}).to_string(), "Title": title,
            "Content": "from the 2019-08-21 SDK", "ExpiredSeconds": 300})
    };
    let answer = legacy_call(&app, &app.secret, "PushSimple", push(&app.app_id, "old"), &[]).await;
    assert_eq!(answer["body"]["ResultCode"], "OK", "{answer}");
    let (_, payload) = device.next_push().await;
    assert_eq!(
        (payload["title"].as_str(), payload["content"].as_str()),
        (Some("old"), Some("from the 2019-08-21 SDK"))
    );

    let code =
        |answer: &Value| (answer["error"]["status"].as_u64(), answer["error"]["code"].as_str().map(str::to_owned));
    // The older SDK checks the server's string to sign against its own: the same, so the
    // secret is what is wrong.
    let wrong = legacy_call(&app, "not-the-secret", "PushSimple", push(&app.app_id, "a"), &[]).await;
    assert_eq!(code(&wrong), (Some(400), Some("InvalidAccessKeySecret".into())), "{wrong}");
    let nonce = herald_core::crypto::random_alnum(32);
    let stale =
        legacy_call(&app, &app.secret, "PushSimple", push(&app.app_id, "b"), &[&nonce, "2020-01-01T00:00:00Z"]).await;
    assert_eq!(code(&stale), (Some(400), Some("InvalidTimeStamp.Expired".into())), "{stale}");
    let first = legacy_call(&app, &app.secret, "PushSimple", push(&app.app_id, "c"), &[&nonce]).await;
    assert_eq!(first["body"]["ResultCode"], "OK", "{first}");
    let again = legacy_call(&app, &app.secret, "PushSimple", push(&app.app_id, "d"), &[&nonce]).await;
    assert_eq!(code(&again), (Some(400), Some("SignatureNonceUsed".into())), "{again}");
    let theirs = legacy_call(&app, &app.secret, "PushSimple", push(&other.app_id, "e"), &[]).await;
    assert_eq!(code(&theirs), (Some(403), Some("Forbidden.AppId".into())), "{theirs}");
}
