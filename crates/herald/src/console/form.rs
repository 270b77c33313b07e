//! A submitted form: read within the API's body limit and time, its CSRF token checked
//! against the session before any field is used.

use axum::body::Body;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::Response;
use herald_core::crypto;

use super::{Console, Operator};

/// The fields of a form (`application/x-www-form-urlencoded`), in order.
pub(crate) struct Fields(Vec<(String, String)>);

impl Fields {
    /// The first value of `name`, "" when absent.
    pub(crate) fn get(&self, name: &str) -> &str {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str()).unwrap_or("")
    }

    /// The value of `name`, trimmed, `None` when empty.
    pub(crate) fn opt(&self, name: &str) -> Option<&str> {
        Some(self.get(name).trim()).filter(|v| !v.is_empty())
    }

    pub(crate) fn checked(&self, name: &str) -> bool {
        self.get(name) == "true"
    }

    /// Reads a form body (no CSRF check: the sign-in form checks its own).
    pub(crate) async fn read(console: &Console, body: Body) -> Result<Fields, Response> {
        let limit = console.state.cfg.limits.max_body_bytes;
        let timeout = std::time::Duration::from_secs(console.state.cfg.http.body_timeout_secs);
        let bytes = match tokio::time::timeout(timeout, axum::body::to_bytes(body, limit)).await {
            Ok(Ok(b)) => b,
            Ok(Err(_)) => {
                let message = format!("the form is larger than {limit} bytes (limits.max_body_bytes)");
                return Err(super::failure(StatusCode::PAYLOAD_TOO_LARGE, &message));
            }
            Err(_) => return Err(super::failure(StatusCode::REQUEST_TIMEOUT, "the form did not arrive in time")),
        };
        serde_urlencoded::from_bytes::<Vec<(String, String)>>(&bytes)
            .map(Fields)
            .map_err(|_| super::failure(StatusCode::BAD_REQUEST, "the form cannot be read"))
    }

    /// Reads a form of a signed-in operator; refused (403) unless it carries the session's
    /// CSRF token.
    pub(crate) async fn read_checked(
        console: &Console,
        op: &Operator,
        parts: &Parts,
        body: Body,
    ) -> Result<Fields, Response> {
        let fields = Fields::read(console, body).await?;
        // Scripts of the console send it as a header (the template preview, the test device).
        let given = parts.headers.get("x-csrf-token").and_then(|v| v.to_str().ok()).unwrap_or(fields.get("csrf"));
        if given.is_empty() || !crypto::constant_time_eq(given.as_bytes(), op.csrf.as_bytes()) {
            tracing::warn!(target: "herald::console", session = %op.short_id, path = %parts.uri.path(),
                "console form refused: CSRF token missing or wrong");
            return Err(super::failure(
                StatusCode::FORBIDDEN,
                "This form did not come from your console session (its CSRF token is missing or wrong). \
                 Reload the page and try again.",
            ));
        }
        Ok(fields)
    }
}

/// A form submitted by the signed-in operator, CSRF token checked.
pub(crate) struct Action {
    pub op: Operator,
    pub fields: Fields,
}

impl FromRequest<Console> for Action {
    type Rejection = Response;

    async fn from_request(req: Request, console: &Console) -> Result<Self, Response> {
        let (mut parts, body) = req.into_parts();
        let op = Operator::from_request_parts(&mut parts, console).await?;
        let fields = Fields::read_checked(console, &op, &parts, body).await?;
        Ok(Action { op, fields })
    }
}

/// A page's query string (filters, page number); one that cannot be read is answered in
/// our words (axum's own rejection would name serde's).
pub(crate) struct PageQuery<T>(pub T);

impl<T: serde::de::DeserializeOwned + Send> FromRequestParts<Console> for PageQuery<T> {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _: &Console) -> Result<Self, Response> {
        serde_urlencoded::from_str(parts.uri.query().unwrap_or("")).map(PageQuery).map_err(|_| {
            super::failure(StatusCode::BAD_REQUEST, "the address's query cannot be read (a parameter given twice?)")
        })
    }
}
