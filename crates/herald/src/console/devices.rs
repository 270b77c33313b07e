//! Devices: search by deviceId, userId or installId (or page through one platform's), with
//! versions, bound user, online and on which node, masked vendor tokens; tokens vendors
//! called invalid; one device with the messages still waiting for it.

use axum::extract::{Path, State};
use axum::http::Method;
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use super::form::PageQuery;
use super::view::{Cell, Field, Form, Kind, Section, Table, rows, seg, text, time_of};
use super::{Console, Operator};

const PAGE_SIZE: u64 = 20;

#[derive(serde::Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
pub(crate) struct Search {
    device_id: String,
    user_id: String,
    install_id: String,
    platform: String,
    page_number: String,
}

pub(crate) async fn page(
    State(console): State<Console>,
    op: Operator,
    Path(app): Path<String>,
    PageQuery(search): PageQuery<Search>,
) -> Response {
    let (app_id, mut page) = match console.app_page(&op, &app, "Devices", "devices", None).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    page.push(Section::Form(Form {
        id: "device-search",
        legend: "Find devices".into(),
        action: format!("/console/apps/{app_id}/devices"),
        get: true,
        fields: vec![
            Field::new("deviceId", "deviceId", Kind::Text).value(search.device_id.clone()),
            Field::new("userId", "userId", Kind::Text).value(search.user_id.clone()),
            Field::new("installId", "installId", Kind::Text).value(search.install_id.clone()),
            Field::new(
                "platform",
                "Platform",
                Kind::Select(vec![
                    ("", "any"),
                    ("android", "Android"),
                    ("ios", "iOS"),
                    ("harmonyos", "HarmonyOS"),
                    ("web", "web"),
                ]),
            )
            .value(search.platform.clone()),
        ],
        submit: "Search",
    }));
    let number = search.page_number.trim().parse::<u64>().unwrap_or(1).max(1);
    let mut query = vec![("pageNumber", number.to_string()), ("pageSize", PAGE_SIZE.to_string())];
    for (k, v) in [
        ("deviceId", &search.device_id),
        ("userId", &search.user_id),
        ("installId", &search.install_id),
        ("platform", &search.platform),
    ] {
        if !v.trim().is_empty() {
            query.push((k, v.trim().to_string()));
        }
    }
    let qs = serde_urlencoded::to_string(&query).unwrap_or_default();
    match console.call(&op, Method::GET, &format!("/v1/devices?{qs}"), Some(&app_id), None).await.into_data() {
        Ok(data) => {
            let rows = rows(&data["list"], |d| row(app_id.as_str(), d));
            page.push(Section::Table(Table {
                caption: "Devices, newest first".into(),
                head: COLUMNS.to_vec(),
                rows,
                empty: "No device matches.",
            }));
            let total = data["totalCount"].as_u64().unwrap_or(0);
            let pages = total.div_ceil(PAGE_SIZE).max(1);
            let link = |n: u64| {
                let mut q = query.clone();
                q[0].1 = n.to_string();
                q.retain(|(k, _)| *k != "pageSize");
                format!("/console/apps/{app_id}/devices?{}", serde_urlencoded::to_string(&q).unwrap_or_default())
            };
            page.push(Section::Pager {
                prev: (number > 1).then(|| link(number - 1)),
                next: (number < pages).then(|| link(number + 1)),
                info: format!("page {number} of {pages} ({total} devices)"),
            });
        }
        Err(e) => page.error(e),
    }
    page.heading("Invalid vendor tokens");
    match console
        .call(&op, Method::GET, "/v1/devices/invalid-tokens?pageSize=20", Some(&app_id), None)
        .await
        .into_data()
    {
        Ok(data) => {
            let rows = rows(&data["list"], |t| {
                vec![
                    Cell::Code(text(t, "deviceId")),
                    Cell::Text(text(t, "channel")),
                    Cell::Text(text(t, "reason")),
                    Cell::Text(time_of(t, "at")),
                ]
            });
            page.push(Section::Table(Table {
                caption: "Tokens a vendor called invalid (the newest 20)".into(),
                head: vec!["deviceId", "Channel", "Reason", "When"],
                rows,
                empty: "No vendor has refused a token.",
            }));
        }
        Err(e) => page.error(e),
    }
    page.into_response()
}

pub(crate) async fn show(
    State(console): State<Console>,
    op: Operator,
    Path((app, device)): Path<(String, String)>,
) -> Response {
    let (app_id, mut page) = match console.app_page(&op, &app, &format!("Device {device}"), "devices", None).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let path = format!("/v1/devices/{}", seg(&device));
    let d = match console.call(&op, Method::GET, &path, Some(&app_id), None).await.into_data() {
        Ok(d) => d,
        Err(e) => {
            page.error(e);
            return page.into_response();
        }
    };
    let facts = COLUMNS.iter().map(|h| h.to_string()).zip(row(app_id.as_str(), &d)).collect();
    page.push(Section::Facts(facts));
    page.push(Section::Table(Table {
        caption: "Messages still waiting for this device (the oldest 20)".into(),
        head: vec!["messageId", "Type", "Title", "Valid until", "Written before, unacknowledged"],
        rows: rows(&d["waiting"], |w| {
            vec![
                Cell::Code(text(w, "messageId")),
                Cell::Text(text(w, "type")),
                Cell::Text(text(w, "title")),
                Cell::Text(time_of(w, "expiresAt")),
                Cell::Text(if w["sentBefore"] == true { "yes" } else { "no" }.into()),
            ]
        }),
        empty: "Nothing waits for this device.",
    }));
    page.into_response()
}

/// What [`row`] shows of a device, in its order (a table's columns, a device page's facts).
const COLUMNS: [&str; 9] =
    ["deviceId", "installId", "Platform", "App / OS version", "Model", "User", "Online", "Vendor tokens", "Registered"];

fn row(app: &str, d: &Value) -> Vec<Cell> {
    let online = match d["online"] == true {
        true => format!("yes, on {}", text(d, "onlineNode")),
        false => format!("no (last seen {})", time_of(d, "lastSeen")),
    };
    let tokens = d["vendorTokens"]
        .as_object()
        .map(|m| m.iter().map(|(k, v)| format!("{k} {}", v.as_str().unwrap_or(""))).collect::<Vec<_>>().join("; "))
        .unwrap_or_default();
    vec![
        Cell::Link {
            text: text(d, "deviceId"),
            href: format!("/console/apps/{app}/devices/{}", seg(&text(d, "deviceId"))),
        },
        Cell::Text(text(d, "installId")),
        Cell::Text(text(d, "platform")),
        Cell::Text(format!("{} / {}", text(d, "appVersion"), text(d, "osVersion"))),
        Cell::Text(text(d, "model")),
        Cell::Text(text(d, "userId")),
        Cell::Text(online),
        Cell::Text(tokens),
        Cell::Text(time_of(d, "createdAt")),
    ]
}
