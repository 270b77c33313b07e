//! Templates: list, create, edit, delete, with a live preview of `#name#` values rendered
//! by the same code as a template push.

use axum::extract::{Path, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use herald_core::ids::AppId;
use serde_json::{Map, Value, json};

use super::form::Action;
use super::view::{Cell, Field, Form, Kind, Section, Table, rows, seg, text, time_of};
use super::{Console, Operator};

pub(crate) async fn list(State(console): State<Console>, op: Operator, Path(app): Path<String>) -> Response {
    list_with(&console, &op, &app, None, None).await
}

async fn list_with(
    console: &Console,
    op: &Operator,
    app: &str,
    notice: Option<Result<String, String>>,
    draft: Option<&super::form::Fields>,
) -> Response {
    let (app_id, mut page) = match console.app_page(op, app, "Templates", "templates", notice).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    match console.call(op, Method::GET, "/v1/templates", Some(&app_id), None).await.into_data() {
        Ok(data) => {
            let rows = rows(&data["list"], |t| {
                let name = text(t, "templateName");
                vec![
                    Cell::Link { href: format!("/console/apps/{app_id}/templates/{}", seg(&name)), text: name },
                    Cell::Text(text(t, "title")),
                    Cell::Text(text(t, "content")),
                    Cell::Text(time_of(t, "updatedAt")),
                ]
            });
            page.push(Section::Table(Table {
                caption: "The app's templates".into(),
                head: vec!["Name", "Title", "Content", "Changed"],
                rows,
                empty: "The app has no template yet.",
            }));
        }
        Err(e) => page.error(e),
    }
    let value = |name: &str| draft.map(|d| d.get(name).to_string()).unwrap_or_default();
    page.push(Section::Form(Form {
        id: "template",
        legend: "Create a template".into(),
        action: format!("/console/apps/{app_id}/templates"),
        get: false,
        fields: fields(value),
        submit: "Create template",
    }));
    page.push(Section::Preview { app: app_id.as_str().to_string() });
    page.into_response()
}

/// The editor's fields, filled by `value`.
fn fields(value: impl Fn(&str) -> String) -> Vec<Field> {
    vec![
        Field::new("templateName", "Name", Kind::Text)
            .value(value("templateName"))
            .required()
            .help("letters, digits, '_' or '-'"),
        Field::new("title", "Title", Kind::Text).value(value("title")).required().help("#name# is filled per push"),
        Field::new("content", "Content", Kind::Textarea).value(value("content")).required(),
        Field::new("uri", "Click target (uri)", Kind::Text).value(value("uri")),
        Field::new("descInfo", "Description", Kind::Text).value(value("descInfo")),
    ]
}

fn body_of(f: &super::form::Fields, with_name: bool) -> Value {
    let mut body = Map::new();
    let names: &[&str] = if with_name {
        &["templateName", "title", "content", "uri", "descInfo"]
    } else {
        &["title", "content", "uri", "descInfo"]
    };
    for &name in names {
        if let Some(v) = f.opt(name) {
            body.insert(name.into(), json!(v));
        }
    }
    Value::Object(body)
}

pub(crate) async fn create(
    State(console): State<Console>,
    Path(app): Path<String>,
    Action { op, fields }: Action,
) -> Response {
    let app_id = AppId::new(&app);
    let answer = console.call(&op, Method::POST, "/v1/templates", Some(&app_id), Some(&body_of(&fields, true))).await;
    match answer.ok() {
        true => {
            list_with(&console, &op, &app, Some(Ok(format!("Template {} created.", fields.get("templateName")))), None)
                .await
        }
        // The draft stays in the form, so nothing typed is lost.
        false => list_with(&console, &op, &app, Some(Err(answer.error())), Some(&fields)).await,
    }
}

pub(crate) async fn edit(
    State(console): State<Console>,
    op: Operator,
    Path((app, name)): Path<(String, String)>,
) -> Response {
    edit_with(&console, &op, &app, &name, None).await
}

async fn edit_with(
    console: &Console,
    op: &Operator,
    app: &str,
    name: &str,
    notice: Option<Result<String, String>>,
) -> Response {
    let (app_id, mut page) = match console.app_page(op, app, &format!("Template {name}"), "templates", notice).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let path = format!("/v1/templates/{}", seg(name));
    let t = match console.call(op, Method::GET, &path, Some(&app_id), None).await.into_data() {
        Ok(t) => t,
        Err(e) => return super::failure(StatusCode::NOT_FOUND, &e),
    };
    let base = format!("/console/apps/{app_id}/templates/{}", seg(name));
    let mut f = fields(|k| text(&t, k));
    f.remove(0);
    page.push(Section::Form(Form {
        id: "template",
        legend: "Edit".into(),
        action: base.clone(),
        get: false,
        fields: f,
        submit: "Save",
    }));
    page.push(Section::Preview { app: app_id.as_str().to_string() });
    page.push(Section::Form(Form {
        id: "delete-template",
        legend: "Delete this template (refused while a schedule uses it)".into(),
        action: format!("{base}/delete"),
        get: false,
        fields: vec![],
        submit: "Delete template",
    }));
    page.into_response()
}

pub(crate) async fn update(
    State(console): State<Console>,
    Path((app, name)): Path<(String, String)>,
    Action { op, fields }: Action,
) -> Response {
    let path = format!("/v1/templates/{}", seg(&name));
    let answer = console.call(&op, Method::PUT, &path, Some(&AppId::new(&app)), Some(&body_of(&fields, false))).await;
    let notice = if answer.ok() { Ok("Saved.".to_string()) } else { Err(answer.error()) };
    edit_with(&console, &op, &app, &name, Some(notice)).await
}

pub(crate) async fn delete(
    State(console): State<Console>,
    Path((app, name)): Path<(String, String)>,
    Action { op, .. }: Action,
) -> Response {
    let path = format!("/v1/templates/{}", seg(&name));
    let answer = console.call(&op, Method::DELETE, &path, Some(&AppId::new(&app)), None).await;
    match answer.ok() {
        true => list_with(&console, &op, &app, Some(Ok(format!("Template {name} deleted."))), None).await,
        false => edit_with(&console, &op, &app, &name, Some(Err(answer.error()))).await,
    }
}

/// The live preview: `{title, content}` filled from `values` (`name=value` lines) as a
/// template push fills them, or `{error}` naming the first placeholder without a value.
pub(crate) async fn preview(Action { fields, .. }: Action) -> Response {
    let mut kv = Map::new();
    for line in fields.get("values").lines() {
        if let Some((k, v)) = line.split_once('=') {
            kv.insert(k.trim().to_string(), json!(v.trim()));
        }
    }
    let render = |t: &str| herald_core::template::render(t, &kv).map_err(|e| e.message);
    let answer = match (render(fields.get("title")), render(fields.get("content"))) {
        (Ok(title), Ok(content)) => json!({"title": title, "content": content, "variables": variables(&fields)}),
        (Err(e), _) | (_, Err(e)) => json!({"error": e, "variables": variables(&fields)}),
    };
    ([("content-type", "application/json"), ("cache-control", "no-store")], answer.to_string()).into_response()
}

fn variables(f: &super::form::Fields) -> Vec<String> {
    herald_core::template::variables([f.get("title"), f.get("content"), f.get("uri")])
}
