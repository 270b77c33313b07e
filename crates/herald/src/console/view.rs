//! What every page is made of. A page is a list of [`Section`]s rendered by one template
//! (`templates/console/page.html`): headings, facts, tables, forms, code and charts. Forms are
//! built here, so each control has its label and each form its CSRF token by construction.

use askama::Template;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use serde_json::Value;

/// The answer of the API to one of the console's calls.
pub(crate) struct Answer {
    pub status: StatusCode,
    pub body: Value,
}

impl Answer {
    pub(crate) async fn read(response: Response) -> Answer {
        let status = response.status();
        // The API's answers are bounded by its own limits; this bound only guards the reader.
        let bytes = axum::body::to_bytes(response.into_body(), 64 << 20).await.unwrap_or_default();
        Answer { status, body: serde_json::from_slice(&bytes).unwrap_or(Value::Null) }
    }

    pub(crate) fn refused(status: StatusCode, code: &str, message: &str) -> Answer {
        Answer { status, body: serde_json::json!({"resultCode": code, "resultMessage": message}) }
    }

    pub(crate) fn ok(&self) -> bool {
        self.status.is_success() && self.body.get("resultCode").is_none_or(|c| c == "OK")
    }

    /// The refusal's code, or "OK".
    pub(crate) fn code(&self) -> &str {
        self.body.get("resultCode").and_then(Value::as_str).unwrap_or(if self.ok() { "OK" } else { "ERROR" })
    }

    /// `CODE: message` of a refusal.
    pub(crate) fn error(&self) -> String {
        let message = self.body.get("resultMessage").and_then(Value::as_str).unwrap_or("the request failed");
        format!("{}: {message}", self.code())
    }

    /// What was asked for: `resultContent.data` or `pushResult.data` of `/v1`, the body of
    /// `/admin/v1`.
    pub(crate) fn data(&self) -> &Value {
        let b = &self.body;
        b.pointer("/resultContent/data").or_else(|| b.pointer("/pushResult/data")).unwrap_or(b)
    }

    /// The data, or the refusal as an error for the page.
    pub(crate) fn into_data(self) -> Result<Value, String> {
        if self.ok() { Ok(self.data().clone()) } else { Err(self.error()) }
    }
}

/// `s` as one segment of a URL path (percent-encoded but for the unreserved characters).
pub(crate) use herald_core::signing::encode_component as seg;

/// A table's rows: one per item of the JSON array `list` (none when it is not an array).
pub(crate) fn rows(list: &Value, row: impl Fn(&Value) -> Vec<Cell>) -> Vec<Vec<Cell>> {
    list.as_array().into_iter().flatten().map(row).collect()
}

/// A string field of a JSON object ("" when absent; numbers and booleans as written).
pub(crate) fn text(v: &Value, key: &str) -> String {
    match v.get(key) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

/// Milliseconds since the epoch as UTC time to the second ("" for none).
pub(crate) fn time(ms: Option<i64>) -> String {
    match ms.and_then(|ms| jiff::Timestamp::from_millisecond(ms).ok()) {
        Some(t) => t.strftime("%Y-%m-%d %H:%M:%S UTC").to_string(),
        None => String::new(),
    }
}

pub(crate) fn time_of(v: &Value, key: &str) -> String {
    time(v.get(key).and_then(Value::as_i64))
}

/// The frame of a page: its title, the navigation and the operator's session.
pub(crate) struct Layout {
    pub title: String,
    /// The app whose pages the navigation offers, and its name.
    pub app: Option<(String, String)>,
    /// Which navigation entry is current.
    pub current: &'static str,
    pub who: String,
    pub csrf: String,
}

pub(crate) enum Section {
    Heading(String),
    /// A message of success (`false`) or failure (`true`).
    Notice {
        error: bool,
        text: String,
    },
    Facts(Vec<(String, Cell)>),
    Table(Table),
    Form(Form),
    /// Text shown as code, with a copy button.
    Code {
        label: String,
        text: String,
    },
    /// An SVG drawn by the server ([`super::analytics`]) from numbers only.
    Chart {
        label: String,
        svg: String,
    },
    /// The test device's panel (`assets/testdevice.js` drives it).
    TestDevice {
        app: String,
        mqtt_path: String,
    },
    /// Where the template editor's live preview is shown.
    Preview {
        app: String,
    },
    /// Links to the previous and next pages of a list.
    Pager {
        prev: Option<String>,
        next: Option<String>,
        info: String,
    },
}

pub(crate) enum Cell {
    Text(String),
    Code(String),
    Link {
        text: String,
        href: String,
    },
    /// A button that POSTs to `action` (with the CSRF token).
    Button {
        action: String,
        label: String,
    },
}

pub(crate) struct Table {
    pub caption: String,
    pub head: Vec<&'static str>,
    pub rows: Vec<Vec<Cell>>,
    /// Shown instead of an empty table.
    pub empty: &'static str,
}

pub(crate) struct Form {
    pub id: &'static str,
    pub legend: String,
    pub action: String,
    /// `get` forms (searches and filters) carry no CSRF token and change nothing.
    pub get: bool,
    pub fields: Vec<Field>,
    pub submit: &'static str,
}

pub(crate) struct Field {
    pub name: &'static str,
    pub label: &'static str,
    pub kind: Kind,
    pub value: String,
    pub help: &'static str,
    pub required: bool,
}

pub(crate) enum Kind {
    Text,
    Password,
    Number,
    Textarea,
    DateTime,
    Checkbox,
    Select(Vec<(&'static str, &'static str)>),
    /// A file read in the browser into the base64 hidden field `name`.
    File {
        accept: &'static str,
    },
}

impl Field {
    pub(crate) fn new(name: &'static str, label: &'static str, kind: Kind) -> Field {
        Field { name, label, kind, value: String::new(), help: "", required: false }
    }
    pub(crate) fn value(mut self, v: impl Into<String>) -> Field {
        self.value = v.into();
        self
    }
    pub(crate) fn help(mut self, h: &'static str) -> Field {
        self.help = h;
        self
    }
    pub(crate) fn required(mut self) -> Field {
        self.required = true;
        self
    }
    fn control_id(&self, form: &str) -> String {
        format!("{form}-{}", self.name)
    }
}

#[derive(Template)]
#[template(path = "console/page.html")]
pub(crate) struct Page {
    pub layout: Layout,
    pub sections: Vec<Section>,
}

impl Page {
    pub(crate) fn new(layout: Layout) -> Page {
        Page { layout, sections: Vec::new() }
    }
    pub(crate) fn push(&mut self, s: Section) -> &mut Page {
        self.sections.push(s);
        self
    }
    pub(crate) fn heading(&mut self, h: impl Into<String>) -> &mut Page {
        self.push(Section::Heading(h.into()))
    }
    /// A refusal of the API (or another failure) where the page's data would be.
    pub(crate) fn error(&mut self, e: String) {
        self.push(Section::Notice { error: true, text: e });
    }

    pub(crate) fn notice(&mut self, result: Result<String, String>) -> &mut Page {
        match result {
            Ok(text) => self.push(Section::Notice { error: false, text }),
            Err(text) => self.push(Section::Notice { error: true, text }),
        }
    }
}

impl IntoResponse for Page {
    fn into_response(self) -> Response {
        match self.render() {
            Ok(html) => page_response(StatusCode::OK, html),
            Err(e) => {
                tracing::error!(error = %e, "a console page could not be rendered");
                (StatusCode::INTERNAL_SERVER_ERROR, "the page could not be rendered").into_response()
            }
        }
    }
}

/// Every console page: not cached, not framed, no script but our own.
pub(crate) fn page_response(status: StatusCode, html: String) -> Response {
    (
        status,
        [
            ("cache-control", "no-store"),
            ("x-frame-options", "DENY"),
            ("content-security-policy", CSP),
            ("referrer-policy", "same-origin"),
        ],
        Html(html),
    )
        .into_response()
}

/// Scripts and styles only from `/console/assets`; the test device's WebSocket to this host.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self' ws: wss:; frame-ancestors 'none'; form-action 'self'; base-uri 'none'";

#[derive(Template)]
#[template(path = "console/error.html")]
struct ErrorPage<'a> {
    message: &'a str,
}

pub(crate) fn error_page(message: &str) -> String {
    ErrorPage { message }.render().unwrap_or_else(|_| "error".into())
}

/// The console's own assets, built into the binary.
const ASSETS: &[(&str, &str, &str)] = &[
    ("console.css", "text/css", include_str!("../../assets/console/console.css")),
    ("console.js", "text/javascript", include_str!("../../assets/console/console.js")),
    ("mqtt.js", "text/javascript", include_str!("../../assets/console/mqtt.js")),
    ("testdevice.js", "text/javascript", include_str!("../../assets/console/testdevice.js")),
];

pub(crate) async fn asset(Path(file): Path<String>) -> Response {
    match ASSETS.iter().find(|(name, _, _)| *name == file) {
        Some((_, kind, body)) => {
            ([("content-type", *kind), ("cache-control", "max-age=300"), ("x-content-type-options", "nosniff")], *body)
                .into_response()
        }
        None => (StatusCode::NOT_FOUND, "no such asset").into_response(),
    }
}
