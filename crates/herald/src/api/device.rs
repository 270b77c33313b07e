//! `/device/v1`: what an app on a device calls. Registration authenticates with the app
//! key; everything after with the device token it returned.

use axum::Router;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::post;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::server::user_id;
use super::{AppState, DeviceAuth, Json, LimitedBody, parse_json};
use crate::crypto;
use crate::error::{ApiError, ErrorCode};
use crate::ids::{AppId, DeviceId, MessageId, valid_external_id};
use crate::store::{DeviceEvent, DeviceRegistration, StatusUpdate};

pub const PLATFORMS: &[&str] = &["android", "ios", "harmonyos", "web"];
pub const VENDOR_CHANNELS: &[&str] = &["apns", "fcm", "hms", "xiaomi", "webpush"];

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/register", post(register))
        .route("/bind", post(bind))
        .route("/unbind", post(unbind))
        .route("/report", post(report))
        .route("/events", post(events))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RegisterBody {
    platform: String,
    install_id: String,
    app_version: Option<String>,
    os_version: Option<String>,
    model: Option<String>,
    vendor_tokens: Option<Map<String, Value>>,
}

fn check_vendor_tokens(tokens: &Option<Map<String, Value>>) -> Result<(), ApiError> {
    for (k, v) in tokens.iter().flatten() {
        if !VENDOR_CHANNELS.contains(&k.as_str()) {
            return Err(ApiError::new(
                ErrorCode::InvalidParam,
                format!("vendorTokens: unknown channel {k}; one of {VENDOR_CHANNELS:?}"),
            ));
        }
        if !(v.is_string() || v.is_null()) {
            return Err(ApiError::new(ErrorCode::InvalidParam, format!("vendorTokens.{k} must be a string or null")));
        }
    }
    Ok(())
}

fn short_text(name: &str, value: &Option<String>) -> Result<(), ApiError> {
    match value {
        Some(v) if v.chars().count() > 128 => {
            Err(ApiError::new(ErrorCode::InvalidParam, format!("{name} is longer than 128 characters")))
        }
        _ => Ok(()),
    }
}

async fn register(
    State(state): State<AppState>,
    headers: HeaderMap,
    LimitedBody(body): LimitedBody,
) -> Result<Json, ApiError> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let refuse = || ApiError::new(ErrorCode::AppKeyInvalid, "X-Herald-App and X-Herald-App-Key do not name an app");
    let app_id = AppId::new(header("x-herald-app"));
    let app_key = header("x-herald-app-key");
    let app = state.store.app(&app_id).await?.ok_or_else(refuse)?;
    if crypto::sha256_hex(app_key.as_bytes()) != app.app_key_hash {
        return Err(refuse());
    }
    let body: RegisterBody = parse_json(&body)?;
    if !PLATFORMS.contains(&body.platform.as_str()) {
        return Err(ApiError::new(ErrorCode::InvalidParam, format!("platform must be one of {PLATFORMS:?}")));
    }
    if !valid_external_id(&body.install_id) {
        return Err(ApiError::new(
            ErrorCode::InvalidParam,
            "installId must be 1 to 128 characters without control characters",
        ));
    }
    short_text("appVersion", &body.app_version)?;
    short_text("osVersion", &body.os_version)?;
    short_text("model", &body.model)?;
    check_vendor_tokens(&body.vendor_tokens)?;
    let token = crypto::random_secret();
    let device = state
        .store
        .register_device(DeviceRegistration {
            app_id,
            install_id: body.install_id,
            new_device_id: DeviceId::generate(),
            token_hash: crypto::sha256_hex(token.as_bytes()),
            platform: body.platform,
            app_version: body.app_version,
            os_version: body.os_version,
            model: body.model,
            vendor_tokens: body.vendor_tokens,
            now: crate::now_ms(),
        })
        .await?;
    Ok(Json(json!({"deviceId": device.device_id, "deviceToken": token})))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct BindBody {
    user_id: String,
    bind_proof: Option<String>,
    /// Unix milliseconds after which the proof is no longer accepted.
    expires_at: Option<i64>,
}

/// The bind proof the app's server computes: HMAC-SHA256(bind secret,
/// `deviceId "\n" userId "\n" expiresAtMillis`), base64url without padding.
pub fn bind_proof(bind_secret: &[u8], device_id: &str, user_id: &str, expires_at: i64) -> String {
    crypto::b64url(&crypto::hmac_sha256(bind_secret, format!("{device_id}\n{user_id}\n{expires_at}").as_bytes()))
}

async fn bind(
    State(state): State<AppState>,
    DeviceAuth(device): DeviceAuth,
    LimitedBody(body): LimitedBody,
) -> Result<Json, ApiError> {
    let body: BindBody = parse_json(&body)?;
    let user = user_id(body.user_id)?;
    let now = crate::now_ms();
    let app = state
        .store
        .app(&device.app_id)
        .await?
        .ok_or_else(|| ApiError::new(ErrorCode::AppNotExist, "the device's app is gone"))?;
    if !app.trust_client_bind {
        let invalid = |why: &str| ApiError::new(ErrorCode::BindProofInvalid, why);
        let (Some(proof), Some(expires_at)) = (body.bind_proof.as_deref(), body.expires_at) else {
            return Err(invalid("this app requires bindProof and expiresAt from the app's server"));
        };
        if expires_at <= now {
            return Err(invalid("the bind proof has expired"));
        }
        let secret = state.master.open(&app.bind_secret_sealed).ok_or_else(|| {
            tracing::error!(app = %app.app_id, "bind secret cannot be decrypted: wrong master key?");
            ApiError::new(ErrorCode::SystemError, "internal error")
        })?;
        let given = crypto::b64url_decode(proof).unwrap_or_default();
        let message = format!("{}\n{}\n{}", device.device_id, user, expires_at);
        if !crypto::hmac_sha256_verify(&secret, message.as_bytes(), &given) {
            return Err(invalid("the bind proof does not match this device, user and expiry"));
        }
    }
    if !state.dispatcher.bind(&device.app_id, &device.device_id, &user, now).await? {
        return Err(ApiError::new(ErrorCode::DeviceNotExist, "the device is gone"));
    }
    Ok(Json(json!({"deviceId": device.device_id, "userId": user})))
}

async fn unbind(State(state): State<AppState>, DeviceAuth(device): DeviceAuth) -> Result<Json, ApiError> {
    state.dispatcher.unbind(&device.app_id, &device.device_id, crate::now_ms()).await?;
    Ok(Json(json!({"deviceId": device.device_id, "userId": null})))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ReportBody {
    app_version: Option<String>,
    vendor_tokens: Option<Map<String, Value>>,
}

async fn report(
    State(state): State<AppState>,
    DeviceAuth(device): DeviceAuth,
    LimitedBody(body): LimitedBody,
) -> Result<Json, ApiError> {
    let body: ReportBody = parse_json(&body)?;
    short_text("appVersion", &body.app_version)?;
    check_vendor_tokens(&body.vendor_tokens)?;
    state.store.report_device(&device.app_id, &device.device_id, body.app_version, body.vendor_tokens).await?;
    Ok(Json(json!({"deviceId": device.device_id})))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct EventBody {
    message_id: String,
    event: String,
    at: Option<i64>,
}

/// Parses device events: one `{messageId, event, at?}` object or an array of them.
pub fn parse_events(body: &[u8]) -> Result<Vec<(MessageId, DeviceEvent, i64)>, ApiError> {
    let value: Value = parse_json(body)?;
    let items = match value {
        Value::Array(items) => items,
        one @ Value::Object(_) => vec![one],
        _ => {
            return Err(ApiError::new(ErrorCode::InvalidParam, "events must be an object or an array of objects"));
        }
    };
    let now = crate::now_ms();
    items
        .into_iter()
        .map(|item| {
            let e: EventBody =
                serde_json::from_value(item).map_err(|e| ApiError::new(ErrorCode::InvalidParam, e.to_string()))?;
            let event = DeviceEvent::parse(&e.event)
                .ok_or_else(|| ApiError::new(ErrorCode::InvalidParam, "event must be arrived, opened or ignored"))?;
            Ok((MessageId::new(e.message_id), event, e.at.unwrap_or(now)))
        })
        .collect()
}

async fn events(
    State(state): State<AppState>,
    DeviceAuth(device): DeviceAuth,
    LimitedBody(body): LimitedBody,
) -> Result<Json, ApiError> {
    let events = parse_events(&body)?;
    let n = events.len();
    for (message_id, event, at) in events {
        // The update only touches this device's own deliveries.
        state.store.record(StatusUpdate::Event { message_id, device_id: device.device_id.clone(), event, at });
    }
    Ok(Json(json!({"accepted": n})))
}
