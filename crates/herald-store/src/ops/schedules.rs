//! Scheduled pushes: stored requests, and firings claimed and committed in one transaction.

use herald_core::ids::AppId;
use herald_core::model::{FireClaim, Fired, Firing, ScheduleRecord};

use crate::tx::{Tx, exists, query_opt};
use crate::{Cancelled, FireOutcome, StoreResult, logic, ops, rows, sql};

pub(crate) async fn create<X: Tx>(tx: &X, s: &ScheduleRecord) -> StoreResult<()> {
    tx.execute(
        &sql::INSERT_SCHEDULE,
        &[
            &s.unique_id,
            &s.parent_id,
            &s.app_id.as_str(),
            &s.push_type.as_str(),
            &s.delivery_type,
            &s.template_name,
            &s.title,
            &s.content,
            &s.body,
            &s.strategy_kind.code(),
            &s.strategy,
            &s.push_time,
            &s.expires_ms,
            &s.status.code(),
            &s.task_id,
            &s.created_at,
        ],
    )
    .await?;
    Ok(())
}

pub(crate) async fn due<X: Tx>(tx: &X, now: i64, limit: usize) -> StoreResult<Vec<ScheduleRecord>> {
    tx.query(&sql::DUE_SCHEDULES, &[&now, &(limit as i64)], rows::schedule).await
}

/// Claims a firing and commits what it sends.
pub(crate) async fn fire<X: Tx>(tx: &X, claim: &FireClaim, now: i64) -> StoreResult<FireOutcome> {
    let plan = logic::fire_plan(claim);
    let claimed = tx
        .execute(
            &sql::CLAIM_FIRING,
            &[&claim.unique_id, &claim.due, &plan.status.code(), &plan.row_task, &plan.push_time],
        )
        .await?;
    if claimed == 0 {
        return Ok(FireOutcome::Taken);
    }
    if claim.recurring {
        let id = logic::schedule_id(now);
        tx.execute(
            &sql::INSERT_FIRING,
            &[&id, &claim.unique_id, &claim.due, &plan.outcome.code(), &plan.task_id, &now],
        )
        .await?;
    }
    Ok(match &claim.firing {
        None => FireOutcome::Missed,
        Some(Firing::Push(p)) => FireOutcome::Fired(Fired::Push(ops::push::commit(tx, p, now).await?)),
        Some(Firing::Broadcast(b)) => FireOutcome::Fired(Fired::Broadcast(ops::broadcast::commit(tx, b, now).await?)),
    })
}

/// The app's schedules with a push time in `from..=to`; or, with `unique_id`, that schedule
/// and its firings.
pub(crate) async fn list<X: Tx>(
    tx: &X,
    app_id: &AppId,
    unique_id: Option<&str>,
    from: i64,
    to: i64,
) -> StoreResult<Vec<ScheduleRecord>> {
    match unique_id {
        Some(id) => tx.query(&sql::SCHEDULE_FAMILY, &[&app_id.as_str(), &id], rows::schedule).await,
        None => tx.query(&sql::SCHEDULES_OF_APP, &[&app_id.as_str(), &from, &to], rows::schedule).await,
    }
}

pub(crate) async fn cancel<X: Tx>(tx: &X, app_id: &AppId, unique_id: &str) -> StoreResult<Cancelled> {
    if tx.execute(&sql::CANCEL_SCHEDULE, &[&app_id.as_str(), &unique_id]).await? == 1 {
        return Ok(Cancelled::Cancelled);
    }
    let status =
        query_opt(tx, &sql::SCHEDULE_STATUS, &[&app_id.as_str(), &unique_id], |r| rows::schedule_status(r, 0)).await?;
    Ok(match status {
        Some(status) => Cancelled::NotWaiting(status),
        None => Cancelled::NotFound,
    })
}

pub(crate) async fn template_in_use<X: Tx>(tx: &X, app_id: &AppId, name: &str) -> StoreResult<bool> {
    exists(tx, &sql::TEMPLATE_IN_USE, &[&app_id.as_str(), &name]).await
}
