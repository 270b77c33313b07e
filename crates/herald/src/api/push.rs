//! `/v1` pushes: Simple, Template, Multiple and Broadcast (now or scheduled), revoke, and
//! the scheduled pushes. Every handler takes [`Signed`], so all it does is scoped to the app
//! whose key signed the request.

use axum::extract::{Path, State};
use serde::Deserialize;
use serde_json::{Value, json};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use herald_core::error::{ErrorCode, parse_object};
use herald_core::ids::{TaskId, valid_external_id};
use herald_core::model::{Revocation, RevokeTarget, ScheduleRecord, TargetOutcome};
use herald_core::push::request::{
    BroadcastPushRequest, MultiplePushRequest, PushRequest, SimplePushRequest, TemplatePushRequest,
};
use herald_core::state::PushType;
use herald_store::Cancelled;

use super::envelope::{
    PushAnswer, PushResult, QueryAnswer, Refusals, ScheduledResult, TargetResult, ok_content, ok_push,
};
use super::extract::QueryParams;
use super::{AppState, Json, Refusal, Signed, parse_json};
use crate::dispatch::Submitted;

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(push_simple))
        .routes(routes!(push_template))
        .routes(routes!(push_multiple))
        .routes(routes!(push_broadcast))
        .routes(routes!(revoke_message))
        .routes(routes!(revoke_task))
        .routes(routes!(list_schedules))
        .routes(routes!(cancel_schedule))
}

/// Simple push: one message to at most 10 devices or users.
///
/// With `strategyType` 1 or 2 the push is stored as a schedule and `pushResult.scheduled`
/// says when it first fires.
#[utoipa::path(post, path = "/push/simple", tag = "push", request_body = SimplePushRequest,
    responses((status = 200, description = "Accepted (or scheduled)", body = PushAnswer), Refusals),
    security(("signature" = [])))]
pub(super) async fn push_simple(State(state): State<AppState>, req: Signed) -> Result<Json, Refusal> {
    let request = PushRequest::Simple(parse_object::<SimplePushRequest>(&req.body)?);
    submit(&state, &req, &request).await
}

/// Template push: a template filled with `templateKeyValue`, to at most 10 devices or users.
#[utoipa::path(post, path = "/push/template", tag = "push", request_body = TemplatePushRequest,
    responses((status = 200, description = "Accepted (or scheduled)", body = PushAnswer), Refusals),
    security(("signature" = [])))]
pub(super) async fn push_template(State(state): State<AppState>, req: Signed) -> Result<Json, Refusal> {
    let request = PushRequest::Template(parse_object::<TemplatePushRequest>(&req.body)?);
    submit(&state, &req, &request).await
}

/// Multiple push: one template, up to 100 targets each with its own values, under one task.
#[utoipa::path(post, path = "/push/multiple", tag = "push", request_body = MultiplePushRequest,
    responses((status = 200, description = "Accepted (or scheduled)", body = PushAnswer), Refusals),
    security(("signature" = [])))]
pub(super) async fn push_multiple(State(state): State<AppState>, req: Signed) -> Result<Json, Refusal> {
    let request = PushRequest::Multiple(parse_object::<MultiplePushRequest>(&req.body)?);
    submit(&state, &req, &request).await
}

/// Broadcast push: a template to every qualifying device of one platform of the app.
#[utoipa::path(post, path = "/push/broadcast", tag = "push", request_body = BroadcastPushRequest,
    responses((status = 200, description = "Accepted, a duplicate of its msgkey, or scheduled", body = PushAnswer),
        Refusals),
    security(("signature" = [])))]
pub(super) async fn push_broadcast(State(state): State<AppState>, req: Signed) -> Result<Json, Refusal> {
    let request = PushRequest::Broadcast(parse_object::<BroadcastPushRequest>(&req.body)?);
    submit(&state, &req, &request).await
}

/// A push request of any type, sent now or scheduled; the answer says which, with the task
/// and each target's outcome.
async fn submit(state: &AppState, req: &Signed, request: &PushRequest) -> Result<Json, Refusal> {
    Ok(match state.dispatcher.submit(&req.app_id, request, herald_core::now_ms()).await? {
        Submitted::Scheduled(record) => ok_push(PushResult {
            data: record.unique_id.clone(),
            scheduled: Some(ScheduledResult {
                unique_id: record.unique_id,
                push_time: record.push_time,
                strategy_type: record.strategy_kind.code(),
            }),
            ..Default::default()
        }),
        Submitted::Pushed { committed, targets } => {
            let results = targets
                .into_iter()
                .zip(&committed.outcomes)
                .map(|((target, msg_key), (message_id, outcome))| {
                    let message_id = match outcome {
                        TargetOutcome::Duplicate { message_id } => message_id,
                        _ => message_id,
                    };
                    TargetResult { target, msg_key, message_id: message_id.to_string(), status: outcome.answer() }
                })
                .collect();
            ok_push(PushResult { data: committed.task_id.to_string(), targets: Some(results), ..Default::default() })
        }
        Submitted::Broadcast { committed, msg_key } => ok_push(PushResult {
            data: committed.task_id.to_string(),
            msgkey: Some(msg_key),
            message_id: Some(committed.message_id.to_string()),
            status: Some(if committed.replayed { "duplicate" } else { "accepted" }),
            ..Default::default()
        }),
    })
}

/// `POST /v1/push/revoke`.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct RevokeMessageRequest {
    /// The msgKey of the message (MPS names it messageId).
    message_id: String,
    /// The device id or user id it was pushed to.
    target_id: String,
}

/// `POST /v1/push/revoke-task`.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct RevokeTaskRequest {
    /// A task of a push, or the uniqueId of a scheduled push (a waiting one is cancelled).
    task_id: String,
}

fn revoke_result(done: &Revocation) -> PushResult {
    PushResult {
        revoked_messages: Some(done.messages.iter().map(|m| m.to_string()).collect()),
        withdrawn: Some(done.withdrawn),
        recalled: Some(done.recalls.iter().map(|r| r.devices.len()).sum()),
        vendor_recalls: Some(done.vendor_recalls),
        ..Default::default()
    }
}

/// Revoke the messages of a msgKey and target (within the revoke window, 7 days by default).
///
/// Pending deliveries are withdrawn; devices that got it are sent a recall.
#[utoipa::path(post, path = "/push/revoke", tag = "push", request_body = RevokeMessageRequest,
    responses((status = 200, description = "Revoked", body = PushAnswer), Refusals),
    security(("signature" = [])))]
pub(super) async fn revoke_message(State(state): State<AppState>, req: Signed) -> Result<Json, Refusal> {
    let body: RevokeMessageRequest = parse_json(&req.body)?;
    if !valid_external_id(&body.message_id) || !valid_external_id(&body.target_id) {
        return Err(Refusal::new(ErrorCode::InvalidParam, "messageId (the msgKey) and targetId are required"));
    }
    let what = RevokeTarget::Message { msg_key: body.message_id, target: body.target_id };
    let window = state.cfg.limits.revoke_window_secs * 1000;
    match state.dispatcher.revoke(&req.app_id, what, herald_core::now_ms(), window).await? {
        Some(done) => Ok(ok_push(revoke_result(&done))),
        None => {
            Err(Refusal::new(ErrorCode::MessageNotExist, "no message with that msgKey and target in the revoke window"))
        }
    }
}

/// Revoke every message of a task (within the revoke window), or cancel a scheduled push.
#[utoipa::path(post, path = "/push/revoke-task", tag = "push", request_body = RevokeTaskRequest,
    responses((status = 200, description = "Revoked", body = PushAnswer), Refusals),
    security(("signature" = [])))]
pub(super) async fn revoke_task(State(state): State<AppState>, req: Signed) -> Result<Json, Refusal> {
    let body: RevokeTaskRequest = parse_json(&req.body)?;
    let window = state.cfg.limits.revoke_window_secs * 1000;
    let task = TaskId::new(body.task_id.clone());
    let Some(done) = state.dispatcher.revoke_task(&req.app_id, &task, herald_core::now_ms(), window).await? else {
        return Err(Refusal::new(ErrorCode::TaskNotExist, "no such task or schedule in the revoke window"));
    };
    Ok(ok_push(PushResult {
        data: body.task_id,
        schedule_cancelled: done.schedule_cancelled,
        ..revoke_result(&done.revocation)
    }))
}

/// The query of `GET /v1/schedules` (MPS QueryPushSchedulerList). Values are read as text
/// and checked by the handler, so that a bad one is refused in our words.
#[derive(Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub(super) struct ScheduleQuery {
    /// Push times from (Unix ms, inclusive).
    #[param(value_type = Option<i64>)]
    start_time: Option<String>,
    /// Push times until (Unix ms, inclusive).
    #[param(value_type = Option<i64>)]
    end_time: Option<String>,
    /// 0 simple, 1 template, 2 multiple, 3 broadcast.
    #[serde(rename = "type")]
    #[param(rename = "type", value_type = Option<i64>)]
    push_type: Option<String>,
    /// One scheduled push and its firings.
    unique_id: Option<String>,
    /// From 1 (default 1).
    #[param(value_type = Option<i64>)]
    page_number: Option<String>,
    /// 1-500 (default 500).
    #[param(value_type = Option<i64>)]
    page_size: Option<String>,
}

fn integer(name: &str, value: &Option<String>, default: i64) -> Result<i64, Refusal> {
    match value.as_deref().filter(|v| !v.is_empty()) {
        None => Ok(default),
        Some(v) => v.parse().map_err(|_| Refusal::new(ErrorCode::InvalidParam, format!("{name} must be an integer"))),
    }
}

fn schedule_json(s: &ScheduleRecord) -> Value {
    json!({
        "uniqueId": s.unique_id, "parentId": s.parent_id, "pushTime": s.push_time, "pushTitle": s.title,
        "pushContent": s.content, "type": s.push_type.mps_code(), "deliveryType": s.delivery_type,
        "strategyType": s.strategy_kind.code(), "executedStatus": s.status, "taskId": s.task_id,
        "templateName": s.template_name, "createdAt": s.created_at,
    })
}

/// Scheduled pushes and their firings, by push time.
///
/// `data` is `{totalCount, pageNumber, pageSize, list}`; each item has `uniqueId`,
/// `parentId` (a firing's schedule), `pushTime`, `pushTitle`, `pushContent`, `type`,
/// `deliveryType`, `strategyType`, `executedStatus` (0 waiting, 1 fired, 2 cancelled, 3
/// missed), `taskId`, `templateName`, `createdAt`.
#[utoipa::path(get, path = "/schedules", tag = "push", params(ScheduleQuery),
    responses((status = 200, description = "One page of schedules", body = QueryAnswer), Refusals),
    security(("signature" = [])))]
pub(super) async fn list_schedules(
    State(state): State<AppState>,
    QueryParams(q): QueryParams<ScheduleQuery>,
    req: Signed,
) -> Result<Json, Refusal> {
    let (from, to) = (integer("startTime", &q.start_time, 0)?, integer("endTime", &q.end_time, i64::MAX)?);
    let page = integer("pageNumber", &q.page_number, 1)?.max(1);
    let size = integer("pageSize", &q.page_size, 500)?.clamp(1, 500);
    let wanted = match q.push_type.as_deref().filter(|v| !v.is_empty()) {
        None => None,
        Some(t) => Some(t.parse().ok().and_then(PushType::from_mps_code).ok_or_else(|| {
            Refusal::new(
                ErrorCode::InvalidParam,
                "type must be 0 (simple), 1 (template), 2 (multiple) or 3 (broadcast)",
            )
        })?),
    };
    let unique_id = q.unique_id.as_deref().filter(|v| !v.is_empty());
    let all: Vec<ScheduleRecord> = state
        .store
        .schedules(&req.app_id, unique_id, from, to)
        .await?
        .into_iter()
        .filter(|s| wanted.is_none_or(|w| s.push_type == w))
        .collect();
    let list: Vec<Value> =
        all.iter().skip(((page - 1) * size) as usize).take(size as usize).map(schedule_json).collect();
    Ok(ok_content(json!({"totalCount": all.len(), "pageNumber": page, "pageSize": size, "list": list})))
}

/// Cancel a waiting scheduled push: `data` is `{uniqueId, cancelled: true}`.
#[utoipa::path(delete, path = "/schedules/{uniqueId}", tag = "push",
    params(("uniqueId" = String, Path, description = "The scheduled push")),
    responses((status = 200, description = "Cancelled", body = QueryAnswer), Refusals),
    security(("signature" = [])))]
pub(super) async fn cancel_schedule(
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
