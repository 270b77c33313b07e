//! Tasks: the list (paged; type, time and status filters), a task with each target's status
//! and channel, revoke; the app's schedules, cancel.

use axum::extract::{Path, State};
use axum::http::Method;
use axum::response::{IntoResponse, Response};
use herald_core::ids::AppId;
use serde_json::{Value, json};

use super::form::{Action, PageQuery};
use super::view::{Cell, Field, Form, Kind, Page, Section, Table, rows, seg, text, time_of};
use super::{Console, Operator};

const PAGE_SIZE: u64 = 20;

#[derive(serde::Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
pub(crate) struct Filter {
    page_number: String,
    #[serde(rename = "type")]
    kind: String,
    status: String,
    /// Days back from now (the list's `from`).
    days: String,
}

pub(crate) async fn list(
    State(console): State<Console>,
    op: Operator,
    Path(app): Path<String>,
    PageQuery(filter): PageQuery<Filter>,
) -> Response {
    list_with(&console, &op, &app, filter, None).await
}

async fn list_with(
    console: &Console,
    op: &Operator,
    app: &str,
    filter: Filter,
    notice: Option<Result<String, String>>,
) -> Response {
    let (app_id, mut page) = match console.app_page(op, app, "Tasks", "tasks", notice).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    page.push(Section::Form(Form {
        id: "task-filter",
        legend: "Filter".into(),
        action: format!("/console/apps/{app_id}/tasks"),
        get: true,
        fields: vec![
            Field::new(
                "type",
                "Type",
                Kind::Select(vec![
                    ("", "any"),
                    ("simple", "Simple"),
                    ("template", "Template"),
                    ("multiple", "Multiple"),
                    ("broadcast", "Broadcast"),
                ]),
            )
            .value(filter.kind.clone()),
            Field::new(
                "status",
                "Status",
                Kind::Select(vec![("", "any"), ("active", "active"), ("expired", "expired")]),
            )
            .value(filter.status.clone()),
            Field::new("days", "Made in the last … days", Kind::Number).value(filter.days.clone()),
        ],
        submit: "Show",
    }));
    let number = filter.page_number.trim().parse::<u64>().unwrap_or(1).max(1);
    let mut query = vec![("pageNumber", number.to_string()), ("pageSize", PAGE_SIZE.to_string())];
    for (k, v) in [("type", &filter.kind), ("status", &filter.status)] {
        if !v.is_empty() {
            query.push((k, v.clone()));
        }
    }
    if let Ok(days) = filter.days.trim().parse::<i64>() {
        query.push(("from", (herald_core::now_ms() - days * 86_400_000).to_string()));
    }
    let qs = serde_urlencoded::to_string(&query).unwrap_or_default();
    match console.call(op, Method::GET, &format!("/v1/tasks?{qs}"), Some(&app_id), None).await.into_data() {
        Ok(data) => {
            let rows = rows(&data["list"], |t| {
                let id = text(t, "taskId");
                vec![
                    Cell::Link { href: format!("/console/apps/{app_id}/tasks/{}", seg(&id)), text: id },
                    Cell::Text(text(t, "type")),
                    Cell::Text(text(t, "taskName")),
                    Cell::Text(time_of(t, "createdAt")),
                    Cell::Text(time_of(t, "expiresAt")),
                    Cell::Text(text(t, "status")),
                ]
            });
            page.push(Section::Table(Table {
                caption: "The app's tasks, newest first".into(),
                head: vec!["taskId", "Type", "Name", "Made", "Valid until", "Status"],
                rows,
                empty: "No task matches.",
            }));
            let total = data["totalCount"].as_u64().unwrap_or(0);
            let link = |n: u64| {
                let mut q: Vec<(&str, String)> = vec![("pageNumber", n.to_string())];
                q.extend([
                    ("type", filter.kind.clone()),
                    ("status", filter.status.clone()),
                    ("days", filter.days.clone()),
                ]);
                format!("/console/apps/{app_id}/tasks?{}", serde_urlencoded::to_string(&q).unwrap_or_default())
            };
            let pages = total.div_ceil(PAGE_SIZE).max(1);
            page.push(Section::Pager {
                prev: (number > 1).then(|| link(number - 1)),
                next: (number < pages).then(|| link(number + 1)),
                info: format!("page {number} of {pages} ({total} tasks)"),
            });
        }
        Err(e) => page.error(e),
    }
    schedules(console, op, &app_id, &mut page).await;
    page.into_response()
}

async fn schedules(console: &Console, op: &Operator, app_id: &AppId, page: &mut Page) {
    page.heading("Schedules");
    let data = match console.call(op, Method::GET, "/v1/schedules?pageSize=50", Some(app_id), None).await.into_data() {
        Ok(d) => d,
        Err(e) => {
            page.notice(Err(e));
            return;
        }
    };
    let status = |s: &Value| match s["executedStatus"].as_i64() {
        Some(0) => "waiting",
        Some(1) => "fired",
        Some(2) => "cancelled",
        Some(3) => "missed",
        _ => "",
    };
    let rows = rows(&data["list"], |s| {
        let id = text(s, "uniqueId");
        let action = match s["executedStatus"].as_i64() == Some(0) {
            true => Cell::Button {
                action: format!("/console/apps/{app_id}/schedules/{}/cancel", seg(&id)),
                label: "Cancel".into(),
            },
            false => Cell::Text(String::new()),
        };
        vec![
            Cell::Code(id),
            Cell::Text(text(s, "parentId")),
            Cell::Text(time_of(s, "pushTime")),
            Cell::Text(text(s, "pushTitle")),
            Cell::Text(status(s).into()),
            Cell::Text(text(s, "taskId")),
            action,
        ]
    });
    page.push(Section::Table(Table {
        caption: "Scheduled pushes and their firings".into(),
        head: vec!["uniqueId", "Parent", "Push time", "Title", "Status", "taskId", ""],
        rows,
        empty: "No schedule.",
    }));
}

pub(crate) async fn show(
    State(console): State<Console>,
    op: Operator,
    Path((app, task)): Path<(String, String)>,
) -> Response {
    show_with(&console, &op, &app, &task, None).await
}

async fn show_with(
    console: &Console,
    op: &Operator,
    app: &str,
    task: &str,
    notice: Option<Result<String, String>>,
) -> Response {
    let (app_id, mut page) = match console.app_page(op, app, &format!("Task {task}"), "tasks", notice).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let t = match console
        .call(op, Method::GET, &format!("/v1/tasks/{}?pageSize=100", seg(task)), Some(&app_id), None)
        .await
        .into_data()
    {
        Ok(t) => t,
        Err(e) => {
            page.notice(Err(e));
            return page.into_response();
        }
    };
    let counts = t["counts"].as_object().map(|c| {
        c.iter().filter(|(_, n)| n.as_u64() != Some(0)).map(|(k, n)| format!("{k} {n}")).collect::<Vec<_>>().join(", ")
    });
    page.push(Section::Facts(vec![
        ("Type".into(), Cell::Text(text(&t, "type"))),
        ("Name".into(), Cell::Text(text(&t, "taskName"))),
        ("Made".into(), Cell::Text(time_of(&t, "createdAt"))),
        ("Valid until".into(), Cell::Text(time_of(&t, "expiresAt"))),
        ("Targets by status".into(), Cell::Text(counts.unwrap_or_default())),
    ]));
    let rows = rows(&t["targets"], |m| {
        let devices = |key: &str, field: &str| -> String {
            m[key]
                .as_array()
                .into_iter()
                .flatten()
                .map(|d| format!("{} {}", text(d, "deviceId"), text(d, field)))
                .collect::<Vec<_>>()
                .join("; ")
        };
        let vendor = m["vendorSends"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|v| format!("{} {} {}", text(v, "channel"), text(v, "deviceId"), text(v, "status")))
            .collect::<Vec<_>>()
            .join("; ");
        vec![
            Cell::Code(text(m, "messageId")),
            Cell::Text(text(m, "target")),
            Cell::Text(text(m, "msgKey")),
            Cell::Text(text(m, "status")),
            Cell::Text(devices("deliveries", "status")),
            Cell::Text(if vendor.is_empty() { "own (MQTT)".into() } else { format!("own (MQTT); {vendor}") }),
        ]
    });
    page.push(Section::Table(Table {
        caption: "Targets, with each device's delivery and the channels that carried it".into(),
        head: vec!["messageId", "Target", "msgKey", "Status", "Devices", "Channels"],
        rows,
        empty: "No target (a broadcast counts its devices above).",
    }));
    page.push(Section::Form(Form {
        id: "revoke",
        legend: "Revoke every message of this task (devices that have it get a revoke)".into(),
        action: format!("/console/apps/{app_id}/tasks/{}/revoke", seg(task)),
        get: false,
        fields: vec![],
        submit: "Revoke task",
    }));
    page.into_response()
}

pub(crate) async fn revoke(
    State(console): State<Console>,
    Path((app, task)): Path<(String, String)>,
    Action { op, .. }: Action,
) -> Response {
    let body = json!({"taskId": task});
    let answer = console.call(&op, Method::POST, "/v1/push/revoke-task", Some(&AppId::new(&app)), Some(&body)).await;
    let notice = match answer.ok() {
        true => {
            let n = answer.body.pointer("/pushResult/revokedMessages").and_then(Value::as_array).map_or(0, Vec::len);
            Ok(format!("Task revoked: {n} messages."))
        }
        false => Err(answer.error()),
    };
    show_with(&console, &op, &app, &task, Some(notice)).await
}

pub(crate) async fn cancel_schedule(
    State(console): State<Console>,
    Path((app, id)): Path<(String, String)>,
    Action { op, .. }: Action,
) -> Response {
    let answer =
        console.call(&op, Method::DELETE, &format!("/v1/schedules/{}", seg(&id)), Some(&AppId::new(&app)), None).await;
    let notice = if answer.ok() { Ok(format!("Schedule {id} cancelled.")) } else { Err(answer.error()) };
    list_with(&console, &op, &app, Filter::default(), Some(notice)).await
}
