//! Receipt webhooks (DESIGN §8): `PUT/GET /v1/receipts` for the app's backend, the same
//! under `/admin/v1/apps/{appId}/receipts` for the operator, the receipts given up
//! (`GET /v1/receipts/failures`) and their replay (`POST /v1/receipts/replay`).
//!
//! The secret is created with the webhook (or rotated on request), shown in that answer
//! only, and sealed with the master key; later answers mask it.

use axum::extract::{Path, State};
use herald_core::error::ErrorCode;
use herald_core::ids::AppId;
use herald_core::ledger::WebhookRecord;
use serde_json::{Value, json};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::channels::MASK;
use super::envelope::{QueryAnswer, Refusals, ok_content};
use super::extract::QueryParams;
use super::status::{Page, Window};
use super::{Admin, AppState, Json, LimitedBody, Refusal, Signed};

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(put_receipts, get_receipts))
        .routes(routes!(receipt_failures))
        .routes(routes!(replay_receipts))
}

pub(super) fn admin_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(admin_put_receipts, admin_get_receipts))
}

/// The most failures one replay names.
const MAX_REPLAY_IDS: usize = 1000;

/// An absolute http(s) URL with a host, within the configured length.
fn check_url(url: &str, max_chars: usize) -> Result<(), Refusal> {
    let refuse = |why: &str| Refusal::new(ErrorCode::WebhookUrlInvalid, why.to_owned());
    if url.chars().count() > max_chars {
        return Err(refuse(&format!("url is longer than {max_chars} characters")));
    }
    let uri: hyper::Uri = url.parse().map_err(|_| refuse("url is not a valid URL"))?;
    match (uri.scheme_str(), uri.host()) {
        (Some("http" | "https"), Some(host)) if !host.is_empty() => Ok(()),
        _ => Err(refuse("url must be an absolute http:// or https:// URL with a host")),
    }
}

async fn view(state: &AppState, w: &WebhookRecord, secret: Option<String>) -> Result<Value, Refusal> {
    let waiting = state.store.outbox_size(&w.app_id).await?;
    Ok(json!({
        "url": w.url,
        "enabled": w.enabled,
        "secret": secret.unwrap_or_else(|| MASK.into()),
        "waiting": waiting,
        "health": {
            "lastSuccess": w.last_success,
            "lastErrorAt": w.last_error_at,
            "lastError": w.last_error,
            "failedAttempts": w.attempts,
            "nextAttemptAt": if w.attempts > 0 { Some(w.next_at) } else { None },
        },
        "createdAt": w.created_at,
        "updatedAt": w.updated_at,
    }))
}

/// Sets the app's webhook from a PUT body `{url?, enabled?, rotateSecret?}` (url required
/// the first time); its view, with the secret when it was created or rotated.
async fn put(state: &AppState, app: &AppId, body: &[u8]) -> Result<Value, Refusal> {
    let body: Value = herald_core::error::parse_json(body)?;
    let invalid = |why: &str| Refusal::new(ErrorCode::InvalidParam, why.to_owned());
    let object = body.as_object().ok_or_else(|| invalid("the body must be a JSON object"))?;
    if let Some(unknown) = object.keys().find(|k| !["url", "enabled", "rotateSecret"].contains(&k.as_str())) {
        return Err(invalid(&format!("unknown field {unknown:?}; expected url, enabled, rotateSecret")));
    }
    let url = match object.get("url") {
        None | Some(Value::Null) => None,
        Some(Value::String(u)) => Some(u.trim().to_owned()),
        Some(_) => return Err(invalid("url must be a string")),
    };
    let flag = |name: &str| match object.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(invalid(&format!("{name} must be true or false"))),
    };
    let (enabled, rotate) = (flag("enabled")?, flag("rotateSecret")?.unwrap_or(false));
    let now = herald_core::now_ms();
    let current = state.store.webhook(app).await?;
    let url = match (url, &current) {
        (Some(u), _) => u,
        (None, Some(c)) => c.url.clone(),
        (None, None) => return Err(Refusal::new(ErrorCode::WebhookUrlInvalid, "url is required")),
    };
    check_url(&url, state.cfg.receipts.max_url_chars)?;
    let (secret_sealed, shown) = match &current {
        Some(c) if !rotate => (c.secret_sealed.clone(), None),
        _ => {
            let secret = herald_core::crypto::random_secret();
            (state.master.seal(secret.as_bytes()), Some(secret))
        }
    };
    let record = WebhookRecord {
        app_id: app.clone(),
        url,
        enabled: enabled.or(current.as_ref().map(|c| c.enabled)).unwrap_or(true),
        secret_sealed,
        created_at: current.as_ref().map_or(now, |c| c.created_at),
        updated_at: now,
        attempts: 0,
        next_at: now,
        last_success: None,
        last_error_at: None,
        last_error: None,
    };
    state.store.put_webhook(record).await?;
    tracing::info!(app = %app, enabled = ?enabled, rotated = shown.is_some(), "receipt webhook set");
    let stored = state.store.webhook(app).await?.ok_or_else(|| Refusal::new(ErrorCode::SystemError, "lost"))?;
    view(state, &stored, shown).await
}

async fn get(state: &AppState, app: &AppId) -> Result<Value, Refusal> {
    match state.store.webhook(app).await? {
        Some(w) => view(state, &w, None).await,
        None => Err(Refusal::new(ErrorCode::WebhookNotConfigured, "the app has no receipt webhook")),
    }
}

/// Set the app's receipt webhook: `{url, enabled?, rotateSecret?}`. `data.secret` carries
/// the signing secret when it is created (the first PUT) or rotated, and only then.
#[utoipa::path(put, path = "/receipts", tag = "receipts", request_body = Object,
    responses((status = 200, description = "The webhook", body = QueryAnswer), Refusals),
    security(("signature" = [])))]
async fn put_receipts(State(state): State<AppState>, req: Signed) -> Result<Json, Refusal> {
    Ok(ok_content(put(&state, &req.app_id, &req.body).await?))
}

/// The app's receipt webhook (secret masked), the receipts waiting, and its health.
#[utoipa::path(get, path = "/receipts", tag = "receipts",
    responses((status = 200, description = "The webhook", body = QueryAnswer), Refusals),
    security(("signature" = [])))]
async fn get_receipts(State(state): State<AppState>, req: Signed) -> Result<Json, Refusal> {
    Ok(ok_content(get(&state, &req.app_id).await?))
}

/// Receipts given up (not acknowledged within `receipts.max_age_secs`), oldest first:
/// `{totalCount, pageNumber, pageSize, list: [{id, receipt, reason, createdAt, failedAt}]}`.
#[utoipa::path(get, path = "/receipts/failures", tag = "receipts", params(Page),
    responses((status = 200, description = "One page", body = QueryAnswer), Refusals),
    security(("signature" = [])))]
async fn receipt_failures(
    State(state): State<AppState>,
    QueryParams(q): QueryParams<Page>,
    req: Signed,
) -> Result<Json, Refusal> {
    let page = Window::of(&q.page_number, &q.page_size, 100)?;
    let (total, list) = state.store.receipt_failures(&req.app_id, page.offset(), page.size).await?;
    let list: Vec<Value> = list
        .iter()
        .map(|f| {
            let receipt: Value = serde_json::from_str(&f.receipt).unwrap_or(Value::Null);
            json!({"id": f.seq, "receipt": receipt, "reason": f.reason, "createdAt": f.created_at, "failedAt": f.failed_at})
        })
        .collect();
    Ok(ok_content(page.answer(total, list)))
}

/// Put given-up receipts back into the outbox, at its end: `{ids?: [id, …]}` (at most
/// 1000; absent: all). `data` is `{replayed}`.
#[utoipa::path(post, path = "/receipts/replay", tag = "receipts", request_body = Object,
    responses((status = 200, description = "How many", body = QueryAnswer), Refusals),
    security(("signature" = [])))]
async fn replay_receipts(State(state): State<AppState>, req: Signed) -> Result<Json, Refusal> {
    let invalid =
        || Refusal::new(ErrorCode::InvalidParam, format!("ids must be an array of at most {MAX_REPLAY_IDS} ids"));
    let body: Value = if req.body.is_empty() { json!({}) } else { herald_core::error::parse_json(&req.body)? };
    let ids = match body.get("ids") {
        None | Some(Value::Null) => None,
        Some(Value::Array(ids)) if ids.len() <= MAX_REPLAY_IDS => {
            Some(ids.iter().map(|v| v.as_i64().ok_or_else(invalid)).collect::<Result<Vec<i64>, _>>()?)
        }
        Some(_) => return Err(invalid()),
    };
    let n = state.store.replay_receipts(&req.app_id, ids, herald_core::now_ms()).await?;
    tracing::info!(app = %req.app_id, replayed = n, "receipts replayed");
    Ok(ok_content(json!({"replayed": n})))
}

/// Set an app's receipt webhook (as `PUT /v1/receipts`).
#[utoipa::path(put, path = "/apps/{appId}/receipts", tag = "admin", request_body = Object,
    params(("appId" = String, Path)),
    responses((status = 200, description = "The webhook", body = serde_json::Value), Refusals),
    security(("admin" = [])))]
async fn admin_put_receipts(
    State(state): State<AppState>,
    _: Admin,
    Path(app): Path<String>,
    LimitedBody(body): LimitedBody,
) -> Result<Json, Refusal> {
    let app = super::admin::existing_app(&state, app).await?;
    Ok(Json(json!({"data": put(&state, &app, &body).await?})))
}

/// An app's receipt webhook.
#[utoipa::path(get, path = "/apps/{appId}/receipts", tag = "admin", params(("appId" = String, Path)),
    responses((status = 200, description = "The webhook", body = serde_json::Value), Refusals),
    security(("admin" = [])))]
async fn admin_get_receipts(State(state): State<AppState>, _: Admin, Path(app): Path<String>) -> Result<Json, Refusal> {
    let app = super::admin::existing_app(&state, app).await?;
    Ok(Json(json!({"data": get(&state, &app).await?})))
}

#[cfg(test)]
mod tests {
    use super::check_url;

    #[test]
    fn webhook_urls_are_absolute_http_within_the_limit() {
        assert!(check_url("https://example.com/hook", 100).is_ok());
        assert!(check_url("http://127.0.0.1:8080/r?x=1", 100).is_ok());
        for bad in ["ftp://example.com/", "/relative", "https://", "not a url", "javascript:alert(1)"] {
            assert!(check_url(bad, 100).is_err(), "{bad}");
        }
        assert!(check_url(&format!("https://e.com/{}", "a".repeat(100)), 100).is_err());
    }
}
