//! `/v1/templates`: the app's templates (`#name#` placeholders in a title, a content and a
//! uri), which Template, Multiple and Broadcast pushes fill.
//!
//! A template's view (`data` of the answers) is `{templateName, title, content, uri,
//! descInfo, pushStyle, silent, variables, createdAt, updatedAt}`, `variables` the
//! placeholder names joined by commas.

use axum::extract::{Path, State};
use serde_json::{Value, json};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use herald_core::error::ErrorCode;
use herald_core::ids::AppId;
use herald_core::model::TemplateRecord;
use herald_core::template::{self, TemplateBody};
use herald_store::TemplateCreated;

use super::envelope::{QueryAnswer, Refusals, ok_content};
use super::{AppState, Json, Refusal, Signed};

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list_templates, create_template)).routes(routes!(
        get_template,
        update_template,
        delete_template
    ))
}

async fn existing_template(state: &AppState, app_id: &AppId, name: &str) -> Result<TemplateRecord, Refusal> {
    state
        .store
        .template(app_id, name)
        .await?
        .ok_or_else(|| Refusal::new(ErrorCode::TemplateNotExist, format!("no template {name} in this app")))
}

/// Create a template; `data` is its view.
#[utoipa::path(post, path = "/templates", tag = "templates", request_body = TemplateBody,
    responses((status = 200, description = "Created", body = QueryAnswer), Refusals),
    security(("signature" = [])))]
pub(super) async fn create_template(State(state): State<AppState>, req: Signed) -> Result<Json, Refusal> {
    let body: TemplateBody = template_body(&req.body)?;
    let t = template::parse(&body, None, req.app_id, herald_core::now_ms(), &state.cfg.limits)?;
    match state.store.create_template(t.clone(), state.cfg.limits.max_templates_per_app).await? {
        TemplateCreated::Created => Ok(ok_content(template::view(&t))),
        TemplateCreated::Exists => {
            Err(Refusal::new(ErrorCode::TemplateExists, format!("the app has a template {} already", t.name)))
        }
        TemplateCreated::TooMany => Err(Refusal::new(
            ErrorCode::TemplateLimitExceeded,
            format!("the app has {} templates, the most allowed", state.cfg.limits.max_templates_per_app),
        )),
    }
}

/// A template body: what is no JSON object is `INVALID_JSON`.
fn template_body(body: &[u8]) -> Result<TemplateBody, Refusal> {
    Ok(herald_core::error::parse_object(body)?)
}

/// The app's templates: `data` is `{totalCount, list}`.
#[utoipa::path(get, path = "/templates", tag = "templates",
    responses((status = 200, description = "Every template of the app", body = QueryAnswer), Refusals),
    security(("signature" = [])))]
pub(super) async fn list_templates(State(state): State<AppState>, req: Signed) -> Result<Json, Refusal> {
    let list: Vec<Value> = state.store.templates(&req.app_id).await?.iter().map(template::view).collect();
    Ok(ok_content(json!({"totalCount": list.len(), "list": list})))
}

/// One template: `data` is its view.
#[utoipa::path(get, path = "/templates/{templateName}", tag = "templates",
    params(("templateName" = String, Path, description = "The template")),
    responses((status = 200, description = "The template", body = QueryAnswer), Refusals),
    security(("signature" = [])))]
pub(super) async fn get_template(
    State(state): State<AppState>,
    Path(name): Path<String>,
    req: Signed,
) -> Result<Json, Refusal> {
    Ok(ok_content(template::view(&existing_template(&state, &req.app_id, &name).await?)))
}

/// Replace a template (its name stays; a `templateName` in the body must be the same).
#[utoipa::path(put, path = "/templates/{templateName}", tag = "templates", request_body = TemplateBody,
    params(("templateName" = String, Path, description = "The template")),
    responses((status = 200, description = "Replaced", body = QueryAnswer), Refusals),
    security(("signature" = [])))]
async fn update_template(
    State(state): State<AppState>,
    Path(name): Path<String>,
    req: Signed,
) -> Result<Json, Refusal> {
    let body: TemplateBody = template_body(&req.body)?;
    let existing = existing_template(&state, &req.app_id, &name).await?;
    let mut t = template::parse(&body, Some(&name), req.app_id, herald_core::now_ms(), &state.cfg.limits)?;
    t.created_at = existing.created_at;
    if !state.store.update_template(t.clone()).await? {
        return Err(Refusal::new(ErrorCode::TemplateNotExist, format!("no template {name} in this app")));
    }
    Ok(ok_content(template::view(&t)))
}

/// Delete a template that no waiting scheduled push uses: `data` is `{templateName, deleted}`.
#[utoipa::path(delete, path = "/templates/{templateName}", tag = "templates",
    params(("templateName" = String, Path, description = "The template")),
    responses((status = 200, description = "Deleted", body = QueryAnswer), Refusals),
    security(("signature" = [])))]
pub(super) async fn delete_template(
    State(state): State<AppState>,
    Path(name): Path<String>,
    req: Signed,
) -> Result<Json, Refusal> {
    if state.store.template_in_use(&req.app_id, &name).await? {
        return Err(Refusal::new(
            ErrorCode::TemplateInUse,
            format!("a waiting scheduled push uses template {name}: cancel it first"),
        ));
    }
    if !state.store.delete_template(&req.app_id, &name).await? {
        return Err(Refusal::new(ErrorCode::TemplateNotExist, format!("no template {name} in this app")));
    }
    Ok(ok_content(json!({"templateName": name, "deleted": true})))
}
