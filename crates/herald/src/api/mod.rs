//! The HTTP APIs, on axum:
//! - `/v1`: the signed server API with MPS field names and envelope: pushes, revoke and
//!   schedules ([`push`]), templates ([`templates`]), task and message status ([`status`]),
//!   devices and users ([`devices`]);
//! - `/device/v1`: the device API ([`device`]), app key then device token;
//! - `/admin/v1`: apps, API keys and the node ([`admin`]), admin bearer token;
//! - `/healthz` (alive, and how), `/readyz` (can accept pushes), `/metrics`, `/openapi.json`.
//!
//! Every handler carries its `#[utoipa::path]` and takes and answers the types the OpenAPI
//! description shows ([`openapi`] assembles it from the same router that serves requests).
//! Every refusal is a [`Refusal`] rendered as `{requestId, resultCode, resultMessage}` with
//! the status of its code.

pub mod admin;
mod analytics;
mod channels;
pub mod device;
mod devices;
mod envelope;
mod extract;
mod mps;
mod openapi;
mod push;
mod receipts;
pub mod signing;
mod status;
mod templates;
mod vendor_receipts;

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use herald_core::crypto::MasterKey;
use herald_core::error::ErrorCode;
use herald_store::Store;
use serde_json::json;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use channels::MASK;
pub use envelope::{Json, Refusal, Refused, parse_json};
pub use extract::{Admin, DeviceAuth, LimitedBody, Signed};
pub use openapi::description;

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

/// Every documented route, with the description built from their annotations.
fn routes() -> OpenApiRouter<AppState> {
    let server = OpenApiRouter::new().merge(push::routes()).merge(templates::routes()).merge(status::routes());
    OpenApiRouter::with_openapi(openapi::base())
        .routes(routes!(healthz))
        .routes(routes!(readyz))
        .routes(routes!(metrics))
        .nest(
            "/v1",
            server
                .merge(devices::routes())
                .merge(channels::routes())
                .merge(receipts::routes())
                .merge(analytics::routes()),
        )
        .nest("/device/v1", device::routes())
        .nest("/vendor/v1", vendor_receipts::routes())
        .nest("/admin/v1", admin::routes().merge(channels::admin_routes()).merge(receipts::admin_routes()))
}

/// CORS of the device API: browsers call it from the app's own origin (a web app is a
/// device). Any origin, no credentials (it authenticates with the app key or the device
/// token in headers, never with cookies), its methods and headers, preflights cached a day.
/// Other paths grant no origin. Around the whole router, so that preflights (OPTIONS) are
/// answered before routing, which knows only the routes' own methods.
fn device_cors() -> tower_http::cors::CorsLayer {
    use axum::http::{HeaderName, Method, header};
    let device_api =
        |_: &axum::http::HeaderValue, parts: &axum::http::request::Parts| parts.uri.path().starts_with("/device/v1/");
    tower_http::cors::CorsLayer::new()
        .allow_origin(tower_http::cors::AllowOrigin::predicate(device_api))
        .allow_methods([Method::GET, Method::POST])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            HeaderName::from_static("x-herald-app"),
            HeaderName::from_static("x-herald-app-key"),
        ])
        .max_age(std::time::Duration::from_secs(86_400))
}

pub fn router(state: AppState) -> Router {
    let (router, spec) = routes().split_for_parts();
    let spec: Arc<str> = spec.to_pretty_json().unwrap_or_default().into();
    let app = router
        .route("/openapi.json", get(move || async move { ([("content-type", "application/json")], spec.to_string()) }))
        // The MPS-compatible endpoint: the SDKs post to the endpoint's root (docs/mps-compat.md).
        .route("/", axum::routing::post(mps::rpc))
        .fallback(|| async { Refusal::new(ErrorCode::NotFound, "no such endpoint") })
        .method_not_allowed_fallback(|| async { Refusal::new(ErrorCode::MethodNotAllowed, "method not allowed here") })
        .with_state(state);
    Router::new().fallback_service(app).layer(device_cors())
}

/// Liveness: 200 while the node serves, with how well: `status` "ok", or "degraded" while
/// the node has lost its bus (pushes are still accepted; other nodes' devices get them from
/// the store, later) or its store (pushes are refused). For the operator; a load balancer's
/// check is `/readyz`.
#[utoipa::path(get, path = "/healthz", tag = "node", responses(
    (status = 200, description = "`{\"status\": \"ok\"|\"degraded\", \"bus\": \"local\"|\"connected\"|\"down\", \
        \"busDownSince\": ms|null, \"clusterDegraded\": bool, \"store\": \"ok\"|\"unavailable\"}`",
        body = serde_json::Value),
))]
async fn healthz(State(state): State<AppState>) -> Response {
    let d = &state.dispatcher;
    let store_ok = d.store_answers().await;
    let bus = d.bus();
    let bus_state = match (bus.is_cluster(), bus.down_since()) {
        (false, _) => "local",
        (true, None) => "connected",
        (true, Some(_)) => "down",
    };
    let status = if store_ok && bus.available() { "ok" } else { "degraded" };
    Json(json!({
        "status": status,
        "bus": bus_state,
        "busDownSince": bus.down_since(),
        "clusterDegraded": d.degraded(),
        "store": if store_ok { "ok" } else { "unavailable" },
    }))
    .into_response()
}

/// Readiness, for a load balancer: 200 while the node can accept pushes, which needs its
/// store and not its bus (a bus outage must not take every node out of the pool at once);
/// 503 while the store does not answer. The store is asked at most once a second.
#[utoipa::path(get, path = "/readyz", tag = "node", responses(
    (status = 200, description = "`{\"status\": \"ready\"}`", body = serde_json::Value),
    (status = 503, description = "`{\"status\": \"store unavailable\"}`", body = serde_json::Value),
))]
async fn readyz(State(state): State<AppState>) -> Response {
    if state.dispatcher.store_answers().await {
        Json(json!({"status": "ready"})).into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"status": "store unavailable"}))).into_response()
    }
}

/// Prometheus metrics of this node (text exposition format 0.0.4).
#[utoipa::path(get, path = "/metrics", tag = "node", responses(
    (status = 200, description = "The metrics", content_type = "text/plain", body = String),
))]
async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let d = &state.dispatcher;
    let body = d.metrics().render(d.hub().connections(), d.bus(), d.degraded());
    ([("content-type", "text/plain; version=0.0.4")], body)
}
