//! Scheduled pushes: a request with strategyType 1 or 2 is validated at once and stored as
//! a schedule (see [`Dispatcher::submit`]); the scheduler (one node at a time, under a
//! lease) fires what is due. A firing claims the schedule and commits its push in one store
//! transaction, so it happens once whatever restarts or nodes come between; a firing missed
//! while no node ran is sent late if its validity has not ended, else recorded as missed.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use herald_core::error::{ApiError, ErrorCode};
use herald_core::model::{FireClaim, Fired, Firing, ScheduleRecord};
use herald_core::push::Prepared;
use herald_core::push::request::PushRequest;
use herald_core::schedule::Strategy;
use herald_core::state::StrategyKind;
use herald_store::FireOutcome;

use super::{Dispatcher, Message};

/// The lease under which one node of a cluster fires schedules.
pub const SCHEDULER_LEASE: &str = "scheduler";

impl Dispatcher {
    /// Fires what is due until `shutdown`, every `every`, on the node holding the lease.
    pub async fn run_scheduler(self: Arc<Self>, every: Duration, shutdown: crate::shutdown::Signal) {
        let mut ticks = crate::shutdown::ticks(every);
        while shutdown.every(&mut ticks).await {
            let now = herald_core::now_ms();
            let lease_ms = 3 * every.as_millis() as i64;
            if self.hold_lease(SCHEDULER_LEASE, &self.scheduler_lease_held, now, lease_ms).await
                && let Err(e) = self.fire_due(now).await
            {
                tracing::warn!(error = %e, "scheduler tick failed");
            }
        }
    }

    /// Fires (or records as missed) every schedule due at `now`; returns how many firings
    /// it claimed. Public so that tests drive the scheduler with their own clock.
    pub async fn fire_due(self: &Arc<Self>, now: i64) -> Result<usize, ApiError> {
        let mut claimed = 0;
        loop {
            let due = self.store.due_schedules(now, 100).await?;
            if due.is_empty() {
                return Ok(claimed);
            }
            let mut progressed = false;
            for s in due {
                if self.fire(&s, now).await? {
                    claimed += 1;
                    progressed = true;
                }
            }
            if !progressed {
                return Ok(claimed);
            }
        }
    }

    /// One firing of `s`: true when this call claimed it.
    async fn fire(self: &Arc<Self>, s: &ScheduleRecord, now: i64) -> Result<bool, ApiError> {
        let strategy = Strategy::from_stored(s.strategy_kind, &s.strategy);
        let next = strategy.as_ref().ok().and_then(|st| st.next_after(s.push_time));
        let firing = if now >= s.push_time + s.expires_ms {
            tracing::info!(schedule = %s.unique_id, due = s.push_time, "missed: its validity ended before it could fire");
            None
        } else {
            match self.firing(s, now).await {
                Ok(f) => Some(f),
                Err(e) => {
                    tracing::warn!(schedule = %s.unique_id, error = %e, "scheduled push no longer valid; recorded as missed");
                    None
                }
            }
        };
        let payloads: Vec<Bytes> = match &firing {
            Some(Firing::Push(p)) => p.messages.iter().map(|m| m.payload.clone()).collect(),
            _ => Vec::new(),
        };
        let claim = FireClaim {
            unique_id: s.unique_id.clone(),
            due: s.push_time,
            next,
            recurring: s.strategy_kind == StrategyKind::Recurring,
            firing: firing.clone(),
        };
        match (self.store.fire_schedule(claim, now).await?, firing) {
            (FireOutcome::Taken, _) => return Ok(false),
            (FireOutcome::Fired(Fired::Push(committed)), Some(Firing::Push(p))) => {
                self.metrics.pushes_accepted.inc();
                self.deliver_committed(&committed, payloads, p.task.expires_at).await;
            }
            (FireOutcome::Fired(Fired::Broadcast(done)), Some(Firing::Broadcast(b))) => {
                self.metrics.pushes_accepted.inc();
                let message = Message::new(done.message_id, b.task.expires_at, b.payload);
                self.announce_broadcast(Arc::new(message)).await;
            }
            (FireOutcome::Missed, _) | (FireOutcome::Fired(_), _) => {}
        }
        Ok(true)
    }

    /// What a due schedule sends now: its request validated again as of `now`.
    async fn firing(&self, s: &ScheduleRecord, now: i64) -> Result<Firing, ApiError> {
        let request = PushRequest::from_json(s.push_type, s.body.as_bytes())
            .map_err(|e| ApiError::new(ErrorCode::SystemError, format!("stored request: {e}")))?;
        Ok(match self.prepare(&request, &s.app_id, now).await? {
            Prepared::Push(p) => {
                let mut new_push = p.into_new_push(s.app_id.clone(), now, &self.limits)?;
                new_push.skip_idempotency = true;
                Firing::Push(new_push)
            }
            Prepared::Broadcast(mut b) => {
                b.skip_idempotency = true;
                Firing::Broadcast(b)
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use herald_core::ids::AppId;
    use herald_core::limits::Limits;
    use herald_core::push::request::PushRequest;
    use herald_core::schedule::{Strategy, schedule_of};
    use herald_core::state::{PushType, ScheduleStatus};
    use herald_store::suite::{self, Subject};
    use herald_store::{Cancelled, Store};

    use crate::bus::Bus;
    use crate::dispatch::{Dispatcher, Hub};

    /// The scheduler driven by a test clock: a recurring push fires once per occurrence, also
    /// when a second dispatcher (a restart, or another node) looks at the same time; a
    /// firing past its validity is recorded as missed; a late one within it is sent.
    async fn fires_each_occurrence_once(store: Arc<dyn Store>) {
        const H: i64 = 3_600_000;
        const DAY: i64 = 24 * H;
        let t0 = 1_796_000_000_000 - 1_796_000_000_000 % DAY;
        suite::create_app(store.as_ref(), "a1").await;
        let d = suite::device(store.as_ref(), "a1", "i1").await;
        let app_id = AppId::new("a1");
        let node = |name: &str| {
            let (hub, bus) = (Arc::new(Hub::new(10)), Arc::new(Bus::local(name)));
            Arc::new(Dispatcher::new(store.clone(), hub, bus, Arc::default(), name.into(), Limits::default()))
        };
        let (one, two) = (node("n1"), node("n2"));
        let schedule = |body: serde_json::Value, now: i64| {
            let one = one.clone();
            async move {
                let request = PushRequest::from_json(PushType::Simple, body.to_string().as_bytes()).unwrap();
                let strategy = Strategy::parse(request.options(), now).unwrap().unwrap();
                let prepared = one.prepare(&request, &AppId::new("a1"), now).await.unwrap();
                schedule_of(&AppId::new("a1"), &request, &prepared, &strategy, now).unwrap()
            }
        };
        let body = serde_json::json!({"deliveryType": 1, "targetMsgkey": {d.as_str(): "daily"}, "title": "t",
            "content": "c", "expiredSeconds": 3600, "strategyType": 2,
            "strategyContent": {"startTime": t0, "endTime": t0 + 3 * DAY, "time": "08:00:00", "circleType": 1}});
        let record = schedule(body, t0).await;
        assert_eq!(record.push_time, t0 + 8 * H);
        store.create_schedule(record.clone()).await.unwrap();
        assert_eq!(one.fire_due(t0 + 7 * H).await.unwrap(), 0);
        assert_eq!(one.fire_due(t0 + 8 * H).await.unwrap(), 1);
        assert_eq!(one.fire_due(t0 + 8 * H).await.unwrap(), 0, "fired once");
        assert_eq!(two.fire_due(t0 + 8 * H + 1).await.unwrap(), 0, "not again by another dispatcher");
        assert_eq!(store.pending_deliveries(&d, t0 + 8 * H, 10).await.unwrap().len(), 1);
        // Day 2: looked at only 2 h after 08:00, past the 1 h validity: missed, nothing sent.
        assert_eq!(two.fire_due(t0 + DAY + 10 * H).await.unwrap(), 1);
        assert_eq!(store.pending_deliveries(&d, t0 + DAY + 10 * H, 10).await.unwrap().len(), 0);
        // Day 3: 30 min late, within the validity: sent.
        assert_eq!(one.fire_due(t0 + 2 * DAY + 8 * H + 30 * 60_000).await.unwrap(), 1);
        assert_eq!(store.pending_deliveries(&d, t0 + 2 * DAY + 9 * H, 10).await.unwrap().len(), 1);
        assert_eq!(one.fire_due(t0 + 30 * DAY).await.unwrap(), 0, "after endTime nothing is due");

        let family = store.schedules(&app_id, Some(&record.unique_id), 0, 0).await.unwrap();
        let parent = family.iter().find(|s| s.parent_id.is_none()).unwrap();
        assert_eq!(parent.status, ScheduleStatus::Executed, "finished after its last occurrence");
        let children: Vec<(i64, ScheduleStatus, bool)> = family
            .iter()
            .filter(|s| s.parent_id.as_deref() == Some(record.unique_id.as_str()))
            .map(|s| (s.push_time, s.status, s.task_id.is_some()))
            .collect();
        assert_eq!(
            children,
            vec![
                (t0 + 8 * H, ScheduleStatus::Executed, true),
                (t0 + DAY + 8 * H, ScheduleStatus::Missed, false),
                (t0 + 2 * DAY + 8 * H, ScheduleStatus::Executed, true)
            ]
        );
        assert_eq!(
            store.cancel_schedule(&app_id, &record.unique_id).await.unwrap(),
            Cancelled::NotWaiting(ScheduleStatus::Executed)
        );

        // A one-off push cancelled before its time never fires.
        let once = serde_json::json!({"deliveryType": 1, "targetMsgkey": {d.as_str(): "once"}, "title": "t",
            "content": "c", "expiredSeconds": 60, "strategyType": 1, "strategyContent": {"fixedTime": t0 + 40 * DAY}});
        let record = schedule(once, t0 + 30 * DAY).await;
        store.create_schedule(record.clone()).await.unwrap();
        assert_eq!(store.cancel_schedule(&app_id, &record.unique_id).await.unwrap(), Cancelled::Cancelled);
        assert_eq!(one.fire_due(t0 + 41 * DAY).await.unwrap(), 0);
    }

    #[tokio::test]
    async fn sqlite_scheduler_fires_each_occurrence_once() {
        let subject = Subject::sqlite().await.unwrap();
        fires_each_occurrence_once(subject.store.clone()).await;
        subject.store.flush().await.unwrap();
    }

    #[tokio::test]
    async fn postgres_scheduler_fires_each_occurrence_once() {
        let Some(subject) = Subject::postgres().await else { return };
        fires_each_occurrence_once(subject.store.clone()).await;
        subject.store.flush().await.unwrap();
    }
}
