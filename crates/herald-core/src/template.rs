//! Templates: `#name#` placeholders in a title, a content and a uri (mps-spec §4), filled
//! per push from `templateKeyValue`. No I/O here: the API stores what this module checks.

use serde::Deserialize;
use serde_json::{Map, Value};
use utoipa::ToSchema;

use crate::error::{ApiError, ErrorCode};
use crate::ids::AppId;
use crate::limits::Limits;
use crate::model::TemplateRecord;
use crate::push::check_text;
use crate::push::fields::{int, string};

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Splits `text` into literal runs and placeholder names, in order. A `#` that does not
/// open `#name#` (name: letters, digits, `_`) is literal.
fn pieces(text: &str) -> Vec<Piece<'_>> {
    let mut out = Vec::new();
    let mut literal_start = 0;
    let mut i = 0;
    while let Some(off) = text[i..].find('#') {
        let open = i + off;
        let rest = &text[open + 1..];
        let name_len = rest.find(|c: char| !is_name_char(c)).unwrap_or(rest.len());
        if name_len > 0 && rest[name_len..].starts_with('#') {
            if literal_start < open {
                out.push(Piece::Literal(&text[literal_start..open]));
            }
            out.push(Piece::Name(&rest[..name_len]));
            i = open + 1 + name_len + 1;
            literal_start = i;
        } else {
            i = open + 1;
        }
    }
    if literal_start < text.len() {
        out.push(Piece::Literal(&text[literal_start..]));
    }
    out
}

enum Piece<'a> {
    Literal(&'a str),
    Name(&'a str),
}

/// The placeholder names of `texts`, in order of first appearance.
pub fn variables<'a>(texts: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for text in texts {
        for p in pieces(text) {
            if let Piece::Name(n) = p
                && !names.iter().any(|m| m == n)
            {
                names.push(n.to_string());
            }
        }
    }
    names
}

/// `text` with every placeholder replaced by its value in `kv`; the first missing name is
/// `TEMPLATEKV_NOT_ENOUGH`.
pub fn render(text: &str, kv: &Map<String, Value>) -> Result<String, ApiError> {
    let mut out = String::with_capacity(text.len());
    for p in pieces(text) {
        match p {
            Piece::Literal(s) => out.push_str(s),
            Piece::Name(n) => match kv.get(n) {
                Some(Value::String(v)) => out.push_str(v),
                Some(v @ (Value::Number(_) | Value::Bool(_))) => out.push_str(&v.to_string()),
                _ => {
                    return Err(ApiError::new(
                        ErrorCode::TemplatekvNotEnough,
                        format!("templateKeyValue has no string value for #{n}#"),
                    ));
                }
            },
        }
    }
    Ok(out)
}

/// A template's text filled for one push.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filled {
    pub title: String,
    pub content: String,
    pub uri: Option<String>,
}

pub fn fill(t: &TemplateRecord, kv: &Map<String, Value>) -> Result<Filled, ApiError> {
    Ok(Filled {
        title: render(&t.title, kv)?,
        content: render(&t.content, kv)?,
        uri: t.uri.as_deref().map(|u| render(u, kv)).transpose()?,
    })
}

/// A valid template name: 1 to `max` letters, digits and `_`.
pub fn valid_name(name: &str, max: usize) -> bool {
    !name.is_empty() && name.chars().count() <= max && name.chars().all(is_name_char)
}

fn invalid(code: ErrorCode, msg: impl Into<String>) -> ApiError {
    ApiError::new(code, msg)
}

/// The body of `POST /v1/templates` and `PUT /v1/templates/{name}`. Fields are kept as
/// sent and checked by [`parse`], so that a wrong type is refused with the MPS code.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TemplateBody {
    /// 1-64 letters, digits or `_` (`TEMPLATE_NAME_INVALID`); on `PUT` the path's name, and
    /// if given here it must be the same.
    #[schema(value_type = Option<String>)]
    pub template_name: Option<Value>,
    /// At most 200 characters, `#name#` placeholders allowed.
    #[schema(value_type = String, required = true)]
    pub title: Option<Value>,
    /// At most 4096 bytes, `#name#` placeholders allowed.
    #[schema(value_type = String, required = true)]
    pub content: Option<Value>,
    /// Click target, `#name#` placeholders allowed; at most `limits.max_uri_chars` (2048)
    /// characters.
    #[schema(value_type = Option<String>)]
    pub uri: Option<Value>,
    /// A description, at most 200 characters.
    #[schema(value_type = Option<String>)]
    pub desc_info: Option<Value>,
    /// 1: pushes of this template are silent (MPS also names it `showStyle`).
    #[schema(value_type = Option<crate::push::request::IntegerOrString>)]
    pub silent: Option<Value>,
    /// MPS's name of `silent`.
    #[schema(value_type = Option<crate::push::request::IntegerOrString>)]
    pub show_style: Option<Value>,
    /// 0 default, 1 big text, 2 image.
    #[schema(value_type = Option<crate::push::request::IntegerOrString>)]
    pub push_style: Option<Value>,
}

/// Validates a template body (`POST /v1/templates`, or `PUT` with the name from the path).
pub fn parse(
    b: &TemplateBody,
    name_from_path: Option<&str>,
    app_id: AppId,
    now: i64,
    limits: &Limits,
) -> Result<TemplateRecord, ApiError> {
    let name = match (name_from_path, string(b.template_name.as_ref(), "templateName")?) {
        (Some(p), Some(b)) if p != b => {
            return Err(invalid(ErrorCode::InvalidParam, "templateName in the body differs from the path"));
        }
        (Some(p), _) => p.to_string(),
        (None, Some(b)) => b,
        (None, None) => return Err(invalid(ErrorCode::TemplateNameInvalid, "templateName is required")),
    };
    if !valid_name(&name, limits.max_template_name_chars) {
        return Err(invalid(
            ErrorCode::TemplateNameInvalid,
            format!("templateName must be 1 to {} letters, digits or _", limits.max_template_name_chars),
        ));
    }
    let title = string(b.title.as_ref(), "title")?.unwrap_or_default();
    let content = string(b.content.as_ref(), "content")?.unwrap_or_default();
    check_text(&title, &content, limits, ErrorCode::TemplateTitleInvalid, ErrorCode::TemplateContentInvalid)?;
    let desc_info = string(b.desc_info.as_ref(), "descInfo")?;
    if desc_info.as_ref().is_some_and(|d| d.chars().count() > limits.max_title_chars) {
        return Err(invalid(
            ErrorCode::InvalidParam,
            format!("descInfo is longer than {} characters", limits.max_title_chars),
        ));
    }
    // MPS calls the silent flag of a template showStyle.
    let silent = match int(b.silent.as_ref(), "silent")? {
        Some(s) => s,
        None => int(b.show_style.as_ref(), "showStyle")?.unwrap_or(0),
    };
    if !matches!(silent, 0 | 1) {
        return Err(invalid(ErrorCode::InvalidParam, "silent must be 0 or 1"));
    }
    let push_style = int(b.push_style.as_ref(), "pushStyle")?.unwrap_or(0);
    if !(0..=2).contains(&push_style) {
        return Err(invalid(ErrorCode::InvalidParam, "pushStyle must be 0, 1 or 2"));
    }
    let uri = string(b.uri.as_ref(), "uri")?.filter(|u| !u.is_empty());
    limits.check_uri(uri.as_deref())?;
    Ok(TemplateRecord {
        app_id,
        name,
        title,
        content,
        uri,
        desc_info,
        push_style,
        silent,
        created_at: now,
        updated_at: now,
    })
}

/// The API's view of a template.
pub fn view(t: &TemplateRecord) -> Value {
    let vars = variables([t.title.as_str(), t.content.as_str(), t.uri.as_deref().unwrap_or("")]);
    serde_json::json!({
        "templateName": t.name,
        "title": t.title,
        "content": t.content,
        "uri": t.uri,
        "descInfo": t.desc_info,
        "pushStyle": t.push_style,
        "silent": t.silent,
        "variables": vars.join(","),
        "createdAt": t.created_at,
        "updatedAt": t.updated_at,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn body(v: Value) -> TemplateBody {
        serde_json::from_value(v).unwrap()
    }

    fn kv(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn placeholders_are_found_and_filled() {
        assert_eq!(variables(["Congrats #name# won #money#", "#money# #x_1#"]), vec!["name", "money", "x_1"]);
        let out = render("Congrats #name# won #money#!", &kv(json!({"name": "Zhang", "money": 200}))).unwrap();
        assert_eq!(out, "Congrats Zhang won 200!");
    }

    #[test]
    fn a_lone_hash_is_literal() {
        assert_eq!(variables(["#1 pick ## and # #a b#", "50#", "#"]), Vec::<String>::new());
        assert_eq!(render("#1 item, # sign, #a#b#", &kv(json!({"a": "A"}))).unwrap(), "#1 item, # sign, Ab#");
        assert_eq!(render("é#n#ü", &kv(json!({"n": "ñ"}))).unwrap(), "éñü");
    }

    #[test]
    fn a_missing_or_structured_value_is_not_enough() {
        let e = render("#a# #b#", &kv(json!({"a": "1"}))).unwrap_err();
        assert_eq!(e.code, ErrorCode::TemplatekvNotEnough);
        assert!(e.message.contains("#b#"));
        assert_eq!(render("#a#", &kv(json!({"a": {"x": 1}}))).unwrap_err().code, ErrorCode::TemplatekvNotEnough);
    }

    #[test]
    fn template_bodies_are_checked() {
        let limits = Limits::default();
        let p = |v: Value| parse(&body(v), None, AppId::new("a"), 1, &limits).map_err(|e| e.code);
        let ok = json!({"templateName": "win_1", "title": "t #a#", "content": "c", "showStyle": 1});
        let t = p(ok).unwrap();
        assert_eq!((t.silent, t.push_style), (1, 0));
        assert_eq!(
            p(json!({"templateName": "a,b", "title": "t", "content": "c"})),
            Err(ErrorCode::TemplateNameInvalid)
        );
        assert_eq!(
            p(json!({"templateName": "x".repeat(201), "title": "t", "content": "c"})),
            Err(ErrorCode::TemplateNameInvalid)
        );
        assert_eq!(p(json!({"templateName": "a", "title": "", "content": "c"})), Err(ErrorCode::PayloadNotEnough));
        assert_eq!(
            p(json!({"templateName": "a", "title": "x".repeat(201), "content": "c"})),
            Err(ErrorCode::TemplateTitleInvalid)
        );
        let named =
            parse(&body(json!({"title": "t", "content": "c"})), Some("n"), AppId::new("a"), 1, &limits).unwrap();
        assert_eq!(p(json!({"templateName": "a", "title": 1, "content": "c"})), Err(ErrorCode::InvalidParam));
        assert_eq!(named.name, "n");
    }
}
