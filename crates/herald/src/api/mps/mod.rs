//! The MPS-compatible endpoint (`POST /`): Alibaba Cloud's RPC-style requests, as the
//! official mPaaS server SDKs send them, on the same engine as `/v1`. A request names its
//! action in `x-acs-action`, carries its parameters form-encoded in PascalCase, and is signed
//! with `ACS3-HMAC-SHA256` ([`acs3`]) by a Herald API key (the SDK's AccessKey pair is the
//! key's id and secret). The answer is `/v1`'s in PascalCase (`{RequestId, ResultCode,
//! ResultMessage, PushResult: {Success, ResultMsg, Data}}`); a refusal of the request itself
//! (signature, date, nonce, key, app, action) is an HTTP error with `{RequestId, Code,
//! Message}`, which the SDKs raise as exceptions. docs/mps-compat.md lists the actions.

mod analysis;
mod devices;
mod legacy;
mod schedules;
mod templates;

use std::borrow::Cow;

use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use herald_core::acs3;
use herald_core::error::ErrorCode;
use herald_core::untrusted::Untrusted;

use super::{AppState, Refusal, Signed, push};

/// Parameters every action carries that name the caller, not the push.
const COMMON: [&str; 3] = ["AppId", "WorkspaceId", "TenantId"];

/// `POST /`: one MPS action.
pub(super) async fn rpc(State(state): State<AppState>, request: axum::extract::Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = match state.limited_body(&parts, body).await {
        Ok(body) => body,
        Err(refusal) => return Denied::from_refusal(refusal).into_response(),
    };
    let (method, uri, headers) = (&parts.method, &parts.uri, &parts.headers);
    let now = herald_core::now_ms();
    let mut params = form(&body);
    let acs3 = headers.get("authorization").and_then(|v| v.to_str().ok()).is_some_and(|v| v.starts_with("ACS3-"));
    let query = uri.query().unwrap_or_default();
    let (app_id, action) = if !acs3 && query.split('&').any(|p| p.starts_with("Signature=")) {
        // The older SDKs: the version 1 signature over the query's and the body's parameters.
        let mut all = form(query.as_bytes());
        all.append(&mut params);
        let app_id = match verify_legacy(&state, method, uri, &all, now).await {
            Ok(app_id) => app_id,
            Err(e) => return e.into_response(),
        };
        let action = all.iter().find(|(k, _)| k == "Action").map(|(_, v)| v.to_string()).unwrap_or_default();
        params = all.into_iter().filter(|(k, _)| !legacy::COMMON.contains(&k.as_ref())).collect();
        (app_id, action)
    } else {
        let app_id = match verify(&state, method, uri, headers, &body, now).await {
            Ok(app_id) => app_id,
            Err(e) => return e.into_response(),
        };
        (app_id, headers.get("x-acs-action").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned())
    };
    let action = action.as_str();
    let param = |name: &str| params.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_ref());
    // The key speaks for its app only, and the app for its workspace when it has one.
    if param("AppId") != Some(app_id.as_str()) {
        return Denied::new(StatusCode::FORBIDDEN, "Forbidden.AppId", "AppId is not the app of this AccessKey")
            .into_response();
    }
    match state.verifier.workspace(&app_id).await {
        Ok(Some(w)) if param("WorkspaceId") != Some(&*w) => {
            return Denied::new(
                StatusCode::FORBIDDEN,
                "Forbidden.WorkspaceId",
                "WorkspaceId is not the app's workspace",
            )
            .into_response();
        }
        Ok(_) => {}
        Err(e) => return Denied::from_refusal(e).into_response(),
    }
    if let Err(e) = state.dispatcher.flow().request(&app_id) {
        return Denied::from_refusal(e.into()).into_response();
    }
    if action == "PushBroadcast" && by_time_range(&param) {
        return Answer::refused(
            ErrorCode::InvalidParam,
            "a broadcast selects devices by BindPeriod / UnBindPeriod; TimeMode 1 (a time range) is not offered",
        )
        .into_response();
    }
    let unused: Vec<&str> = unused_by_herald(action).filter(|n| param(n).is_some_and(|v| !v.is_empty())).collect();
    let signed = Signed { app_id, body: v1_body(&params).into() };
    let state_of = || State(state.clone());
    // Each action's MPS answer (its refusals of what was asked included), or a refusal of
    // the node or of the app's pace.
    let answer = match action {
        _ if devices::ACTIONS.contains(&action) => devices::run(&state, action, signed).await.map(Answer::Mps),
        _ if templates::ACTIONS.contains(&action) => templates::run(&state, action, signed).await.map(Answer::Mps),
        _ if schedules::ACTIONS.contains(&action) => from_v1(schedules::run(&state, action, signed).await),
        _ if analysis::ACTIONS.contains(&action) => from_v1(analysis::run(&state, action, signed).await),
        "PushSimple" => from_v1(push::push_simple(state_of(), signed).await),
        "PushTemplate" => from_v1(push::push_template(state_of(), signed).await),
        "PushMultiple" => from_v1(push::push_multiple(state_of(), signed).await),
        "PushBroadcast" => from_v1(push::push_broadcast(state_of(), signed).await),
        "RevokePushMessage" => from_v1(push::revoke_message(state_of(), signed).await),
        "RevokePushTask" => from_v1(push::revoke_task(state_of(), signed).await),
        _ => {
            tracing::info!(action = %Untrusted(action), "MPS action not offered");
            return Denied::new(
                StatusCode::NOT_FOUND,
                "InvalidAction.NotFound",
                "this action is not offered by Herald (docs/mps-compat.md lists the actions)",
            )
            .into_response();
        }
    };
    match answer {
        Ok(Answer::V1(mut v1)) if !unused.is_empty() && v1["resultCode"] == "OK" => {
            v1["resultMessage"] = format!("OK; accepted and not used by Herald: {}", unused.join(", ")).into();
            Answer::V1(v1).into_response()
        }
        Ok(answer) => answer.into_response(),
        Err(refusal) => Denied::from_refusal(refusal).into_response(),
    }
}

/// The parameters of MPS's push actions that Herald accepts and does not use (yet): SMS
/// fallback, Live Activities, vendor-channel options and templates; each with the actions
/// whose MPS model has it (`S`imple, `T`emplate, `M`ultiple, `B`roadcast). A request that
/// gives one of its action's is answered with their names in `ResultMessage`; others are
/// ignored as `/v1` ignores an unknown field.
const UNUSED_BY_HERALD: [(&str, &str); 18] = [
    ("ActivityContentState", "STM"),
    ("ActivityEvent", "STM"),
    ("AndroidChannel", "B"),
    ("ChannelId", "STMB"),
    ("Classification", "STMB"),
    ("DismissalDate", "STM"),
    ("IconUrls", "S"),
    ("ImageUrls", "S"),
    ("MiChannelId", "STMB"),
    ("NotifyLevel", "STMB"),
    ("SmsSignName", "ST"),
    ("SmsStrategy", "ST"),
    ("SmsTemplateCode", "ST"),
    ("SmsTemplateParam", "ST"),
    ("ThirdChannelCategory", "STMB"),
    ("TransparentMessagePayload", "STMB"),
    ("TransparentMessageUrgency", "STMB"),
    ("VendorTemplate", "STMB"),
];

/// The parameters of [`UNUSED_BY_HERALD`] that `action`'s MPS model has.
fn unused_by_herald(action: &str) -> impl Iterator<Item = &'static str> {
    let tag = match action {
        "PushSimple" => 'S',
        "PushTemplate" => 'T',
        "PushMultiple" => 'M',
        "PushBroadcast" => 'B',
        _ => '-',
    };
    UNUSED_BY_HERALD.into_iter().filter(move |(_, actions)| actions.contains(tag)).map(|(name, _)| name)
}

/// Whether a broadcast asks for MPS's time-range selection (`TimeMode` 1 with
/// `BindStartTime`…): Herald selects by period only, and would reach other devices than asked.
fn by_time_range<'a>(param: &impl Fn(&str) -> Option<&'a str>) -> bool {
    let given = |name: &str| param(name).is_some_and(|v| !v.trim().is_empty());
    param("TimeMode").is_some_and(|m| !matches!(m.trim(), "" | "0"))
        || ["BindStartTime", "BindEndTime", "UnBindStartTime", "UnBindEndTime"].iter().any(|n| given(n))
}

/// An action's answer: in MPS's shape already, or `/v1`'s (sent in PascalCase).
enum Answer {
    Mps(Value),
    V1(Value),
}

impl Answer {
    /// A refusal of what was asked, as MPS answers it: 200 with the code in `ResultCode`.
    fn refused(code: ErrorCode, message: &str) -> Answer {
        Answer::Mps(json!({
            "RequestId": herald_core::crypto::random_alnum(20),
            "ResultCode": code.as_str(),
            "ResultMessage": message,
        }))
    }
}

impl IntoResponse for Answer {
    fn into_response(self) -> Response {
        let body = match self {
            Answer::Mps(v) => v.to_string(),
            Answer::V1(v) => serde_json::to_string(&Pascal(&v)).unwrap_or_default(),
        };
        ([("content-type", "application/json")], body).into_response()
    }
}

/// Form parameters (`application/x-www-form-urlencoded`, as the SDKs send them), in order;
/// borrowed from the text where they need no decoding.
type Params<'a> = Vec<(Cow<'a, str>, Cow<'a, str>)>;

fn form(text: &[u8]) -> Params<'_> {
    form_urlencoded::parse(text).collect()
}

/// Checks the request's `ACS3-HMAC-SHA256` signature, date and nonce; the app of its key.
async fn verify(
    state: &AppState,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
    now: i64,
) -> Result<herald_core::ids::AppId, Denied> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim);
    let incomplete = |why: &str| Denied::new(StatusCode::BAD_REQUEST, "IncompleteSignature", why);
    let Some(auth) = header("authorization").and_then(acs3::parse_authorization) else {
        return Err(incomplete("an Authorization header of ACS3-HMAC-SHA256 is required"));
    };
    // What says what the request is must be signed, and every x-acs- header sent.
    let required = ["host", "x-acs-action", "x-acs-date", "x-acs-signature-nonce", "x-acs-content-sha256"];
    let unsigned = |name: &str| !auth.signed_headers.contains(&name);
    if required.iter().any(|h| unsigned(h))
        || headers
            .keys()
            .any(|h| (h.as_str().starts_with("x-acs-") || h.as_str() == "content-type") && unsigned(h.as_str()))
    {
        return Err(incomplete("host, content-type and every x-acs- header must be signed"));
    }
    let payload = herald_core::crypto::sha256_hex(body);
    if header("x-acs-content-sha256") != Some(payload.as_str()) {
        return Err(Denied::new(
            StatusCode::BAD_REQUEST,
            "SignatureDoesNotMatch",
            "x-acs-content-sha256 is not the body's",
        ));
    }
    let Some(ts_ms) = header("x-acs-date").and_then(|d| d.parse::<jiff::Timestamp>().ok()).map(|t| t.as_millisecond())
    else {
        return Err(Denied::new(
            StatusCode::BAD_REQUEST,
            "InvalidTimeStamp.Format",
            "x-acs-date must be yyyy-MM-ddTHH:mm:ssZ",
        ));
    };
    let nonce = header("x-acs-signature-nonce").unwrap_or_default();
    // Values that are not text cannot have been signed as text: left out, so the signature
    // fails (or the header is missing).
    let sent: Vec<(&str, &str)> = headers.iter().filter_map(|(k, v)| Some((k.as_str(), v.to_str().ok()?))).collect();
    let canonical =
        acs3::canonical_request(method.as_str(), uri.path(), uri.query(), &sent, &auth.signed_headers, &payload);
    let string_to_sign = canonical.as_deref().map(acs3::string_to_sign);
    let signature = herald_core::crypto::hex_decode(auth.signature);
    let signed = |secret: &[u8]| match (&string_to_sign, &signature) {
        (Some(text), Some(sig)) => herald_core::crypto::hmac_sha256_verify(secret, text.as_bytes(), sig),
        _ => false,
    };
    state
        .verifier
        .verify_hmac(auth.credential, ts_ms, nonce, now, uri.path(), signed)
        .await
        .map_err(Denied::from_refusal)
}

/// Checks a request of the version 1 signature ([`legacy`]): its method, date and nonce; the
/// app of its key.
async fn verify_legacy(
    state: &AppState,
    method: &Method,
    uri: &Uri,
    params: &[(Cow<'_, str>, Cow<'_, str>)],
    now: i64,
) -> Result<herald_core::ids::AppId, Denied> {
    let param = |name: &str| params.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_ref());
    if param("SignatureMethod") != Some("HMAC-SHA1") || param("SignatureVersion") != Some("1.0") {
        return Err(Denied::new(
            StatusCode::BAD_REQUEST,
            "IncompleteSignature",
            "SignatureMethod HMAC-SHA1 and SignatureVersion 1.0 are required",
        ));
    }
    let Some(ts_ms) = param("Timestamp").and_then(|d| d.parse::<jiff::Timestamp>().ok()).map(|t| t.as_millisecond())
    else {
        return Err(Denied::new(
            StatusCode::BAD_REQUEST,
            "InvalidTimeStamp.Format",
            "Timestamp must be yyyy-MM-ddTHH:mm:ssZ",
        ));
    };
    let text = legacy::string_to_sign(method.as_str(), params);
    let signature = param("Signature").unwrap_or_default();
    let signed = |secret: &[u8]| legacy::signature_holds(secret, &text, signature);
    let (key, nonce) = (param("AccessKeyId").unwrap_or_default(), param("SignatureNonce").unwrap_or_default());
    let refused = state.verifier.verify_hmac(key, ts_ms, nonce, now, uri.path(), signed).await;
    refused.map_err(|Refusal(e)| {
        let mismatch = e.code == ErrorCode::SignatureMismatch;
        let mut denied = Denied::from_refusal(Refusal(e));
        if mismatch {
            // As Alibaba Cloud answers it: the older SDKs read the string to sign after the
            // ':' and, when it is theirs too, report the secret as wrong
            // (InvalidAccessKeySecret). It is made of the request's own parameters.
            denied.message = format!("the signature does not match the request; the string to sign is:{text}");
        }
        denied
    })
}

/// Parameters that are maps (`{target: msgKey}`, `{name: value}`): the SDKs send them as one
/// JSON string (`TargetMsgkey={"d1":"k1"}`), or flattened when the caller gave a map
/// (`TargetMsgkey.d1=k1`); both become the same object.
const MAPS: [&str; 3] = ["TargetMsgkey", "TemplateKeyValue", "ExtendedParams"];

fn camel(name: &str) -> Cow<'_, str> {
    match name.chars().next() {
        Some(first) if first.is_uppercase() => {
            Cow::Owned(first.to_lowercase().chain(name[first.len_utf8()..].chars()).collect())
        }
        _ => Cow::Borrowed(name),
    }
}

/// A parameter's value: a string, or what flattened parameters (`Name.key`, `Name.1`,
/// `Name.1.Field`) build.
enum Param {
    Text(String),
    /// `Name.key=v` of a map parameter (keys as sent).
    Map(Map<String, Value>),
    /// `Name.N=v` and `Name.N.Field=v` (Alibaba Cloud's RPC lists, numbered from 1): by
    /// number, each a string or an object of fields in lower camel case.
    List(std::collections::BTreeMap<u32, Value>),
}

/// The `/v1` JSON body of an action's form parameters: each name in lower camel case
/// (`TargetMsgkey` → `targetMsgkey`), each value a string (`/v1` reads numbers and JSON
/// objects from strings as MPS sends them); flattened maps and lists gathered into objects
/// and arrays. The caller's own parameters are left out.
fn v1_body(params: &[(Cow<'_, str>, Cow<'_, str>)]) -> Vec<u8> {
    let own = |(k, _): &&(Cow<'_, str>, Cow<'_, str>)| !COMMON.contains(&k.as_ref()) && !k.is_empty();
    let plain = params.iter().filter(own).all(|(k, _)| !k.contains('.'));
    let once = |i: usize| params[..i].iter().all(|(k, _)| *k != params[i].0);
    // (Checked pairwise, so only for as many parameters as an action has.)
    if plain && params.len() <= 64 && (0..params.len()).all(once) {
        // The usual request: each name once, none flattened. Written as it is read.
        use serde::ser::{SerializeMap, Serializer};
        let mut out = Vec::with_capacity(params.iter().map(|(k, v)| k.len() + v.len() + 8).sum::<usize>() + 2);
        let mut json = serde_json::Serializer::new(&mut out);
        let written = json.serialize_map(None).and_then(|mut map| {
            params.iter().filter(own).try_for_each(|(k, v)| map.serialize_entry(&camel(k), v))?;
            map.end()
        });
        if written.is_ok() {
            return out;
        }
    }
    let mut built: Vec<(String, Param)> = Vec::new();
    let mut at_of: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for (name, value) in params.iter().filter(own) {
        let (head, rest) = match name.split_once('.') {
            Some((head, rest)) => (head, Some(rest)),
            None => (name.as_ref(), None),
        };
        let key = camel(head).into_owned();
        let at = match at_of.get(&key) {
            Some(&i) => i,
            None => {
                let fresh = match rest {
                    None => Param::Text(String::new()),
                    Some(_) if MAPS.contains(&head) => Param::Map(Map::new()),
                    Some(_) => Param::List(Default::default()),
                };
                at_of.insert(key.clone(), built.len());
                built.push((key, fresh));
                built.len() - 1
            }
        };
        let value = Value::String(value.to_string());
        match (&mut built[at].1, rest) {
            (Param::Text(text), None) => *text = value.as_str().unwrap_or_default().to_owned(),
            (Param::Map(map), Some(k)) => {
                map.insert(k.to_owned(), value);
            }
            (Param::List(items), Some(rest)) => {
                let (n, field) = match rest.split_once('.') {
                    Some((n, field)) => (n, Some(field)),
                    None => (rest, None),
                };
                let Ok(n) = n.parse::<u32>() else { continue };
                match field {
                    None => {
                        items.insert(n, value);
                    }
                    Some(field) => {
                        let item = items.entry(n).or_insert_with(|| Value::Object(Map::new()));
                        if let Value::Object(fields) = item {
                            fields.insert(camel(field).into_owned(), value);
                        }
                    }
                }
            }
            // A name sent both plain and flattened: the first form wins.
            _ => {}
        }
    }
    let object: Map<String, Value> = built
        .into_iter()
        .map(|(k, p)| {
            let v = match p {
                Param::Text(t) => Value::String(t),
                Param::Map(m) => Value::Object(m),
                Param::List(items) => Value::Array(items.into_values().collect()),
            };
            (k, v)
        })
        .collect();
    Value::Object(object).to_string().into_bytes()
}

/// `/v1`'s answer as MPS answers: every object key's first letter upper-cased. Written as
/// it is serialized (the answer is not rebuilt).
struct Pascal<'a>(&'a Value);

impl serde::Serialize for Pascal<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        match self.0 {
            Value::Object(fields) => {
                let mut map = s.serialize_map(Some(fields.len()))?;
                for (k, v) in fields {
                    let mut chars = k.chars();
                    let key: String = chars.next().map(|c| c.to_uppercase().chain(chars).collect()).unwrap_or_default();
                    map.serialize_entry(&key, &Pascal(v))?;
                }
                map.end()
            }
            Value::Array(items) => s.collect_seq(items.iter().map(Pascal)),
            other => other.serialize(s),
        }
    }
}

/// A refusal that is not about what was asked: the node cannot serve (5xx) or the app sends
/// too fast (429). The gateway answers these, as HTTP errors.
fn of_the_node(e: &herald_core::error::ApiError) -> bool {
    e.code.http_status() >= 500 || e.code == ErrorCode::FlowControl
}

/// The MPS answer of a `/v1` handler's outcome: its answer in PascalCase; a refusal of what
/// the request asks (not of the request itself) with 200 and the code in `ResultCode`, as MPS
/// answers them and the SDKs' response models read them; a refusal of the node is left to
/// the gateway.
fn from_v1(outcome: Result<super::Json, Refusal>) -> Result<Answer, Refusal> {
    match outcome {
        Ok(super::Json(v1)) => Ok(Answer::V1(v1)),
        Err(Refusal(e)) if of_the_node(&e) => Err(Refusal(e)),
        Err(Refusal(e)) => Ok(Answer::refused(e.code, &e.message)),
    }
}

/// A refusal of the request itself, as Alibaba Cloud's gateway answers them:
/// `{RequestId, Code, Message}` with an HTTP error status.
struct Denied {
    status: StatusCode,
    code: &'static str,
    message: String,
    retry_after: Option<std::time::Duration>,
}

impl Denied {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Denied { status, code, message: message.into(), retry_after: None }
    }

    /// The gateway code of a signature, key or flow refusal.
    fn from_refusal(Refusal(e): Refusal) -> Self {
        let (status, code) = match e.code {
            ErrorCode::SignatureMismatch => (StatusCode::BAD_REQUEST, "SignatureDoesNotMatch"),
            ErrorCode::SignatureHeadersInvalid => (StatusCode::BAD_REQUEST, "IncompleteSignature"),
            ErrorCode::TimestampOutOfWindow => (StatusCode::BAD_REQUEST, "InvalidTimeStamp.Expired"),
            ErrorCode::NonceReused => (StatusCode::BAD_REQUEST, "SignatureNonceUsed"),
            ErrorCode::ApiKeyInvalid => (StatusCode::NOT_FOUND, "InvalidAccessKeyId.NotFound"),
            ErrorCode::FlowControl => (StatusCode::TOO_MANY_REQUESTS, "Throttling.User"),
            ErrorCode::RequestTooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "RequestEntityTooLarge"),
            ErrorCode::RequestTimeout => (StatusCode::REQUEST_TIMEOUT, "RequestTimeout"),
            _ if e.code.http_status() == 503 => (StatusCode::SERVICE_UNAVAILABLE, "ServiceUnavailable"),
            _ => (StatusCode::INTERNAL_SERVER_ERROR, "InternalError"),
        };
        Denied { status, code, message: e.message, retry_after: e.retry_after }
    }
}

impl IntoResponse for Denied {
    fn into_response(self) -> Response {
        let body =
            json!({"RequestId": herald_core::crypto::random_alnum(20), "Code": self.code, "Message": self.message});
        let mut response = (self.status, super::Json(body)).into_response();
        if let Some(d) = self.retry_after {
            response.headers_mut().insert("retry-after", (d.as_secs() + u64::from(d.subsec_nanos() > 0)).into());
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(text: &str) -> Value {
        serde_json::from_slice(&v1_body(&form(text.as_bytes()))).unwrap()
    }

    /// The forms the official Python SDK sends (captured from it): plain, a JSON-string map,
    /// a flattened map and a flattened list of objects.
    #[test]
    fn form_parameters_become_the_v1_body() {
        let simple = body("AppId=a&Content=c&DeliveryType=1&TargetMsgkey=%7B%22d1%22%3A%22k%22%7D&WorkspaceId=w");
        assert_eq!(simple, json!({"content": "c", "deliveryType": "1", "targetMsgkey": "{\"d1\":\"k\"}"}));
        let map = body("TargetMsgkey.d.1=k1&TargetMsgkey.d2=k2&Title=t");
        assert_eq!(map, json!({"targetMsgkey": {"d.1": "k1", "d2": "k2"}, "title": "t"}));
        let multiple = body(
            "DeliveryType=1&TargetMsg.1.ExtendedParams=%7B%22a%22%3A%22b%22%7D&TargetMsg.1.MsgKey=k1&\
             TargetMsg.1.Target=d1&TargetMsg.2.MsgKey=k2&TargetMsg.2.Target=d2&TargetMsg.10.Target=d10&TemplateName=t",
        );
        assert_eq!(
            multiple,
            json!({"deliveryType": "1", "templateName": "t", "targetMsg": [
                {"extendedParams": "{\"a\":\"b\"}", "msgKey": "k1", "target": "d1"},
                {"msgKey": "k2", "target": "d2"},
                {"target": "d10"}]})
        );
        assert_eq!(body("UnBindPeriod=1&Msgkey=m"), json!({"unBindPeriod": "1", "msgkey": "m"}));
        // A name sent twice: the last value, once (a JSON object names a field once).
        assert_eq!(body("Title=a&Content=c&Title=b"), json!({"title": "b", "content": "c"}));
        assert_eq!(body("Title=%22q%22%5C&ÉTé=x"), json!({"title": "\"q\"\\", "éTé": "x"}));
        assert_eq!(body("Ids.1=a&Ids.2=b"), json!({"ids": ["a", "b"]}));
        // Not a number where a list's is expected: dropped, not a crash.
        assert_eq!(body("TargetMsg.x.Target=d"), json!({"targetMsg": []}));
    }

    #[test]
    fn answers_are_pascal_case_to_the_leaves() {
        let v1 = json!({"requestId": "r", "pushResult": {"success": true, "targets": [{"msgKey": "k"}]}});
        assert_eq!(
            serde_json::to_value(Pascal(&v1)).unwrap(),
            json!({"RequestId": "r", "PushResult": {"Success": true, "Targets": [{"MsgKey": "k"}]}})
        );
    }
}
