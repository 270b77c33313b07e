//! The decisions the store's operations take, as pure functions: written once, tested once,
//! whichever backend runs the statements around them.

use herald_core::ids::{MessageId, TaskId};
use herald_core::model::{CommittedPush, FireClaim, Firing, PendingDelivery, Presence, TargetOutcome};
use herald_core::state::{MessageKind, ScheduleStatus};
use serde_json::{Map, Value};

/// The answer to a push whose every target repeats one earlier request (a client retry):
/// that request's task, every target a duplicate. `earlier` holds, per target, the
/// (messageId, taskId) of the earlier message still within its validity, if any.
pub(crate) fn replay_of(earlier: &[Option<(String, String)>]) -> Option<CommittedPush> {
    let Some(Some((_, first_task))) = earlier.first() else { return None };
    if !earlier.iter().all(|e| matches!(e, Some((_, t)) if t == first_task)) {
        return None;
    }
    let outcomes = earlier
        .iter()
        .flatten()
        .map(|(mid, _)| {
            let mid = MessageId::new(mid.clone());
            (mid.clone(), TargetOutcome::Duplicate { message_id: mid })
        })
        .collect();
    Some(CommittedPush { task_id: TaskId::new(first_task.clone()), replayed: true, outcomes })
}

/// The presence a connect replaced, from the (node, generation) read before it: `None`
/// when there was none or it was this very connection.
pub(crate) fn replaced(before: Option<(Option<String>, Option<i64>)>, now: &Presence) -> Option<Presence> {
    match before {
        Some((Some(node), Some(generation))) => {
            let old = Presence { node, generation: generation as u64 };
            (old != *now).then_some(old)
        }
        _ => None,
    }
}

/// The unicast and broadcast deliveries of a device merged in message order (ids are
/// time-ordered), at most `limit`.
pub(crate) fn merge_pending(
    mut unicast: Vec<PendingDelivery>,
    broadcasts: Vec<PendingDelivery>,
    limit: usize,
) -> Vec<PendingDelivery> {
    if !broadcasts.is_empty() {
        unicast.extend(broadcasts);
        unicast.sort_by(|x, y| x.message_id.order_key().cmp(y.message_id.order_key()));
        unicast.truncate(limit);
    }
    unicast
}

/// Reported vendor tokens merged into the known ones: a value replaces, `null` removes.
pub(crate) fn merge_vendor_tokens(known: &mut Map<String, Value>, reported: Map<String, Value>) {
    for (channel, token) in reported {
        if token.is_null() {
            known.remove(&channel);
        } else {
            known.insert(channel, token);
        }
    }
}

/// The control payload that withdraws `revoked` from a device: `messageId` names the
/// withdrawn message, `revokeId` the control message itself (what the device acknowledges).
pub(crate) fn recall_payload(revoked: &str, msg_key: &str, task_id: &str, control: &MessageId, now: i64) -> String {
    serde_json::json!({
        "type": MessageKind::Revoke,
        "messageId": revoked,
        "msgKey": msg_key,
        "taskId": task_id,
        "revokeId": control,
        "sentAt": now,
    })
    .to_string()
}

/// The writes of a claimed firing: what the schedule row becomes, and the record of the
/// firing of a recurring push.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FirePlan {
    /// The schedule row's new status, task and push time.
    pub status: ScheduleStatus,
    pub row_task: Option<String>,
    pub push_time: i64,
    /// For a recurring push: the firing's own status and task.
    pub outcome: ScheduleStatus,
    pub task_id: Option<String>,
}

pub(crate) fn fire_plan(claim: &FireClaim) -> FirePlan {
    let task_id = match &claim.firing {
        Some(Firing::Push(p)) => Some(p.task.task_id.as_str().to_owned()),
        Some(Firing::Broadcast(b)) => Some(b.task.task_id.as_str().to_owned()),
        None => None,
    };
    let outcome = if claim.firing.is_some() { ScheduleStatus::Executed } else { ScheduleStatus::Missed };
    if claim.recurring {
        let status = if claim.next.is_some() { ScheduleStatus::Waiting } else { ScheduleStatus::Executed };
        FirePlan { status, row_task: None, push_time: claim.next.unwrap_or(claim.due), outcome, task_id }
    } else {
        FirePlan { status: outcome, row_task: task_id.clone(), push_time: claim.due, outcome, task_id }
    }
}

/// A new id of a schedule or of a firing of one: `s` and a time-ordered suffix.
pub(crate) fn schedule_id(now: i64) -> String {
    format!("s{}", MessageId::generate(now).order_key())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending(id: &str) -> PendingDelivery {
        PendingDelivery { message_id: MessageId::new(id), payload: String::new(), expires_at: 0, sent_before: false }
    }

    #[test]
    fn a_retry_of_one_request_replays_it_and_anything_else_does_not() {
        let e = |m: &str, t: &str| Some((m.to_string(), t.to_string()));
        let replay = replay_of(&[e("m1", "t1"), e("m2", "t1")]).unwrap();
        assert_eq!((replay.task_id.as_str(), replay.replayed, replay.outcomes.len()), ("t1", true, 2));
        assert!(replay_of(&[e("m1", "t1"), e("m2", "t2")]).is_none(), "two earlier requests");
        assert!(replay_of(&[e("m1", "t1"), None]).is_none(), "a new target");
        assert!(replay_of(&[]).is_none());
    }

    #[test]
    fn a_connect_replaces_only_another_connection() {
        let me = Presence { node: "n1".into(), generation: 7 };
        assert_eq!(replaced(Some((Some("n1".into()), Some(7))), &me), None);
        assert_eq!(
            replaced(Some((Some("n2".into()), Some(3))), &me),
            Some(Presence { node: "n2".into(), generation: 3 })
        );
        assert_eq!(replaced(Some((None, None)), &me), None);
        assert_eq!(replaced(None, &me), None);
    }

    #[test]
    fn broadcasts_and_unicast_merge_in_time_order() {
        let merged = merge_pending(vec![pending("m01"), pending("m03")], vec![pending("b02"), pending("b04")], 3);
        let ids: Vec<&str> = merged.iter().map(|p| p.message_id.as_str()).collect();
        assert_eq!(ids, vec!["m01", "b02", "m03"]);
    }

    #[test]
    fn reported_tokens_replace_or_remove() {
        let mut known: Map<String, Value> = serde_json::from_str(r#"{"fcm":"a","hms":"b"}"#).unwrap();
        merge_vendor_tokens(&mut known, serde_json::from_str(r#"{"fcm":"c","hms":null,"apns":"d"}"#).unwrap());
        assert_eq!(Value::Object(known), serde_json::json!({"fcm": "c", "apns": "d"}));
    }

    #[test]
    fn a_firing_plans_the_schedule_row_and_its_record() {
        let claim = |recurring, next, fired: bool| FireClaim {
            unique_id: "s1".into(),
            due: 100,
            next,
            recurring,
            firing: fired.then(|| {
                Firing::Push(herald_core::model::NewPush {
                    task: herald_core::model::NewTask {
                        task_id: TaskId::new("t1"),
                        app_id: herald_core::ids::AppId::new("a"),
                        push_type: herald_core::state::PushType::Simple,
                        task_name: None,
                        delivery_type: 1,
                        created_at: 100,
                        expires_at: 200,
                    },
                    messages: vec![],
                    skip_idempotency: true,
                })
            }),
        };
        use ScheduleStatus::*;
        let once = fire_plan(&claim(false, None, true));
        assert_eq!((once.status, once.row_task.as_deref(), once.push_time), (Executed, Some("t1"), 100));
        assert_eq!(fire_plan(&claim(false, None, false)).status, Missed);
        let again = fire_plan(&claim(true, Some(300), true));
        assert_eq!((again.status, again.row_task, again.push_time, again.outcome), (Waiting, None, 300, Executed));
        let last = fire_plan(&claim(true, None, false));
        assert_eq!((last.status, last.push_time, last.outcome, last.task_id), (Executed, 100, Missed, None));
    }
}
