//! What a device reports about messages it got (`POST /device/v1/events`, or MQTT
//! `events/<deviceId>`): one `{messageId, event, at?}` object or an array of them.

use serde::Deserialize;
use serde_json::Value;
use utoipa::ToSchema;

use crate::error::{ApiError, ErrorCode, json_error, parse_json};
use crate::ids::MessageId;
use crate::state::DeviceEvent;

/// One reported event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reported {
    pub message_id: MessageId,
    pub event: DeviceEvent,
    /// When it happened (Unix ms); the time of the report when the device gave none.
    pub at: i64,
}

/// One event as a device sends it.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReportedEvent {
    /// The messageId of the payload the device got.
    pub message_id: String,
    #[schema(value_type = DeviceEvent)]
    pub event: String,
    /// When it happened, Unix ms (default: when the report arrives).
    pub at: Option<i64>,
}

/// The body of an events report: one event or an array of them.
#[derive(ToSchema)]
#[serde(untagged)]
#[allow(dead_code)] // Describes the body for the OpenAPI description; parse_events reads it.
pub enum EventReport {
    One(ReportedEvent),
    Many(Vec<ReportedEvent>),
}

/// Parses device events reported at `now`.
pub fn parse_events(body: &[u8], now: i64) -> Result<Vec<Reported>, ApiError> {
    let value: Value = parse_json(body)?;
    let items = match value {
        Value::Array(items) => items,
        one @ Value::Object(_) => vec![one],
        _ => {
            return Err(ApiError::new(ErrorCode::InvalidParam, "events must be an object or an array of objects"));
        }
    };
    items
        .into_iter()
        .map(|item| {
            let e: ReportedEvent = serde_json::from_value(item).map_err(|e| json_error(&e, "an event"))?;
            let event = DeviceEvent::parse(&e.event)
                .ok_or_else(|| ApiError::new(ErrorCode::InvalidParam, "event must be arrived, opened or ignored"))?;
            Ok(Reported { message_id: MessageId::new(e.message_id), event, at: e.at.unwrap_or(now) })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_object_or_an_array() {
        let one = parse_events(br#"{"messageId":"m1","event":"opened","at":5}"#, 9).unwrap();
        assert_eq!(one, vec![Reported { message_id: MessageId::new("m1"), event: DeviceEvent::Opened, at: 5 }]);
        let many =
            parse_events(br#"[{"messageId":"m1","event":"arrived"},{"messageId":"m2","event":"ignored"}]"#, 9).unwrap();
        assert_eq!((many.len(), many[0].at), (2, 9), "no time: the time of the report");
        assert_eq!(
            parse_events(b"[{\"messageId\":\"m\",\"event\":\"exploded\"}]", 0).unwrap_err().code,
            ErrorCode::InvalidParam
        );
        assert_eq!(parse_events(b"{", 0).unwrap_err().code, ErrorCode::InvalidJson);
        assert_eq!(parse_events(b"3", 0).unwrap_err().code, ErrorCode::InvalidParam);
    }
}
