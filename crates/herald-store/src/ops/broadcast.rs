//! Broadcasts: one row whatever the audience; per device only what happens is written.

use herald_core::ids::{AppId, DeviceId, MessageId, TaskId};
use herald_core::model::{BroadcastCommitted, BroadcastView, NewBroadcast};
use herald_core::state::{Change, RoutingPolicy, TargetKind};

use crate::ops::{channels, ledger};
use crate::tx::{Arg, Tx, query_one, query_opt};
use crate::{StoreError, StoreResult, rows, sql};

/// Commits a broadcast (its task and one row), or finds the earlier one of the same msgkey
/// within its validity.
pub(crate) async fn commit<X: Tx>(tx: &X, b: &NewBroadcast, now: i64) -> StoreResult<BroadcastCommitted> {
    let t = &b.task;
    let (app, task_id, mid) = (t.app_id.as_str(), t.task_id.as_str(), b.message_id.as_str());
    // The msgkey is the app's, for every platform: the idempotency scope "broadcast".
    let (scope, target) = (TargetKind::Broadcast.as_str(), "");
    if !b.skip_idempotency {
        let claim: [&dyn Arg; 8] = [&app, &b.msg_key, &scope, &target, &mid, &task_id, &t.expires_at, &now];
        if tx.execute(&sql::CLAIM_KEY, &claim).await? == 0 {
            let (message_id, task_id) =
                query_one(tx, &sql::KEY_HOLDER, &claim[..4], |r| Ok((r.text(0)?, r.text(1)?))).await?;
            return Ok(BroadcastCommitted {
                task_id: TaskId::new(task_id),
                message_id: MessageId::new(message_id),
                replayed: true,
            });
        }
    }
    let push_type = t.push_type.as_str();
    tx.execute(
        &sql::INSERT_TASK,
        &[&task_id, &app, &push_type, &t.task_name, &t.delivery_type, &t.created_at, &t.expires_at],
    )
    .await?;
    let payload = std::str::from_utf8(&b.payload).map_err(|_| StoreError::Internal("a payload is not UTF-8".into()))?;
    tx.execute(
        &sql::INSERT_BROADCAST,
        &[
            &mid,
            &task_id,
            &app,
            &b.msg_key,
            &b.platform.as_str(),
            &b.audience.code(),
            &b.bind_since,
            &b.unbind_since,
            &payload,
            &t.created_at,
            &t.expires_at,
        ],
    )
    .await?;
    if b.vendor {
        vendor_sends(tx, b).await?;
    }
    // Pushed once for its whole audience: the counter counts the audience by platform,
    // app version and channel.
    ledger::journal(tx, mid, None, Change::Pushed, &ledger::Changed::new(None, t.created_at), None).await?;
    Ok(BroadcastCommitted { task_id: t.task_id.clone(), message_id: b.message_id.clone(), replayed: false })
}

/// Writes the vendor sends of a broadcast: one per device it reaches that a vendor should
/// carry it to (under the default policy, the devices not connected now).
async fn vendor_sends<X: Tx>(tx: &X, b: &NewBroadcast) -> StoreResult<()> {
    let (app, mid, t) = (b.task.app_id.as_str(), b.message_id.as_str(), &b.task);
    let context = channels::route_context(tx, app).await?;
    if context.1.is_empty() {
        return Ok(());
    }
    let with_online = context.0.policy != RoutingPolicy::OwnFirst;
    let targets = tx.query(&sql::BROADCAST_VENDOR_AUDIENCE, &[&mid, &with_online], rows::vendor_audience).await?;
    let routed: Vec<(String, channels::Routed)> = targets
        .into_iter()
        .filter_map(|target| Some((target.device_id.to_string(), channels::route(&context, true, &target)?)))
        .collect();
    let channels: Vec<&str> = routed.iter().map(|(_, r)| r.channel.as_str()).collect();
    let args: Vec<[&dyn Arg; 7]> = routed
        .iter()
        .zip(&channels)
        .map(|((device, r), channel)| -> [&dyn Arg; 7] {
            [&mid, device, &app, channel, &r.token, &t.created_at, &t.expires_at]
        })
        .collect();
    futures_util::future::try_join_all(args.iter().map(|a| tx.execute(&sql::INSERT_VENDOR_SEND, a))).await?;
    Ok(())
}

/// The devices connected to `node` that broadcast `message_id` reaches.
pub(crate) async fn recipients<X: Tx>(tx: &X, message_id: &MessageId, node: &str) -> StoreResult<Vec<DeviceId>> {
    tx.query(&sql::BROADCAST_RECIPIENTS, &[&message_id.as_str(), &node], rows::device_id).await
}

/// The broadcast of a task, with its audience now and its acknowledgements by status.
pub(crate) async fn view<X: Tx>(tx: &X, task_id: &TaskId, app_id: &AppId) -> StoreResult<Option<BroadcastView>> {
    let of_task = |r: &dyn crate::tx::Row| Ok((r.text(0)?, r.text(1)?, r.opt_i64(3)?));
    let found = query_opt(tx, &sql::BROADCAST_OF_TASK, &[&task_id.as_str(), &app_id.as_str()], of_task).await?;
    let Some((message_id, msg_key, revoked_at)) = found else {
        return Ok(None);
    };
    let eligible = query_one(tx, &sql::BROADCAST_AUDIENCE, &[&message_id], |r| r.i64(0)).await?;
    let counts = tx
        .query(&sql::BROADCAST_COUNTS, &[&message_id], |r| Ok((rows::delivery_status(r, 0)?, r.i64(1)? as u64)))
        .await?;
    Ok(Some(BroadcastView {
        message_id: MessageId::new(message_id),
        msg_key,
        eligible: eligible as u64,
        counts,
        revoked_at,
    }))
}
