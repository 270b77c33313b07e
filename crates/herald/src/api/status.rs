//! `/v1/tasks` and `/v1/messages`: what became of a push, per target and per device.

use axum::extract::{Path, State};
use serde::Deserialize;
use serde_json::{Value, json};
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use herald_core::error::ErrorCode;
use herald_core::ids::{MessageId, TaskId};
use herald_core::model::{MessageView, TaskFilter};
use herald_core::state::{DeliveryStatus, PushType, TargetStatus};

use super::envelope::{QueryAnswer, Refusals, ok_content};
use super::extract::QueryParams;
use super::{AppState, Json, Refusal, Signed};

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(tasks)).routes(routes!(task)).routes(routes!(message))
}

/// Which tasks a list shows, and which page of them.
#[derive(Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub(super) struct TaskQuery {
    /// From 1 (default 1).
    #[param(value_type = Option<i64>)]
    page_number: Option<String>,
    /// 1-500 (default 20).
    #[param(value_type = Option<i64>)]
    page_size: Option<String>,
    /// `simple`, `template`, `multiple` or `broadcast` (default: any).
    #[serde(rename = "type")]
    push_type: Option<String>,
    /// Made at or after this time (Unix ms).
    #[param(value_type = Option<i64>)]
    from: Option<String>,
    /// Made before this time (Unix ms).
    #[param(value_type = Option<i64>)]
    to: Option<String>,
    /// `active` (still within its validity) or `expired` (default: both).
    status: Option<String>,
}

/// The app's tasks, newest first: `data` is `{totalCount, pageNumber, pageSize, list:
/// [{taskId, type, taskName, deliveryType, createdAt, expiresAt, status}]}`, `status`
/// being `active` or `expired`. `GET /v1/tasks/{taskId}` gives one with its targets.
#[utoipa::path(get, path = "/tasks", tag = "status", params(TaskQuery),
    responses((status = 200, description = "One page", body = QueryAnswer), Refusals),
    security(("signature" = [])))]
async fn tasks(
    State(state): State<AppState>,
    QueryParams(q): QueryParams<TaskQuery>,
    req: Signed,
) -> Result<Json, Refusal> {
    let page = Window::of(&q.page_number, &q.page_size, 20)?;
    let now = herald_core::now_ms();
    let mut filter = TaskFilter::default();
    if let Some(t) = q.push_type.as_deref().filter(|t| !t.is_empty()) {
        let t = PushType::parse(t).ok_or_else(|| {
            Refusal::new(ErrorCode::InvalidParam, "type must be simple, template, multiple or broadcast")
        })?;
        filter.push_type = Some(t);
    }
    let time = |name: &str, v: &Option<String>| match v.as_deref().filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(v) => v
            .parse::<i64>()
            .map(Some)
            .map_err(|_| Refusal::new(ErrorCode::InvalidParam, format!("{name} must be a time in Unix milliseconds"))),
    };
    if let Some(from) = time("from", &q.from)? {
        filter.created_from = from;
    }
    if let Some(to) = time("to", &q.to)? {
        filter.created_to = to;
    }
    match q.status.as_deref().filter(|s| !s.is_empty()) {
        None => {}
        Some("active") => filter.expires_after = now,
        Some("expired") => filter.expires_by = now,
        Some(_) => return Err(Refusal::new(ErrorCode::InvalidParam, "status must be active or expired")),
    }
    let (total, list) = state.store.tasks(&req.app_id, &filter, page.offset(), page.size).await?;
    let list: Vec<Value> = list
        .iter()
        .map(|t| {
            json!({
                "taskId": t.task_id, "type": t.push_type, "taskName": t.task_name, "deliveryType": t.delivery_type,
                "createdAt": t.created_at, "expiresAt": t.expires_at,
                "status": if t.expires_at > now { "active" } else { "expired" },
            })
        })
        .collect();
    Ok(ok_content(page.answer(total, list)))
}

/// One page of a task's targets.
#[derive(Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub(super) struct Page {
    /// From 1 (default 1).
    #[param(value_type = Option<i64>)]
    pub(super) page_number: Option<String>,
    /// 1-500 (default 100).
    #[param(value_type = Option<i64>)]
    pub(super) page_size: Option<String>,
}

/// One page of a paged list: its number (from 1) and size, from the query.
pub(super) struct Window {
    pub(super) number: u64,
    pub(super) size: u64,
}

impl Window {
    /// `pageNumber` (default 1) and `pageSize` (default `default_size`, at most 500).
    pub(super) fn of(number: &Option<String>, size: &Option<String>, default_size: usize) -> Result<Window, Refusal> {
        let number = page_arg("pageNumber", number, 1, 1_000_000)? as u64;
        let size = page_arg("pageSize", size, default_size, 500)? as u64;
        Ok(Window { number, size })
    }

    /// The rows before the page.
    pub(super) fn offset(&self) -> u64 {
        (self.number - 1) * self.size
    }

    /// The answer: `{totalCount, pageNumber, pageSize, list}`.
    pub(super) fn answer(&self, total: u64, list: Vec<serde_json::Value>) -> serde_json::Value {
        serde_json::json!({"totalCount": total, "pageNumber": self.number, "pageSize": self.size, "list": list})
    }
}

pub(super) fn page_arg(name: &str, value: &Option<String>, default: usize, max: usize) -> Result<usize, Refusal> {
    match value.as_deref().filter(|v| !v.is_empty()) {
        None => Ok(default),
        Some(v) => v
            .parse::<usize>()
            .map(|n| n.clamp(1, max))
            .map_err(|_| Refusal::new(ErrorCode::InvalidParam, format!("{name} must be a positive integer"))),
    }
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
    // What vendors were asked to carry: `{deviceId, channel, status (waiting | sent |
    // failed | invalidToken | expired | revoked), attempts, vendorId, reason, updatedAt}`.
    let vendor_sends: Vec<Value> = m
        .vendor_sends
        .iter()
        .map(|v| {
            json!({
                "deviceId": v.device_id, "channel": v.channel, "status": v.status, "attempts": v.attempts,
                "vendorId": v.vendor_id, "reason": v.reason, "updatedAt": v.updated_at,
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
        "vendorSends": vendor_sends,
    })
}

/// A task: counts of its targets by status, one page of its targets with their deliveries,
/// and for a broadcast its audience.
///
/// `data` is `{taskId, type, taskName, deliveryType, createdAt, expiresAt, counts,
/// totalCount, pageNumber, pageSize, targets, broadcast}`; `counts` maps each status
/// (`pending`, `sent`, `delivered`, `opened`, `ignored`, `expired`, `revoked`,
/// `undeliverable`) to its number of targets (for a broadcast: of devices). Each target is
/// a message as `GET /v1/messages/{messageId}` answers it.
#[utoipa::path(get, path = "/tasks/{taskId}", tag = "status",
    params(("taskId" = String, Path, description = "The task a push answered"), Page),
    responses((status = 200, description = "The task", body = QueryAnswer), Refusals),
    security(("signature" = [])))]
async fn task(
    State(state): State<AppState>,
    Path(task_id): Path<String>,
    QueryParams(q): QueryParams<Page>,
    req: Signed,
) -> Result<Json, Refusal> {
    let page = page_arg("pageNumber", &q.page_number, 1, usize::MAX)?;
    let size = page_arg("pageSize", &q.page_size, 100, 500)?;
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
        } else if task.summary.expires_at <= now {
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
        "taskId": task.summary.task_id,
        "type": task.summary.push_type,
        "taskName": task.summary.task_name,
        "deliveryType": task.summary.delivery_type,
        "createdAt": task.summary.created_at,
        "expiresAt": task.summary.expires_at,
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

/// A message: its target, status and each device's delivery.
///
/// `data` is `{messageId, taskId, msgKey, targetType, target, status, revokedAt,
/// createdAt, expiresAt, deliveries}`, each delivery `{deviceId, status, createdAt,
/// updatedAt, sentAt, deliveredAt}`.
#[utoipa::path(get, path = "/messages/{messageId}", tag = "status",
    params(("messageId" = String, Path, description = "A messageId of a push's answer")),
    responses((status = 200, description = "The message", body = QueryAnswer), Refusals),
    security(("signature" = [])))]
async fn message(State(state): State<AppState>, Path(message_id): Path<String>, req: Signed) -> Result<Json, Refusal> {
    match state.store.message(&req.app_id, &MessageId::new(message_id)).await? {
        Some(m) => Ok(ok_content(message_json(&m, herald_core::now_ms()))),
        None => Err(Refusal::new(ErrorCode::MessageNotExist, "no such message in this app")),
    }
}
