//! What the handlers take from a request: a bounded body that arrives in time, a verified
//! signature (and the app it speaks for), the admin token, a device's token.

use axum::body::Body;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use bytes::Bytes;
use herald_core::crypto;
use herald_core::error::ErrorCode;
use herald_core::ids::AppId;
use herald_core::model::DeviceRecord;

use super::{AppState, Refusal};

/// A query string read into `T`; one that cannot be read is `INVALID_PARAM` in our words
/// (axum's own rejection would answer plain text).
pub struct QueryParams<T>(pub T);

impl<T: serde::de::DeserializeOwned + Send> FromRequestParts<AppState> for QueryParams<T> {
    type Rejection = Refusal;

    async fn from_request_parts(parts: &mut Parts, _: &AppState) -> Result<Self, Refusal> {
        axum::extract::Query::<T>::try_from_uri(&parts.uri)
            .map(|q| QueryParams(q.0))
            .map_err(|_| Refusal::new(ErrorCode::InvalidParam, "the query string cannot be read (a parameter twice?)"))
    }
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
    /// A request's body: refused when it declares or sends more than `max_body_bytes`, or
    /// arrives slower than `body_timeout_secs`.
    pub(super) async fn limited_body(&self, parts: &Parts, body: Body) -> Result<Bytes, Refusal> {
        let limit = self.cfg.limits.max_body_bytes;
        check_length(parts, limit)?;
        read_body(body, limit, std::time::Duration::from_secs(self.cfg.http.body_timeout_secs)).await
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
        let (parts, body) = req.into_parts();
        Ok(LimitedBody(state.limited_body(&parts, body).await?))
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
        let (parts, body) = req.into_parts();
        let body = state.limited_body(&parts, body).await?;
        // The console speaks for an app in process (its operator signed in with the admin
        // token); no network client can set this extension.
        if let Some(app_id) = parts.extensions.get::<crate::console::ConsoleCall>().and_then(|c| c.app_id.clone()) {
            state.dispatcher.flow().request(&app_id)?;
            return Ok(Signed { app_id, body });
        }
        // Nested routers see the path without their prefix; the signature covers the whole path.
        let uri = parts.extensions.get::<axum::extract::OriginalUri>().map(|o| &o.0).unwrap_or(&parts.uri);
        let app_id = state.verifier.verify(&parts.method, uri, &parts.headers, &body, herald_core::now_ms()).await?;
        // Counted once the signature holds: a forged request costs the app nothing.
        state.dispatcher.flow().request(&app_id)?;
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
        // The console's own calls: its operator signed in with the admin token.
        if parts.extensions.get::<crate::console::ConsoleCall>().is_some() {
            return Ok(Admin);
        }
        if state.cfg.tls.admin_client_ca.is_some()
            && !parts.extensions.get::<crate::http::Peer>().is_some_and(|p| p.client_cert)
        {
            return Err(Refusal::new(
                ErrorCode::AdminUnauthorized,
                "the admin API needs a client certificate (tls.admin_client_ca) over HTTPS",
            ));
        }
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
