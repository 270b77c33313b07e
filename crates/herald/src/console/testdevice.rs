//! A test device in the page: one click registers a `web` device of the app (through the
//! device API), and the page's script connects it to `/mqtt` over WebSocket as any device
//! connects, shows each delivery as it arrives with its PUBACK, and sends `opened` when asked.

use axum::extract::{Path, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use herald_core::crypto;
use serde_json::json;

use super::form::Action;
use super::view::{Cell, Section};
use super::{Console, Operator};

pub(crate) async fn page(State(console): State<Console>, op: Operator, Path(app): Path<String>) -> Response {
    let (app_id, mut page) = match console.app_page(&op, &app, "Test device", "test-device", None).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    page.push(Section::Facts(vec![(
        "How".into(),
        Cell::Text(
            "Registers a web device of this app, connects it over MQTT over WebSocket (/mqtt) and lists what \
             arrives. Push to its deviceId from Quick push (Targets are: device ids)."
                .into(),
        ),
    )]));
    page.push(Section::TestDevice { app: app_id.as_str().to_string(), mqtt_path: "/mqtt".into() });
    page.into_response()
}

/// Registers the page's device: `{appId, deviceId, deviceToken}` for the script (JSON; the
/// CSRF token comes as the `X-CSRF-Token` header).
pub(crate) async fn register(
    State(console): State<Console>,
    Path(app): Path<String>,
    Action { op, .. }: Action,
) -> Response {
    let app_id = herald_core::ids::AppId::new(&app);
    let body = json!({"platform": "web", "installId": format!("console-{}", crypto::random_alnum(16)), "model": "Herald console"});
    let answer = console.call(&op, Method::POST, "/device/v1/register", Some(&app_id), Some(&body)).await;
    let (status, body) = match answer.ok() {
        true => (
            StatusCode::OK,
            json!({"appId": app_id, "deviceId": answer.body["deviceId"], "deviceToken": answer.body["deviceToken"]}),
        ),
        false => (StatusCode::BAD_REQUEST, json!({"error": answer.error()})),
    };
    (status, [("content-type", "application/json"), ("cache-control", "no-store")], body.to_string()).into_response()
}
