//! Vendor channels of an app: `/v1/channels/{kind}` for the app's backend (signed), the
//! same under `/admin/v1/apps/{appId}/channels/{kind}` for the operator, the routing policy
//! (`/v1/channels/routing`), and the tokens vendors called invalid
//! (`/v1/devices/invalid-tokens`).
//!
//! A channel's view (`data`): its kind, the settings that may be shown, each secret field
//! masked, `warnings` (an APNs certificate near its end), `health` (last success, last
//! error), `receiptUrl` (Huawei and Xiaomi: where the vendor posts receipts) and
//! `createdAt`/`updatedAt`. Secrets are sealed with the master key and never
//! shown again.

use axum::extract::{Path, State};
use herald_channels::setup;
use herald_core::error::ErrorCode;
use herald_core::ids::AppId;
use herald_core::model::ChannelRecord;
use herald_core::state::Channel;
use serde_json::{Map, Value, json};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::envelope::{QueryAnswer, Refusals, ok_content};
use super::extract::QueryParams;
use super::status::{Page, Window};
use super::{Admin, AppState, Json, LimitedBody, Refusal, Signed};

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_channels))
        .routes(routes!(set_routing))
        .routes(routes!(put_channel, get_channel, delete_channel))
        .routes(routes!(invalid_tokens))
}

pub(super) fn admin_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(admin_put_channel, admin_get_channel, admin_delete_channel))
}

fn kind_of(name: &str) -> Result<Channel, Refusal> {
    Channel::parse(name).filter(|c| c.is_vendor()).ok_or_else(|| {
        Refusal::new(ErrorCode::ChannelUnknown, "no such channel; one of apns, fcm, hms, xiaomi, webpush")
    })
}

/// What is shown in place of a secret.
pub const MASK: &str = "********";

/// Where the vendor posts the receipts of the app's messages (Huawei, Xiaomi): absolute
/// under `channels.receipt_base_url`, else the path to put behind this node's address.
fn receipt_url(state: &AppState, c: &ChannelRecord) -> Option<String> {
    matches!(c.kind, Channel::Hms | Channel::Xiaomi).then(|| {
        let base = &state.cfg.channels.receipt_base_url;
        crate::ledger::vendor::receipt_url(&state.master, base, &c.app_id, c.kind)
    })
}

/// What is shown of a channel.
fn view(state: &AppState, c: &ChannelRecord, now: i64) -> Value {
    let mut shown: Map<String, Value> = c.settings.clone();
    for name in setup::secret_fields(c.kind) {
        let configured = match (*name, shown.get("authType").and_then(Value::as_str)) {
            ("privateKey", Some("certificate")) | ("certificate" | "password", Some("token")) => false,
            ("callbackKey", _) => c.settings.contains_key("callbackUserName"),
            _ => true,
        };
        if configured {
            shown.insert((*name).into(), MASK.into());
        }
    }
    let mut warnings = Vec::new();
    if let Some(not_after) = c.settings.get("notAfter").and_then(Value::as_i64) {
        if not_after <= now {
            warnings.push("the APNs certificate has expired: upload a new one".to_string());
        } else if not_after - now < setup::CERT_WARNING_DAYS * 86_400_000 {
            warnings.push(format!("the APNs certificate expires within {} days", setup::CERT_WARNING_DAYS));
        }
    }
    json!({
        "kind": c.kind,
        "settings": shown,
        "warnings": warnings,
        "health": {
            "lastSuccess": c.health.last_success,
            "lastErrorAt": c.health.last_error_at,
            "lastError": c.health.last_error,
        },
        "receiptUrl": receipt_url(state, c),
        "createdAt": c.created_at,
        "updatedAt": c.updated_at,
    })
}

/// Sets a channel from a PUT body: checked, secrets sealed, stored; its view.
async fn put(state: &AppState, app: &AppId, kind: Channel, body: &[u8]) -> Result<Value, Refusal> {
    let body: Value = herald_core::error::parse_json(body)?;
    let now = herald_core::now_ms();
    let current = match state.store.channel(app, kind).await? {
        Some(c) => {
            state.master.open(&c.secret_sealed).and_then(|raw| serde_json::from_slice::<Map<String, Value>>(&raw).ok())
        }
        None => None,
    };
    let checked = setup::parse(kind, &body, now, current.as_ref())
        .map_err(|e| Refusal::new(ErrorCode::ChannelConfigInvalid, e.0))?;
    for warning in &checked.warnings {
        tracing::warn!(app = %app, channel = %kind, %warning, "channel configured with a warning");
    }
    let record = ChannelRecord {
        app_id: app.clone(),
        kind,
        settings: checked.settings,
        secret_sealed: state.master.seal(Value::Object(checked.secret).to_string().as_bytes()),
        created_at: now,
        updated_at: now,
        health: Default::default(),
    };
    let not_after = record.settings.get("notAfter").and_then(Value::as_i64);
    state.store.put_channel(record).await?;
    if kind == Channel::Apns {
        state.dispatcher.metrics().vendor.certificate(app, not_after);
    }
    tracing::info!(app = %app, channel = %kind, "channel configured");
    get(state, app, kind).await
}

async fn get(state: &AppState, app: &AppId, kind: Channel) -> Result<Value, Refusal> {
    match state.store.channel(app, kind).await? {
        Some(c) => Ok(view(state, &c, herald_core::now_ms())),
        None => Err(Refusal::new(ErrorCode::ChannelNotConfigured, format!("the app has no {kind} channel"))),
    }
}

async fn delete(state: &AppState, app: &AppId, kind: Channel) -> Result<Value, Refusal> {
    if !state.store.delete_channel(app, kind).await? {
        return Err(Refusal::new(ErrorCode::ChannelNotConfigured, format!("the app has no {kind} channel")));
    }
    if kind == Channel::Apns {
        state.dispatcher.metrics().vendor.certificate(app, None);
    }
    tracing::info!(app = %app, channel = %kind, "channel removed");
    Ok(json!({"kind": kind, "deleted": true}))
}

/// Set a vendor channel (DESIGN §7 gives each kind's body); `data` is its view, secrets
/// masked. Web Push answers `settings.publicKey`, the VAPID key browsers subscribe with.
#[utoipa::path(put, path = "/channels/{kind}", tag = "channels", request_body = Object,
    params(("kind" = String, Path, description = "apns, fcm, hms, xiaomi or webpush")),
    responses((status = 200, description = "The channel", body = QueryAnswer), Refusals),
    security(("signature" = [])))]
async fn put_channel(State(state): State<AppState>, Path(kind): Path<String>, req: Signed) -> Result<Json, Refusal> {
    Ok(ok_content(put(&state, &req.app_id, kind_of(&kind)?, &req.body).await?))
}

/// A vendor channel: its settings (secrets masked), warnings and health.
#[utoipa::path(get, path = "/channels/{kind}", tag = "channels",
    params(("kind" = String, Path, description = "apns, fcm, hms, xiaomi or webpush")),
    responses((status = 200, description = "The channel", body = QueryAnswer), Refusals),
    security(("signature" = [])))]
async fn get_channel(State(state): State<AppState>, Path(kind): Path<String>, req: Signed) -> Result<Json, Refusal> {
    Ok(ok_content(get(&state, &req.app_id, kind_of(&kind)?).await?))
}

/// Remove a vendor channel; sends still waiting for it fail when tried.
#[utoipa::path(delete, path = "/channels/{kind}", tag = "channels",
    params(("kind" = String, Path, description = "apns, fcm, hms, xiaomi or webpush")),
    responses((status = 200, description = "Removed", body = QueryAnswer), Refusals),
    security(("signature" = [])))]
async fn delete_channel(State(state): State<AppState>, Path(kind): Path<String>, req: Signed) -> Result<Json, Refusal> {
    Ok(ok_content(delete(&state, &req.app_id, kind_of(&kind)?).await?))
}

/// Every channel of the app, and its routing: `data` is `{routing: {policy, androidOrder},
/// list}`.
#[utoipa::path(get, path = "/channels", tag = "channels",
    responses((status = 200, description = "The app's channels", body = QueryAnswer), Refusals),
    security(("signature" = [])))]
async fn list_channels(State(state): State<AppState>, req: Signed) -> Result<Json, Refusal> {
    let now = herald_core::now_ms();
    let list: Vec<Value> = state.store.channels(&req.app_id).await?.iter().map(|c| view(&state, c, now)).collect();
    let routing = state.store.routing(&req.app_id).await?.unwrap_or_default();
    Ok(ok_content(json!({"routing": routing_view(&routing), "list": list})))
}

fn routing_view(r: &herald_core::channel::route::Routing) -> Value {
    json!({"policy": r.policy, "androidOrder": r.android_order})
}

/// Set how messages choose between the own channel and a vendor: `{policy: "ownFirst" |
/// "vendorFirst" | "both", androidOrder?: ["hms", "xiaomi", "fcm"]}`.
#[utoipa::path(put, path = "/channels/routing", tag = "channels", request_body = Object,
    responses((status = 200, description = "The routing now", body = QueryAnswer), Refusals),
    security(("signature" = [])))]
async fn set_routing(State(state): State<AppState>, req: Signed) -> Result<Json, Refusal> {
    let body: Value = herald_core::error::parse_json(&req.body)?;
    let mut routing = state.store.routing(&req.app_id).await?.unwrap_or_default();
    if let Some(p) = body.get("policy") {
        routing.policy = p
            .as_str()
            .and_then(herald_core::state::RoutingPolicy::parse)
            .ok_or_else(|| Refusal::new(ErrorCode::InvalidParam, "policy must be ownFirst, vendorFirst or both"))?;
    }
    if let Some(order) = body.get("androidOrder") {
        let names = order
            .as_array()
            .filter(|a| a.len() <= 3)
            .ok_or_else(|| Refusal::new(ErrorCode::InvalidParam, "androidOrder must be an array of up to 3 names"))?;
        let names = names.iter().map(|n| n.as_str().unwrap_or("").to_owned());
        routing.android_order = herald_core::channel::route::parse_order(names)
            .map_err(|why| Refusal::new(ErrorCode::InvalidParam, why))?;
    }
    state.store.set_routing(&req.app_id, routing.clone()).await?;
    Ok(ok_content(routing_view(&routing)))
}

/// The app's device tokens that vendors called invalid (newest first): `data` is
/// `{totalCount, pageNumber, pageSize, list: [{deviceId, channel, token, reason, at}]}`.
/// A token leaves the list when its device reports a fresh one.
#[utoipa::path(get, path = "/devices/invalid-tokens", tag = "channels", params(Page),
    responses((status = 200, description = "One page", body = QueryAnswer), Refusals),
    security(("signature" = [])))]
async fn invalid_tokens(
    State(state): State<AppState>,
    QueryParams(q): QueryParams<Page>,
    req: Signed,
) -> Result<Json, Refusal> {
    let page = Window::of(&q.page_number, &q.page_size, 100)?;
    let (total, list) = state.store.invalid_tokens(&req.app_id, page.offset(), page.size).await?;
    let list: Vec<Value> = list
        .iter()
        .map(|t| json!({"deviceId": t.device_id, "channel": t.channel, "token": t.token, "reason": t.reason, "at": t.at}))
        .collect();
    Ok(ok_content(page.answer(total, list)))
}

/// Set an app's vendor channel (as `PUT /v1/channels/{kind}`); `{data}` is its view.
#[utoipa::path(put, path = "/apps/{appId}/channels/{kind}", tag = "admin", request_body = Object,
    params(("appId" = String, Path), ("kind" = String, Path, description = "apns, fcm, hms, xiaomi or webpush")),
    responses((status = 200, description = "The channel", body = serde_json::Value), Refusals),
    security(("admin" = [])))]
async fn admin_put_channel(
    State(state): State<AppState>,
    _: Admin,
    Path((app, kind)): Path<(String, String)>,
    LimitedBody(body): LimitedBody,
) -> Result<Json, Refusal> {
    let (app, kind) = (super::admin::existing_app(&state, app).await?, kind_of(&kind)?);
    Ok(Json(json!({"data": put(&state, &app, kind, &body).await?})))
}

/// An app's vendor channel.
#[utoipa::path(get, path = "/apps/{appId}/channels/{kind}", tag = "admin",
    params(("appId" = String, Path), ("kind" = String, Path)),
    responses((status = 200, description = "The channel", body = serde_json::Value), Refusals),
    security(("admin" = [])))]
async fn admin_get_channel(
    State(state): State<AppState>,
    _: Admin,
    Path((app, kind)): Path<(String, String)>,
) -> Result<Json, Refusal> {
    let (app, kind) = (super::admin::existing_app(&state, app).await?, kind_of(&kind)?);
    Ok(Json(json!({"data": get(&state, &app, kind).await?})))
}

/// Remove an app's vendor channel.
#[utoipa::path(delete, path = "/apps/{appId}/channels/{kind}", tag = "admin",
    params(("appId" = String, Path), ("kind" = String, Path)),
    responses((status = 200, description = "Removed", body = serde_json::Value), Refusals),
    security(("admin" = [])))]
async fn admin_delete_channel(
    State(state): State<AppState>,
    _: Admin,
    Path((app, kind)): Path<(String, String)>,
) -> Result<Json, Refusal> {
    let (app, kind) = (super::admin::existing_app(&state, app).await?, kind_of(&kind)?);
    Ok(Json(json!({"data": delete(&state, &app, kind).await?})))
}
