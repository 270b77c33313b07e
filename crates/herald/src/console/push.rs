//! Quick push: Simple (devices or users), Template, Broadcast (platform and audience), now,
//! at a fixed time or recurring in a time zone. The form becomes the API request an app's
//! server would send; the page shows it as `curl` with `herald sign`, and sends it.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use super::form::{Action, Fields};
use super::view::{Cell, Field, Form, Kind, Section};
use super::{Console, Operator};

pub(crate) async fn page(State(console): State<Console>, op: Operator, Path(app): Path<String>) -> Response {
    let (app_id, mut page) = match console.app_page(&op, &app, "Quick push", "push", None).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    page.push(Section::Form(form(app_id.as_str(), None)));
    page.into_response()
}

/// The quick-push form, filled with what was sent (`f`) so that a refused push loses nothing.
fn form(app: &str, f: Option<&Fields>) -> Form {
    let v = |name: &str, default: &str| f.map(|f| f.get(name).to_string()).unwrap_or_else(|| default.to_string());
    Form {
        id: "push",
        legend: "Push".into(),
        action: format!("/console/apps/{app}/push"),
        get: false,
        fields: vec![
            Field::new(
                "kind",
                "Kind",
                Kind::Select(vec![("simple", "Simple"), ("template", "Template"), ("broadcast", "Broadcast")]),
            )
            .value(v("kind", "simple")),
            Field::new("targetType", "Targets are", Kind::Select(vec![("device", "device ids"), ("user", "user ids")]))
                .value(v("targetType", "device")),
            Field::new("targets", "Targets (Simple, Template)", Kind::Textarea)
                .value(v("targets", ""))
                .help("one per line; TARGET=MSGKEY sets the message key"),
            Field::new("title", "Title (Simple)", Kind::Text).value(v("title", "")),
            Field::new("content", "Content (Simple)", Kind::Textarea).value(v("content", "")),
            Field::new("uri", "Click target (Simple)", Kind::Text).value(v("uri", "")),
            Field::new("templateName", "Template (Template, Broadcast)", Kind::Text).value(v("templateName", "")),
            Field::new("values", "Template values", Kind::Textarea)
                .value(v("values", ""))
                .help("name=value, one per line"),
            Field::new(
                "platform",
                "Broadcast platform",
                Kind::Select(vec![("1", "Android"), ("2", "iOS"), ("7", "HarmonyOS")]),
            )
            .value(v("platform", "1")),
            Field::new(
                "audience",
                "Broadcast audience",
                Kind::Select(vec![
                    ("0", "devices with a bound user"),
                    ("1", "all devices"),
                    ("2", "devices without a user"),
                ]),
            )
            .value(v("audience", "0")),
            Field::new("msgkey", "Broadcast key", Kind::Text).value(v("msgkey", "")).help("empty: one is made"),
            Field::new("expiredSeconds", "Validity (seconds)", Kind::Number).value(v("expiredSeconds", "3600")),
            Field::new("extendedParams", "Extended parameters", Kind::Textarea)
                .value(v("extendedParams", ""))
                .help("name=value, one per line; delivered with the message"),
            Field::new("taskName", "Task name", Kind::Text).value(v("taskName", "")),
            Field::new("when", "When", Kind::Select(vec![("0", "now"), ("1", "at a fixed time"), ("2", "recurring")]))
                .value(v("when", "0")),
            Field::new("timeZone", "Time zone", Kind::Text)
                .value(v("timeZone", "UTC"))
                .help("IANA name, e.g. Europe/Berlin"),
            Field::new("fixedTime", "Fixed time", Kind::DateTime).value(v("fixedTime", "")),
            Field::new(
                "circleType",
                "Repeat",
                Kind::Select(vec![("1", "every day"), ("2", "on weekdays"), ("3", "on days of the month")]),
            )
            .value(v("circleType", "1")),
            Field::new("circleValue", "Weekdays (1 Monday … 7 Sunday) or days of the month", Kind::Text)
                .value(v("circleValue", ""))
                .help("comma-separated"),
            Field::new("time", "Time of day (HH:mm:ss)", Kind::Text).value(v("time", "")),
            Field::new("startTime", "From", Kind::DateTime).value(v("startTime", "")),
            Field::new("endTime", "Until", Kind::DateTime).value(v("endTime", "")),
        ],
        submit: "Send push",
    }
}

/// `name=value` lines as a JSON object of strings.
pub(crate) fn pairs(text: &str) -> Map<String, Value> {
    text.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), json!(v.trim())))
        .filter(|(k, _)| !k.is_empty())
        .collect()
}

/// A `datetime-local` value in `zone` as Unix milliseconds.
fn local_ms(value: &str, zone: &str, field: &str) -> Result<i64, String> {
    let tz = jiff::tz::TimeZone::get(zone).map_err(|_| format!("{zone} is not a known time zone"))?;
    let civil: jiff::civil::DateTime = value.parse().map_err(|_| format!("{field} is not a date and time"))?;
    let zoned = civil.to_zoned(tz).map_err(|_| format!("{field} does not exist in {zone}"))?;
    Ok(zoned.timestamp().as_millisecond())
}

/// The API path and body of the form.
fn request(f: &Fields) -> Result<(&'static str, Value), String> {
    let mut body = Map::new();
    let kind = f.get("kind");
    let path = match kind {
        "simple" | "template" => {
            let default_key = format!("console-{}", herald_core::now_ms());
            let targets: Map<String, Value> = f
                .get("targets")
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(|l| match l.split_once('=') {
                    Some((t, k)) => (t.trim().to_string(), json!(k.trim())),
                    None => (l.to_string(), json!(default_key)),
                })
                .collect();
            body.insert("deliveryType".into(), json!(if f.get("targetType") == "user" { "user" } else { "device" }));
            body.insert("targetMsgkey".into(), Value::Object(targets));
            if kind == "simple" {
                for name in ["title", "content", "uri"] {
                    if let Some(v) = f.opt(name) {
                        body.insert(name.into(), json!(v));
                    }
                }
                "/v1/push/simple"
            } else {
                body.insert("templateName".into(), json!(f.get("templateName").trim()));
                body.insert("templateKeyValue".into(), Value::Object(pairs(f.get("values"))));
                "/v1/push/template"
            }
        }
        "broadcast" => {
            body.insert("deliveryType".into(), json!(f.get("platform").parse::<i64>().unwrap_or(1)));
            body.insert("templateName".into(), json!(f.get("templateName").trim()));
            body.insert("templateKeyValue".into(), Value::Object(pairs(f.get("values"))));
            let key =
                f.opt("msgkey").map(str::to_string).unwrap_or_else(|| format!("console-{}", herald_core::now_ms()));
            body.insert("msgkey".into(), json!(key));
            body.insert("pushStatus".into(), json!(f.get("audience").parse::<i64>().unwrap_or(0)));
            "/v1/push/broadcast"
        }
        _ => return Err("choose a kind of push".into()),
    };
    match f.get("expiredSeconds").trim().parse::<i64>() {
        Ok(s) => body.insert("expiredSeconds".into(), json!(s)),
        Err(_) => return Err("the validity must be a number of seconds".into()),
    };
    let params = pairs(f.get("extendedParams"));
    if !params.is_empty() {
        body.insert("extendedParams".into(), Value::Object(params));
    }
    if let Some(name) = f.opt("taskName") {
        body.insert("taskName".into(), json!(name));
    }
    let zone = f.opt("timeZone").unwrap_or("UTC");
    match f.get("when") {
        "1" => {
            let at = local_ms(f.get("fixedTime"), zone, "the fixed time")?;
            body.insert("strategyType".into(), json!(1));
            body.insert("strategyContent".into(), json!(json!({"fixedTime": at}).to_string()));
            body.insert("timeZone".into(), json!(zone));
        }
        "2" => {
            let days: Vec<i64> = f.get("circleValue").split(',').filter_map(|d| d.trim().parse().ok()).collect();
            let content = json!({
                "startTime": local_ms(f.get("startTime"), zone, "the start")?,
                "endTime": local_ms(f.get("endTime"), zone, "the end")?,
                "time": f.get("time").trim(),
                "circleType": f.get("circleType").parse::<i64>().unwrap_or(1),
                "circleValue": days,
            });
            body.insert("strategyType".into(), json!(2));
            body.insert("strategyContent".into(), json!(content.to_string()));
            body.insert("timeZone".into(), json!(zone));
        }
        _ => {}
    }
    Ok((path, Value::Object(body)))
}

/// The request as a shell user sends it: the body in a file (`herald sign` and curl both
/// take the file as it is, final newline included), signed by `herald sign`.
fn curl(headers: &HeaderMap, path: &str, body: &Value) -> String {
    let host = headers.get("host").and_then(|h| h.to_str().ok()).unwrap_or("127.0.0.1:8080");
    format!(
        "cat > body.json <<'EOF'\n{body}\nEOF\n\
         curl -X POST 'http://{host}{path}' -H 'content-type: application/json' \\\n  \
         $(herald sign --key-id \"$HERALD_KEY_ID\" --secret \"$HERALD_API_SECRET\" {path} --body body.json) \\\n  \
         --data-binary @body.json"
    )
}

pub(crate) async fn send(
    State(console): State<Console>,
    Path(app): Path<String>,
    headers: HeaderMap,
    Action { op, fields }: Action,
) -> Response {
    let (app_id, mut page) = match console.app_page(&op, &app, "Quick push", "push", None).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    match request(&fields) {
        Err(e) => page.error(e),
        Ok((path, body)) => {
            let answer = console.call(&op, Method::POST, path, Some(&app_id), Some(&body)).await;
            if answer.ok() {
                let id = answer.data().as_str().unwrap_or("").to_string();
                // A scheduled push answers its schedule's uniqueId; its tasks come when it fires.
                let (notice, fact) = match body.get("strategyType").is_some() {
                    false => (format!("Accepted: task {id}."), ("Task", format!("tasks/{}", super::view::seg(&id)))),
                    true => (format!("Accepted: schedule {id}."), ("Schedule", "tasks".to_string())),
                };
                page.notice(Ok(notice));
                let href = format!("/console/apps/{app_id}/{}", fact.1);
                page.push(Section::Facts(vec![(fact.0.into(), Cell::Link { href, text: id })]));
            } else {
                page.notice(Err(answer.error()));
            }
            page.push(Section::Code { label: "The same request with curl".into(), text: curl(&headers, path, &body) });
        }
    }
    page.push(Section::Form(form(app_id.as_str(), Some(&fields))));
    page.into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fixed_time_is_read_in_its_zone() {
        assert_eq!(local_ms("2026-01-01T00:00", "UTC", "t"), Ok(1_767_225_600_000));
        assert_eq!(local_ms("2026-01-01T01:00", "Europe/Berlin", "t"), Ok(1_767_225_600_000));
        assert!(local_ms("2026-01-01T00:00", "Mars/Base", "t").unwrap_err().contains("time zone"));
        assert!(local_ms("tomorrow", "UTC", "the fixed time").unwrap_err().contains("the fixed time"));
    }

    #[test]
    fn pairs_are_read_line_by_line() {
        let p = pairs("name = Ada\nbad line\n=x\ncity=Paris=FR");
        assert_eq!(Value::Object(p), json!({"name": "Ada", "city": "Paris=FR"}));
    }
}
