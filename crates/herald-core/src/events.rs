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

/// How far ahead of the server's clock a device's event time may be; a later one (or a
/// negative one) is taken as the time the report arrived.
pub const MAX_SKEW_MS: i64 = 5 * 60_000;

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
            let at = e.at.filter(|at| (0..=now + MAX_SKEW_MS).contains(at)).unwrap_or(now);
            Ok(Reported { message_id: MessageId::new(e.message_id), event, at })
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
        // Beyond the clock skew, or negative: the time of the report.
        let now = 1_000_000_000;
        let far = format!(
            r#"[{{"messageId":"m","event":"opened","at":{}}},{{"messageId":"m","event":"opened","at":-5}},{{"messageId":"m","event":"opened","at":{}}}]"#,
            now + MAX_SKEW_MS + 1,
            now + 60_000
        );
        let times: Vec<i64> = parse_events(far.as_bytes(), now).unwrap().iter().map(|r| r.at).collect();
        assert_eq!(times, vec![now, now, now + 60_000]);
        assert_eq!(parse_events(b"3", 0).unwrap_err().code, ErrorCode::InvalidParam);
    }
}
