//! Reading the fields of a push request as MPS clients send them, each refused in our words
//! with its MPS code when it is not what it should be.

use serde_json::{Map, Value};

use crate::error::{ApiError, ErrorCode};
use crate::state::TargetKind;

/// extendedParams keys that MPS reserves for itself (mps-spec §4).
const RESERVED_EXTENDED_KEYS: &[&str] =
    &["notifyType", "action", "silent", "pushType", "templateCode", "channel", "taskId"];

pub(crate) fn invalid(code: ErrorCode, msg: impl Into<String>) -> ApiError {
    ApiError::new(code, msg)
}

/// An object, also accepted as a string holding JSON.
pub(crate) fn object(value: Option<&Value>, name: &str) -> Result<Option<Map<String, Value>>, ApiError> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(m)) => Ok(Some(m.clone())),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) => match serde_json::from_str::<Value>(s) {
            Ok(Value::Object(m)) => Ok(Some(m)),
            _ => Err(invalid(ErrorCode::InvalidParam, format!("{name} must be a JSON object"))),
        },
        Some(_) => Err(invalid(ErrorCode::InvalidParam, format!("{name} must be a JSON object"))),
    }
}

/// An array, also accepted as a string holding JSON.
pub(crate) fn array(value: Option<&Value>, name: &str) -> Result<Vec<Value>, ApiError> {
    match value {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(a)) => Ok(a.clone()),
        Some(Value::String(s)) => match serde_json::from_str::<Value>(s) {
            Ok(Value::Array(a)) => Ok(a),
            _ => Err(invalid(ErrorCode::InvalidParam, format!("{name} must be a JSON array"))),
        },
        Some(_) => Err(invalid(ErrorCode::InvalidParam, format!("{name} must be a JSON array"))),
    }
}

/// An integer, also accepted as a numeric string (MPS form bodies send strings).
pub(crate) fn int(value: Option<&Value>, name: &str) -> Result<Option<i64>, ApiError> {
    let not_int = || invalid(ErrorCode::InvalidParam, format!("{name} must be an integer"));
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n.as_i64().map(Some).ok_or_else(not_int),
        Some(Value::String(s)) => s.trim().parse().map(Some).map_err(|_| not_int()),
        Some(_) => Err(not_int()),
    }
}

/// A 0/1 flag, also accepted as a boolean.
pub(crate) fn flag(value: Option<&Value>, name: &str) -> Result<Option<i64>, ApiError> {
    match value {
        Some(Value::Bool(b)) => Ok(Some(*b as i64)),
        other => int(other, name),
    }
}

pub(crate) fn string(value: Option<&Value>, name: &str) -> Result<Option<String>, ApiError> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(invalid(ErrorCode::InvalidParam, format!("{name} must be a string"))),
    }
}

/// A key (msgKey, msgkey): a string, or a number taken as its digits.
pub(crate) fn key(value: Option<&Value>, name: &str) -> Result<Option<String>, ApiError> {
    match value {
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        other => string(other, name),
    }
}

/// deliveryType: 1 Android, 2 iOS, 7 HarmonyOS device; 3 user; or "device" / "user".
pub(crate) fn delivery_type(value: Option<&Value>) -> Result<(i64, TargetKind), ApiError> {
    let unsupported =
        || invalid(ErrorCode::DeliveryTypeNotSupported, "deliveryType must be 1, 2, 3, 7, \"device\" or \"user\"");
    match value {
        Some(Value::String(s)) if s == "device" => Ok((1, TargetKind::Device)),
        Some(Value::String(s)) if s == "user" => Ok((3, TargetKind::User)),
        None | Some(Value::Null) => Err(unsupported()),
        other => match int(other, "deliveryType").map_err(|_| unsupported())? {
            Some(t @ (1 | 2 | 7)) => Ok((t, TargetKind::Device)),
            Some(3) => Ok((3, TargetKind::User)),
            _ => Err(unsupported()),
        },
    }
}

/// extendedParams: at most `max` keys, no reserved key, scalar values only.
pub fn extended_params(value: Option<&Value>, max: usize) -> Result<Map<String, Value>, ApiError> {
    let params = object(value, "extendedParams")?.unwrap_or_default();
    if params.len() > max {
        return Err(invalid(
            ErrorCode::ExtendParamToMuch,
            format!("extendedParams has {} keys; at most {max}", params.len()),
        ));
    }
    for (k, v) in &params {
        if RESERVED_EXTENDED_KEYS.contains(&k.as_str()) {
            return Err(invalid(ErrorCode::InvalidExtendParam, format!("extendedParams key {k} is reserved")));
        }
        if k.is_empty() || matches!(v, Value::Object(_) | Value::Array(_)) {
            return Err(invalid(
                ErrorCode::InvalidExtendParam,
                format!("extendedParams {k}: values must be strings, numbers or booleans"),
            ));
        }
    }
    Ok(params)
}
