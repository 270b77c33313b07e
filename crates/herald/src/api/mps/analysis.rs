//! MPS's analysis actions on `/v1/analytics`: `QueryPushAnalysisCoreIndex`,
//! `QueryPushAnalysisTaskList` and `QueryPushAnalysisTaskDetail`, answered in the query
//! envelope with the shapes the SDKs' models read (docs/analytics.md has the counters).

use axum::extract::{Path, State};
use serde_json::{Value, json};

use herald_core::state::PushType;

use super::super::extract::QueryParams;
use super::super::{AppState, Json, Refusal, Signed, analytics, parse_json};

pub(super) const ACTIONS: [&str; 3] =
    ["QueryPushAnalysisCoreIndex", "QueryPushAnalysisTaskList", "QueryPushAnalysisTaskDetail"];

const DAY_MS: i64 = 86_400_000;

/// Runs one of [`ACTIONS`]: the `/v1`-shaped answer (before PascalCase), or a refusal.
pub(super) async fn run(state: &AppState, action: &str, signed: Signed) -> Result<Json, Refusal> {
    let mut params: Value = parse_json(&signed.body)?;
    match action {
        "QueryPushAnalysisCoreIndex" => {
            let filters = parse_json(params.to_string().as_bytes())?;
            analytics::analytics_core(State(state.clone()), QueryParams(filters), signed).await
        }
        "QueryPushAnalysisTaskList" => {
            // MPS asks for the tasks since StartTime: until a day from now, within the 90 days
            // a span may cover.
            if params["endTime"].is_null() {
                let start = params["startTime"].as_str().and_then(|s| s.trim().parse::<i64>().ok()).unwrap_or(0);
                let end = (herald_core::now_ms() + DAY_MS).min(start.saturating_add(90 * DAY_MS));
                params["endTime"] = json!(end.to_string());
            }
            let filters = parse_json(params.to_string().as_bytes())?;
            let Json(mut v1) = analytics::analytics_tasks(State(state.clone()), QueryParams(filters), signed).await?;
            // MPS's ResultContent.Data is the list itself; each task with its type as MPS's
            // code and a List of sub-tasks (Herald has none).
            let data = &mut v1["resultContent"]["data"];
            let mut list = data["list"].take();
            for task in list.as_array_mut().into_iter().flatten() {
                let code = task["type"].as_str().and_then(PushType::parse).map(PushType::mps_code);
                task["type"] = json!(code);
                task["list"] = json!([]);
            }
            *data = list;
            Ok(Json(v1))
        }
        _ => {
            let task = params["taskId"].as_str().unwrap_or_default().to_owned();
            let Json(mut v1) = analytics::analytics_task(State(state.clone()), Path(task), signed).await?;
            // The SDKs' model holds the duration as text.
            let data = &mut v1["resultContent"]["data"];
            data["duration"] = json!(data["duration"].to_string());
            Ok(Json(v1))
        }
    }
}
