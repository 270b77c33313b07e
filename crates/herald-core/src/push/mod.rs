//! Push requests: their fields ([`request`]), their validation into what the store
//! commits, and the payload a device receives. No I/O: the dispatcher commits what this
//! module builds.

pub(crate) mod fields;
pub mod request;

use serde_json::{Map, Value, json};

pub use fields::extended_params;
use fields::{array, delivery_type, flag, int, invalid, key, object, string};
use request::{
    BroadcastPushRequest, MultiplePushRequest, PushOptions, PushRequest, SimplePushRequest, TargetMsg,
    TemplatePushRequest,
};

use crate::error::{ApiError, ErrorCode};
use crate::ids::{AppId, MessageId, TaskId, valid_external_id};
use crate::limits::Limits;
use crate::model::{NewBroadcast, NewMessage, NewPush, NewTask, TemplateRecord};
use crate::state::{BroadcastAudience, MessageKind, NotifyType, Platform, PushType, TargetKind};
use crate::template::Filled;

/// The text of one target of a Multiple push (its own template values and extendedParams).
#[derive(Debug, Clone)]
pub struct TargetText {
    pub title: String,
    pub content: String,
    pub uri: Option<String>,
    pub extended_params: Map<String, Value>,
}

/// A validated push to a list of targets: Simple, Template (the template filled once) or
/// Multiple (filled per target, in `per_target`).
#[derive(Debug, Clone)]
pub struct SimplePush {
    /// Simple, Template or Multiple (Broadcast while a broadcast is being built).
    pub push_type: PushType,
    pub template_name: Option<String>,
    /// Multiple push: the text of each target, in the order of `targets`.
    pub per_target: Vec<TargetText>,
    pub task_name: Option<String>,
    pub delivery_type: i64,
    pub target_kind: TargetKind,
    /// (target, msgKey) in request order.
    pub targets: Vec<(String, String)>,
    pub title: String,
    pub content: String,
    pub uri: Option<String>,
    pub push_action: i64,
    pub push_style: i64,
    pub silent: bool,
    pub notify_type: NotifyType,
    pub extended_params: Map<String, Value>,
    pub expired_seconds: i64,
}

/// The codes of a push's title and content that are too long.
const PUSH_TITLE: ErrorCode = ErrorCode::InvalidParam;
const PUSH_CONTENT: ErrorCode = ErrorCode::SinglePushContentTooLong;

/// A title and content a device can be sent: both present, within the limits; a text too
/// long is refused with `title_code` or `content_code` (a push's codes, or a template's).
pub(crate) fn check_text(
    title: &str,
    content: &str,
    limits: &Limits,
    title_code: ErrorCode,
    content_code: ErrorCode,
) -> Result<(), ApiError> {
    if title.trim().is_empty() || content.trim().is_empty() {
        return Err(invalid(ErrorCode::PayloadNotEnough, "title and content are required"));
    }
    if title.chars().count() > limits.max_title_chars {
        return Err(invalid(title_code, format!("title is longer than {} characters", limits.max_title_chars)));
    }
    if content.len() > limits.max_content_bytes {
        return Err(invalid(
            content_code,
            format!("content is {} bytes; at most {}", content.len(), limits.max_content_bytes),
        ));
    }
    Ok(())
}

/// A template push's text comes from its template: the request may not carry its own.
fn no_own_text(title: &Option<Value>, content: &Option<Value>) -> Result<(), ApiError> {
    for (key, given) in [("title", title), ("content", content)] {
        if given.is_some() {
            return Err(invalid(ErrorCode::InvalidParam, format!("{key} comes from the template, not the request")));
        }
    }
    Ok(())
}

/// A Simple push carrying a template's filled text, for the shared validation: the
/// template's uri and style; its silent flag unless the request sets one.
fn with_text(
    delivery_type: &Option<Value>,
    target_msgkey: Value,
    options: &PushOptions,
    t: &TemplateRecord,
    filled: &Filled,
) -> SimplePushRequest {
    let mut options = options.clone();
    options.push_style = Some(t.push_style.into());
    options.silent = options.silent.or_else(|| Some(t.silent.into()));
    SimplePushRequest {
        delivery_type: delivery_type.clone(),
        target_msgkey: Some(target_msgkey),
        title: Some(Value::String(filled.title.clone())),
        content: Some(Value::String(filled.content.clone())),
        uri: filled.uri.clone().map(Value::String),
        options,
    }
}

/// A validated push request of any type, ready to commit.
pub enum Prepared {
    Push(SimplePush),
    Broadcast(NewBroadcast),
}

impl Prepared {
    /// Validates a push request as of `now` (its strategy fields are not read here).
    /// `template` is the app's template the request names ([`PushRequest::template_name`]),
    /// for every type but Simple.
    pub fn parse(
        request: &PushRequest,
        template: Option<&TemplateRecord>,
        limits: &Limits,
        app_id: &AppId,
        now: i64,
    ) -> Result<Prepared, ApiError> {
        let template =
            || template.ok_or_else(|| invalid(ErrorCode::TemplateNotExist, "the template of this push does not exist"));
        Ok(match request {
            PushRequest::Simple(r) => Prepared::Push(SimplePush::parse(r, limits)?),
            PushRequest::Template(r) => Prepared::Push(SimplePush::parse_template(r, template()?, limits)?),
            PushRequest::Multiple(r) => Prepared::Push(SimplePush::parse_multiple(r, template()?, limits)?),
            PushRequest::Broadcast(r) => {
                Prepared::Broadcast(SimplePush::parse_broadcast(r, template()?, limits, app_id.clone(), now)?)
            }
        })
    }

    /// (deliveryType, title, content) for the schedule list.
    pub fn summary(&self) -> (i64, Option<String>, Option<String>) {
        match self {
            Prepared::Push(p) => {
                let first = p.per_target.first();
                (
                    p.delivery_type,
                    Some(first.map_or(&p.title, |t| &t.title).clone()),
                    Some(first.map_or(&p.content, |t| &t.content).clone()),
                )
            }
            Prepared::Broadcast(b) => {
                let payload: Value = serde_json::from_slice(&b.payload).unwrap_or_default();
                let text = |k: &str| payload[k].as_str().map(str::to_owned);
                (b.task.delivery_type, text("title"), text("content"))
            }
        }
    }

    /// How long what it sends stays valid, in ms.
    pub fn validity_ms(&self) -> i64 {
        match self {
            Prepared::Push(p) => p.expired_seconds * 1000,
            Prepared::Broadcast(b) => b.task.expires_at - b.task.created_at,
        }
    }
}

impl SimplePush {
    /// Validates a Template push: `t` filled with `templateKeyValue`, then everything a
    /// Simple push checks (targets, validity, extendedParams…).
    pub fn parse_template(
        r: &TemplatePushRequest,
        t: &TemplateRecord,
        limits: &Limits,
    ) -> Result<SimplePush, ApiError> {
        no_own_text(&r.title, &r.content)?;
        let kv = object(r.template_key_value.as_ref(), "templateKeyValue")?.unwrap_or_default();
        let filled = crate::template::fill(t, &kv)?;
        let targets = r.target_msgkey.clone().unwrap_or(Value::Null);
        let mut push = SimplePush::parse(&with_text(&r.delivery_type, targets, &r.options, t, &filled), limits)?;
        push.push_type = PushType::Template;
        push.template_name = Some(t.name.clone());
        Ok(push)
    }

    /// Validates a Multiple push: `targetMsg` items, each with its target, msgKey,
    /// `templateKeyValue` and own extendedParams (merged over the common ones).
    pub fn parse_multiple(
        r: &MultiplePushRequest,
        t: &TemplateRecord,
        limits: &Limits,
    ) -> Result<SimplePush, ApiError> {
        let items = array(r.target_msg.as_ref(), "targetMsg")?;
        if items.is_empty() {
            return Err(invalid(ErrorCode::TokenOrUseridNull, "targetMsg names no target"));
        }
        if items.len() > limits.max_multiple_targets {
            return Err(invalid(
                ErrorCode::MultiplePushTargetTooMuch,
                format!("targetMsg has {} items; at most {}", items.len(), limits.max_multiple_targets),
            ));
        }
        let common = extended_params(r.options.extended_params.as_ref(), limits.max_extended_params)?;
        let mut targets = Vec::with_capacity(items.len());
        let mut per_target = Vec::with_capacity(items.len());
        for (i, item) in items.into_iter().enumerate() {
            let item: TargetMsg = match item {
                Value::Object(_) => serde_json::from_value(item)
                    .map_err(|_| invalid(ErrorCode::InvalidParam, format!("targetMsg[{i}] must be an object")))?,
                _ => return Err(invalid(ErrorCode::InvalidParam, format!("targetMsg[{i}] must be an object"))),
            };
            let target = string(item.target.as_ref(), "target")?.unwrap_or_default();
            let msg_key = key(item.msg_key.as_ref(), "msgKey")?.unwrap_or_default();
            if target.is_empty() {
                return Err(invalid(ErrorCode::TokenOrUseridNull, format!("targetMsg[{i}] has no target")));
            }
            if !valid_external_id(&target) || !valid_external_id(&msg_key) {
                return Err(invalid(
                    ErrorCode::InvalidParam,
                    format!("targetMsg[{i}]: target and msgKey must be 1 to 128 characters without control characters"),
                ));
            }
            if targets.iter().any(|(t, _): &(String, String)| *t == target) {
                return Err(invalid(ErrorCode::InvalidParam, format!("targetMsg names {target} twice")));
            }
            let own = extended_params(item.extended_params.as_ref(), usize::MAX)?;
            if own.len() > limits.max_multiple_extended_params {
                return Err(invalid(
                    ErrorCode::MultipleInnerExtendParamToMuch,
                    format!(
                        "targetMsg[{i}].extendedParams has {} keys; fewer than {} allowed",
                        own.len(),
                        limits.max_multiple_extended_params + 1
                    ),
                ));
            }
            let mut extended = common.clone();
            extended.extend(own);
            if extended.len() > limits.max_extended_params {
                return Err(invalid(
                    ErrorCode::ExtendParamToMuch,
                    format!(
                        "targetMsg[{i}] has {} extendedParams in all; at most {}",
                        extended.len(),
                        limits.max_extended_params
                    ),
                ));
            }
            let kv = object(item.template_key_value.as_ref(), "templateKeyValue")?.unwrap_or_default();
            let filled = crate::template::fill(t, &kv)?;
            check_text(&filled.title, &filled.content, limits, PUSH_TITLE, PUSH_CONTENT)?;
            targets.push((target, msg_key));
            per_target.push(TargetText {
                title: filled.title,
                content: filled.content,
                uri: filled.uri,
                extended_params: extended,
            });
        }
        // The fields common to every target, checked as a Simple push with the first one.
        let first = &per_target[0];
        let filled = Filled { title: first.title.clone(), content: first.content.clone(), uri: first.uri.clone() };
        let first_target = json!({targets[0].0.clone(): targets[0].1.clone()});
        let mut push = SimplePush::parse(&with_text(&r.delivery_type, first_target, &r.options, t, &filled), limits)?;
        push.push_type = PushType::Multiple;
        push.template_name = Some(t.name.clone());
        push.targets = targets;
        push.per_target = per_target;
        Ok(push)
    }

    /// Validates a Broadcast push: a template to every device of one platform of the app
    /// (filtered by pushStatus and the bind/unbind periods), under one msgkey.
    pub fn parse_broadcast(
        r: &BroadcastPushRequest,
        t: &TemplateRecord,
        limits: &Limits,
        app_id: AppId,
        now: i64,
    ) -> Result<NewBroadcast, ApiError> {
        let (delivery_type, kind) = delivery_type(r.delivery_type.as_ref())?;
        if kind == TargetKind::User {
            return Err(invalid(
                ErrorCode::BroadcastOnlySupportByDevice,
                "a broadcast goes to devices: deliveryType 1, 2 or 7",
            ));
        }
        let platform = match delivery_type {
            2 => Platform::Ios,
            7 => Platform::Harmonyos,
            _ => Platform::Android,
        };
        let msg_key = match key(r.msgkey.as_ref(), "msgkey") {
            Ok(Some(k)) if valid_external_id(&k) => k,
            _ => return Err(invalid(ErrorCode::InvalidParam, "msgkey (1 to 128 characters) is required")),
        };
        let audience = BroadcastAudience::from_code(int(r.push_status.as_ref(), "pushStatus")?.unwrap_or(0))
            .ok_or_else(|| invalid(ErrorCode::InvalidParam, "pushStatus must be 0 (bound), 1 (all) or 2 (unbound)"))?;
        let period = |value: &Option<Value>, name: &str| -> Result<Option<i64>, ApiError> {
            match int(value.as_ref(), name)? {
                None | Some(4) => Ok(None),
                Some(1) => Ok(Some(now - 7 * 86_400_000)),
                Some(2) => Ok(Some(now - 15 * 86_400_000)),
                Some(3) => Ok(Some(now - 60 * 86_400_000)),
                Some(_) => Err(invalid(
                    ErrorCode::InvalidParam,
                    format!("{name} must be 1 (7 days), 2 (15), 3 (60) or 4 (ever)"),
                )),
            }
        };
        let (bind_since, unbind_since) = match audience {
            BroadcastAudience::Bound => (period(&r.bind_period, "bindPeriod")?, None),
            BroadcastAudience::All | BroadcastAudience::Unbound => (None, period(&r.unbind_period, "unBindPeriod")?),
        };
        let template = TemplatePushRequest {
            delivery_type: r.delivery_type.clone(),
            target_msgkey: Some(json!({"broadcast": msg_key.clone()})),
            template_name: r.template_name.clone(),
            template_key_value: r.template_key_value.clone(),
            title: r.title.clone(),
            content: r.content.clone(),
            options: r.options.clone(),
        };
        let mut push = SimplePush::parse_template(&template, t, limits)?;
        push.push_type = PushType::Broadcast;
        let mut new_push = push.into_new_push(app_id, now, limits)?;
        let message = new_push.messages.pop().expect("one message per target");
        Ok(NewBroadcast {
            task: new_push.task,
            message_id: message.message_id,
            msg_key,
            platform,
            audience,
            bind_since,
            unbind_since,
            payload: message.payload,
            vendor: message.vendor,
            skip_idempotency: false,
        })
    }

    /// Validates a Simple push against `limits`.
    pub fn parse(r: &SimplePushRequest, limits: &Limits) -> Result<SimplePush, ApiError> {
        let o = &r.options;
        let (delivery_type, target_kind) = delivery_type(r.delivery_type.as_ref())?;
        let map = object(r.target_msgkey.as_ref(), "targetMsgkey")?.unwrap_or_default();
        if map.is_empty() {
            return Err(invalid(ErrorCode::TokenOrUseridNull, "targetMsgkey names no target"));
        }
        if map.len() > limits.max_simple_targets {
            return Err(invalid(
                ErrorCode::SinglePushTargetTooMuch,
                format!("targetMsgkey has {} targets; at most {}", map.len(), limits.max_simple_targets),
            ));
        }
        let mut targets = Vec::with_capacity(map.len());
        for (target, msg_key) in map {
            let msg_key = match msg_key {
                Value::String(s) => s,
                Value::Number(n) => n.to_string(),
                _ => {
                    return Err(invalid(
                        ErrorCode::InvalidParam,
                        format!("targetMsgkey[{target}] must be a string msgKey"),
                    ));
                }
            };
            if !valid_external_id(&target) {
                return Err(invalid(
                    ErrorCode::InvalidParam,
                    "a target must be 1 to 128 characters without control characters",
                ));
            }
            if !valid_external_id(&msg_key) {
                return Err(invalid(
                    ErrorCode::InvalidParam,
                    "a msgKey must be 1 to 128 characters without control characters",
                ));
            }
            targets.push((target, msg_key));
        }
        let title = string(r.title.as_ref(), "title")?.unwrap_or_default();
        let content = string(r.content.as_ref(), "content")?.unwrap_or_default();
        check_text(&title, &content, limits, PUSH_TITLE, PUSH_CONTENT)?;
        let expired_seconds = match int(o.expired_seconds.as_ref(), "expiredSeconds") {
            Ok(Some(s)) if s >= 1 => s,
            _ => {
                return Err(invalid(ErrorCode::ExpiredsecondsWrong, "expiredSeconds must be an integer of at least 1"));
            }
        };
        if expired_seconds > limits.max_expired_seconds {
            return Err(invalid(
                ErrorCode::ExpiredtimeTooLong,
                format!("expiredSeconds is at most {}", limits.max_expired_seconds),
            ));
        }
        let notify_type = match string(o.notify_type.as_ref(), "notifyType")? {
            None => NotifyType::Notify,
            Some(t) => NotifyType::parse(&t)
                .ok_or_else(|| invalid(ErrorCode::InvalidParam, "notifyType must be \"notify\" or \"transparent\""))?,
        };
        let silent = flag(o.silent.as_ref(), "silent")?.unwrap_or(0);
        if !matches!(silent, 0 | 1) {
            return Err(invalid(ErrorCode::InvalidParam, "silent must be 0 or 1"));
        }
        let uri = string(r.uri.as_ref(), "uri")?;
        limits.check_uri(uri.as_deref())?;
        Ok(SimplePush {
            push_type: PushType::Simple,
            template_name: None,
            per_target: Vec::new(),
            task_name: string(o.task_name.as_ref(), "taskName")?,
            delivery_type,
            target_kind,
            targets,
            title,
            content,
            uri,
            push_action: int(o.push_action.as_ref(), "pushAction")?.unwrap_or(0),
            push_style: int(o.push_style.as_ref(), "pushStyle")?.unwrap_or(0),
            silent: silent == 1,
            notify_type,
            extended_params: extended_params(o.extended_params.as_ref(), limits.max_extended_params)?,
            expired_seconds,
        })
    }

    /// The task and one message per target, with the payload each device will receive.
    pub fn into_new_push(self, app_id: AppId, now: i64, limits: &Limits) -> Result<NewPush, ApiError> {
        let task_id = TaskId::generate(now);
        let expires_at = now + self.expired_seconds * 1000;
        let mut messages = Vec::with_capacity(self.targets.len());
        for (i, (target, msg_key)) in self.targets.iter().enumerate() {
            let message_id = if self.push_type == PushType::Broadcast {
                MessageId::generate_broadcast(now)
            } else {
                MessageId::generate(now)
            };
            let own = self.per_target.get(i);
            let payload = json!({
                "type": MessageKind::Notification,
                "messageId": message_id,
                "msgKey": msg_key,
                "taskId": task_id,
                "pushType": self.push_type,
                "templateName": self.template_name,
                "title": own.map_or(&self.title, |o| &o.title),
                "content": own.map_or(&self.content, |o| &o.content),
                "uri": own.map_or(&self.uri, |o| &o.uri),
                "pushAction": self.push_action,
                "pushStyle": self.push_style,
                "silent": self.silent as i64,
                "notifyType": self.notify_type,
                "extendedParams": own.map_or(&self.extended_params, |o| &o.extended_params),
                "sentAt": now,
                "expiresAt": expires_at,
            })
            .to_string();
            if payload.len() > limits.max_payload_bytes {
                return Err(invalid(
                    ErrorCode::MsgPayloadTooLong,
                    format!(
                        "the device payload would be {} bytes; at most {}",
                        payload.len(),
                        limits.max_payload_bytes
                    ),
                ));
            }
            messages.push(NewMessage {
                message_id,
                msg_key: msg_key.clone(),
                target_kind: self.target_kind,
                target: target.clone(),
                payload: payload.into(),
                vendor: self.notify_type == NotifyType::Notify,
            });
        }
        Ok(NewPush {
            skip_idempotency: false,
            task: NewTask {
                task_id,
                app_id,
                push_type: self.push_type,
                task_name: self.task_name,
                delivery_type: self.delivery_type,
                created_at: now,
                expires_at,
            },
            messages,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(v: Value) -> Result<SimplePush, ErrorCode> {
        let request = match PushRequest::from_json(PushType::Simple, v.to_string().as_bytes()) {
            Ok(PushRequest::Simple(r)) => r,
            Ok(other) => panic!("{other:?}"),
            Err(e) => return Err(e.code),
        };
        SimplePush::parse(&request, &Limits::default()).map_err(|e| e.code)
    }

    fn base() -> Value {
        json!({"deliveryType": 1, "targetMsgkey": {"d1": "k1"}, "title": "t", "content": "c", "expiredSeconds": 60})
    }

    fn with(key: &str, value: Value) -> Value {
        let mut v = base();
        v[key] = value;
        v
    }

    /// Found by the fuzzer: a number with a long mantissa read from a request, written back
    /// (as a schedule stores its request) and read again came back one digit off.
    #[test]
    fn a_stored_request_reads_back_the_same() {
        let body = br#"{"deliveryType":3,"targetMsgkey":"{\"u1\":\"k1\"}","title":"t","content":"c","expiredSeconds":6555555555555555555555555555555555555555555555555555555555555555555555555500,"templateKeyValue":{"price":0.30000000000000004441}}"#;
        let stored = PushRequest::from_json(PushType::Simple, body).unwrap().to_json();
        let again = PushRequest::from_json(PushType::Simple, stored.as_bytes()).unwrap().to_json();
        assert_eq!(again, stored);
    }

    #[test]
    fn accepts_mps_string_forms() {
        let p = parse(json!({"deliveryType": "3", "targetMsgkey": "{\"u1\":\"k1\"}", "title": "t", "content": "c",
            "expiredSeconds": "300", "extendedParams": "{\"a\":\"b\"}"}))
        .unwrap();
        assert_eq!(p.target_kind, TargetKind::User);
        assert_eq!(p.targets, vec![("u1".to_string(), "k1".to_string())]);
        assert_eq!(p.extended_params["a"], "b");
    }

    #[test]
    fn error_codes() {
        let eleven: Map<String, Value> = (0..11).map(|i| (format!("d{i}"), json!(format!("k{i}")))).collect();
        assert_eq!(parse(with("targetMsgkey", Value::Object(eleven))).unwrap_err(), ErrorCode::SinglePushTargetTooMuch);
        assert_eq!(parse(with("targetMsgkey", json!({}))).unwrap_err(), ErrorCode::TokenOrUseridNull);
        assert_eq!(parse(with("expiredSeconds", json!(0))).unwrap_err(), ErrorCode::ExpiredsecondsWrong);
        assert_eq!(parse(with("expiredSeconds", json!(259_201))).unwrap_err(), ErrorCode::ExpiredtimeTooLong);
        assert!(parse(with("expiredSeconds", json!(259_200))).is_ok());
        assert_eq!(parse(with("title", json!(""))).unwrap_err(), ErrorCode::PayloadNotEnough);
        assert_eq!(parse(with("deliveryType", json!(5))).unwrap_err(), ErrorCode::DeliveryTypeNotSupported);
        assert_eq!(parse(with("content", json!("x".repeat(4097)))).unwrap_err(), ErrorCode::SinglePushContentTooLong);
        let many: Map<String, Value> = (0..21).map(|i| (format!("k{i}"), json!("v"))).collect();
        assert_eq!(parse(with("extendedParams", Value::Object(many))).unwrap_err(), ErrorCode::ExtendParamToMuch);
        assert_eq!(parse(with("extendedParams", json!({"taskId": "x"}))).unwrap_err(), ErrorCode::InvalidExtendParam);
        assert_eq!(parse(with("targetMsgkey", json!("not json"))).unwrap_err(), ErrorCode::InvalidParam);
        assert_eq!(parse(json!([1])).unwrap_err(), ErrorCode::InvalidJson);
        // Issue 12: a uri had no limit.
        assert_eq!(parse(with("uri", json!("u".repeat(2049)))).unwrap_err(), ErrorCode::InvalidParam);
        assert!(parse(with("uri", json!("é".repeat(2048)))).is_ok());
    }

    #[test]
    fn payload_carries_every_field() {
        let p = parse(with("uri", json!("app://x"))).unwrap();
        let push = p.into_new_push(AppId::new("a"), 1_000, &Limits::default()).unwrap();
        let payload: Value = serde_json::from_slice(&push.messages[0].payload).unwrap();
        assert_eq!(payload["type"], "notification");
        assert_eq!(payload["uri"], "app://x");
        assert_eq!(payload["expiresAt"], 61_000);
        assert_eq!(payload["messageId"], push.messages[0].message_id.as_str());
        assert_eq!(payload["taskId"], push.task.task_id.as_str());
    }
}
