//! MPS's scheduled-push actions on `/v1/schedules`: `QueryPushSchedulerList` (and its newer
//! name `QueryMpsSchedulerList`) and `CancelPushScheduler` (`CancelMpsScheduler`). They answer
//! the query envelope `{RequestId, ResultCode, ResultMessage, ResultContent}`.

use axum::extract::{Path, State};
use serde_json::{Value, json};

use super::super::extract::QueryParams;
use super::super::{AppState, Json, Refusal, Signed, push};

pub(super) const ACTIONS: [&str; 4] =
    ["QueryPushSchedulerList", "QueryMpsSchedulerList", "CancelPushScheduler", "CancelMpsScheduler"];

/// Runs one of [`ACTIONS`]: the `/v1`-shaped answer (before PascalCase), or a refusal.
pub(super) async fn run(state: &AppState, action: &str, signed: Signed) -> Result<Json, Refusal> {
    if action.starts_with("Query") {
        // The query's fields are MPS's in lower camel case: startTime, endTime, type,
        // uniqueId, pageNumber, pageSize.
        let query: push::ScheduleQuery = super::super::parse_json(&signed.body)?;
        let Json(mut v1) = push::list_schedules(State(state.clone()), QueryParams(query), signed).await?;
        if let Some(list) = v1["resultContent"]["data"]["list"].as_array_mut() {
            for item in list {
                // MPS's model: executedStatus is text, the creation time gmtCreate.
                item["executedStatus"] = Value::String(item["executedStatus"].to_string());
                item["gmtCreate"] = item["createdAt"].clone();
            }
        }
        return Ok(Json(v1));
    }
    // UniqueIds: one or more, comma-separated. Each is cancelled on its own; the answer
    // names those cancelled, and the first refusal when one was not.
    let params: Value = serde_json::from_slice(&signed.body).unwrap_or_default();
    let ids: Vec<String> = params["uniqueIds"]
        .as_str()
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|id| !id.is_empty())
        .map(str::to_owned)
        .collect();
    if ids.is_empty() {
        return Err(Refusal::new(herald_core::error::ErrorCode::InvalidParam, "uniqueIds names no scheduled push"));
    }
    let (mut cancelled, mut first_refusal) = (Vec::new(), None);
    for id in ids.into_iter().take(100) {
        let one = Signed { app_id: signed.app_id.clone(), body: signed.body.clone() };
        match push::cancel_schedule(State(state.clone()), Path(id.clone()), one).await {
            Ok(_) => cancelled.push(id),
            Err(refusal) if first_refusal.is_none() => first_refusal = Some(refusal),
            Err(_) => {}
        }
    }
    match first_refusal {
        Some(Refusal(mut e)) => {
            if !cancelled.is_empty() {
                e.message = format!("{} (cancelled: {})", e.message, cancelled.join(","));
            }
            Err(Refusal(e))
        }
        None => Ok(Json(json!({
            "requestId": herald_core::crypto::random_alnum(20),
            "resultCode": "OK",
            "resultMessage": "OK",
            "resultContent": cancelled.join(","),
        }))),
    }
}
