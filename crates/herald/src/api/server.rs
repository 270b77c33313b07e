//! `/v1`: the signed server API. Every handler takes [`Signed`], so every query below is
//! scoped to the app whose key signed the request.

use axum::Router;
use axum::extract::Query;
use axum::extract::{Path, State};
use axum::routing::{delete, get, post};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{AppState, Json, Signed, ok_content, ok_push, parse_json};
use crate::dispatch::scheduler::{self, Prepared};
use crate::error::{ApiError, ErrorCode};
use crate::ids::{AppId, DeviceId, MessageId, TaskId, UserId, valid_external_id};
use crate::push::SimplePush;
use crate::schedule::Strategy;
use crate::store::ScheduleRecord;
use crate::store::{
    DeviceRecord, MessageView, Revocation, RevokeTarget, TargetOutcome, TemplateCreated, TemplateRecord,
};
use crate::template;
use std::collections::HashMap;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/push/simple", post(push_simple))
        .route("/push/template", post(push_template))
        .route("/push/multiple", post(push_multiple))
        .route("/push/broadcast", post(push_broadcast))
        .route("/push/revoke", post(revoke_message))
        .route("/push/revoke-task", post(revoke_task))
        .route("/schedules", get(list_schedules))
        .route("/schedules/{unique_id}", delete(cancel_schedule))
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
    submit(&state, req, "simple").await
}

async fn push_template(State(state): State<AppState>, req: Signed) -> Result<Json, ApiError> {
    submit(&state, req, "template").await
}

async fn push_multiple(State(state): State<AppState>, req: Signed) -> Result<Json, ApiError> {
    submit(&state, req, "multiple").await
}

async fn push_broadcast(State(state): State<AppState>, req: Signed) -> Result<Json, ApiError> {
    submit(&state, req, "broadcast").await
}

/// Validates a push request of any type; sends it now (strategyType 0) or stores it as a
/// schedule (1 fixed time, 2 recurring).
async fn submit(state: &AppState, req: Signed, push_type: &str) -> Result<Json, ApiError> {
    let body: Value = parse_json(&req.body)?;
    let Some(object) = body.as_object() else {
        return Err(ApiError::new(ErrorCode::InvalidJson, "the body must be a JSON object"));
    };
    let now = crate::now_ms();
    let strategy = Strategy::parse(object, now)?;
    let body = scheduler::without_strategy(&body);
    let prepared =
        scheduler::prepare(state.store.as_ref(), &state.cfg.limits, push_type, &req.app_id, &body, now).await?;
    if let Some(strategy) = strategy {
        let record = scheduler::schedule_of(&req.app_id, push_type, &body, &prepared, &strategy, now)?;
        state.store.create_schedule(record.clone()).await?;
        return Ok(ok_push(
            &record.unique_id,
            json!({"scheduled": {"uniqueId": record.unique_id, "pushTime": record.push_time,
                "strategyType": record.strategy_type}}),
        ));
    }
    match prepared {
        Prepared::Push(push) => send(state, req.app_id, push).await,
        Prepared::Broadcast(b) => {
            let msg_key = b.msg_key.clone();
            let done = state.dispatcher.broadcast(b, now).await?;
            crate::metrics::PUSHES_ACCEPTED.inc();
            let status = if done.replayed { "duplicate" } else { "accepted" };
            Ok(ok_push(
                done.task_id.as_str(),
                json!({"msgkey": msg_key, "messageId": done.message_id, "status": status}),
            ))
        }
    }
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

fn schedule_json(s: &ScheduleRecord) -> Value {
    let push_type = match s.push_type.as_str() {
        "simple" => 0,
        "template" => 1,
        "multiple" => 2,
        _ => 3,
    };
    json!({
        "uniqueId": s.unique_id, "parentId": s.parent_id, "pushTime": s.push_time, "pushTitle": s.title,
        "pushContent": s.content, "type": push_type, "deliveryType": s.delivery_type, "strategyType": s.strategy_type,
        "executedStatus": s.status, "taskId": s.task_id, "templateName": s.template_name, "createdAt": s.created_at,
    })
}

/// `GET /v1/schedules?startTime&endTime&type&uniqueId&pageNumber&pageSize` (MPS
/// QueryPushSchedulerList): times are push times in Unix ms.
async fn list_schedules(
    State(state): State<AppState>,
    Query(q): Query<HashMap<String, String>>,
    req: Signed,
) -> Result<Json, ApiError> {
    let num = |k: &str, default: i64| -> Result<i64, ApiError> {
        match q.get(k).filter(|v| !v.is_empty()) {
            None => Ok(default),
            Some(v) => v.parse().map_err(|_| ApiError::new(ErrorCode::InvalidParam, format!("{k} must be an integer"))),
        }
    };
    let (from, to) = (num("startTime", 0)?, num("endTime", i64::MAX)?);
    let page = num("pageNumber", 1)?.max(1);
    let size = num("pageSize", 500)?.clamp(1, 500);
    let push_type = q.get("type").filter(|v| !v.is_empty()).map(|v| v.as_str());
    let wanted = match push_type {
        None => None,
        Some("0") => Some("simple"),
        Some("1") => Some("template"),
        Some("2") => Some("multiple"),
        Some("3") => Some("broadcast"),
        Some(_) => return Err(ApiError::new(ErrorCode::InvalidParam, "type must be 0, 1, 2 or 3")),
    };
    let unique_id = q.get("uniqueId").filter(|v| !v.is_empty());
    let all: Vec<ScheduleRecord> = state
        .store
        .schedules(&req.app_id, unique_id.map(String::as_str), from, to)
        .await?
        .into_iter()
        .filter(|s| wanted.is_none_or(|w| s.push_type == w))
        .collect();
    let list: Vec<Value> =
        all.iter().skip(((page - 1) * size) as usize).take(size as usize).map(schedule_json).collect();
    Ok(ok_content(json!({"totalCount": all.len(), "pageNumber": page, "pageSize": size, "list": list})))
}

async fn cancel_schedule(
    State(state): State<AppState>,
    Path(unique_id): Path<String>,
    req: Signed,
) -> Result<Json, ApiError> {
    match state.store.cancel_schedule(&req.app_id, &unique_id).await? {
        Ok(true) => Ok(ok_content(json!({"uniqueId": unique_id, "cancelled": true}))),
        Ok(false) => Err(ApiError::new(ErrorCode::ScheduleNotExist, "no such scheduled push in this app")),
        Err(status) => Err(ApiError::new(
            ErrorCode::ScheduleNotCancellable,
            format!("the scheduled push is no longer waiting (executedStatus {status})"),
        )),
    }
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
    let now = crate::now_ms();
    if let Some(done) = state.dispatcher.revoke(&req.app_id, what, now, window).await? {
        return Ok(ok_push(&body.task_id, revoke_answer(&done)));
    }
    // A scheduled push: cancel what it has not sent, revoke what it has.
    let family = state.store.schedules(&req.app_id, Some(&body.task_id), 0, 0).await?;
    if family.is_empty() {
        return Err(ApiError::new(ErrorCode::TaskNotExist, "no such task or schedule in the revoke window"));
    }
    let cancelled = matches!(state.store.cancel_schedule(&req.app_id, &body.task_id).await?, Ok(true));
    let mut all = Revocation::default();
    for task_id in family.iter().filter_map(|s| s.task_id.as_ref()) {
        let what = RevokeTarget::Task(TaskId::new(task_id.clone()));
        if let Some(done) = state.dispatcher.revoke(&req.app_id, what, now, window).await? {
            all.messages.extend(done.messages);
            all.withdrawn += done.withdrawn;
            all.recalls.extend(done.recalls);
        }
    }
    let mut answer = revoke_answer(&all);
    answer["scheduleCancelled"] = json!(cancelled);
    Ok(ok_push(&body.task_id, answer))
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
    if state.store.template_in_use(&req.app_id, &name).await? {
        return Err(ApiError::new(
            ErrorCode::TemplateInUse,
            format!("a waiting scheduled push uses template {name}: cancel it first"),
        ));
    }
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

async fn task(
    State(state): State<AppState>,
    Path(task_id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    req: Signed,
) -> Result<Json, ApiError> {
    let page_arg = |k: &str, default: usize, max: usize| -> Result<usize, ApiError> {
        match q.get(k).filter(|v| !v.is_empty()) {
            None => Ok(default),
            Some(v) => v
                .parse::<usize>()
                .map(|n| n.clamp(1, max))
                .map_err(|_| ApiError::new(ErrorCode::InvalidParam, format!("{k} must be a positive integer"))),
        }
    };
    let (page, size) = (page_arg("pageNumber", 1, usize::MAX)?, page_arg("pageSize", 100, 500)?);
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
    // Counts cover every target; the list is one page of them.
    let targets: Vec<Value> =
        task.messages.iter().skip((page - 1).saturating_mul(size)).take(size).map(|m| message_json(m, now)).collect();
    Ok(ok_content(json!({
        "taskId": task.task_id,
        "type": task.push_type,
        "taskName": task.task_name,
        "deliveryType": task.delivery_type,
        "createdAt": task.created_at,
        "expiresAt": task.expires_at,
        "counts": counts,
        "totalCount": task.messages.len(),
        "pageNumber": page,
        "pageSize": size,
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
