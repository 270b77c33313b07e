//! Scheduled pushes: `strategyType` 1 (once, at `fixedTime`) and 2 (recurring: every day,
//! some weekdays or some days of the month at `time`, between `startTime` and `endTime`), in
//! an IANA `timeZone` (default UTC). Pure functions of a given time: the scheduler decides
//! when "now" is, so tests drive it with their own clock.

use jiff::civil::{Date, Time};
use jiff::tz::TimeZone;
use serde_json::{Map, Value};

use crate::error::{ApiError, ErrorCode};
use crate::ids::{AppId, MessageId};
use crate::model::ScheduleRecord;
use crate::push::Prepared;
use crate::push::request::{PushOptions, PushRequest};
use crate::state::{ScheduleStatus, StrategyKind};

/// When a scheduled push fires.
#[derive(Debug, Clone, PartialEq)]
pub enum Strategy {
    Once { at: i64 },
    Recurring(Rule),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    pub start: i64,
    pub end: i64,
    pub time: Time,
    pub circle: Circle,
    pub zone: String,
}

/// circleType 1, 2, 3 with their circleValue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Circle {
    Daily,
    /// ISO weekdays: 1 Monday … 7 Sunday.
    Weekly(Vec<i8>),
    /// Days of the month 1…31 (a month without that day is skipped).
    Monthly(Vec<i8>),
}

fn invalid(msg: impl Into<String>) -> ApiError {
    ApiError::new(ErrorCode::InvalidParam, msg)
}

fn int(m: &Map<String, Value>, key: &str) -> Result<Option<i64>, ApiError> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n.as_i64().map(Some).ok_or_else(|| invalid(format!("{key} must be an integer"))),
        Some(Value::String(s)) => s.trim().parse().map(Some).map_err(|_| invalid(format!("{key} must be an integer"))),
        Some(_) => Err(invalid(format!("{key} must be an integer"))),
    }
}

impl Strategy {
    /// The strategy of a push request, `None` for strategyType 0 (now). `now` bounds what
    /// may be scheduled: a fixed time must be in the future, a recurrence must fire again.
    pub fn parse(options: &PushOptions, now: i64) -> Result<Option<Strategy>, ApiError> {
        let kind = match &options.strategy_type {
            None | Some(Value::Null) => 0,
            Some(Value::Number(n)) => n.as_i64().ok_or_else(|| invalid("strategyType must be an integer"))?,
            Some(Value::String(s)) => s.trim().parse().map_err(|_| invalid("strategyType must be an integer"))?,
            Some(_) => return Err(invalid("strategyType must be an integer")),
        };
        if kind == 0 {
            return Ok(None);
        }
        let content = match &options.strategy_content {
            Some(Value::Object(m)) => m.clone(),
            Some(Value::String(s)) => match serde_json::from_str::<Value>(s) {
                Ok(Value::Object(m)) => m,
                _ => return Err(invalid("strategyContent must be a JSON object")),
            },
            _ => return Err(invalid("strategyContent is required when strategyType is 1 or 2")),
        };
        let zone = match options.time_zone.as_ref().or_else(|| content.get("timeZone")) {
            None | Some(Value::Null) => "UTC".to_string(),
            Some(Value::String(z)) => z.clone(),
            Some(_) => return Err(invalid("timeZone must be an IANA name such as Europe/Berlin")),
        };
        let tz = TimeZone::get(&zone).map_err(|_| invalid(format!("timeZone {zone} is not an IANA time zone")))?;
        match kind {
            1 => {
                let at = int(&content, "fixedTime")?.ok_or_else(|| invalid("strategyContent.fixedTime is required"))?;
                if at <= now {
                    return Err(invalid("strategyContent.fixedTime is not in the future"));
                }
                Ok(Some(Strategy::Once { at }))
            }
            2 => {
                let start =
                    int(&content, "startTime")?.ok_or_else(|| invalid("strategyContent.startTime is required"))?;
                let end = int(&content, "endTime")?.ok_or_else(|| invalid("strategyContent.endTime is required"))?;
                if end <= start {
                    return Err(invalid("strategyContent.endTime must be after startTime"));
                }
                let time = match content.get("time") {
                    Some(Value::String(t)) => {
                        Time::strptime("%H:%M:%S", t).map_err(|_| invalid("strategyContent.time must be HH:mm:ss"))?
                    }
                    _ => return Err(invalid("strategyContent.time (HH:mm:ss) is required")),
                };
                let values: Vec<i64> = match content.get("circleValue") {
                    None | Some(Value::Null) => Vec::new(),
                    Some(Value::Array(a)) => a
                        .iter()
                        .map(|v| match v {
                            Value::Number(n) => n.as_i64().ok_or(()),
                            Value::String(s) => s.trim().parse().map_err(|_| ()),
                            _ => Err(()),
                        })
                        .collect::<Result<_, _>>()
                        .map_err(|_| invalid("strategyContent.circleValue must be a list of integers"))?,
                    Some(_) => return Err(invalid("strategyContent.circleValue must be a list of integers")),
                };
                let checked = |lo: i64, hi: i64, what: &str| -> Result<Vec<i8>, ApiError> {
                    if values.is_empty() || values.iter().any(|v| !(lo..=hi).contains(v)) {
                        return Err(invalid(format!("strategyContent.circleValue must list {what} ({lo}..{hi})")));
                    }
                    Ok(values.iter().map(|v| *v as i8).collect())
                };
                let circle = match int(&content, "circleType")? {
                    Some(1) => Circle::Daily,
                    Some(2) => Circle::Weekly(checked(1, 7, "weekdays, 1 Monday to 7 Sunday")?),
                    Some(3) => Circle::Monthly(checked(1, 31, "days of the month")?),
                    _ => {
                        return Err(invalid("strategyContent.circleType must be 1 (daily), 2 (weekly) or 3 (monthly)"));
                    }
                };
                let rule = Rule { start, end, time, circle, zone };
                if rule.next_after(now - 1, &tz).is_none() {
                    return Err(invalid("the recurrence has no occurrence after now before endTime"));
                }
                Ok(Some(Strategy::Recurring(rule)))
            }
            _ => Err(invalid("strategyType must be 0 (now), 1 (fixed time) or 2 (recurring)")),
        }
    }

    pub fn kind(&self) -> StrategyKind {
        match self {
            Strategy::Once { .. } => StrategyKind::Once,
            Strategy::Recurring(_) => StrategyKind::Recurring,
        }
    }

    /// The first firing at or after `now`.
    pub fn first(&self, now: i64) -> Option<i64> {
        match self {
            Strategy::Once { at } => Some(*at),
            Strategy::Recurring(rule) => rule.next_after(now - 1, &rule.tz()),
        }
    }

    /// The firing after the one at `fired` (none for a one-off push).
    pub fn next_after(&self, fired: i64) -> Option<i64> {
        match self {
            Strategy::Once { .. } => None,
            Strategy::Recurring(rule) => rule.next_after(fired, &rule.tz()),
        }
    }

    /// The strategy as stored with the schedule.
    pub fn to_json(&self) -> Value {
        match self {
            Strategy::Once { at } => serde_json::json!({"fixedTime": at}),
            Strategy::Recurring(r) => {
                let (circle_type, values) = match &r.circle {
                    Circle::Daily => (1, vec![]),
                    Circle::Weekly(v) => (2, v.clone()),
                    Circle::Monthly(v) => (3, v.clone()),
                };
                serde_json::json!({
                    "startTime": r.start, "endTime": r.end, "time": r.time.strftime("%H:%M:%S").to_string(),
                    "circleType": circle_type, "circleValue": values, "timeZone": r.zone,
                })
            }
        }
    }

    /// Reads back what [`Strategy::to_json`] stored.
    pub fn from_stored(kind: StrategyKind, stored: &str) -> Result<Strategy, ApiError> {
        let content: Value = serde_json::from_str(stored).map_err(|e| invalid(format!("stored strategy: {e}")))?;
        let options = PushOptions {
            strategy_type: Some(kind.code().into()),
            strategy_content: Some(content),
            ..PushOptions::default()
        };
        // Parsed as of the start of time: a stored strategy is never refused for being past.
        Strategy::parse(&options, i64::MIN / 2)?.ok_or_else(|| invalid("stored strategy is empty"))
    }
}

/// The schedule of a validated request to send by `strategy` (the request is stored
/// without its strategy, and validated again when it fires).
pub fn schedule_of(
    app_id: &AppId,
    request: &PushRequest,
    prepared: &Prepared,
    strategy: &Strategy,
    now: i64,
) -> Result<ScheduleRecord, ApiError> {
    let (delivery_type, title, content) = prepared.summary();
    let push_time = strategy.first(now).ok_or_else(|| invalid("the strategy has no firing after now"))?;
    Ok(ScheduleRecord {
        unique_id: format!("s{}", &MessageId::generate(now).as_str()[1..]),
        parent_id: None,
        app_id: app_id.clone(),
        push_type: request.push_type(),
        delivery_type,
        template_name: request.template_name()?,
        title,
        content,
        body: request.without_strategy().to_json(),
        strategy_kind: strategy.kind(),
        strategy: strategy.to_json().to_string(),
        push_time,
        expires_ms: prepared.validity_ms(),
        status: ScheduleStatus::Waiting,
        task_id: None,
        created_at: now,
    })
}

impl Rule {
    fn tz(&self) -> TimeZone {
        TimeZone::get(&self.zone).unwrap_or(TimeZone::UTC)
    }

    fn matches(&self, d: Date) -> bool {
        match &self.circle {
            Circle::Daily => true,
            Circle::Weekly(days) => days.contains(&d.weekday().to_monday_one_offset()),
            Circle::Monthly(days) => days.contains(&d.day()),
        }
    }

    /// The first occurrence strictly after `after` (Unix ms) within start..=end.
    pub fn next_after(&self, after: i64, tz: &TimeZone) -> Option<i64> {
        let from = after.max(self.start - 1);
        let ts = jiff::Timestamp::from_millisecond(from).ok()?;
        let mut day = ts.to_zoned(tz.clone()).date();
        // A little over a year covers every monthly day that exists at all.
        for _ in 0..400 {
            if self.matches(day) {
                let at = day.to_datetime(self.time).to_zoned(tz.clone()).ok()?.timestamp().as_millisecond();
                if at > self.end {
                    return None;
                }
                if at > from {
                    return Some(at);
                }
            }
            day = day.tomorrow().ok()?;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const DAY: i64 = 86_400_000;
    /// 2026-11-30T00:00:00Z, a Monday.
    const MONDAY: i64 = 1_796_000_000_000 - 1_796_000_000_000 % DAY;

    fn parse(v: Value, now: i64) -> Result<Option<Strategy>, ApiError> {
        Strategy::parse(&serde_json::from_value(v).unwrap(), now)
    }

    fn recurring(content: Value) -> Strategy {
        parse(json!({"strategyType": 2, "strategyContent": content}), MONDAY).unwrap().unwrap()
    }

    #[test]
    fn monday_is_what_the_tests_assume() {
        let d = jiff::Timestamp::from_millisecond(MONDAY).unwrap().to_zoned(TimeZone::UTC);
        assert_eq!((d.weekday().to_monday_one_offset(), d.hour()), (1, 0), "{d}");
    }

    #[test]
    fn daily_fires_at_the_time_every_day_until_the_end() {
        let s =
            recurring(json!({"startTime": MONDAY, "endTime": MONDAY + 3 * DAY, "time": "08:30:00", "circleType": 1}));
        let first = s.first(MONDAY).unwrap();
        assert_eq!(first, MONDAY + 8 * 3_600_000 + 30 * 60_000);
        assert_eq!(s.next_after(first), Some(first + DAY));
        assert_eq!(s.next_after(first + 2 * DAY), None, "the fourth day is past endTime");
    }

    #[test]
    fn weekly_and_monthly_pick_their_days() {
        let weekly = recurring(json!({"startTime": MONDAY, "endTime": MONDAY + 30 * DAY, "time": "12:00:00",
            "circleType": 2, "circleValue": [3, 5]}));
        let wed = weekly.first(MONDAY).unwrap();
        assert_eq!(wed, MONDAY + 2 * DAY + 12 * 3_600_000);
        assert_eq!(weekly.next_after(wed), Some(wed + 2 * DAY), "then Friday");
        assert_eq!(weekly.next_after(wed + 2 * DAY), Some(wed + 7 * DAY), "then Wednesday again");
        let monthly = recurring(json!({"startTime": MONDAY, "endTime": MONDAY + 120 * DAY, "time": "00:00:00",
            "circleType": 3, "circleValue": [31]}));
        let first = jiff::Timestamp::from_millisecond(monthly.first(MONDAY).unwrap()).unwrap().to_zoned(TimeZone::UTC);
        let second = jiff::Timestamp::from_millisecond(monthly.next_after(first.timestamp().as_millisecond()).unwrap())
            .unwrap()
            .to_zoned(TimeZone::UTC);
        assert_eq!(
            (first.month(), first.day(), second.month(), second.day()),
            (12, 31, 1, 31),
            "months without a 31st are skipped"
        );
    }

    #[test]
    fn the_time_of_day_is_in_the_given_zone() {
        let s = parse(
            json!({"strategyType": 2, "timeZone": "Asia/Shanghai", "strategyContent":
                {"startTime": MONDAY, "endTime": MONDAY + 5 * DAY, "time": "09:00:00", "circleType": 1}}),
            MONDAY,
        )
        .unwrap()
        .unwrap();
        // 09:00 in Shanghai (UTC+8) is 01:00 UTC.
        assert_eq!(s.first(MONDAY), Some(MONDAY + 3_600_000));
        assert_eq!(Strategy::from_stored(StrategyKind::Recurring, &s.to_json().to_string()).unwrap(), s);
    }

    #[test]
    fn bad_strategies_are_refused() {
        let bad = [
            json!({"strategyType": 1, "strategyContent": {"fixedTime": MONDAY - 1}}),
            json!({"strategyType": 1}),
            json!({"strategyType": 3, "strategyContent": {}}),
            json!({"strategyType": 2, "strategyContent": {"startTime": MONDAY, "endTime": MONDAY + DAY, "time": "25:00:00", "circleType": 1}}),
            json!({"strategyType": 2, "strategyContent": {"startTime": MONDAY, "endTime": MONDAY + DAY, "time": "08:00:00", "circleType": 2, "circleValue": [8]}}),
            json!({"strategyType": 2, "strategyContent": {"startTime": MONDAY - 9 * DAY, "endTime": MONDAY - DAY, "time": "08:00:00", "circleType": 1}}),
            json!({"strategyType": 2, "timeZone": "Mars/Olympus", "strategyContent": {"startTime": MONDAY, "endTime": MONDAY + DAY, "time": "08:00:00", "circleType": 1}}),
        ];
        for b in bad {
            assert_eq!(parse(b.clone(), MONDAY).unwrap_err().code, ErrorCode::InvalidParam, "{b}");
        }
        assert_eq!(parse(json!({"strategyType": 0}), MONDAY).unwrap(), None);
        assert_eq!(
            parse(
                json!({"strategyType": "1", "strategyContent": format!("{{\"fixedTime\": {}}}", MONDAY + 1)}),
                MONDAY
            )
            .unwrap(),
            Some(Strategy::Once { at: MONDAY + 1 })
        );
    }
}
