//! The one table of API result codes. Each code has an HTTP status and a stable
//! upper-case name (MPS names where MPS has one); `docs/errors.md` lists them all.
//! Matches are exhaustive on purpose: a new code cannot be added without a status.

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ErrorCode {
    // Authentication of the server API.
    SignatureMismatch,
    SignatureHeadersInvalid,
    TimestampOutOfWindow,
    NonceReused,
    ApiKeyInvalid,
    // Admin and device authentication.
    AdminUnauthorized,
    AppKeyInvalid,
    DeviceTokenInvalid,
    BindProofInvalid,
    DeviceAlreadyRegistered,
    // Request shape.
    InvalidJson,
    RequestTooLarge,
    RequestTimeout,
    InvalidParam,
    NotFound,
    MethodNotAllowed,
    // Push validation (MPS codes).
    DeliveryTypeNotSupported,
    TokenOrUseridNull,
    SinglePushTargetTooMuch,
    ExpiredsecondsWrong,
    ExpiredtimeTooLong,
    PayloadNotEnough,
    SinglePushContentTooLong,
    MsgPayloadTooLong,
    ExtendParamToMuch,
    InvalidExtendParam,
    TemplateNotExist,
    TemplatekvNotEnough,
    NeedTemplate,
    TemplateExists,
    TemplateNameInvalid,
    TemplateTitleInvalid,
    TemplateContentInvalid,
    TemplateLimitExceeded,
    MultiplePushTargetTooMuch,
    MultipleInnerExtendParamToMuch,
    BroadcastOnlySupportByDevice,
    TemplateInUse,
    ScheduleNotExist,
    ScheduleNotCancellable,
    // Vendor channels.
    ChannelUnknown,
    ChannelConfigInvalid,
    ChannelNotConfigured,
    // Receipts and analytics.
    WebhookNotConfigured,
    WebhookUrlInvalid,
    AnalyticsSpanInvalid,
    // Lookups.
    AppNotExist,
    KeyNotExist,
    DeviceNotExist,
    TaskNotExist,
    /// A task whose push type has no counters of its own (`analytics.task_counts`).
    TaskNotCounted,
    MessageNotExist,
    // Server side.
    StoreUnavailable,
    SystemError,
    /// The app sends faster than its per-app limits.
    FlowControl,
}

impl ErrorCode {
    /// The `resultCode` string.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::SignatureMismatch => "SIGNATURE_MISMATCH",
            ErrorCode::SignatureHeadersInvalid => "SIGNATURE_HEADERS_INVALID",
            ErrorCode::TimestampOutOfWindow => "TIMESTAMP_OUT_OF_WINDOW",
            ErrorCode::NonceReused => "NONCE_REUSED",
            ErrorCode::ApiKeyInvalid => "API_KEY_INVALID",
            ErrorCode::AdminUnauthorized => "ADMIN_UNAUTHORIZED",
            ErrorCode::AppKeyInvalid => "APP_KEY_INVALID",
            ErrorCode::DeviceTokenInvalid => "DEVICE_TOKEN_INVALID",
            ErrorCode::BindProofInvalid => "BIND_PROOF_INVALID",
            ErrorCode::DeviceAlreadyRegistered => "DEVICE_ALREADY_REGISTERED",
            ErrorCode::InvalidJson => "INVALID_JSON",
            ErrorCode::RequestTooLarge => "REQUEST_TOO_LARGE",
            ErrorCode::RequestTimeout => "REQUEST_TIMEOUT",
            ErrorCode::InvalidParam => "INVALID_PARAM",
            ErrorCode::NotFound => "NOT_FOUND",
            ErrorCode::MethodNotAllowed => "METHOD_NOT_ALLOWED",
            ErrorCode::DeliveryTypeNotSupported => "DELIVERY_TYPE_NOT_SUPPORTED",
            ErrorCode::TokenOrUseridNull => "TOKEN_OR_USERID_NULL",
            ErrorCode::SinglePushTargetTooMuch => "SINGLE_PUSH_TARGET_TOO_MUCH",
            ErrorCode::ExpiredsecondsWrong => "EXPIREDSECONDS_WRONG",
            ErrorCode::ExpiredtimeTooLong => "EXPIREDTIME_TOO_LONG",
            ErrorCode::PayloadNotEnough => "PAYLOAD_NOT_ENOUGH",
            ErrorCode::SinglePushContentTooLong => "SINGLE_PUSH_CONTENT_TOO_LONG",
            ErrorCode::MsgPayloadTooLong => "MSG_PAYLOAD_TOO_LONG",
            ErrorCode::ExtendParamToMuch => "EXTEND_PARAM_TO_MUCH",
            ErrorCode::InvalidExtendParam => "INVALID_EXTEND_PARAM",
            ErrorCode::TemplateNotExist => "TEMPLATE_NOT_EXIST",
            ErrorCode::TemplatekvNotEnough => "TEMPLATEKV_NOT_ENOUGH",
            ErrorCode::NeedTemplate => "NEED_TEMPLATE",
            ErrorCode::TemplateExists => "TEMPLATE_EXISTS",
            ErrorCode::TemplateNameInvalid => "TEMPLATE_NAME_INVALID",
            ErrorCode::TemplateTitleInvalid => "TEMPLATE_TITLE_INVALID",
            ErrorCode::TemplateContentInvalid => "TEMPLATE_CONTENT_INVALID",
            ErrorCode::TemplateLimitExceeded => "TEMPLATE_LIMIT_EXCEEDED",
            ErrorCode::MultiplePushTargetTooMuch => "MULTIPLE_PUSH_TARGET_TOO_MUCH",
            ErrorCode::MultipleInnerExtendParamToMuch => "MULTIPLE_INNER_EXTEND_PARAM_TO_MUCH",
            ErrorCode::BroadcastOnlySupportByDevice => "BROADCAST_ONLY_SUPPORT_BY_DEVICE",
            ErrorCode::TemplateInUse => "TEMPLATE_IN_USE",
            ErrorCode::ScheduleNotExist => "SCHEDULE_NOT_EXIST",
            ErrorCode::ScheduleNotCancellable => "SCHEDULE_NOT_CANCELLABLE",
            ErrorCode::AppNotExist => "APP_NOT_EXIST",
            ErrorCode::KeyNotExist => "KEY_NOT_EXIST",
            ErrorCode::DeviceNotExist => "DEVICE_NOT_EXIST",
            ErrorCode::TaskNotExist => "TASK_NOT_EXIST",
            ErrorCode::TaskNotCounted => "TASK_NOT_COUNTED",
            ErrorCode::MessageNotExist => "MESSAGE_NOT_EXIST",
            ErrorCode::ChannelUnknown => "CHANNEL_UNKNOWN",
            ErrorCode::ChannelConfigInvalid => "CHANNEL_CONFIG_INVALID",
            ErrorCode::ChannelNotConfigured => "CHANNEL_NOT_CONFIGURED",
            ErrorCode::WebhookNotConfigured => "WEBHOOK_NOT_CONFIGURED",
            ErrorCode::WebhookUrlInvalid => "WEBHOOK_URL_INVALID",
            ErrorCode::AnalyticsSpanInvalid => "ANALYTICS_SPAN_INVALID",
            ErrorCode::StoreUnavailable => "STORE_UNAVAILABLE",
            ErrorCode::SystemError => "SYSTEM_ERROR",
            ErrorCode::FlowControl => "FLOW_CONTROL",
        }
    }

    /// The HTTP status that goes with the code.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorCode::SignatureMismatch
            | ErrorCode::SignatureHeadersInvalid
            | ErrorCode::TimestampOutOfWindow
            | ErrorCode::NonceReused
            | ErrorCode::ApiKeyInvalid
            | ErrorCode::AdminUnauthorized
            | ErrorCode::AppKeyInvalid
            | ErrorCode::DeviceTokenInvalid => 401,
            ErrorCode::BindProofInvalid => 403,
            ErrorCode::InvalidJson
            | ErrorCode::InvalidParam
            | ErrorCode::DeliveryTypeNotSupported
            | ErrorCode::TokenOrUseridNull
            | ErrorCode::SinglePushTargetTooMuch
            | ErrorCode::ExpiredsecondsWrong
            | ErrorCode::ExpiredtimeTooLong
            | ErrorCode::PayloadNotEnough
            | ErrorCode::SinglePushContentTooLong
            | ErrorCode::MsgPayloadTooLong
            | ErrorCode::ExtendParamToMuch
            | ErrorCode::InvalidExtendParam => 400,
            ErrorCode::RequestTooLarge => 413,
            ErrorCode::RequestTimeout => 408,
            ErrorCode::DeviceAlreadyRegistered => 409,
            ErrorCode::NotFound
            | ErrorCode::AppNotExist
            | ErrorCode::KeyNotExist
            | ErrorCode::DeviceNotExist
            | ErrorCode::TaskNotExist
            | ErrorCode::TaskNotCounted
            | ErrorCode::MessageNotExist
            | ErrorCode::ChannelUnknown
            | ErrorCode::ChannelNotConfigured
            | ErrorCode::WebhookNotConfigured => 404,
            ErrorCode::ChannelConfigInvalid | ErrorCode::WebhookUrlInvalid | ErrorCode::AnalyticsSpanInvalid => 400,
            ErrorCode::TemplatekvNotEnough
            | ErrorCode::NeedTemplate
            | ErrorCode::TemplateNameInvalid
            | ErrorCode::TemplateTitleInvalid
            | ErrorCode::TemplateContentInvalid
            | ErrorCode::MultiplePushTargetTooMuch
            | ErrorCode::MultipleInnerExtendParamToMuch
            | ErrorCode::BroadcastOnlySupportByDevice => 400,
            ErrorCode::TemplateNotExist => 404,
            ErrorCode::TemplateExists | ErrorCode::TemplateLimitExceeded => 409,
            ErrorCode::TemplateInUse | ErrorCode::ScheduleNotCancellable => 409,
            ErrorCode::ScheduleNotExist => 404,
            ErrorCode::MethodNotAllowed => 405,
            ErrorCode::StoreUnavailable => 503,
            ErrorCode::SystemError => 500,
            ErrorCode::FlowControl => 429,
        }
    }

    /// Every code, in table order: the docs test checks that each one is documented.
    pub const ALL: &'static [ErrorCode] = &[
        ErrorCode::SignatureMismatch,
        ErrorCode::SignatureHeadersInvalid,
        ErrorCode::TimestampOutOfWindow,
        ErrorCode::NonceReused,
        ErrorCode::ApiKeyInvalid,
        ErrorCode::AdminUnauthorized,
        ErrorCode::AppKeyInvalid,
        ErrorCode::DeviceTokenInvalid,
        ErrorCode::BindProofInvalid,
        ErrorCode::DeviceAlreadyRegistered,
        ErrorCode::InvalidJson,
        ErrorCode::RequestTooLarge,
        ErrorCode::RequestTimeout,
        ErrorCode::InvalidParam,
        ErrorCode::NotFound,
        ErrorCode::MethodNotAllowed,
        ErrorCode::DeliveryTypeNotSupported,
        ErrorCode::TokenOrUseridNull,
        ErrorCode::SinglePushTargetTooMuch,
        ErrorCode::ExpiredsecondsWrong,
        ErrorCode::ExpiredtimeTooLong,
        ErrorCode::PayloadNotEnough,
        ErrorCode::SinglePushContentTooLong,
        ErrorCode::MsgPayloadTooLong,
        ErrorCode::ExtendParamToMuch,
        ErrorCode::InvalidExtendParam,
        ErrorCode::TemplateNotExist,
        ErrorCode::TemplatekvNotEnough,
        ErrorCode::NeedTemplate,
        ErrorCode::TemplateExists,
        ErrorCode::TemplateNameInvalid,
        ErrorCode::TemplateTitleInvalid,
        ErrorCode::TemplateContentInvalid,
        ErrorCode::TemplateLimitExceeded,
        ErrorCode::MultiplePushTargetTooMuch,
        ErrorCode::MultipleInnerExtendParamToMuch,
        ErrorCode::BroadcastOnlySupportByDevice,
        ErrorCode::TemplateInUse,
        ErrorCode::ScheduleNotExist,
        ErrorCode::ScheduleNotCancellable,
        ErrorCode::AppNotExist,
        ErrorCode::KeyNotExist,
        ErrorCode::DeviceNotExist,
        ErrorCode::TaskNotExist,
        ErrorCode::TaskNotCounted,
        ErrorCode::MessageNotExist,
        ErrorCode::ChannelUnknown,
        ErrorCode::ChannelConfigInvalid,
        ErrorCode::ChannelNotConfigured,
        ErrorCode::StoreUnavailable,
        ErrorCode::SystemError,
        ErrorCode::FlowControl,
    ];
}

/// A refusal: a code from the table and a message for the caller. Internal detail is
/// logged where the error arises, never put here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
    /// When to try again (`FLOW_CONTROL`): answered as `Retry-After`, in whole seconds.
    pub retry_after: Option<std::time::Duration>,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError { code, message: message.into(), retry_after: None }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.message)
    }
}

impl std::error::Error for ApiError {}

/// Parses a JSON body: broken JSON is `INVALID_JSON`, a wrong shape `INVALID_PARAM`.
pub fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| json_error(&e, "the body"))
}

/// Parses a body that must be a JSON object (a push, a template): anything else is
/// `INVALID_JSON`, a field of the wrong type `INVALID_PARAM`.
pub fn parse_object<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let value: serde_json::Value = parse_json(body)?;
    if !value.is_object() {
        return Err(ApiError::new(ErrorCode::InvalidJson, "the body must be a JSON object"));
    }
    serde_json::from_value(value).map_err(|e| json_error(&e, "the body"))
}

/// A serde_json error about `what` in our words: broken JSON is `INVALID_JSON`; a wrong
/// shape is `INVALID_PARAM` naming the field (serde's own text names Rust types, as in
/// "expected struct BindBody", which is nothing for a caller).
pub fn json_error(e: &serde_json::Error, what: &str) -> ApiError {
    let at = if e.line() > 0 { format!(" (line {}, column {})", e.line(), e.column()) } else { String::new() };
    if !matches!(e.classify(), serde_json::error::Category::Data) {
        return ApiError::new(ErrorCode::InvalidJson, format!("{what} is not valid JSON{at}"));
    }
    let text = e.to_string();
    let quoted = |prefix: &str| text.strip_prefix(prefix).and_then(|r| r.split('`').next()).map(str::to_owned);
    let message = if let Some(field) = quoted("missing field `") {
        format!("{what} lacks the required field {field}")
    } else if let Some(field) = quoted("unknown field `") {
        format!("{what} has a field this request does not take: {field}")
    } else if let Some(field) = quoted("duplicate field `") {
        format!("{what} has the field {field} twice")
    } else if let Some(rest) = text.strip_prefix("invalid type: ") {
        let got = rest.split(", expected").next().unwrap_or("a value");
        let got = got.split(" `").next().unwrap_or(got);
        format!("{what} has a value of the wrong type{at}: got {got}")
    } else {
        format!("{what} does not have the expected shape{at}")
    };
    ApiError::new(ErrorCode::InvalidParam, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serde_name_matches_table_name() {
        for code in ErrorCode::ALL {
            let json = serde_json::to_string(code).unwrap();
            assert_eq!(json, format!("\"{}\"", code.as_str()));
            assert!((400..600).contains(&code.http_status()));
        }
    }

    #[test]
    fn shape_errors_name_fields_not_rust_types() {
        #[derive(Debug, serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct BindBody {
            user_id: String,
        }
        let cases = [
            (&b"[1]"[..], ErrorCode::InvalidParam, "wrong type"),
            (b"3", ErrorCode::InvalidParam, "got integer"),
            (b"{}", ErrorCode::InvalidParam, "lacks the required field user_id"),
            (b"{\"user_id\":5}", ErrorCode::InvalidParam, "got integer"),
            (b"{\"user_id\":\"u\",\"x\":1}", ErrorCode::InvalidParam, "does not take: x"),
            (b"{\"user_id\":", ErrorCode::InvalidJson, "not valid JSON"),
        ];
        for (body, code, words) in cases {
            let e = parse_json::<BindBody>(body).unwrap_err();
            assert_eq!(e.code, code, "{e}");
            assert!(e.message.contains(words), "{e}");
            assert!(!e.message.contains("BindBody") && !e.message.contains("struct"), "{e}");
        }
    }

    #[test]
    fn every_code_is_documented() {
        let doc = include_str!("../../../docs/errors.md");
        for code in ErrorCode::ALL {
            assert!(doc.contains(&format!("`{}`", code.as_str())), "{} missing from docs/errors.md", code.as_str());
        }
    }
}
