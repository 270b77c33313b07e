//! Analytics (DESIGN §8, MPS QueryPushAnalysis*): totals, series and tasks from the counters.
//!
//! Times are Unix ms; a span is `[startTime, endTime)`. The counts of a delivery are its
//! funnel stages (`herald_core::ledger`): `pushTotalNum` deliveries pushed, `pushNum` those
//! handed to a channel (MPS "successful pushes"), `arrivalNum` those that reached the device,
//! `openNum`/`ignoreNum` those opened/ignored; `openRate` = openNum / arrivalNum and
//! `ignoreRate` = ignoreNum / arrivalNum (0 when nothing arrived).

use axum::extract::{Path, State};
use herald_core::error::ErrorCode;
use herald_core::ids::TaskId;
use herald_core::ledger::{CountQuery, Counts, TaskCounts, rate};
use herald_core::state::{Channel, Granularity, Platform, PushType};
use serde::Deserialize;
use serde_json::{Value, json};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::envelope::{QueryAnswer, Refusals, ok_content};
use super::extract::QueryParams;
use super::status::Window;
use super::{AppState, Json, Refusal, Signed};

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(analytics_core))
        .routes(routes!(analytics_series))
        .routes(routes!(analytics_tasks))
        .routes(routes!(analytics_task))
}

const DAY_MS: i64 = 86_400_000;
/// The longest span of a total or a task list (MPS: 90 days).
const MAX_SPAN_DAYS: i64 = 90;

/// The query of the analytics calls.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub(super) struct Filters {
    /// Unix ms, inclusive.
    #[param(value_type = Option<i64>)]
    start_time: Option<String>,
    /// Unix ms, exclusive.
    #[param(value_type = Option<i64>)]
    end_time: Option<String>,
    /// android, ios, harmonyos, web (MPS: ANDROID, IOS, HARMONYOS).
    platform: Option<String>,
    /// own, apns, fcm, hms, xiaomi, webpush (MPS: ANDROID = own, IOS = apns, FCM, HMS, MIUI).
    channel: Option<String>,
    /// simple, template, multiple, broadcast (any case).
    push_type: Option<String>,
    /// MPS's name for pushType.
    #[serde(rename = "type")]
    kind: Option<String>,
    task_id: Option<String>,
    /// series: minute, hour or day.
    granularity: Option<String>,
    #[param(value_type = Option<i64>)]
    page_number: Option<String>,
    #[param(value_type = Option<i64>)]
    page_size: Option<String>,
}

fn span_error(why: impl Into<String>) -> Refusal {
    Refusal::new(ErrorCode::AnalyticsSpanInvalid, why.into())
}

fn time(name: &str, v: &Option<String>) -> Result<i64, Refusal> {
    v.as_deref()
        .ok_or_else(|| span_error(format!("{name} is required (Unix ms)")))?
        .parse::<i64>()
        .ok()
        .filter(|t| *t >= 0)
        .ok_or_else(|| span_error(format!("{name} must be a time in Unix ms")))
}

fn platform(v: &str) -> Option<&'static str> {
    Platform::parse(&v.to_ascii_lowercase()).map(Platform::as_str)
}

fn channel(v: &str) -> Option<&'static str> {
    let mps = match v {
        "ANDROID" | "HARMONYOS" => Some(Channel::Own),
        "IOS" => Some(Channel::Apns),
        "MIUI" => Some(Channel::Xiaomi),
        _ => None,
    };
    mps.or_else(|| Channel::parse(&v.to_ascii_lowercase())).map(Channel::as_str)
}

/// The query of `f` for the app over the span; `max_days` bounds it.
fn query(req: &Signed, f: &Filters, granularity: Granularity, max_days: i64) -> Result<CountQuery, Refusal> {
    let (from, to) = (time("startTime", &f.start_time)?, time("endTime", &f.end_time)?);
    if to <= from {
        return Err(span_error("endTime must be after startTime"));
    }
    if to - from > max_days * DAY_MS {
        return Err(span_error(format!("the span is longer than {max_days} days")));
    }
    let unknown = |name: &str| span_error(format!("unknown {name}"));
    let platform = f.platform.as_deref().map(|p| platform(p).ok_or_else(|| unknown("platform"))).transpose()?;
    let channel = f.channel.as_deref().map(|c| channel(c).ok_or_else(|| unknown("channel"))).transpose()?;
    let push_type = f
        .push_type
        .as_deref()
        .or(f.kind.as_deref())
        .map(|t| PushType::parse(&t.to_ascii_lowercase()).map(PushType::as_str).ok_or_else(|| unknown("pushType")))
        .transpose()?;
    if f.task_id.as_ref().is_some_and(|t| t.len() > 64) {
        return Err(unknown("taskId"));
    }
    Ok(CountQuery {
        app_id: req.app_id.clone(),
        granularity,
        from,
        to,
        platform: platform.map(str::to_owned),
        channel: channel.map(str::to_owned),
        push_type: push_type.map(str::to_owned),
        task_id: f.task_id.clone(),
    })
}

/// The coarsest granularity whose buckets both ends of the span fall on (days, else
/// hours, else minutes): a total reads the fewest rows that still cover exactly the span.
fn coarsest(from: i64, to: i64) -> Granularity {
    [Granularity::Day, Granularity::Hour]
        .into_iter()
        .find(|g| g.bucket(from) == from && g.bucket(to) == to)
        .unwrap_or(Granularity::Minute)
}

fn core_view(c: &Counts) -> Value {
    json!({
        "pushTotalNum": c.pushed,
        "pushNum": c.sent,
        "arrivalNum": c.arrived,
        "openNum": c.opened,
        "openRate": rate(c.opened, c.arrived),
        "ignoreNum": c.ignored,
        "ignoreRate": rate(c.ignored, c.arrived),
        "expiredNum": c.expired,
        "failedNum": c.failed,
    })
}

/// Totals over a span of at most 90 days (MPS QueryPushAnalysisCoreIndex): `data` is
/// `{pushTotalNum, pushNum, arrivalNum, openNum, openRate, ignoreNum, ignoreRate,
/// expiredNum, failedNum}`.
#[utoipa::path(get, path = "/analytics/core", tag = "analytics", params(Filters),
    responses((status = 200, description = "The totals", body = QueryAnswer), Refusals),
    security(("signature" = [])))]
pub(super) async fn analytics_core(
    State(state): State<AppState>,
    QueryParams(f): QueryParams<Filters>,
    req: Signed,
) -> Result<Json, Refusal> {
    let mut q = query(&req, &f, Granularity::Minute, MAX_SPAN_DAYS)?;
    q.granularity = coarsest(q.from, q.to);
    let task = q.task_id.clone();
    let total = state.store.count_total(q).await?;
    if total.is_zero() {
        uncounted(&state, &req, task.as_deref()).await?;
    }
    Ok(ok_content(core_view(&total)))
}

/// Counts per minute (span of at most 7 days), hour (90 days) or day (730 days), buckets
/// with no count left out: `data` is `[{time, pushNum, sentNum, arrivalNum, openNum,
/// ignoreNum, expiredNum, failedNum}]` (here `pushNum` is the deliveries pushed and
/// `sentNum` those handed to a channel).
#[utoipa::path(get, path = "/analytics/series", tag = "analytics", params(Filters),
    responses((status = 200, description = "The series", body = QueryAnswer), Refusals),
    security(("signature" = [])))]
async fn analytics_series(
    State(state): State<AppState>,
    QueryParams(f): QueryParams<Filters>,
    req: Signed,
) -> Result<Json, Refusal> {
    let g = f
        .granularity
        .as_deref()
        .map_or(Some(Granularity::Hour), Granularity::parse)
        .ok_or_else(|| Refusal::new(ErrorCode::InvalidParam, "granularity must be minute, hour or day"))?;
    let max_days = match g {
        Granularity::Minute => 7,
        Granularity::Hour => MAX_SPAN_DAYS,
        Granularity::Day => 730,
    };
    let q = query(&req, &f, g, max_days)?;
    let limit = ((q.to - q.from) / g.millis() + 1) as usize;
    let task = q.task_id.clone();
    let series = state.store.count_series(q, limit).await?;
    if series.is_empty() {
        uncounted(&state, &req, task.as_deref()).await?;
    }
    let list: Vec<Value> = series
        .iter()
        .map(|(time, c)| {
            json!({
                "time": time,
                "pushNum": c.pushed,
                "sentNum": c.sent,
                "arrivalNum": c.arrived,
                "openNum": c.opened,
                "ignoreNum": c.ignored,
                "expiredNum": c.expired,
                "failedNum": c.failed,
            })
        })
        .collect();
    Ok(ok_content(Value::Array(list)))
}

/// A task's counts; its `endTime` is the end of its last bucket of `granularity` with a count.
fn task_view(t: &TaskCounts, granularity: Granularity) -> Value {
    let end = granularity.bucket(t.last) + granularity.millis();
    let start = t.created_at.unwrap_or(t.first);
    json!({
        "taskId": t.task_id,
        "taskName": t.task_name,
        "type": t.push_type,
        "gmtCreate": t.created_at,
        "startTime": start,
        "endTime": end,
        "duration": end - start,
        "pushNum": t.counts.pushed,
        "pushSuccessNum": t.counts.sent,
        "pushArrivalNum": t.counts.arrived,
        "openNum": t.counts.opened,
        "ignoreNum": t.counts.ignored,
        "expiredNum": t.counts.expired,
        "failedNum": t.counts.failed,
    })
}

/// Tasks created in a span of at most 90 days (whole UTC days) that have counts, newest
/// first (MPS QueryPushAnalysisTaskList): `{totalCount, pageNumber, pageSize, list: [{taskId,
/// taskName, type, gmtCreate, pushNum, pushSuccessNum, pushArrivalNum, openNum, …}]}`, each
/// with its counts over its life (`endTime` the end of its last day with a count).
#[utoipa::path(get, path = "/analytics/tasks", tag = "analytics", params(Filters),
    responses((status = 200, description = "One page", body = QueryAnswer), Refusals),
    security(("signature" = [])))]
pub(super) async fn analytics_tasks(
    State(state): State<AppState>,
    QueryParams(f): QueryParams<Filters>,
    req: Signed,
) -> Result<Json, Refusal> {
    let mut q = query(&req, &f, Granularity::Day, MAX_SPAN_DAYS)?;
    // Whole days: the day buckets the span touches.
    (q.from, q.to) = (Granularity::Day.bucket(q.from), Granularity::Day.bucket(q.to - 1) + DAY_MS);
    let page = Window::of(&f.page_number, &f.page_size, 20)?;
    let (total, list) = state.store.count_tasks(q, page.offset(), page.size).await?;
    let list: Vec<Value> = list.iter().map(|t| task_view(t, Granularity::Day)).collect();
    Ok(ok_content(page.answer(total, list)))
}

/// One task's counts over its life (MPS QueryPushAnalysisTaskDetail): `{taskId, startTime,
/// endTime, duration, pushNum, pushSuccessNum, pushArrivalNum, openNum, ignoreNum, …}`;
/// `endTime` is the end of the last minute with a count.
#[utoipa::path(get, path = "/analytics/tasks/{taskId}", tag = "analytics",
    params(("taskId" = String, Path)),
    responses((status = 200, description = "The task", body = QueryAnswer), Refusals),
    security(("signature" = [])))]
pub(super) async fn analytics_task(
    State(state): State<AppState>,
    Path(task_id): Path<String>,
    req: Signed,
) -> Result<Json, Refusal> {
    let Some(t) = state.store.count_task(&req.app_id, &TaskId::new(task_id.clone())).await? else {
        uncounted(&state, &req, Some(&task_id)).await?;
        return Err(Refusal::new(ErrorCode::TaskNotExist, "no counts for such a task in the app"));
    };
    Ok(ok_content(task_view(&t, Granularity::Minute)))
}

/// Refuses a query about a task with nothing counted when that is because its push type has
/// no counters of its own (`analytics.task_counts`), rather than answering zeros.
async fn uncounted(state: &AppState, req: &Signed, task_id: Option<&str>) -> Result<(), Refusal> {
    let Some(task_id) = task_id else { return Ok(()) };
    let Some(task) = state.store.task(&req.app_id, &TaskId::new(task_id.to_owned())).await? else { return Ok(()) };
    let push_type = task.summary.push_type;
    if state.cfg.analytics.task_counts.contains(push_type) {
        return Ok(());
    }
    Err(Refusal::new(
        ErrorCode::TaskNotCounted,
        format!(
            "{push_type} tasks have no counters of their own (analytics.task_counts); their targets' \
             statuses are in GET /v1/tasks/{{taskId}}, their counts in the app's with pushType={push_type}"
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_read_the_coarsest_buckets_that_fit_the_span() {
        assert_eq!(coarsest(0, DAY_MS * 3), Granularity::Day);
        assert_eq!(coarsest(3_600_000, DAY_MS), Granularity::Hour);
        assert_eq!(coarsest(60_000, 3_600_000), Granularity::Minute);
    }

    #[test]
    fn mps_names_of_platforms_and_channels_are_understood() {
        assert_eq!(platform("IOS"), Some("ios"));
        assert_eq!(channel("ANDROID"), Some("own"));
        assert_eq!(channel("MIUI"), Some("xiaomi"));
        assert_eq!(channel("HMS"), Some("hms"));
        assert_eq!(channel("OPPO"), None);
    }
}
