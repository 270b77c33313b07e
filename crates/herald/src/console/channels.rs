//! Vendor channels (APNs `.p8` or `.p12` with the certificate's expiry and a warning near
//! it, FCM, Huawei, Xiaomi, Web Push) with each one's health; receipts: the webhook, its
//! failures, replay.

use axum::extract::{Path, State};
use axum::http::Method;
use axum::response::{IntoResponse, Response};
use herald_core::ids::AppId;
use serde_json::{Map, Value, json};

use super::form::{Action, Fields};
use super::view::{Cell, Field, Form, Kind, Section, Table, rows, text, time, time_of};
use super::{Console, Operator};

pub(crate) async fn page(State(console): State<Console>, op: Operator, Path(app): Path<String>) -> Response {
    page_with(&console, &op, &app, None).await
}

async fn page_with(console: &Console, op: &Operator, app: &str, notice: Option<Result<String, String>>) -> Response {
    let (app_id, mut page) = match console.app_page(op, app, "Channels", "channels", notice).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    match console.call(op, Method::GET, "/v1/channels", Some(&app_id), None).await.into_data() {
        Ok(data) => {
            page.push(Section::Facts(vec![(
                "Routing".into(),
                Cell::Text(format!(
                    "{} (Android vendors in order: {})",
                    text(&data["routing"], "policy"),
                    text(&data["routing"], "androidOrder")
                )),
            )]));
            let rows = rows(&data["list"], channel_row);
            page.push(Section::Table(Table {
                caption: "Configured channels (secrets are never shown again)".into(),
                head: vec!["Channel", "Settings", "Warnings", "Last success", "Last error"],
                rows,
                empty: "No vendor channel yet: devices are reached over MQTT only.",
            }));
        }
        Err(e) => page.error(e),
    }
    let env = || Kind::Select(vec![("production", "production"), ("sandbox", "sandbox")]);
    let forms: Vec<(&'static str, &'static str, Vec<Field>)> = vec![
        (
            "apns-certificate",
            "APNs with a .p12 certificate",
            vec![
                Field::new(
                    "certificate",
                    "Certificate (.p12)",
                    Kind::File { accept: ".p12,.pfx,application/x-pkcs12" },
                ),
                Field::new("password", "Certificate password", Kind::Password),
                Field::new("bundleId", "Bundle id", Kind::Text).required(),
                Field::new("environment", "Environment", env()),
            ],
        ),
        (
            "apns-token",
            "APNs with a .p8 token key",
            vec![
                Field::new("keyId", "Key id", Kind::Text).required(),
                Field::new("teamId", "Team id", Kind::Text).required(),
                Field::new("bundleId", "Bundle id", Kind::Text).required(),
                Field::new("environment", "Environment", env()),
                Field::new("privateKey", "Private key (the .p8 file's PEM text)", Kind::Textarea).required(),
            ],
        ),
        ("fcm", "FCM", vec![Field::new("serviceAccount", "Service-account JSON", Kind::Textarea).required()]),
        (
            "hms",
            "Huawei Push Kit",
            vec![
                Field::new("appId", "Huawei app id", Kind::Text).required(),
                Field::new("clientSecret", "Client secret", Kind::Password).required(),
            ],
        ),
        (
            "xiaomi",
            "Xiaomi",
            vec![
                Field::new("appSecret", "App secret", Kind::Password).required(),
                Field::new("packageName", "Package name", Kind::Text).required(),
            ],
        ),
        (
            "webpush",
            "Web Push (VAPID keys are made here)",
            vec![Field::new("subject", "Subject (mailto: or https:)", Kind::Text).required()],
        ),
    ];
    for (id, legend, fields) in forms {
        page.push(Section::Form(Form {
            id,
            legend: legend.into(),
            action: format!("/console/apps/{app_id}/channels/{id}"),
            get: false,
            fields,
            submit: "Save channel",
        }));
    }
    page.into_response()
}

fn channel_row(c: &Value) -> Vec<Cell> {
    let settings = c["settings"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| match (k.as_str(), v.as_i64()) {
                    ("notAfter", Some(ms)) => format!("expires {}", time(Some(ms))),
                    _ => format!("{k} {}", v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string())),
                })
                .collect::<Vec<_>>()
                .join("; ")
        })
        .unwrap_or_default();
    let warnings: Vec<&str> = c["warnings"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
    let health = &c["health"];
    vec![
        Cell::Text(text(c, "kind")),
        Cell::Text(settings),
        Cell::Text(warnings.join("; ")),
        Cell::Text(time_of(health, "lastSuccess")),
        Cell::Text(format!("{} {}", time_of(health, "lastErrorAt"), text(health, "lastError")).trim().to_string()),
    ]
}

/// The channel's PUT body from its form.
fn body_of(form: &str, f: &Fields) -> Option<(&'static str, Value)> {
    let pick = |names: &[&str]| -> Map<String, Value> {
        names.iter().filter_map(|n| f.opt(n).map(|v| (n.to_string(), json!(v)))).collect()
    };
    Some(match form {
        "apns-certificate" => {
            let mut b = pick(&["certificate", "bundleId", "environment"]);
            b.insert("authType".into(), json!("certificate"));
            b.insert("password".into(), json!(f.get("password")));
            ("apns", Value::Object(b))
        }
        "apns-token" => {
            let mut b = pick(&["keyId", "teamId", "bundleId", "environment", "privateKey"]);
            b.insert("authType".into(), json!("token"));
            ("apns", Value::Object(b))
        }
        // The service account is sent as the JSON object it is; text that is not JSON is
        // sent as a string, for the API to refuse in its words.
        "fcm" => {
            let account = serde_json::from_str::<Value>(f.get("serviceAccount"))
                .unwrap_or_else(|_| json!(f.get("serviceAccount")));
            ("fcm", json!({"serviceAccount": account}))
        }
        "hms" => ("hms", Value::Object(pick(&["appId", "clientSecret"]))),
        "xiaomi" => ("xiaomi", Value::Object(pick(&["appSecret", "packageName"]))),
        "webpush" => ("webpush", Value::Object(pick(&["subject"]))),
        _ => return None,
    })
}

pub(crate) async fn put(
    State(console): State<Console>,
    Path((app, form)): Path<(String, String)>,
    Action { op, fields }: Action,
) -> Response {
    let notice = match body_of(&form, &fields) {
        None => Err("no such channel form".to_string()),
        Some((kind, body)) => {
            let answer = console
                .call(&op, Method::PUT, &format!("/v1/channels/{kind}"), Some(&AppId::new(&app)), Some(&body))
                .await;
            match answer.ok() {
                true => {
                    let expiry = answer.data()["settings"]["notAfter"].as_i64();
                    Ok(match expiry {
                        Some(ms) => format!("Channel {kind} saved; its certificate expires {}.", time(Some(ms))),
                        None => format!("Channel {kind} saved."),
                    })
                }
                false => Err(answer.error()),
            }
        }
    };
    page_with(&console, &op, &app, Some(notice)).await
}

pub(crate) async fn receipts(State(console): State<Console>, op: Operator, Path(app): Path<String>) -> Response {
    receipts_with(&console, &op, &app, None).await
}

async fn receipts_with(
    console: &Console,
    op: &Operator,
    app: &str,
    notice: Option<Result<String, String>>,
) -> Response {
    let (app_id, mut page) = match console.app_page(op, app, "Receipts", "receipts", notice).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let hook = console.call(op, Method::GET, "/v1/receipts", Some(&app_id), None).await;
    let (url, enabled) = match hook.ok() {
        true => {
            let w = hook.data().clone();
            let h = &w["health"];
            page.push(Section::Facts(vec![
                ("Webhook".into(), Cell::Code(text(&w, "url"))),
                ("Enabled".into(), Cell::Text(text(&w, "enabled"))),
                ("Waiting to be sent".into(), Cell::Text(text(&w, "waiting"))),
                ("Last success".into(), Cell::Text(time_of(h, "lastSuccess"))),
                ("Last error".into(), Cell::Text(format!("{} {}", time_of(h, "lastErrorAt"), text(h, "lastError")))),
                ("Failed attempts".into(), Cell::Text(text(h, "failedAttempts"))),
            ]));
            (text(&w, "url"), w["enabled"] == true)
        }
        false => {
            page.notice(Ok(format!("No webhook yet ({}).", hook.code())));
            (String::new(), true)
        }
    };
    page.push(Section::Form(Form {
        id: "webhook",
        legend: "Webhook settings".into(),
        action: format!("/console/apps/{app_id}/receipts"),
        get: false,
        fields: vec![
            Field::new("url", "URL", Kind::Text).value(url).required(),
            Field::new("enabled", "Enabled", Kind::Checkbox).value(if enabled { "true" } else { "" }),
            Field::new("rotateSecret", "Make a new signing secret (shown once)", Kind::Checkbox),
        ],
        submit: "Save webhook",
    }));
    page.heading("Failed receipts");
    match console.call(op, Method::GET, "/v1/receipts/failures?pageSize=50", Some(&app_id), None).await.into_data() {
        Ok(data) => {
            let rows = rows(&data["list"], |r| {
                vec![
                    Cell::Text(text(r, "id")),
                    Cell::Code(r["receipt"].to_string()),
                    Cell::Text(text(r, "reason")),
                    Cell::Text(time_of(r, "failedAt")),
                ]
            });
            page.push(Section::Table(Table {
                caption: "Receipts the webhook did not take (the newest 50)".into(),
                head: vec!["Id", "Receipt", "Reason", "Failed"],
                rows,
                empty: "No failed receipt.",
            }));
        }
        Err(e) => page.error(e),
    }
    page.push(Section::Form(Form {
        id: "replay",
        legend: "Send the failed receipts again".into(),
        action: format!("/console/apps/{app_id}/receipts/replay"),
        get: false,
        fields: vec![],
        submit: "Replay failures",
    }));
    page.into_response()
}

pub(crate) async fn put_receipts(
    State(console): State<Console>,
    Path(app): Path<String>,
    Action { op, fields }: Action,
) -> Response {
    let body = json!({"url": fields.get("url").trim(), "enabled": fields.checked("enabled"), "rotateSecret": fields.checked("rotateSecret")});
    let answer = console.call(&op, Method::PUT, "/v1/receipts", Some(&AppId::new(&app)), Some(&body)).await;
    let notice = match answer.ok() {
        true => match answer.data()["secret"].as_str().filter(|s| *s != crate::api::MASK) {
            Some(secret) => Ok(format!("Saved. The signing secret, shown only now: {secret}")),
            None => Ok("Saved.".into()),
        },
        false => Err(answer.error()),
    };
    receipts_with(&console, &op, &app, Some(notice)).await
}

pub(crate) async fn replay(
    State(console): State<Console>,
    Path(app): Path<String>,
    Action { op, .. }: Action,
) -> Response {
    let answer =
        console.call(&op, Method::POST, "/v1/receipts/replay", Some(&AppId::new(&app)), Some(&json!({}))).await;
    let notice = match answer.ok() {
        true => Ok(format!("{} receipts queued again.", text(answer.data(), "replayed"))),
        false => Err(answer.error()),
    };
    receipts_with(&console, &op, &app, Some(notice)).await
}
