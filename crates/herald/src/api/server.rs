//! `/v1`: the signed server API. Every handler takes [`Signed`], so every query below is
//! scoped to the app whose key signed the request.

use axum::Router;
use axum::extract::Query;
use axum::extract::{Path, State};
use axum::routing::{delete, get, post};
use serde::Deserialize;
use serde_json::{Value, json};

use std::collections::HashMap;

use herald_core::error::ErrorCode;
use herald_core::ids::{AppId, DeviceId, MessageId, TaskId, UserId, valid_external_id};
use herald_core::model::{DeviceRecord, MessageView, Revocation, RevokeTarget, ScheduleRecord, TemplateRecord};
use herald_core::state::{DeliveryStatus, PushType, TargetStatus};
use herald_core::template;
use herald_store::{Cancelled, TemplateCreated};

use super::{AppState, Json, Refusal, Signed, ok_content, ok_push, parse_json};
use crate::dispatch::Submitted;

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

async fn push_simple(State(state): State<AppState>, req: Signed) -> Result<Json, Refusal> {
    submit(&state, req, PushType::Simple).await
}

async fn push_template(State(state): State<AppState>, req: Signed) -> Result<Json, Refusal> {
    submit(&state, req, PushType::Template).await
}

async fn push_multiple(State(state): State<AppState>, req: Signed) -> Result<Json, Refusal> {
    submit(&state, req, PushType::Multiple).await
}

async fn push_broadcast(State(state): State<AppState>, req: Signed) -> Result<Json, Refusal> {
    submit(&state, req, PushType::Broadcast).await
}

/// A push request of any type, sent now or scheduled; the answer says which, with the task
/// and each target's outcome.
async fn submit(state: &AppState, req: Signed, push_type: PushType) -> Result<Json, Refusal> {
    let body: Value = parse_json(&req.body)?;
    Ok(match state.dispatcher.submit(&req.app_id, push_type, &body, herald_core::now_ms()).await? {
        Submitted::Scheduled(record) => ok_push(
            &record.unique_id,
            json!({"scheduled": {"uniqueId": record.unique_id, "pushTime": record.push_time,
                "strategyType": record.strategy_kind.code()}}),
        ),
        Submitted::Pushed { committed, targets } => {
            let results: Vec<Value> = targets
                .iter()
                .zip(&committed.outcomes)
                .map(|((target, msg_key), (message_id, outcome))| {
                    let message_id = match outcome {
                        herald_core::model::TargetOutcome::Duplicate { message_id } => message_id,
                        _ => message_id,
                    };
                    json!({"target": target, "msgKey": msg_key, "messageId": message_id, "status": outcome.answer()})
                })
                .collect();
            ok_push(committed.task_id.as_str(), json!({"targets": results}))
        }
        Submitted::Broadcast { committed, msg_key } => {
            let status = if committed.replayed { "duplicate" } else { "accepted" };
            ok_push(
                committed.task_id.as_str(),
                json!({"msgkey": msg_key, "messageId": committed.message_id, "status": status}),
            )
        }
    })
}

fn schedule_json(s: &ScheduleRecord) -> Value {
    json!({
        "uniqueId": s.unique_id, "parentId": s.parent_id, "pushTime": s.push_time, "pushTitle": s.title,
        "pushContent": s.content, "type": s.push_type.mps_code(), "deliveryType": s.delivery_type,
        "strategyType": s.strategy_kind.code(), "executedStatus": s.status, "taskId": s.task_id,
        "templateName": s.template_name, "createdAt": s.created_at,
    })
}

/// `GET /v1/schedules?startTime&endTime&type&uniqueId&pageNumber&pageSize` (MPS
/// QueryPushSchedulerList): times are push times in Unix ms.
async fn list_schedules(
    State(state): State<AppState>,
    Query(q): Query<HashMap<String, String>>,
    req: Signed,
) -> Result<Json, Refusal> {
    let num = |k: &str, default: i64| -> Result<i64, Refusal> {
        match q.get(k).filter(|v| !v.is_empty()) {
            None => Ok(default),
            Some(v) => v.parse().map_err(|_| Refusal::new(ErrorCode::InvalidParam, format!("{k} must be an integer"))),
        }
    };
    let (from, to) = (num("startTime", 0)?, num("endTime", i64::MAX)?);
    let page = num("pageNumber", 1)?.max(1);
    let size = num("pageSize", 500)?.clamp(1, 500);
    let wanted = match q.get("type").filter(|v| !v.is_empty()) {
        None => None,
        Some(t) => Some(t.parse().ok().and_then(PushType::from_mps_code).ok_or_else(|| {
            Refusal::new(
                ErrorCode::InvalidParam,
                "type must be 0 (simple), 1 (template), 2 (multiple) or 3 (broadcast)",
            )
        })?),
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
) -> Result<Json, Refusal> {
    match state.store.cancel_schedule(&req.app_id, &unique_id).await? {
        Cancelled::Cancelled => Ok(ok_content(json!({"uniqueId": unique_id, "cancelled": true}))),
        Cancelled::NotFound => Err(Refusal::new(ErrorCode::ScheduleNotExist, "no such scheduled push in this app")),
        Cancelled::NotWaiting(status) => Err(Refusal::new(
            ErrorCode::ScheduleNotCancellable,
            format!("the scheduled push is no longer waiting (executedStatus {})", status.code()),
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

async fn revoke_message(State(state): State<AppState>, req: Signed) -> Result<Json, Refusal> {
    let body: RevokeMessage = parse_json(&req.body)?;
    if !valid_external_id(&body.message_id) || !valid_external_id(&body.target_id) {
        return Err(Refusal::new(ErrorCode::InvalidParam, "messageId (the msgKey) and targetId are required"));
    }
    let what = RevokeTarget::Message { msg_key: body.message_id, target: body.target_id };
    let window = state.cfg.limits.revoke_window_secs * 1000;
    match state.dispatcher.revoke(&req.app_id, what, herald_core::now_ms(), window).await? {
        Some(done) => Ok(ok_push("", revoke_answer(&done))),
        None => {
            Err(Refusal::new(ErrorCode::MessageNotExist, "no message with that msgKey and target in the revoke window"))
        }
    }
}

async fn revoke_task(State(state): State<AppState>, req: Signed) -> Result<Json, Refusal> {
    let body: RevokeTask = parse_json(&req.body)?;
    let window = state.cfg.limits.revoke_window_secs * 1000;
    let task = TaskId::new(body.task_id.clone());
    let Some(done) = state.dispatcher.revoke_task(&req.app_id, &task, herald_core::now_ms(), window).await? else {
        return Err(Refusal::new(ErrorCode::TaskNotExist, "no such task or schedule in the revoke window"));
    };
    let mut answer = revoke_answer(&done.revocation);
    if let Some(cancelled) = done.schedule_cancelled {
        answer["scheduleCancelled"] = json!(cancelled);
    }
    Ok(ok_push(&body.task_id, answer))
}

async fn existing_template(state: &AppState, app_id: &AppId, name: &str) -> Result<TemplateRecord, Refusal> {
    state
        .store
        .template(app_id, name)
        .await?
        .ok_or_else(|| Refusal::new(ErrorCode::TemplateNotExist, format!("no template {name} in this app")))
}

async fn create_template(State(state): State<AppState>, req: Signed) -> Result<Json, Refusal> {
    let body: Value = parse_json(&req.body)?;
    let t = template::parse(&body, None, req.app_id, herald_core::now_ms(), &state.cfg.limits)?;
    match state.store.create_template(t.clone(), state.cfg.limits.max_templates_per_app).await? {
        TemplateCreated::Created => Ok(ok_content(template::view(&t))),
        TemplateCreated::Exists => {
            Err(Refusal::new(ErrorCode::TemplateExists, format!("the app has a template {} already", t.name)))
        }
        TemplateCreated::TooMany => Err(Refusal::new(
            ErrorCode::TemplateLimitExceeded,
            format!("the app has {} templates, the most allowed", state.cfg.limits.max_templates_per_app),
        )),
    }
}

async fn list_templates(State(state): State<AppState>, req: Signed) -> Result<Json, Refusal> {
    let list: Vec<Value> = state.store.templates(&req.app_id).await?.iter().map(template::view).collect();
    Ok(ok_content(json!({"totalCount": list.len(), "list": list})))
}

async fn get_template(State(state): State<AppState>, Path(name): Path<String>, req: Signed) -> Result<Json, Refusal> {
    Ok(ok_content(template::view(&existing_template(&state, &req.app_id, &name).await?)))
}

async fn update_template(
    State(state): State<AppState>,
    Path(name): Path<String>,
    req: Signed,
) -> Result<Json, Refusal> {
    let body: Value = parse_json(&req.body)?;
    let existing = existing_template(&state, &req.app_id, &name).await?;
    let mut t = template::parse(&body, Some(&name), req.app_id, herald_core::now_ms(), &state.cfg.limits)?;
    t.created_at = existing.created_at;
    if !state.store.update_template(t.clone()).await? {
        return Err(Refusal::new(ErrorCode::TemplateNotExist, format!("no template {name} in this app")));
    }
    Ok(ok_content(template::view(&t)))
}

async fn delete_template(
    State(state): State<AppState>,
    Path(name): Path<String>,
    req: Signed,
) -> Result<Json, Refusal> {
    if state.store.template_in_use(&req.app_id, &name).await? {
        return Err(Refusal::new(
            ErrorCode::TemplateInUse,
            format!("a waiting scheduled push uses template {name}: cancel it first"),
        ));
    }
    if !state.store.delete_template(&req.app_id, &name).await? {
        return Err(Refusal::new(ErrorCode::TemplateNotExist, format!("no template {name} in this app")));
    }
    Ok(ok_content(json!({"templateName": name, "deleted": true})))
}

/// The status of a target as of `now`: the furthest any of its deliveries got.
fn target_status(m: &MessageView, now: i64) -> TargetStatus {
    TargetStatus::of_target(
        m.undeliverable,
        m.revoked_at.is_some(),
        m.expires_at <= now,
        m.deliveries.iter().map(|d| d.status.as_of(m.expires_at, now)),
    )
}

fn message_json(m: &MessageView, now: i64) -> Value {
    let deliveries: Vec<Value> = m
        .deliveries
        .iter()
        .map(|d| {
            json!({
                "deviceId": d.device_id,
                "status": d.status.as_of(m.expires_at, now),
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
) -> Result<Json, Refusal> {
    let page_arg = |k: &str, default: usize, max: usize| -> Result<usize, Refusal> {
        match q.get(k).filter(|v| !v.is_empty()) {
            None => Ok(default),
            Some(v) => v
                .parse::<usize>()
                .map(|n| n.clamp(1, max))
                .map_err(|_| Refusal::new(ErrorCode::InvalidParam, format!("{k} must be a positive integer"))),
        }
    };
    let (page, size) = (page_arg("pageNumber", 1, usize::MAX)?, page_arg("pageSize", 100, 500)?);
    let Some(task) = state.store.task(&req.app_id, &TaskId::new(task_id)).await? else {
        return Err(Refusal::new(ErrorCode::TaskNotExist, "no such task in this app"));
    };
    let now = herald_core::now_ms();
    let mut counts: std::collections::BTreeMap<TargetStatus, u64> = Default::default();
    for m in &task.messages {
        *counts.entry(target_status(m, now)).or_default() += 1;
    }
    if let Some(b) = &task.broadcast {
        // Per device only what happened is stored; the rest of the audience is pending
        // (or expired, or revoked).
        let acked: u64 = b.counts.iter().map(|(_, n)| n).sum();
        for (status, n) in &b.counts {
            counts.insert(TargetStatus::Delivery(*status), *n);
        }
        let rest = if b.revoked_at.is_some() {
            DeliveryStatus::Revoked
        } else if task.expires_at <= now {
            DeliveryStatus::Expired
        } else {
            DeliveryStatus::Pending
        };
        counts.insert(TargetStatus::Delivery(rest), b.eligible.saturating_sub(acked));
    }
    let counts: serde_json::Map<String, Value> =
        counts.into_iter().map(|(s, n)| (s.as_str().into(), json!(n))).collect();
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

async fn message(State(state): State<AppState>, Path(message_id): Path<String>, req: Signed) -> Result<Json, Refusal> {
    match state.store.message(&req.app_id, &MessageId::new(message_id)).await? {
        Some(m) => Ok(ok_content(message_json(&m, herald_core::now_ms()))),
        None => Err(Refusal::new(ErrorCode::MessageNotExist, "no such message in this app")),
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
        "online": state.dispatcher.is_online(&d.device_id, d.online_node.as_deref()),
        "lastSeen": d.last_seen,
        "createdAt": d.created_at,
        "vendorChannels": d.vendor_tokens.keys().collect::<Vec<_>>(),
    })
}

async fn device(State(state): State<AppState>, Path(device_id): Path<String>, req: Signed) -> Result<Json, Refusal> {
    match state.store.device(&req.app_id, &DeviceId::new(device_id)).await? {
        Some(d) => Ok(ok_content(device_json(&state, &d))),
        None => Err(not_a_device()),
    }
}

fn not_a_device() -> Refusal {
    Refusal::new(ErrorCode::DeviceNotExist, "no such device in this app")
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct BindBody {
    user_id: String,
}

pub(super) fn user_id(raw: String) -> Result<UserId, Refusal> {
    if !valid_external_id(&raw) {
        return Err(Refusal::new(
            ErrorCode::InvalidParam,
            "userId must be 1 to 128 characters without control characters",
        ));
    }
    Ok(UserId::new(raw))
}

async fn bind(State(state): State<AppState>, Path(device_id): Path<String>, req: Signed) -> Result<Json, Refusal> {
    let body: BindBody = parse_json(&req.body)?;
    let user = user_id(body.user_id)?;
    let device = DeviceId::new(device_id);
    if !state.dispatcher.bind(&req.app_id, &device, &user, herald_core::now_ms()).await? {
        return Err(not_a_device());
    }
    Ok(ok_content(json!({"deviceId": device, "userId": user})))
}

async fn unbind(State(state): State<AppState>, Path(device_id): Path<String>, req: Signed) -> Result<Json, Refusal> {
    let device = DeviceId::new(device_id);
    if !state.dispatcher.unbind(&req.app_id, &device, herald_core::now_ms()).await? {
        return Err(not_a_device());
    }
    Ok(ok_content(json!({"deviceId": device, "userId": null})))
}

async fn user_devices(State(state): State<AppState>, Path(user): Path<String>, req: Signed) -> Result<Json, Refusal> {
    let user = user_id(user)?;
    let devices = state.store.user_devices(&req.app_id, &user).await?;
    let list: Vec<Value> = devices.iter().map(|d| device_json(&state, d)).collect();
    Ok(ok_content(json!({"userId": user, "devices": list})))
}
