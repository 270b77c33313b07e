//! Scheduled pushes: a request with strategyType 1 or 2 is validated at once and stored as
//! a schedule; the scheduler (one node at a time, under a lease) fires what is due. A
//! firing claims the schedule and commits its push in one store transaction, so it happens
//! once whatever restarts or nodes come between; a firing missed while no node ran is sent
//! late if its validity has not ended, else recorded as missed.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use serde_json::{Map, Value};

use super::{Dispatcher, Message};
use crate::bus::Event;
use crate::config::Limits;
use crate::error::{ApiError, ErrorCode};
use crate::ids::{AppId, MessageId};
use crate::push::{self, SimplePush};
use crate::schedule::Strategy;
use crate::store::{FireClaim, Fired, Firing, NewBroadcast, SCHEDULE_WAITING, ScheduleRecord, Store};

/// The lease under which one node of a cluster fires schedules.
pub const SCHEDULER_LEASE: &str = "scheduler";
/// Request fields that say when, not what: kept out of the stored body.
const STRATEGY_FIELDS: &[&str] = &["strategyType", "strategyContent", "timeZone"];

/// A validated push request of any type, ready to commit.
pub enum Prepared {
    Push(SimplePush),
    Broadcast(NewBroadcast),
}

impl Prepared {
    /// (deliveryType, title, content) for the schedule list.
    fn summary(&self) -> (i64, Option<String>, Option<String>) {
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
}

/// Validates a push request of `push_type` (simple, template, multiple, broadcast) as of
/// `now`; the strategy fields are ignored here.
pub async fn prepare(
    store: &dyn Store,
    limits: &Limits,
    push_type: &str,
    app_id: &AppId,
    body: &Value,
    now: i64,
) -> Result<Prepared, ApiError> {
    if push_type == "simple" {
        return Ok(Prepared::Push(SimplePush::parse(body, limits)?));
    }
    let name = push::template_name(body)?;
    let template = store
        .template(app_id, &name)
        .await?
        .ok_or_else(|| ApiError::new(ErrorCode::TemplateNotExist, format!("no template {name} in this app")))?;
    Ok(match push_type {
        "template" => Prepared::Push(SimplePush::parse_template(body, &template, limits)?),
        "multiple" => Prepared::Push(SimplePush::parse_multiple(body, &template, limits)?),
        _ => Prepared::Broadcast(SimplePush::parse_broadcast(body, &template, limits, app_id.clone(), now)?),
    })
}

/// The request without its strategy fields.
pub fn without_strategy(body: &Value) -> Value {
    let mut b: Map<String, Value> = body.as_object().cloned().unwrap_or_default();
    for f in STRATEGY_FIELDS {
        b.remove(*f);
    }
    Value::Object(b)
}

/// The schedule of a validated request to send by `strategy`.
pub fn schedule_of(
    app_id: &AppId,
    push_type: &str,
    body: &Value,
    prepared: &Prepared,
    strategy: &Strategy,
    now: i64,
) -> Result<ScheduleRecord, ApiError> {
    let (delivery_type, title, content) = prepared.summary();
    let expires_ms = match prepared {
        Prepared::Push(p) => p.expired_seconds * 1000,
        Prepared::Broadcast(b) => b.task.expires_at - b.task.created_at,
    };
    let push_time = strategy
        .first(now)
        .ok_or_else(|| ApiError::new(ErrorCode::InvalidParam, "the strategy has no firing after now"))?;
    Ok(ScheduleRecord {
        unique_id: format!("s{}", &MessageId::generate(now).as_str()[1..]),
        parent_id: None,
        app_id: app_id.clone(),
        push_type: push_type.to_owned(),
        delivery_type,
        template_name: body.get("templateName").and_then(Value::as_str).map(str::to_owned),
        title,
        content,
        body: without_strategy(body).to_string(),
        strategy_type: strategy.kind(),
        strategy: strategy.to_json().to_string(),
        push_time,
        expires_ms,
        status: SCHEDULE_WAITING,
        task_id: None,
        created_at: now,
    })
}

impl Dispatcher {
    /// Fires what is due until `shutdown`, every `every`, on the node holding the lease.
    pub async fn run_scheduler(self: Arc<Self>, every: Duration, shutdown: crate::shutdown::Signal) {
        let mut ticks = crate::shutdown::ticks(every);
        while shutdown.every(&mut ticks).await {
            let now = crate::now_ms();
            let lease_ms = 3 * every.as_millis() as i64;
            let held = self.store.try_lease(SCHEDULER_LEASE, &self.node_id, now, lease_ms).await.unwrap_or_else(|e| {
                tracing::warn!(error = %e, "cannot take the scheduler lease");
                false
            });
            if self.scheduler_lease_held.swap(held, Ordering::Relaxed) != held {
                tracing::info!(lease = SCHEDULER_LEASE, held, "lease changed hands");
            }
            if held && let Err(e) = self.fire_due(now).await {
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
        let strategy = Strategy::from_stored(s.strategy_type, &s.strategy);
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
        let claim = FireClaim {
            unique_id: s.unique_id.clone(),
            due: s.push_time,
            next,
            recurring: s.strategy_type == 2,
            firing: firing.clone(),
        };
        let payloads: Vec<Bytes> = match &firing {
            Some(Firing::Push(p)) => p.messages.iter().map(|m| m.payload.clone()).collect(),
            _ => Vec::new(),
        };
        let Some(fired) = self.store.fire_schedule(claim, now).await? else {
            return Ok(false);
        };
        match (fired, firing) {
            (Some(Fired::Push(committed)), Some(Firing::Push(p))) => {
                crate::metrics::PUSHES_ACCEPTED.inc();
                self.deliver_committed(&committed, payloads, p.task.expires_at).await;
            }
            (Some(Fired::Broadcast(done)), Some(Firing::Broadcast(b))) => {
                crate::metrics::PUSHES_ACCEPTED.inc();
                let message =
                    Arc::new(Message { id: done.message_id, expires_at: b.task.expires_at, payload: b.payload });
                self.bus.send_all(Event::deliver_all(&message)).await;
                tokio::spawn(self.clone().fan_out(message));
            }
            _ => {}
        }
        Ok(true)
    }

    /// What a due schedule sends now: its request validated again as of `now`.
    async fn firing(&self, s: &ScheduleRecord, now: i64) -> Result<Firing, ApiError> {
        let body: Value = serde_json::from_str(&s.body)
            .map_err(|e| ApiError::new(ErrorCode::SystemError, format!("stored request: {e}")))?;
        Ok(match prepare(self.store.as_ref(), &self.limits, &s.push_type, &s.app_id, &body, now).await? {
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
