//! The web console at `/console`: server-rendered pages (askama) for the operator, signed in
//! with the admin token.
//!
//! The console holds no logic of its own over apps, pushes or devices: every page reads, and
//! every form acts, through the HTTP API. It builds the request an app's backend (or the
//! CLI) would send and hands it to the same router in process, marked with [`ConsoleCall`]
//! where the API expects a signature or the admin token (an extension no network client can
//! set). So every check, limit and error code of the API applies to the console as well, and
//! the request a page shows as `curl` is the one it sent.
//!
//! - [`session`]: sign-in, the session cookie, CSRF tokens, sign-out;
//! - [`form`]: the body of a form, with its CSRF token checked;
//! - [`view`]: what the pages share (layout, tables, the API's answers);
//! - one module per page group: [`apps`], [`templates`], [`push`], [`tasks`], [`devices`],
//!   [`analytics`] (SVG charts drawn here), [`channels`], [`node`], [`testdevice`].

mod analytics;
mod apps;
mod channels;
mod devices;
mod form;
mod node;
mod push;
mod session;
mod tasks;
mod templates;
mod testdevice;
mod view;

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use herald_core::ids::AppId;
use herald_core::untrusted::Untrusted;
use serde_json::Value;

use crate::api::AppState;

pub(crate) use session::Operator;
pub(crate) use view::Answer;

/// Marks a request the console sends to the API in process: it stands for the admin token
/// and, with `app_id`, for a valid signature of that app.
#[derive(Clone)]
pub(crate) struct ConsoleCall {
    pub app_id: Option<AppId>,
}

#[derive(Clone)]
pub struct Console(Arc<Inner>);

pub struct Inner {
    state: AppState,
    /// The API router the console's requests go through.
    api: Router,
    signin_limit: session::SigninLimit,
}

impl std::ops::Deref for Console {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

/// The `/console` routes (none when the console is switched off).
pub fn router(state: AppState, api: Router) -> Router {
    if !state.cfg.console.enabled {
        return Router::new();
    }
    let console = Console(Arc::new(Inner { state, api, signin_limit: Default::default() }));
    Router::new()
        .route("/console", get(|| async { Redirect::to("/console/apps") }))
        .route("/console/signin", get(session::signin_page).post(session::signin))
        .route("/console/signout", post(session::signout))
        .route("/console/assets/{file}", get(view::asset))
        .route("/console/node", get(node::page))
        .route("/console/apps", get(apps::list).post(apps::create))
        .route("/console/apps/{app}", get(apps::show).post(apps::update))
        .route("/console/apps/{app}/keys", post(apps::create_key))
        .route("/console/apps/{app}/keys/{key}/revoke", post(apps::revoke_key))
        .route("/console/apps/{app}/templates", get(templates::list).post(templates::create))
        .route("/console/apps/{app}/template-preview", post(templates::preview))
        .route("/console/apps/{app}/templates/{name}", get(templates::edit).post(templates::update))
        .route("/console/apps/{app}/templates/{name}/delete", post(templates::delete))
        .route("/console/apps/{app}/push", get(push::page).post(push::send))
        .route("/console/apps/{app}/tasks", get(tasks::list))
        .route("/console/apps/{app}/tasks/{task}", get(tasks::show))
        .route("/console/apps/{app}/tasks/{task}/revoke", post(tasks::revoke))
        .route("/console/apps/{app}/schedules/{id}/cancel", post(tasks::cancel_schedule))
        .route("/console/apps/{app}/devices", get(devices::page))
        .route("/console/apps/{app}/devices/{device}", get(devices::show))
        .route("/console/apps/{app}/analytics", get(analytics::page))
        .route("/console/apps/{app}/channels", get(channels::page))
        .route("/console/apps/{app}/channels/{kind}", post(channels::put))
        .route("/console/apps/{app}/receipts", get(channels::receipts).post(channels::put_receipts))
        .route("/console/apps/{app}/receipts/replay", post(channels::replay))
        .route("/console/apps/{app}/test-device", get(testdevice::page).post(testdevice::register))
        .with_state(console)
}

impl Console {
    /// Sends a request to the API in process, as the admin (`app` None) or as the app, and
    /// reads its answer. Every call but a read is logged with who and what.
    pub(crate) async fn call(
        &self,
        op: &Operator,
        method: Method,
        path: &str,
        app: Option<&AppId>,
        body: Option<&Value>,
    ) -> Answer {
        let bytes = body.map(|b| b.to_string()).unwrap_or_default();
        let request = Request::builder()
            .method(method.clone())
            .uri(path)
            .header("content-type", "application/json")
            .extension(ConsoleCall { app_id: app.cloned() })
            .body(Body::from(bytes));
        let answer = match request {
            Ok(request) => match tower_service::Service::call(&mut self.api.clone(), request).await {
                Ok(response) => Answer::read(response).await,
                Err(never) => match never {},
            },
            // Path segments are percent-encoded (view::seg), so this is a bug, not input.
            Err(e) => Answer::refused(StatusCode::BAD_REQUEST, "INVALID_PARAM", &format!("not a valid request: {e}")),
        };
        if method != Method::GET {
            tracing::info!(
                target: "herald::console",
                who = %Untrusted(&op.who),
                session = %op.short_id,
                action = %format_args!("{method} {path}"),
                status = answer.status.as_u16(),
                code = answer.code(),
                "console action"
            );
        }
        answer
    }

    pub(crate) fn state(&self) -> &AppState {
        &self.state
    }
}

/// A page that could not be shown (a refusal of the API, an unknown app), as HTML.
pub(crate) fn failure(status: StatusCode, message: &str) -> Response {
    (status, axum::response::Html(view::error_page(message))).into_response()
}
