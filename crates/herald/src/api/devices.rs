//! `/v1/devices` and `/v1/users`: the app's devices and the users bound to them, as the
//! app's server sees them. `online` is the cluster's answer: the store records the node
//! that holds each device's connection.
//!
//! A device's view is `{deviceId, installId, platform, appVersion, osVersion, model, userId,
//! boundAt, online, lastSeen, createdAt, vendorChannels}`.

use axum::extract::{Path, State};
use serde::Deserialize;
use serde_json::{Value, json};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use herald_core::error::ErrorCode;
use herald_core::ids::{DeviceId, UserId, valid_external_id};
use herald_core::model::{DeviceFilter, DeviceRecord};
use herald_core::state::Platform;

use super::envelope::{QueryAnswer, Refusals, ok_content};
use super::extract::QueryParams;
use super::status::Window;
use super::{AppState, Json, Refusal, Signed, parse_json};

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(devices))
        .routes(routes!(device))
        .routes(routes!(bind))
        .routes(routes!(unbind))
        .routes(routes!(user_devices))
}

/// A vendor token as a list may show it: its first 6 and last 4 characters (a Web Push
/// subscription: its endpoint's).
fn masked(token: &Value) -> String {
    let s = match token {
        Value::String(s) => s.as_str(),
        other => other.get("endpoint").and_then(Value::as_str).unwrap_or(""),
    };
    let chars: Vec<char> = s.chars().collect();
    match chars.len() {
        0..=12 => "*".repeat(chars.len()),
        n => format!("{}…{}", chars[..6].iter().collect::<String>(), chars[n - 4..].iter().collect::<String>()),
    }
}

fn device_json(state: &AppState, d: &DeviceRecord) -> Value {
    let online = state.dispatcher.is_online(&d.device_id, d.online_node.as_deref());
    let tokens: serde_json::Map<String, Value> =
        d.vendor_tokens.iter().map(|(k, v)| (k.clone(), json!(masked(v)))).collect();
    json!({
        "deviceId": d.device_id,
        "installId": d.install_id,
        "platform": d.platform,
        "appVersion": d.app_version,
        "osVersion": d.os_version,
        "model": d.model,
        "userId": d.user_id,
        "boundAt": d.bound_at,
        "online": online,
        "onlineNode": if online { d.online_node.as_deref() } else { None },
        "lastSeen": d.last_seen,
        "createdAt": d.created_at,
        "vendorChannels": d.vendor_tokens.keys().collect::<Vec<_>>(),
        "vendorTokens": tokens,
    })
}

/// Which devices a list shows, and which page of them.
#[derive(Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub(super) struct DeviceQuery {
    /// From 1 (default 1).
    #[param(value_type = Option<i64>)]
    page_number: Option<String>,
    /// 1-500 (default 20).
    #[param(value_type = Option<i64>)]
    page_size: Option<String>,
    /// This device only.
    device_id: Option<String>,
    /// The devices bound to this user.
    user_id: Option<String>,
    /// The device of this install.
    install_id: Option<String>,
    /// `android`, `ios`, `harmonyos` or `web`.
    platform: Option<String>,
}

/// The app's devices, newest first (by registration): `data` is `{totalCount, pageNumber,
/// pageSize, list}`, each a device's view. Each filter, when given, must match exactly.
#[utoipa::path(get, path = "/devices", tag = "devices", params(DeviceQuery),
    responses((status = 200, description = "One page", body = QueryAnswer), Refusals),
    security(("signature" = [])))]
async fn devices(
    State(state): State<AppState>,
    QueryParams(q): QueryParams<DeviceQuery>,
    req: Signed,
) -> Result<Json, Refusal> {
    let page = Window::of(&q.page_number, &q.page_size, 20)?;
    let given = |v: Option<String>| v.filter(|v| !v.is_empty());
    let platform =
        match given(q.platform) {
            None => None,
            Some(p) => Some(Platform::parse(&p).ok_or_else(|| {
                Refusal::new(ErrorCode::InvalidParam, "platform must be android, ios, harmonyos or web")
            })?),
        };
    let filter = DeviceFilter {
        device_id: given(q.device_id),
        user_id: given(q.user_id),
        install_id: given(q.install_id),
        platform,
    };
    let (total, list) = state.store.devices(&req.app_id, &filter, page.offset(), page.size).await?;
    let list: Vec<Value> = list.iter().map(|d| device_json(&state, d)).collect();
    Ok(ok_content(page.answer(total, list)))
}

/// Messages a device's view lists as waiting for it, at most.
const WAITING_SHOWN: usize = 20;

/// A device of the app: `data` is its view, with `waiting`: the messages still waiting for
/// it within their validity (at most 20, oldest first), each `{messageId, type, title,
/// expiresAt, sentBefore}` (`sentBefore`: written to a connection that closed before the
/// acknowledgement).
#[utoipa::path(get, path = "/devices/{deviceId}", tag = "devices",
    params(("deviceId" = String, Path, description = "The device")),
    responses((status = 200, description = "The device", body = QueryAnswer), Refusals),
    security(("signature" = [])))]
pub(super) async fn device(
    State(state): State<AppState>,
    Path(device_id): Path<String>,
    req: Signed,
) -> Result<Json, Refusal> {
    let Some(d) = state.store.device(&req.app_id, &DeviceId::new(device_id)).await? else {
        return Err(not_a_device());
    };
    let pending = state.store.pending_deliveries(&d.device_id, herald_core::now_ms(), WAITING_SHOWN).await?;
    let waiting: Vec<Value> = pending
        .iter()
        .map(|p| {
            let payload: Value = serde_json::from_str(&p.payload).unwrap_or(Value::Null);
            json!({"messageId": p.message_id, "type": payload["type"], "title": payload["title"],
                "expiresAt": p.expires_at, "sentBefore": p.sent_before})
        })
        .collect();
    let mut view = device_json(&state, &d);
    view["waiting"] = Value::Array(waiting);
    Ok(ok_content(view))
}

fn not_a_device() -> Refusal {
    Refusal::new(ErrorCode::DeviceNotExist, "no such device in this app")
}

/// `POST /v1/devices/{deviceId}/bind`.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct BindUserRequest {
    /// 1-128 characters without control characters.
    user_id: String,
}

pub(super) fn user_id(raw: String) -> Result<UserId, Refusal> {
    if !valid_external_id(&raw) {
        return Err(Refusal::new(
            ErrorCode::InvalidParam,
            "userId must be 1 to 128 characters without control characters",
        ));
    }
    Ok(UserId::new(raw))
}

/// Bind a user to the device (from the app's server: no bind proof needed). Messages
/// waiting for the user are delivered to it. `data` is `{deviceId, userId}`.
#[utoipa::path(post, path = "/devices/{deviceId}/bind", tag = "devices", request_body = BindUserRequest,
    params(("deviceId" = String, Path, description = "The device")),
    responses((status = 200, description = "Bound", body = QueryAnswer), Refusals),
    security(("signature" = [])))]
pub(super) async fn bind(
    State(state): State<AppState>,
    Path(device_id): Path<String>,
    req: Signed,
) -> Result<Json, Refusal> {
    let body: BindUserRequest = parse_json(&req.body)?;
    let user = user_id(body.user_id)?;
    let device = DeviceId::new(device_id);
    if !state.dispatcher.bind(&req.app_id, &device, &user, herald_core::now_ms()).await? {
        return Err(not_a_device());
    }
    Ok(ok_content(json!({"deviceId": device, "userId": user})))
}

/// Unbind the device's user: `data` is `{deviceId, userId: null}`.
#[utoipa::path(post, path = "/devices/{deviceId}/unbind", tag = "devices",
    params(("deviceId" = String, Path, description = "The device")),
    responses((status = 200, description = "Unbound", body = QueryAnswer), Refusals),
    security(("signature" = [])))]
pub(super) async fn unbind(
    State(state): State<AppState>,
    Path(device_id): Path<String>,
    req: Signed,
) -> Result<Json, Refusal> {
    let device = DeviceId::new(device_id);
    if !state.dispatcher.unbind(&req.app_id, &device, herald_core::now_ms()).await? {
        return Err(not_a_device());
    }
    Ok(ok_content(json!({"deviceId": device, "userId": null})))
}

/// The devices bound to a user: `data` is `{userId, devices}`.
#[utoipa::path(get, path = "/users/{userId}/devices", tag = "devices",
    params(("userId" = String, Path, description = "The user")),
    responses((status = 200, description = "The user's devices", body = QueryAnswer), Refusals),
    security(("signature" = [])))]
pub(super) async fn user_devices(
    State(state): State<AppState>,
    Path(user): Path<String>,
    req: Signed,
) -> Result<Json, Refusal> {
    let user = user_id(user)?;
    let devices = state.store.user_devices(&req.app_id, &user).await?;
    let list: Vec<Value> = devices.iter().map(|d| device_json(&state, d)).collect();
    Ok(ok_content(json!({"userId": user, "devices": list})))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    #[test]
    fn vendor_tokens_are_masked() {
        assert_eq!(super::masked(&json!("0123456789abcdef0123")), "012345…0123");
        assert_eq!(super::masked(&json!("short")), "*****");
        let sub = json!({"endpoint": "https://push.example/abcdefgh", "keys": {"p256dh": "k", "auth": "a"}});
        assert_eq!(super::masked(&sub), "https:…efgh");
    }
}
