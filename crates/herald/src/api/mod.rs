//! The HTTP APIs, on axum:
//! - `/v1`: the signed server API ([`server`]) with MPS field names and envelope;
//! - `/device/v1`: the device API ([`device`]), app key then device token;
//! - `/admin/v1`: apps and API keys ([`admin`]), admin bearer token;
//! - `/healthz`, `/metrics`, `/openapi.json`.
//!
//! Every refusal is an [`ApiError`] rendered as `{requestId, resultCode, resultMessage}`
//! with the status of its code.

pub mod admin;
pub mod device;
mod server;
pub mod signing;

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::config::Config;
use crate::crypto::{self, MasterKey};
use crate::dispatch::Dispatcher;
use crate::error::{ApiError, ErrorCode};
use crate::ids::AppId;
use crate::store::{DeviceRecord, Store};

pub struct Inner {
    pub store: Arc<dyn Store>,
    pub dispatcher: Arc<Dispatcher>,
    pub cfg: Arc<Config>,
    pub master: Arc<MasterKey>,
    pub verifier: Arc<signing::Verifier>,
    /// SHA-256 of the admin token.
    pub admin_token_hash: String,
}

#[derive(Clone)]
pub struct AppState(pub Arc<Inner>);

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(|| async { ([("content-type", "application/json")], OPENAPI) }))
        .nest("/admin/v1", admin::router())
        .nest("/device/v1", device::router())
        .nest("/v1", server::router())
        .fallback(|| async { ApiError::new(ErrorCode::NotFound, "no such endpoint") })
        .method_not_allowed_fallback(|| async { ApiError::new(ErrorCode::MethodNotAllowed, "method not allowed here") })
        .with_state(state)
}

const OPENAPI: &str = include_str!("../../../../docs/openapi.json");

/// 200 while the node can accept pushes; 503 while a cluster node has lost its bus (a
/// load balancer then sends requests to the other nodes).
async fn healthz(axum::extract::State(state): axum::extract::State<AppState>) -> axum::response::Response {
    if state.dispatcher.bus().available() {
        Json(json!({"status": "ok"})).into_response()
    } else {
        (axum::http::StatusCode::SERVICE_UNAVAILABLE, axum::Json(json!({"status": "bus unavailable"}))).into_response()
    }
}

async fn metrics(axum::extract::State(state): axum::extract::State<AppState>) -> impl IntoResponse {
    let body = crate::metrics::render(state.dispatcher.hub().connections());
    ([("content-type", "text/plain; version=0.0.4")], body)
}

/// A JSON response with status 200.
pub struct Json(pub Value);

impl IntoResponse for Json {
    fn into_response(self) -> Response {
        ([("content-type", "application/json")], self.0.to_string()).into_response()
    }
}

fn request_id() -> String {
    crypto::random_alnum(20)
}

/// The `/v1` success envelope for queries.
pub fn ok_content(data: Value) -> Json {
    Json(json!({"requestId": request_id(), "resultCode": "OK", "resultMessage": "OK", "resultContent": {"data": data}}))
}

/// The `/v1` success envelope for pushes: `data` carries the taskId.
pub fn ok_push(task_id: &str, extra: Value) -> Json {
    let mut push_result = json!({"success": true, "resultMsg": "OK", "data": task_id});
    if let (Value::Object(m), Value::Object(e)) = (&mut push_result, extra) {
        m.extend(e);
    }
    Json(json!({"requestId": request_id(), "resultCode": "OK", "resultMessage": "OK", "pushResult": push_result}))
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = json!({"requestId": request_id(), "resultCode": self.code.as_str(), "resultMessage": self.message});
        (status, [("content-type", "application/json")], body.to_string()).into_response()
    }
}

/// Parses a JSON body: broken JSON is `INVALID_JSON`, a wrong shape `INVALID_PARAM`.
pub fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => ApiError::new(ErrorCode::InvalidParam, e.to_string()),
        _ => ApiError::new(ErrorCode::InvalidJson, format!("the body is not valid JSON: {e}")),
    })
}

async fn read_body(body: Body, limit: usize) -> Result<Bytes, ApiError> {
    axum::body::to_bytes(body, limit)
        .await
        .map_err(|_| ApiError::new(ErrorCode::RequestTooLarge, format!("the body is larger than {limit} bytes")))
}

fn check_length(parts: &Parts, limit: usize) -> Result<(), ApiError> {
    let declared =
        parts.headers.get("content-length").and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<usize>().ok());
    match declared {
        Some(n) if n > limit => {
            Err(ApiError::new(ErrorCode::RequestTooLarge, format!("the body is larger than {limit} bytes")))
        }
        _ => Ok(()),
    }
}

/// The body of a request, read up to `limits.max_body_bytes`.
pub struct LimitedBody(pub Bytes);

impl FromRequest<AppState> for LimitedBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        let limit = state.cfg.limits.max_body_bytes;
        let (parts, body) = req.into_parts();
        check_length(&parts, limit)?;
        Ok(LimitedBody(read_body(body, limit).await?))
    }
}

/// A `/v1` request whose signature was verified; carries the app it speaks for.
pub struct Signed {
    pub app_id: AppId,
    pub body: Bytes,
}

impl FromRequest<AppState> for Signed {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        let limit = state.cfg.limits.max_body_bytes;
        let (parts, body) = req.into_parts();
        check_length(&parts, limit)?;
        let body = read_body(body, limit).await?;
        // Nested routers see the path without their prefix; the signature covers the whole path.
        let uri = parts.extensions.get::<axum::extract::OriginalUri>().map(|o| &o.0).unwrap_or(&parts.uri);
        let app_id = state.verifier.verify(&parts.method, uri, &parts.headers, &body, crate::now_ms()).await?;
        Ok(Signed { app_id, body })
    }
}

fn bearer(parts: &Parts) -> Option<&str> {
    parts.headers.get("authorization")?.to_str().ok()?.strip_prefix("Bearer ").map(str::trim)
}

/// An admin request: `Authorization: Bearer <admin token>`.
pub struct Admin;

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let given = bearer(parts).map(|t| crypto::sha256_hex(t.as_bytes()));
        match given {
            Some(h)
                if aws_lc_rs::constant_time::verify_slices_are_equal(
                    h.as_bytes(),
                    state.admin_token_hash.as_bytes(),
                )
                .is_ok() =>
            {
                Ok(Admin)
            }
            _ => Err(ApiError::new(ErrorCode::AdminUnauthorized, "a valid admin bearer token is required")),
        }
    }
}

/// A device request: `Authorization: Bearer <deviceToken>`.
pub struct DeviceAuth(pub DeviceRecord);

impl FromRequestParts<AppState> for DeviceAuth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let refuse = || ApiError::new(ErrorCode::DeviceTokenInvalid, "a valid device bearer token is required");
        let token = bearer(parts).ok_or_else(refuse)?;
        let device = state.store.device_by_token_hash(&crypto::sha256_hex(token.as_bytes())).await?;
        device.map(DeviceAuth).ok_or_else(refuse)
    }
}
