//! MPS's template actions (`CreateTemplate`, `GetTemplate`, `DeleteTemplate`,
//! `ListTemplatePage`) on `/v1/templates`. Their answers are not the push envelope but
//! `{RequestId, Success, Code, Msg, Data}`, as the SDKs' models read them; a template's `Id`
//! is its name (Herald keys templates by name), and the SDKs' string fields come as strings.

use axum::extract::{Path, State};
use serde_json::{Value, json};

use super::super::{AppState, Json, Refusal, Signed, templates};

pub(super) const ACTIONS: [&str; 4] = ["CreateTemplate", "GetTemplate", "DeleteTemplate", "ListTemplatePage"];

/// Runs one of [`ACTIONS`]: its answer (a refusal of what was asked included), or the
/// refusal of the node or of the app's pace, which the gateway answers.
pub(super) async fn run(state: &AppState, action: &str, signed: Signed) -> Result<Value, Refusal> {
    let params: Value = serde_json::from_slice(&signed.body).unwrap_or_default();
    // A template's Id is its name: either names it.
    let name = || {
        let named = |field: &str| params[field].as_str().filter(|s| !s.is_empty()).map(str::to_owned);
        named("templateName").or_else(|| named("templateId")).unwrap_or_default()
    };
    let answer = match action {
        "CreateTemplate" => {
            templates::create_template(State(state.clone()), signed).await.map(|v1| Value::String(name_of(&v1)))
        }
        "GetTemplate" => {
            templates::get_template(State(state.clone()), Path(name()), signed).await.map(|v1| template(data(&v1)))
        }
        "DeleteTemplate" => {
            templates::delete_template(State(state.clone()), Path(name()), signed).await.map(|_| Value::Null)
        }
        "ListTemplatePage" => {
            let page = |name: &str, default: u64| {
                params[name].as_str().and_then(|s| s.trim().parse::<u64>().ok()).filter(|n| *n >= 1).unwrap_or(default)
            };
            let (current, size) = (page("currentPage", 1), page("pageSize", 10).min(100));
            return match templates::list_templates(State(state.clone()), signed).await {
                Ok(v1) => {
                    let all = data(&v1)["list"].as_array().cloned().unwrap_or_default();
                    let skip = usize::try_from((current - 1).saturating_mul(size)).unwrap_or(usize::MAX);
                    let items: Vec<Value> = all.iter().skip(skip).take(size as usize).map(template).collect();
                    // The page's fields sit beside Data, which is the list.
                    let mut answer = ok(Value::Array(items));
                    answer["CurrentPage"] = json!(current);
                    answer["PageSize"] = json!(size);
                    answer["TotalSize"] = json!(all.len());
                    Ok(answer)
                }
                Err(refusal) => settle(Err(refusal)),
            };
        }
        _ => Err(Refusal::new(herald_core::error::ErrorCode::NotFound, "not a template action")),
    };
    settle(answer)
}

/// The answer of an action's outcome: refusals of what was asked in the body (200).
fn settle(outcome: Result<Value, Refusal>) -> Result<Value, Refusal> {
    match outcome {
        Ok(data) => Ok(ok(data)),
        Err(Refusal(e)) if super::of_the_node(&e) => Err(Refusal(e)),
        Err(refusal) => Ok(refused(refusal)),
    }
}

/// `resultContent.data` of a `/v1` answer.
fn data(Json(v1): &Json) -> &Value {
    &v1["resultContent"]["data"]
}

fn name_of(v1: &Json) -> String {
    data(v1)["templateName"].as_str().unwrap_or_default().to_owned()
}

fn ok(data: Value) -> Value {
    let mut answer =
        json!({"RequestId": herald_core::crypto::random_alnum(20), "Success": true, "Code": "OK", "Msg": "OK"});
    if !data.is_null() {
        answer["Data"] = data;
    }
    answer
}

fn refused(Refusal(e): Refusal) -> Value {
    json!({"RequestId": herald_core::crypto::random_alnum(20), "Success": false, "Code": e.code.as_str(), "Msg": e.message})
}

/// A `/v1` template view as MPS's template data. Times are Unix milliseconds, as text.
fn template(view: &Value) -> Value {
    let text = |v: &Value| match v {
        Value::Null => Value::Null,
        Value::String(s) => Value::String(s.clone()),
        other => Value::String(other.to_string()),
    };
    json!({
        "Id": text(&view["templateName"]),
        "Name": text(&view["templateName"]),
        "Title": text(&view["title"]),
        "Content": text(&view["content"]),
        "Uri": text(&view["uri"]),
        "DescInfo": text(&view["descInfo"]),
        "PushStyle": text(&view["pushStyle"]),
        // MPS's name for the template's silent flag.
        "ShowStyle": text(&view["silent"]),
        "Variables": text(&view["variables"]),
        "GmtCreate": text(&view["createdAt"]),
        "GmtModified": text(&view["updatedAt"]),
    })
}
