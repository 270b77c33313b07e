//! `/v1`: the signed server API. Every handler takes [`Signed`], so every query below is
//! scoped to the app whose key signed the request.

use axum::Router;
use axum::extract::{Path, State};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{AppState, Json, Signed, ok_content, ok_push, parse_json};
use crate::error::{ApiError, ErrorCode};
use crate::ids::{AppId, DeviceId, MessageId, TaskId, UserId, valid_external_id};
use crate::push::{self, SimplePush};
use crate::store::{
    DeviceRecord, MessageView, Revocation, RevokeTarget, TargetOutcome, TemplateCreated, TemplateRecord,
};
use crate::template;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/push/simple", post(push_simple))
        .route("/push/template", post(push_template))
        .route("/push/multiple", post(push_multiple))
        .route("/push/broadcast", post(push_broadcast))
        .route("/push/revoke", post(revoke_message))
        .route("/push/revoke-task", post(revoke_task))
        .route("/templates", get(list_templates).post(create_template))
        .route("/templates/{name}", get(get_template).put(update_template).delete(delete_template))
        .route("/tasks/{task_id}", get(task))
        .route("/messages/{message_id}", get(message))
        .route("/devices/{device_id}", get(device))
        .route("/devices/{device_id}/bind", post(bind))
        .route("/devices/{device_id}/unbind", post(unbind))
        .route("/users/{user_id}/devices", get(user_devices))
}

async fn push_simple(State(state): State<AppState>, req: Signed) -> Result<Json, ApiError> {
    let body: Value = parse_json(&req.body)?;
    let push = SimplePush::parse(&body, &state.cfg.limits)?;
    send(&state, req.app_id, push).await
}

async fn push_template(State(state): State<AppState>, req: Signed) -> Result<Json, ApiError> {
    let body: Value = parse_json(&req.body)?;
    let template = existing_template(&state, &req.app_id, &push::template_name(&body)?).await?;
    let push = SimplePush::parse_template(&body, &template, &state.cfg.limits)?;
    send(&state, req.app_id, push).await
}

async fn push_multiple(State(state): State<AppState>, req: Signed) -> Result<Json, ApiError> {
    let body: Value = parse_json(&req.body)?;
    let template = existing_template(&state, &req.app_id, &push::template_name(&body)?).await?;
    let push = SimplePush::parse_multiple(&body, &template, &state.cfg.limits)?;
    send(&state, req.app_id, push).await
}

async fn push_broadcast(State(state): State<AppState>, req: Signed) -> Result<Json, ApiError> {
    let body: Value = parse_json(&req.body)?;
    let template = existing_template(&state, &req.app_id, &push::template_name(&body)?).await?;
    let now = crate::now_ms();
    let b = SimplePush::parse_broadcast(&body, &template, &state.cfg.limits, req.app_id, now)?;
    let msg_key = b.msg_key.clone();
    let done = state.dispatcher.broadcast(b, now).await?;
    crate::metrics::PUSHES_ACCEPTED.inc();
    let status = if done.replayed { "duplicate" } else { "accepted" };
    Ok(ok_push(done.task_id.as_str(), json!({"msgkey": msg_key, "messageId": done.message_id, "status": status})))
}

/// Commits a validated push and answers with its taskId and each target's outcome.
async fn send(state: &AppState, app_id: AppId, push: SimplePush) -> Result<Json, ApiError> {
    let limits = &state.cfg.limits;
    let now = crate::now_ms();
    let targets: Vec<(String, String)> = push.targets.clone();
    let new_push = push.into_new_push(app_id, now, limits)?;
    let committed = state.dispatcher.push(new_push, now).await?;
    crate::metrics::PUSHES_ACCEPTED.inc();
    let results: Vec<Value> = targets
        .iter()
        .zip(&committed.outcomes)
        .map(|((target, msg_key), (message_id, outcome))| {
            let (message_id, status) = match outcome {
                TargetOutcome::Accepted { .. } => (message_id, "accepted"),
                TargetOutcome::Undeliverable => (message_id, "undeliverable"),
                TargetOutcome::Duplicate { message_id } => (message_id, "duplicate"),
            };
            json!({"target": target, "msgKey": msg_key, "messageId": message_id, "status": status})
        })
        .collect();
    Ok(ok_push(committed.task_id.as_str(), json!({"targets": results})))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RevokeMessage {
    /// The msgKey of the message (MPS names it messageId).
    message_id: String,
    target_id: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RevokeTask {
    task_id: String,
}

fn revoke_answer(done: &Revocation) -> Value {
    json!({"revokedMessages": done.messages, "withdrawn": done.withdrawn,
        "recalled": done.recalls.iter().map(|r| r.devices.len()).sum::<usize>()})
}

async fn revoke_message(State(state): State<AppState>, req: Signed) -> Result<Json, ApiError> {
    let body: RevokeMessage = parse_json(&req.body)?;
    if !valid_external_id(&body.message_id) || !valid_external_id(&body.target_id) {
        return Err(ApiError::new(ErrorCode::InvalidParam, "messageId (the msgKey) and targetId are required"));
    }
    let what = RevokeTarget::Message { msg_key: body.message_id, target: body.target_id };
    let window = state.cfg.limits.revoke_window_secs * 1000;
    match state.dispatcher.revoke(&req.app_id, what, crate::now_ms(), window).await? {
        Some(done) => Ok(ok_push("", revoke_answer(&done))),
        None => Err(ApiError::new(
            ErrorCode::MessageNotExist,
            "no message with that msgKey and target in the revoke window",
        )),
    }
}

async fn revoke_task(State(state): State<AppState>, req: Signed) -> Result<Json, ApiError> {
    let body: RevokeTask = parse_json(&req.body)?;
    let what = RevokeTarget::Task(TaskId::new(body.task_id.clone()));
    let window = state.cfg.limits.revoke_window_secs * 1000;
    match state.dispatcher.revoke(&req.app_id, what, crate::now_ms(), window).await? {
        Some(done) => Ok(ok_push(&body.task_id, revoke_answer(&done))),
        None => Err(ApiError::new(ErrorCode::TaskNotExist, "no such task in the revoke window")),
    }
}

async fn existing_template(state: &AppState, app_id: &AppId, name: &str) -> Result<TemplateRecord, ApiError> {
    state
        .store
        .template(app_id, name)
        .await?
        .ok_or_else(|| ApiError::new(ErrorCode::TemplateNotExist, format!("no template {name} in this app")))
}

async fn create_template(State(state): State<AppState>, req: Signed) -> Result<Json, ApiError> {
    let body: Value = parse_json(&req.body)?;
    let t = template::parse(&body, None, req.app_id, crate::now_ms(), &state.cfg.limits)?;
    match state.store.create_template(t.clone(), state.cfg.limits.max_templates_per_app).await? {
        TemplateCreated::Created => Ok(ok_content(template::view(&t))),
        TemplateCreated::Exists => {
            Err(ApiError::new(ErrorCode::TemplateExists, format!("the app has a template {} already", t.name)))
        }
        TemplateCreated::TooMany => Err(ApiError::new(
            ErrorCode::TemplateLimitExceeded,
            format!("the app has {} templates, the most allowed", state.cfg.limits.max_templates_per_app),
        )),
    }
}

async fn list_templates(State(state): State<AppState>, req: Signed) -> Result<Json, ApiError> {
    let list: Vec<Value> = state.store.templates(&req.app_id).await?.iter().map(template::view).collect();
    Ok(ok_content(json!({"totalCount": list.len(), "list": list})))
}

async fn get_template(State(state): State<AppState>, Path(name): Path<String>, req: Signed) -> Result<Json, ApiError> {
    Ok(ok_content(template::view(&existing_template(&state, &req.app_id, &name).await?)))
}

async fn update_template(
    State(state): State<AppState>,
    Path(name): Path<String>,
    req: Signed,
) -> Result<Json, ApiError> {
    let body: Value = parse_json(&req.body)?;
    let existing = existing_template(&state, &req.app_id, &name).await?;
    let mut t = template::parse(&body, Some(&name), req.app_id, crate::now_ms(), &state.cfg.limits)?;
    t.created_at = existing.created_at;
    if !state.store.update_template(t.clone()).await? {
        return Err(ApiError::new(ErrorCode::TemplateNotExist, format!("no template {name} in this app")));
    }
    Ok(ok_content(template::view(&t)))
}

async fn delete_template(
    State(state): State<AppState>,
    Path(name): Path<String>,
    req: Signed,
) -> Result<Json, ApiError> {
    if !state.store.delete_template(&req.app_id, &name).await? {
        return Err(ApiError::new(ErrorCode::TemplateNotExist, format!("no template {name} in this app")));
    }
    Ok(ok_content(json!({"templateName": name, "deleted": true})))
}

/// A delivery's status as the caller sees it: a delivery not acknowledged by the end of
/// its validity is `expired` even before the sweep has written it.
fn delivery_status(status: &str, expires_at: i64, now: i64) -> &str {
    match status {
        "pending" | "sent" if expires_at <= now => "expired",
        other => other,
    }
}

fn rank(status: &str) -> u8 {
    match status {
        "opened" => 6,
        "ignored" => 5,
        "delivered" => 4,
        "sent" => 3,
        "pending" => 2,
        _ => 1,
    }
}

/// The status of a target: the furthest any of its deliveries got.
fn target_status(m: &MessageView, now: i64) -> &'static str {
    if m.undeliverable {
        return "undeliverable";
    }
    if m.revoked_at.is_some() {
        return "revoked";
    }
    let best = m.deliveries.iter().map(|d| delivery_status(&d.status, m.expires_at, now)).max_by_key(|s| rank(s));
    match best {
        Some("opened") => "opened",
        Some("ignored") => "ignored",
        Some("delivered") => "delivered",
        Some("sent") => "sent",
        Some("pending") => "pending",
        Some(_) => "expired",
        None if m.expires_at <= now => "expired",
        None => "pending",
    }
}

fn message_json(m: &MessageView, now: i64) -> Value {
    let deliveries: Vec<Value> = m
        .deliveries
        .iter()
        .map(|d| {
            json!({
                "deviceId": d.device_id,
                "status": delivery_status(&d.status, m.expires_at, now),
                "createdAt": d.created_at,
                "updatedAt": d.updated_at,
                "sentAt": d.sent_at,
                "deliveredAt": d.delivered_at,
            })
        })
        .collect();
    json!({
        "messageId": m.message_id,
        "taskId": m.task_id,
        "msgKey": m.msg_key,
        "targetType": m.target_kind,
        "target": m.target,
        "status": target_status(m, now),
        "revokedAt": m.revoked_at,
        "createdAt": m.created_at,
        "expiresAt": m.expires_at,
        "deliveries": deliveries,
    })
}

async fn task(State(state): State<AppState>, Path(task_id): Path<String>, req: Signed) -> Result<Json, ApiError> {
    let Some(task) = state.store.task(&req.app_id, &TaskId::new(task_id)).await? else {
        return Err(ApiError::new(ErrorCode::TaskNotExist, "no such task in this app"));
    };
    let now = crate::now_ms();
    let mut counts = serde_json::Map::new();
    for m in &task.messages {
        let status = target_status(m, now);
        let n = counts.get(status).and_then(Value::as_u64).unwrap_or(0);
        counts.insert(status.into(), json!(n + 1));
    }
    if let Some(b) = &task.broadcast {
        // Per device only what happened is stored; the rest of the audience is pending
        // (or expired, or revoked).
        let acked: u64 = b.counts.iter().map(|(_, n)| n).sum();
        for (status, n) in &b.counts {
            counts.insert(status.clone(), json!(n));
        }
        let rest = if b.revoked_at.is_some() {
            "revoked"
        } else if task.expires_at <= now {
            "expired"
        } else {
            "pending"
        };
        counts.insert(rest.into(), json!(b.eligible.saturating_sub(acked)));
    }
    let targets: Vec<Value> = task.messages.iter().map(|m| message_json(m, now)).collect();
    Ok(ok_content(json!({
        "taskId": task.task_id,
        "type": task.push_type,
        "taskName": task.task_name,
        "deliveryType": task.delivery_type,
        "createdAt": task.created_at,
        "expiresAt": task.expires_at,
        "counts": counts,
        "targets": targets,
        "broadcast": task.broadcast.as_ref().map(|b| json!({
            "messageId": b.message_id, "msgkey": b.msg_key, "eligible": b.eligible, "revokedAt": b.revoked_at,
        })),
    })))
}

async fn message(State(state): State<AppState>, Path(message_id): Path<String>, req: Signed) -> Result<Json, ApiError> {
    match state.store.message(&req.app_id, &MessageId::new(message_id)).await? {
        Some(m) => Ok(ok_content(message_json(&m, crate::now_ms()))),
        None => Err(ApiError::new(ErrorCode::MessageNotExist, "no such message in this app")),
    }
}

fn device_json(state: &AppState, d: &DeviceRecord) -> Value {
    json!({
        "deviceId": d.device_id,
        "platform": d.platform,
        "appVersion": d.app_version,
        "osVersion": d.os_version,
        "model": d.model,
        "userId": d.user_id,
        "boundAt": d.bound_at,
        "online": state.dispatcher.hub().is_online(&d.device_id),
        "lastSeen": d.last_seen,
        "createdAt": d.created_at,
        "vendorChannels": d.vendor_tokens.keys().collect::<Vec<_>>(),
    })
}

async fn device(State(state): State<AppState>, Path(device_id): Path<String>, req: Signed) -> Result<Json, ApiError> {
    match state.store.device(&req.app_id, &DeviceId::new(device_id)).await? {
        Some(d) => Ok(ok_content(device_json(&state, &d))),
        None => Err(not_a_device()),
    }
}

fn not_a_device() -> ApiError {
    ApiError::new(ErrorCode::DeviceNotExist, "no such device in this app")
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct BindBody {
    user_id: String,
}

pub(super) fn user_id(raw: String) -> Result<UserId, ApiError> {
    if !valid_external_id(&raw) {
        return Err(ApiError::new(
            ErrorCode::InvalidParam,
            "userId must be 1 to 128 characters without control characters",
        ));
    }
    Ok(UserId::new(raw))
}

async fn bind(State(state): State<AppState>, Path(device_id): Path<String>, req: Signed) -> Result<Json, ApiError> {
    let body: BindBody = parse_json(&req.body)?;
    let user = user_id(body.user_id)?;
    let device = DeviceId::new(device_id);
    if !state.dispatcher.bind(&req.app_id, &device, &user, crate::now_ms()).await? {
        return Err(not_a_device());
    }
    Ok(ok_content(json!({"deviceId": device, "userId": user})))
}

async fn unbind(State(state): State<AppState>, Path(device_id): Path<String>, req: Signed) -> Result<Json, ApiError> {
    let device = DeviceId::new(device_id);
    if !state.dispatcher.unbind(&req.app_id, &device, crate::now_ms()).await? {
        return Err(not_a_device());
    }
    Ok(ok_content(json!({"deviceId": device, "userId": null})))
}

async fn user_devices(State(state): State<AppState>, Path(user): Path<String>, req: Signed) -> Result<Json, ApiError> {
    let user = user_id(user)?;
    let devices = state.store.user_devices(&req.app_id, &user).await?;
    let list: Vec<Value> = devices.iter().map(|d| device_json(&state, d)).collect();
    Ok(ok_content(json!({"userId": user, "devices": list})))
}
