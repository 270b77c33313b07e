//! The HTTP APIs, on axum:
//! - `/v1`: the signed server API ([`server`]) with MPS field names and envelope;
//! - `/device/v1`: the device API ([`device`]), app key then device token;
//! - `/admin/v1`: apps and API keys ([`admin`]), admin bearer token;
//! - `/healthz`, `/metrics`, `/openapi.json`.
//!
//! Every refusal is a [`Refusal`] rendered as `{requestId, resultCode, resultMessage}`
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
use herald_core::crypto::{self, MasterKey};
use herald_core::error::ErrorCode;
use herald_core::ids::AppId;
use herald_core::model::DeviceRecord;
use herald_store::Store;
use serde_json::{Value, json};

use crate::config::Config;
use crate::dispatch::Dispatcher;

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
        .fallback(|| async { Refusal::new(ErrorCode::NotFound, "no such endpoint") })
        .method_not_allowed_fallback(|| async { Refusal::new(ErrorCode::MethodNotAllowed, "method not allowed here") })
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
    let body = state.dispatcher.metrics().render(state.dispatcher.hub().connections());
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

/// A refusal of the HTTP APIs: a code of `herald_core::error`'s table with a message for the
/// caller, answered as the envelope with the code's status. (The table is the domain's;
/// answering HTTP is the API's.)
#[derive(Debug)]
pub struct Refusal(pub herald_core::error::ApiError);

impl Refusal {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Refusal(herald_core::error::ApiError::new(code, message))
    }
}

impl From<herald_core::error::ApiError> for Refusal {
    fn from(e: herald_core::error::ApiError) -> Self {
        Refusal(e)
    }
}

impl From<herald_store::StoreError> for Refusal {
    fn from(e: herald_store::StoreError) -> Self {
        Refusal(e.into())
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let Refusal(e) = self;
        let status = StatusCode::from_u16(e.code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = json!({"requestId": request_id(), "resultCode": e.code.as_str(), "resultMessage": e.message});
        (status, [("content-type", "application/json")], body.to_string()).into_response()
    }
}

/// Parses a JSON body: broken JSON is `INVALID_JSON`, a wrong shape `INVALID_PARAM`.
pub fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, Refusal> {
    Ok(herald_core::error::parse_json(body)?)
}

/// Reads a body of at most `limit` bytes that arrives within `timeout`.
async fn read_body(body: Body, limit: usize, timeout: std::time::Duration) -> Result<Bytes, Refusal> {
    match tokio::time::timeout(timeout, axum::body::to_bytes(body, limit)).await {
        Ok(Ok(bytes)) => Ok(bytes),
        Ok(Err(_)) => Err(Refusal::new(ErrorCode::RequestTooLarge, format!("the body is larger than {limit} bytes"))),
        Err(_) => Err(Refusal::new(
            ErrorCode::RequestTimeout,
            format!("the body did not arrive within {} s", timeout.as_secs()),
        )),
    }
}

impl AppState {
    fn body_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.cfg.http.body_timeout_secs)
    }
}

fn check_length(parts: &Parts, limit: usize) -> Result<(), Refusal> {
    let declared =
        parts.headers.get("content-length").and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<usize>().ok());
    match declared {
        Some(n) if n > limit => {
            Err(Refusal::new(ErrorCode::RequestTooLarge, format!("the body is larger than {limit} bytes")))
        }
        _ => Ok(()),
    }
}

/// The body of a request, read up to `limits.max_body_bytes`.
pub struct LimitedBody(pub Bytes);

impl FromRequest<AppState> for LimitedBody {
    type Rejection = Refusal;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Refusal> {
        let limit = state.cfg.limits.max_body_bytes;
        let (parts, body) = req.into_parts();
        check_length(&parts, limit)?;
        Ok(LimitedBody(read_body(body, limit, state.body_timeout()).await?))
    }
}

/// A `/v1` request whose signature was verified; carries the app it speaks for.
pub struct Signed {
    pub app_id: AppId,
    pub body: Bytes,
}

impl FromRequest<AppState> for Signed {
    type Rejection = Refusal;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Refusal> {
        let limit = state.cfg.limits.max_body_bytes;
        let (parts, body) = req.into_parts();
        check_length(&parts, limit)?;
        let body = read_body(body, limit, state.body_timeout()).await?;
        // Nested routers see the path without their prefix; the signature covers the whole path.
        let uri = parts.extensions.get::<axum::extract::OriginalUri>().map(|o| &o.0).unwrap_or(&parts.uri);
        let app_id = state.verifier.verify(&parts.method, uri, &parts.headers, &body, herald_core::now_ms()).await?;
        Ok(Signed { app_id, body })
    }
}

pub(crate) fn bearer(parts: &Parts) -> Option<&str> {
    parts.headers.get("authorization")?.to_str().ok()?.strip_prefix("Bearer ").map(str::trim)
}

/// An admin request: `Authorization: Bearer <admin token>`.
pub struct Admin;

impl FromRequestParts<AppState> for Admin {
    type Rejection = Refusal;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Refusal> {
        let given = bearer(parts).map(|t| crypto::sha256_hex(t.as_bytes()));
        match given {
            Some(h) if crypto::constant_time_eq(h.as_bytes(), state.admin_token_hash.as_bytes()) => Ok(Admin),
            _ => Err(Refusal::new(ErrorCode::AdminUnauthorized, "a valid admin bearer token is required")),
        }
    }
}

/// A device request: `Authorization: Bearer <deviceToken>`.
pub struct DeviceAuth(pub DeviceRecord);

impl FromRequestParts<AppState> for DeviceAuth {
    type Rejection = Refusal;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Refusal> {
        let refuse = || Refusal::new(ErrorCode::DeviceTokenInvalid, "a valid device bearer token is required");
        let token = bearer(parts).ok_or_else(refuse)?;
        let device = state.store.device_by_token_hash(&crypto::sha256_hex(token.as_bytes())).await?;
        device.map(DeviceAuth).ok_or_else(refuse)
    }
}
