//! The push requests as the API receives them (MPS field names), and the forms each field
//! accepts. Every field is kept as it was sent (a JSON value) and checked by
//! [`super::SimplePush`]'s parsers, so that a wrong type is refused in our words with the
//! MPS code, and MPS clients' forms (numbers as strings, objects as strings holding JSON)
//! pass. The OpenAPI description is generated from these types: what the handlers read is
//! what it says.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Schema, Type};
use utoipa::{PartialSchema, ToSchema};

use crate::error::{ApiError, ErrorCode, parse_object};
use crate::state::PushType;

/// Schema of a field that takes an integer, or a string holding one (MPS form bodies).
pub struct IntegerOrString;

impl PartialSchema for IntegerOrString {
    fn schema() -> RefOr<Schema> {
        OneOfBuilder::new()
            .item(ObjectBuilder::new().schema_type(Type::Integer))
            .item(ObjectBuilder::new().schema_type(Type::String).pattern(Some("^\\s*-?[0-9]+\\s*$")))
            .description(Some("An integer, or a string holding one."))
            .into()
    }
}

impl ToSchema for IntegerOrString {}

/// Schema of a field that takes a JSON object, or a string holding one.
pub struct ObjectOrString;

impl PartialSchema for ObjectOrString {
    fn schema() -> RefOr<Schema> {
        OneOfBuilder::new()
            .item(ObjectBuilder::new().schema_type(Type::Object))
            .item(ObjectBuilder::new().schema_type(Type::String))
            .description(Some("A JSON object, or a string holding one."))
            .into()
    }
}

impl ToSchema for ObjectOrString {}

/// Schema of `deliveryType`.
pub struct DeliveryTypeValue;

impl PartialSchema for DeliveryTypeValue {
    fn schema() -> RefOr<Schema> {
        OneOfBuilder::new()
            .item(ObjectBuilder::new().schema_type(Type::Integer).enum_values(Some([1, 2, 3, 7])))
            .item(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .enum_values(Some(["1", "2", "3", "7", "device", "user"])),
            )
            .description(Some("1 Android, 2 iOS, 7 HarmonyOS device; 3 user; or \"device\" / \"user\"."))
            .into()
    }
}

impl ToSchema for DeliveryTypeValue {}

/// Schema of a 0/1 flag that also takes a boolean.
pub struct Flag;

impl PartialSchema for Flag {
    fn schema() -> RefOr<Schema> {
        OneOfBuilder::new()
            .item(ObjectBuilder::new().schema_type(Type::Integer).enum_values(Some([0, 1])))
            .item(ObjectBuilder::new().schema_type(Type::Boolean))
            .item(ObjectBuilder::new().schema_type(Type::String).enum_values(Some(["0", "1"])))
            .description(Some("0 or 1 (or false / true)."))
            .into()
    }
}

impl ToSchema for Flag {}

/// What every push request may carry besides its targets and text.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PushOptions {
    /// Validity in seconds, 1..259200 (72 h): `EXPIREDSECONDS_WRONG`, `EXPIREDTIME_TOO_LONG`.
    #[schema(value_type = IntegerOrString, required = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expired_seconds: Option<Value>,
    /// Kept on the task.
    #[schema(value_type = Option<String>)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub task_name: Option<Value>,
    /// 0 (default) open the uri as a web page, 1 intent; delivered as is.
    #[schema(value_type = Option<IntegerOrString>)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub push_action: Option<Value>,
    /// 0 default, 1 big text, 2 image; delivered as is (a template's own for template pushes).
    #[schema(value_type = Option<IntegerOrString>)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub push_style: Option<Value>,
    /// 1: the app should not display it.
    #[schema(value_type = Option<Flag>)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub silent: Option<Value>,
    /// `notify` (default) or `transparent` (Herald's own channel only).
    #[schema(value_type = Option<String>, example = "notify")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub notify_type: Option<Value>,
    /// At most 20 keys, values strings, numbers or booleans; MPS's reserved keys are refused.
    #[schema(value_type = Option<ObjectOrString>)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub extended_params: Option<Value>,
    /// 0 (default) now, 1 at a fixed time, 2 recurring.
    #[schema(value_type = Option<IntegerOrString>)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub strategy_type: Option<Value>,
    /// `{fixedTime}` (strategyType 1) or `{startTime, endTime, time, circleType, circleValue}` (2).
    #[schema(value_type = Option<ObjectOrString>)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub strategy_content: Option<Value>,
    /// IANA time zone of a recurring push's `time` (default UTC).
    #[schema(value_type = Option<String>, example = "Asia/Shanghai")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time_zone: Option<Value>,
}

/// `POST /v1/push/simple`: one message to at most 10 devices or users.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SimplePushRequest {
    #[schema(value_type = DeliveryTypeValue, required = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delivery_type: Option<Value>,
    /// `{target: msgKey}`: device ids or user ids, each with the caller's message key.
    #[schema(value_type = ObjectOrString, required = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_msgkey: Option<Value>,
    /// At most 200 characters.
    #[schema(value_type = String, required = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<Value>,
    /// At most 4096 bytes.
    #[schema(value_type = String, required = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<Value>,
    /// Click target, delivered as is.
    #[schema(value_type = Option<String>)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uri: Option<Value>,
    #[serde(flatten)]
    pub options: PushOptions,
}

/// `POST /v1/push/template`: a template filled with `templateKeyValue`, to at most 10
/// devices or users. The title, content and uri are the template's.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TemplatePushRequest {
    #[schema(value_type = DeliveryTypeValue, required = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delivery_type: Option<Value>,
    /// `{target: msgKey}`.
    #[schema(value_type = ObjectOrString, required = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_msgkey: Option<Value>,
    /// A template of the app (`NEED_TEMPLATE`, `TEMPLATE_NOT_EXIST`).
    #[schema(value_type = String, required = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub template_name: Option<Value>,
    /// `{name: value}` for every `#name#` of the template (`TEMPLATEKV_NOT_ENOUGH`).
    #[schema(value_type = Option<ObjectOrString>)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub template_key_value: Option<Value>,
    /// Refused: a template push's text is the template's.
    #[schema(ignore)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<Value>,
    /// Refused, as `title`.
    #[schema(ignore)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<Value>,
    #[serde(flatten)]
    pub options: PushOptions,
}

/// One target of a Multiple push, with its own template values and extendedParams.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TargetMsg {
    /// A device id or a user id (as the request's deliveryType says).
    #[schema(value_type = String, required = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<Value>,
    #[schema(value_type = String, required = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub msg_key: Option<Value>,
    #[schema(value_type = Option<ObjectOrString>)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub template_key_value: Option<Value>,
    /// At most 9 keys of its own, merged over the request's.
    #[schema(value_type = Option<ObjectOrString>)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub extended_params: Option<Value>,
}

/// `POST /v1/push/multiple`: a template filled per target (at most 100), under one task.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MultiplePushRequest {
    #[schema(value_type = DeliveryTypeValue, required = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delivery_type: Option<Value>,
    #[schema(value_type = String, required = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub template_name: Option<Value>,
    /// The targets (an array, or a string holding one); also read as `targetMsgs`.
    #[schema(value_type = Vec<TargetMsg>, required = true)]
    #[serde(alias = "targetMsgs", skip_serializing_if = "Option::is_none")]
    pub target_msg: Option<Value>,
    #[serde(flatten)]
    pub options: PushOptions,
}

/// `POST /v1/push/broadcast`: a template to every qualifying device of one platform.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BroadcastPushRequest {
    /// 1 Android, 2 iOS, 7 HarmonyOS (a user target is `BROADCAST_ONLY_SUPPORT_BY_DEVICE`).
    #[schema(value_type = DeliveryTypeValue, required = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delivery_type: Option<Value>,
    #[schema(value_type = String, required = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub template_name: Option<Value>,
    #[schema(value_type = Option<ObjectOrString>)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub template_key_value: Option<Value>,
    /// The broadcast's key (1-128 characters): the same key again within its validity is
    /// the same broadcast. Also read as `msgKey`.
    #[schema(value_type = String, required = true)]
    #[serde(alias = "msgKey", skip_serializing_if = "Option::is_none")]
    pub msgkey: Option<Value>,
    /// 0 (default) devices with a bound user, 1 all, 2 devices without one.
    #[schema(value_type = Option<IntegerOrString>)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub push_status: Option<Value>,
    /// pushStatus 0: bound within 1 (7 days), 2 (15), 3 (60) or 4 (ever, the default).
    #[schema(value_type = Option<IntegerOrString>)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bind_period: Option<Value>,
    /// pushStatus 1 and 2: unbound (or never bound) within 1, 2, 3 or 4, as bindPeriod.
    #[schema(value_type = Option<IntegerOrString>)]
    #[serde(rename = "unBindPeriod", skip_serializing_if = "Option::is_none")]
    pub unbind_period: Option<Value>,
    /// Refused: a broadcast's text is the template's.
    #[schema(ignore)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<Value>,
    /// Refused, as `title`.
    #[schema(ignore)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<Value>,
    #[serde(flatten)]
    pub options: PushOptions,
}

/// A push request of any type.
#[derive(Debug, Clone)]
pub enum PushRequest {
    Simple(SimplePushRequest),
    Template(TemplatePushRequest),
    Multiple(MultiplePushRequest),
    Broadcast(BroadcastPushRequest),
}

impl PushRequest {
    /// Reads a request of `push_type` (a body, or the request a schedule stored). Only a body
    /// that is no JSON object is refused here; its fields are checked when it is parsed.
    pub fn from_json(push_type: PushType, body: &[u8]) -> Result<PushRequest, ApiError> {
        Ok(match push_type {
            PushType::Simple => PushRequest::Simple(parse_object(body)?),
            PushType::Template => PushRequest::Template(parse_object(body)?),
            PushType::Multiple => PushRequest::Multiple(parse_object(body)?),
            PushType::Broadcast => PushRequest::Broadcast(parse_object(body)?),
        })
    }

    pub fn push_type(&self) -> PushType {
        match self {
            PushRequest::Simple(_) => PushType::Simple,
            PushRequest::Template(_) => PushType::Template,
            PushRequest::Multiple(_) => PushType::Multiple,
            PushRequest::Broadcast(_) => PushType::Broadcast,
        }
    }

    pub fn options(&self) -> &PushOptions {
        match self {
            PushRequest::Simple(r) => &r.options,
            PushRequest::Template(r) => &r.options,
            PushRequest::Multiple(r) => &r.options,
            PushRequest::Broadcast(r) => &r.options,
        }
    }

    fn options_mut(&mut self) -> &mut PushOptions {
        match self {
            PushRequest::Simple(r) => &mut r.options,
            PushRequest::Template(r) => &mut r.options,
            PushRequest::Multiple(r) => &mut r.options,
            PushRequest::Broadcast(r) => &mut r.options,
        }
    }

    /// The template the request fills: `None` for a Simple push; `NEED_TEMPLATE` when a
    /// push of another type names none.
    pub fn template_name(&self) -> Result<Option<String>, ApiError> {
        let named = match self {
            PushRequest::Simple(_) => return Ok(None),
            PushRequest::Template(r) => &r.template_name,
            PushRequest::Multiple(r) => &r.template_name,
            PushRequest::Broadcast(r) => &r.template_name,
        };
        match named {
            Some(Value::String(s)) if !s.is_empty() => Ok(Some(s.clone())),
            None | Some(Value::Null) | Some(Value::String(_)) => {
                Err(ApiError::new(ErrorCode::NeedTemplate, "templateName is required"))
            }
            Some(_) => Err(ApiError::new(ErrorCode::InvalidParam, "templateName must be a string")),
        }
    }

    /// The request without its strategy (what a schedule stores and sends when it fires).
    pub fn without_strategy(&self) -> PushRequest {
        let mut request = self.clone();
        let options = request.options_mut();
        (options.strategy_type, options.strategy_content, options.time_zone) = (None, None, None);
        request
    }

    /// The request as JSON.
    pub fn to_json(&self) -> String {
        match self {
            PushRequest::Simple(r) => serde_json::to_string(r),
            PushRequest::Template(r) => serde_json::to_string(r),
            PushRequest::Multiple(r) => serde_json::to_string(r),
            PushRequest::Broadcast(r) => serde_json::to_string(r),
        }
        .unwrap_or_else(|_| "{}".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_kept_as_sent_and_stored_without_the_strategy() {
        let body = br#"{"deliveryType":"3","targetMsgkey":"{\"u\":\"k\"}","title":5,"expiredSeconds":"30",
            "strategyType":1,"strategyContent":{"fixedTime":9},"unknown":true}"#;
        let r = PushRequest::from_json(PushType::Simple, body).unwrap();
        let PushRequest::Simple(s) = &r else { panic!("simple") };
        assert_eq!((s.title.clone(), s.options.expired_seconds.clone()), (Some(5.into()), Some("30".into())));
        let stored: Value = serde_json::from_str(&r.without_strategy().to_json()).unwrap();
        assert_eq!(
            stored,
            serde_json::json!({"deliveryType": "3", "targetMsgkey": "{\"u\":\"k\"}", "title": 5, "expiredSeconds": "30"})
        );
        assert_eq!(PushRequest::from_json(PushType::Simple, b"[1]").unwrap_err().code, ErrorCode::InvalidJson);
        let m = PushRequest::from_json(PushType::Multiple, br#"{"targetMsgs":[]}"#).unwrap();
        assert!(matches!(m, PushRequest::Multiple(MultiplePushRequest { target_msg: Some(_), .. })));
        assert_eq!(m.template_name().unwrap_err().code, ErrorCode::NeedTemplate);
    }
}
