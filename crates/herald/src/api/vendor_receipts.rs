//! Vendor receipts in (`/vendor/v1/receipts/{hms|xiaomi}/{appId}/{token}`): what Huawei Push
//! Kit and Xiaomi report about the messages they carried, checked as `ledger::vendor`
//! describes, turned into the device's `arrived` / `opened` (as if the device had reported
//! them) or a `failed` with the vendor's reason. Receipts naming a message, token or app
//! that Herald did not send through that vendor change nothing.

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use herald_core::error::ErrorCode;
use herald_core::ids::{AppId, MessageId};
use herald_core::model::StatusUpdate;
use herald_core::state::{Channel, DeviceEvent};
use serde_json::{Map, Value, json};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::envelope::Refusals;
use super::{AppState, Json, LimitedBody, Refusal};
use crate::ledger::vendor::{self, Outcome, VendorReceipt};

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(hms_receipts)).routes(routes!(xiaomi_receipts))
}

/// The channel of the URL's app when the URL's token is that app's. A wrong token and an
/// unknown app (or one without the channel) get the same refusal: nothing tells them apart.
async fn channel(
    state: &AppState,
    app: &AppId,
    kind: Channel,
    token: &str,
) -> Result<herald_core::model::ChannelRecord, Refusal> {
    let unknown = || Refusal::new(ErrorCode::SignatureMismatch, "this receipt URL is not one Herald gave out");
    if app.as_str().len() > 64 || !vendor::token_matches(&state.master, app, kind, token) {
        return Err(unknown());
    }
    state.store.channel(app, kind).await?.ok_or_else(unknown)
}

/// Applies the receipts; how many named a send Herald made.
async fn apply(state: &AppState, app: &AppId, kind: Channel, receipts: Vec<VendorReceipt>) -> Result<usize, Refusal> {
    let now = herald_core::now_ms();
    let mut applied = 0;
    for r in receipts {
        if r.message_id.is_empty() || r.message_id.len() > 64 || r.token.len() > 4096 {
            continue;
        }
        let Some(device) = state.store.vendor_device(app, kind, &r.message_id, &r.token).await? else { continue };
        let at = r.at.unwrap_or(now);
        let event = |event| StatusUpdate::Event {
            message_id: MessageId::new(r.message_id.clone()),
            device_id: device.clone(),
            event,
            at,
            received_at: now,
        };
        match r.outcome {
            Outcome::Arrived => state.store.record(event(DeviceEvent::Arrived)),
            Outcome::Clicked => state.store.record(event(DeviceEvent::Opened)),
            Outcome::Failed(reason) => {
                state.store.vendor_failed(&r.message_id, &device, kind, reason, at.min(now)).await?
            }
        }
        applied += 1;
    }
    tracing::debug!(app = %app, channel = %kind, applied, "vendor receipts");
    Ok(applied)
}

/// Huawei Push Kit's message receipts (`{"statuses": [...]}`, versions 1 and 2). Set this
/// URL (the channel's `receiptUrl`) in AppGallery Connect; when the channel has
/// `callbackUserName` and `callbackKey`, `X-HUAWEI-CALLBACK-ID` must carry their signature.
#[utoipa::path(post, path = "/receipts/hms/{appId}/{token}", tag = "vendor receipts", request_body = Object,
    params(("appId" = String, Path), ("token" = String, Path)),
    responses((status = 200, description = "`{errno: \"0\", errmsg: \"success\"}`", body = serde_json::Value), Refusals))]
async fn hms_receipts(
    State(state): State<AppState>,
    Path((app, token)): Path<(String, String)>,
    headers: HeaderMap,
    LimitedBody(body): LimitedBody,
) -> Result<Json, Refusal> {
    let app = AppId::new(app);
    let record = channel(&state, &app, Channel::Hms, &token).await?;
    if let Some(user) = record.settings.get("callbackUserName").and_then(Value::as_str) {
        let secret: Map<String, Value> = state
            .master
            .open(&record.secret_sealed)
            .and_then(|raw| serde_json::from_slice(&raw).ok())
            .ok_or_else(|| Refusal::new(ErrorCode::SystemError, "the channel's secret cannot be opened"))?;
        let key = secret.get("callbackKey").and_then(Value::as_str).unwrap_or("");
        let header = headers.get("x-huawei-callback-id").and_then(|v| v.to_str().ok()).unwrap_or("");
        if !vendor::hms_signature_ok(header, user, key, herald_core::now_ms()) {
            return Err(Refusal::new(ErrorCode::SignatureMismatch, "X-HUAWEI-CALLBACK-ID does not verify"));
        }
    }
    let body: Value = herald_core::error::parse_json(&body)?;
    let receipts = vendor::parse_hms(&body)
        .ok_or_else(|| Refusal::new(ErrorCode::InvalidParam, "not a Huawei receipt: statuses expected"))?;
    apply(&state, &app, Channel::Hms, receipts).await?;
    Ok(Json(json!({"errno": "0", "errmsg": "success"})))
}

/// Xiaomi's message receipts (form field `data`). Herald asks for them with each message it
/// sends through Xiaomi when `channels.receipt_base_url` is set.
#[utoipa::path(post, path = "/receipts/xiaomi/{appId}/{token}", tag = "vendor receipts",
    params(("appId" = String, Path), ("token" = String, Path)),
    responses((status = 200, description = "`{applied}`", body = serde_json::Value), Refusals))]
async fn xiaomi_receipts(
    State(state): State<AppState>,
    Path((app, token)): Path<(String, String)>,
    LimitedBody(body): LimitedBody,
) -> Result<Json, Refusal> {
    let app = AppId::new(app);
    channel(&state, &app, Channel::Xiaomi, &token).await?;
    let receipts = vendor::parse_xiaomi(&body)
        .ok_or_else(|| Refusal::new(ErrorCode::InvalidParam, "not a Xiaomi receipt: a form with data expected"))?;
    let applied = apply(&state, &app, Channel::Xiaomi, receipts).await?;
    Ok(Json(json!({"applied": applied})))
}
