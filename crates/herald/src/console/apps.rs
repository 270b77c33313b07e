//! Apps: the list, creation (secrets shown once), an app's ids, name, bind secret, trust of
//! client binds, and its API keys (create HMAC, upload RSA, revoke, last used).

use axum::extract::{Path, State};
use axum::http::Method;
use axum::response::{IntoResponse, Response};
use herald_core::ids::AppId;
use serde_json::{Value, json};

use super::form::Action;
use super::view::{Cell, Field, Form, Kind, Layout, Page, Section, Table, rows, seg, text, time_of};
use super::{Console, Operator};

pub(crate) fn layout(
    op: &Operator,
    title: impl Into<String>,
    app: Option<(&AppId, &str)>,
    current: &'static str,
) -> Layout {
    Layout {
        title: title.into(),
        app: app.map(|(id, name)| (id.as_str().to_string(), name.to_string())),
        current,
        who: op.who.clone(),
        csrf: op.csrf.clone(),
    }
}

impl Console {
    /// The frame of one of an app's pages; `Err` is the page for an unknown app.
    pub(crate) async fn app_page(
        &self,
        op: &Operator,
        app: &str,
        title: &str,
        current: &'static str,
        notice: Option<Result<String, String>>,
    ) -> Result<(AppId, Page), Response> {
        let app_id = AppId::new(app);
        let record = self.state.store.app(&app_id).await.ok().flatten();
        match record {
            Some(a) => {
                let layout = layout(op, format!("{title} · {}", a.name), Some((&app_id, &a.name)), current);
                let mut page = Page::new(layout);
                if let Some(n) = notice {
                    page.notice(n);
                }
                Ok((app_id, page))
            }
            None => Err(super::failure(axum::http::StatusCode::NOT_FOUND, "There is no such app.")),
        }
    }
}

pub(crate) async fn list(State(console): State<Console>, op: Operator) -> Page {
    list_with(&console, &op, None).await
}

async fn list_with(console: &Console, op: &Operator, notice: Option<Result<String, String>>) -> Page {
    let mut page = Page::new(layout(op, "Apps", None, "apps"));
    if let Some(n) = notice {
        page.notice(n);
    }
    match console.call(op, Method::GET, "/admin/v1/apps", None, None).await.into_data() {
        Ok(data) => {
            let rows = rows(&data["apps"], |a| {
                let id = text(a, "appId");
                vec![
                    Cell::Link { text: text(a, "name"), href: format!("/console/apps/{id}") },
                    Cell::Code(id),
                    Cell::Text(if a["trustClientBind"] == true { "yes" } else { "no" }.into()),
                    Cell::Text(time_of(a, "createdAt")),
                ]
            });
            page.push(Section::Table(Table {
                caption: "Apps of this node's store".into(),
                head: vec!["Name", "appId", "Trusts client binds", "Created"],
                rows,
                empty: "No app yet: create the first one below.",
            }));
        }
        Err(e) => page.error(e),
    }
    page.push(Section::Form(Form {
        id: "create-app",
        legend: "Create an app".into(),
        action: "/console/apps".into(),
        get: false,
        fields: vec![
            Field::new("name", "Name", Kind::Text).required().help("1 to 128 characters"),
            Field::new("trustClientBind", "Trust binds from devices (no proof from the app's server)", Kind::Checkbox),
            Field::new("workspaceId", "MPS workspace (optional)", Kind::Text)
                .help("the WorkspaceId the MPS endpoint then requires; empty: any"),
        ],
        submit: "Create app",
    }));
    page
}

pub(crate) async fn create(State(console): State<Console>, Action { op, fields }: Action) -> Page {
    let body = json!({"name": fields.get("name"), "trustClientBind": fields.checked("trustClientBind"),
        "workspaceId": fields.opt("workspaceId")});
    let answer = console.call(&op, Method::POST, "/admin/v1/apps", None, Some(&body)).await;
    if !answer.ok() {
        return list_with(&console, &op, Some(Err(answer.error()))).await;
    }
    let a = answer.data();
    let app_id = text(a, "appId");
    let mut page = Page::new(layout(&op, format!("App {} created", text(a, "name")), None, "apps"));
    page.notice(Ok("Copy these secrets now: the app key and the API secret are not shown again.".into()));
    let facts = ["appId", "appKey", "apiKeyId", "apiSecret", "bindSecret"]
        .into_iter()
        .map(|k| (k.to_string(), Cell::Code(text(a, k))))
        .collect();
    page.push(Section::Facts(facts));
    let env = format!(
        "HERALD_APP_ID={app_id}\nHERALD_APP_KEY={}\nHERALD_KEY_ID={}\nHERALD_API_SECRET={}\nHERALD_BIND_SECRET={}",
        text(a, "appKey"),
        text(a, "apiKeyId"),
        text(a, "apiSecret"),
        text(a, "bindSecret")
    );
    page.push(Section::Code { label: "As environment variables for your app's server".into(), text: env });
    page.push(Section::Facts(vec![(
        "Next".into(),
        Cell::Link { text: "Open the app".into(), href: format!("/console/apps/{app_id}") },
    )]));
    page
}

pub(crate) async fn show(State(console): State<Console>, op: Operator, Path(app): Path<String>) -> Response {
    show_with(&console, &op, &app, None).await
}

pub(crate) async fn show_with(
    console: &Console,
    op: &Operator,
    app: &str,
    notice: Option<Result<String, String>>,
) -> Response {
    let (app_id, mut page) = match console.app_page(op, app, "Overview", "overview", notice).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let path = format!("/admin/v1/apps/{}", seg(app_id.as_str()));
    let a = match console.call(op, Method::GET, &path, None, None).await.into_data() {
        Ok(a) => a,
        Err(e) => {
            page.notice(Err(e));
            return page.into_response();
        }
    };
    let trust = a["trustClientBind"] == true;
    page.push(Section::Facts(vec![
        ("appId".into(), Cell::Code(text(&a, "appId"))),
        ("Name".into(), Cell::Text(text(&a, "name"))),
        ("Created".into(), Cell::Text(time_of(&a, "createdAt"))),
        ("Bind secret".into(), Cell::Code(text(&a, "bindSecret"))),
        ("Trusts client binds".into(), Cell::Text(if trust { "yes" } else { "no" }.into())),
        ("MPS workspace".into(), Cell::Text(a["workspaceId"].as_str().unwrap_or("any").into())),
    ]));
    page.push(Section::Form(Form {
        id: "update-app",
        legend: "Rename, set whether devices may bind users without a proof, or the MPS workspace".into(),
        action: format!("/console/apps/{app_id}"),
        get: false,
        fields: vec![
            Field::new("name", "Name", Kind::Text).value(text(&a, "name")).required(),
            Field::new("trustClientBind", "Trust binds from devices", Kind::Checkbox).value(if trust {
                "true"
            } else {
                ""
            }),
            Field::new("workspaceId", "MPS workspace", Kind::Text)
                .value(text(&a, "workspaceId"))
                .help("the WorkspaceId the MPS endpoint requires; empty: any"),
        ],
        submit: "Save",
    }));
    page.heading("API keys");
    page.push(Section::Table(key_table(&app_id, &a["keys"])));
    page.push(Section::Form(Form {
        id: "create-key",
        legend: "Add an API key".into(),
        action: format!("/console/apps/{app_id}/keys"),
        get: false,
        fields: vec![
            Field::new(
                "type",
                "Type",
                Kind::Select(vec![("hmac", "HMAC (Herald makes the secret)"), ("rsa", "RSA (upload your public key)")]),
            ),
            Field::new("publicKey", "RSA public key (PEM), for an RSA key", Kind::Textarea),
        ],
        submit: "Add key",
    }));
    page.into_response()
}

fn key_table(app_id: &AppId, keys: &Value) -> Table {
    let rows = rows(keys, |k| {
        let id = text(k, "keyId");
        let action = match k["revokedAt"].is_null() {
            true => Cell::Button { action: format!("/console/apps/{app_id}/keys/{id}/revoke"), label: "Revoke".into() },
            false => Cell::Text(format!("revoked {}", time_of(k, "revokedAt"))),
        };
        vec![
            Cell::Code(id),
            Cell::Text(text(k, "type")),
            Cell::Text(time_of(k, "createdAt")),
            Cell::Text(match time_of(k, "lastUsedAt") {
                t if t.is_empty() => "never".into(),
                t => t,
            }),
            action,
        ]
    });
    Table {
        caption: "Keys that sign the app's server API requests".into(),
        head: vec!["keyId", "Type", "Created", "Last used", ""],
        rows,
        empty: "The app has no key.",
    }
}

pub(crate) async fn update(
    State(console): State<Console>,
    Path(app): Path<String>,
    Action { op, fields }: Action,
) -> Response {
    let body = json!({"name": fields.get("name"), "trustClientBind": fields.checked("trustClientBind"),
        "workspaceId": fields.get("workspaceId").trim()});
    let answer = console.call(&op, Method::PATCH, &format!("/admin/v1/apps/{}", seg(&app)), None, Some(&body)).await;
    let notice = if answer.ok() { Ok("Saved.".to_string()) } else { Err(answer.error()) };
    show_with(&console, &op, &app, Some(notice)).await
}

pub(crate) async fn create_key(
    State(console): State<Console>,
    Path(app): Path<String>,
    Action { op, fields }: Action,
) -> Response {
    let mut body = json!({"type": fields.get("type")});
    if let Some(pem) = fields.opt("publicKey") {
        body["publicKey"] = json!(pem);
    }
    let answer =
        console.call(&op, Method::POST, &format!("/admin/v1/apps/{}/keys", seg(&app)), None, Some(&body)).await;
    let notice = match answer.ok() {
        true => {
            let d = answer.data();
            match d["secret"].as_str() {
                Some(secret) => Ok(format!("Key {} added. Its secret, shown only now: {secret}", text(d, "keyId"))),
                None => Ok(format!("RSA key {} added.", text(d, "keyId"))),
            }
        }
        false => Err(answer.error()),
    };
    show_with(&console, &op, &app, Some(notice)).await
}

pub(crate) async fn revoke_key(
    State(console): State<Console>,
    Path((app, key)): Path<(String, String)>,
    Action { op, .. }: Action,
) -> Response {
    let path = format!("/admin/v1/apps/{}/keys/{}", seg(&app), seg(&key));
    let answer = console.call(&op, Method::DELETE, &path, None, None).await;
    let notice = if answer.ok() { Ok(format!("Key {key} revoked.")) } else { Err(answer.error()) };
    show_with(&console, &op, &app, Some(notice)).await
}
