//! Pushes: the commit of a push, the deliveries a device reads back, status updates and
//! the expiry of what was never acknowledged.

use futures_util::future::try_join_all;
use herald_core::ids::{DeviceId, MessageId};
use herald_core::model::{CommittedPush, NewPush, PendingDelivery, Recipient, StatusUpdate, TargetOutcome};
use herald_core::state::{Change, Channel, DeviceEvent, TargetKind};

use crate::ops::channels;
use crate::ops::ledger::{self, journal, journal_changed};
use crate::tx::{Arg, Tx, query_one};
use crate::{StoreError, StoreResult, logic, rows, sql};

/// Commits a push: task, messages, deliveries and the sends a vendor is to make (the app's
/// routing decides which, DESIGN §7). Two rounds of statements whatever its size (each
/// round pipelined on PostgreSQL): the idempotency claims with the target lookups (and
/// the app's channels), then the writes. A whole repeat of one earlier request (a client
/// retry) is answered from the claims and writes nothing.
pub(crate) async fn commit<X: Tx>(tx: &X, push: &NewPush, now: i64) -> StoreResult<CommittedPush> {
    let t = &push.task;
    let (app, task_id) = (t.app_id.as_str(), t.task_id.as_str());
    let kinds: Vec<&str> = push.messages.iter().map(|m| m.target_kind.as_str()).collect();
    let mids: Vec<&str> = push.messages.iter().map(|m| m.message_id.as_str()).collect();
    // A firing of a recurring schedule claims no key (its msgKeys repeat on purpose).
    let claim_args: Vec<[&dyn Arg; 8]> = push
        .messages
        .iter()
        .enumerate()
        .take(if push.skip_idempotency { 0 } else { usize::MAX })
        .map(|(i, m)| -> [&dyn Arg; 8] {
            [&app, &m.msg_key, &kinds[i], &m.target, &mids[i], &task_id, &t.expires_at, &now]
        })
        .collect();
    let lookup_args: Vec<[&dyn Arg; 2]> =
        push.messages.iter().map(|m| -> [&dyn Arg; 2] { [&app, &m.target] }).collect();
    let lookup_sql = |kind: TargetKind| match kind {
        TargetKind::Device => Ok(&sql::TARGET_DEVICE),
        TargetKind::User => Ok(&sql::TARGET_USER),
        TargetKind::Broadcast => Err(StoreError::Internal("a push message cannot target a broadcast".into())),
    };
    let claims = try_join_all(claim_args.iter().map(|a| tx.execute(&sql::CLAIM_KEY, a)));
    let lookups = try_join_all(
        push.messages
            .iter()
            .zip(&lookup_args)
            .map(|(m, a)| lookup_sql(m.target_kind).map(|s| tx.query(s, a, rows::target)))
            .collect::<StoreResult<Vec<_>>>()?,
    );
    let any_vendor = push.messages.iter().any(|m| m.vendor);
    let context = async {
        match any_vendor {
            true => channels::route_context(tx, app).await.map(Some),
            false => Ok(None),
        }
    };
    let (claims, lookups, context): (Vec<u64>, Vec<Vec<rows::Target>>, _) = tokio::try_join!(claims, lookups, context)?;

    let mut earlier: Vec<Option<(String, String)>> = Vec::with_capacity(push.messages.len());
    if push.skip_idempotency {
        earlier.resize(push.messages.len(), None);
    }
    for (a, claimed) in claim_args.iter().zip(&claims) {
        earlier.push(if *claimed == 1 {
            None
        } else {
            Some(query_one(tx, &sql::KEY_HOLDER, &a[..4], |r| Ok((r.text(0)?, r.text(1)?))).await?)
        });
    }
    if let Some(replay) = logic::replay_of(&earlier) {
        return Ok(replay);
    }

    let mut outcomes = Vec::with_capacity(push.messages.len());
    let mut stored = Vec::with_capacity(push.messages.len());
    let mut routed: Vec<(usize, DeviceId, channels::Routed)> = Vec::new();
    for (i, (earlier, targets)) in earlier.into_iter().zip(lookups).enumerate() {
        let m = &push.messages[i];
        if let Some((mid, _)) = earlier {
            outcomes.push((m.message_id.clone(), TargetOutcome::Duplicate { message_id: MessageId::new(mid) }));
            continue;
        }
        let devices: Vec<Recipient> = targets
            .into_iter()
            .map(|target| {
                let via = context.as_ref().and_then(|c| channels::route(c, m.vendor, &target));
                let own_now = context.as_ref().is_none_or(|(routing, _)| routing.own_now(via.is_some()));
                let vendor = via.as_ref().map(|v| v.channel);
                if let Some(v) = via {
                    routed.push((i, target.device_id.clone(), v));
                }
                Recipient { device_id: target.device_id, online_node: target.online_node, vendor, own_now }
            })
            .collect();
        let undeliverable = m.target_kind == TargetKind::Device && devices.is_empty();
        stored.push((i, undeliverable));
        let outcome = if undeliverable { TargetOutcome::Undeliverable } else { TargetOutcome::Accepted { devices } };
        outcomes.push((m.message_id.clone(), outcome));
    }
    let payloads = push
        .messages
        .iter()
        .map(|m| std::str::from_utf8(&m.payload).map_err(|_| StoreError::Internal("a payload is not UTF-8".into())))
        .collect::<StoreResult<Vec<&str>>>()?;
    let push_type = t.push_type.as_str();
    let task_args: [&dyn Arg; 7] =
        [&task_id, &app, &push_type, &t.task_name, &t.delivery_type, &t.created_at, &t.expires_at];
    let message_args: Vec<[&dyn Arg; 10]> = stored
        .iter()
        .map(|(i, undeliverable)| -> [&dyn Arg; 10] {
            let m = &push.messages[*i];
            [
                &mids[*i],
                &app,
                &task_id,
                &m.msg_key,
                &kinds[*i],
                &m.target,
                &payloads[*i],
                undeliverable,
                &t.created_at,
                &t.expires_at,
            ]
        })
        .collect();
    let pairs: Vec<(&str, &str)> = outcomes
        .iter()
        .zip(&mids)
        .filter_map(|((_, o), mid)| match o {
            TargetOutcome::Accepted { devices } => Some(devices.iter().map(move |d| (*mid, d.device_id.as_str()))),
            TargetOutcome::Undeliverable | TargetOutcome::Duplicate { .. } => None,
        })
        .flatten()
        .collect();
    let delivery_args: Vec<[&dyn Arg; 4]> =
        pairs.iter().map(|(mid, device)| -> [&dyn Arg; 4] { [mid, device, &t.created_at, &t.expires_at] }).collect();
    let vendor_keys: Vec<(&str, &str)> = routed.iter().map(|(_, d, r)| (d.as_str(), r.channel.as_str())).collect();
    let vendor_args: Vec<[&dyn Arg; 7]> = routed
        .iter()
        .zip(&vendor_keys)
        .map(|((i, _, r), (device, channel))| -> [&dyn Arg; 7] {
            [&mids[*i], device, &app, channel, &r.token, &t.created_at, &t.expires_at]
        })
        .collect();
    // Each delivery is journalled as pushed, by the channel the push routed it to.
    let vendor_of: std::collections::HashMap<(&str, &str), &str> =
        routed.iter().zip(&vendor_keys).map(|((i, _, _), (device, channel))| ((mids[*i], *device), *channel)).collect();
    let pushed = Change::Pushed.as_str();
    let pair_channels: Vec<&str> =
        pairs.iter().map(|(mid, device)| vendor_of.get(&(*mid, *device)).copied().unwrap_or(OWN)).collect();
    let journal_args: Vec<[&dyn Arg; 7]> = pairs
        .iter()
        .take(if tx.journal() { usize::MAX } else { 0 })
        .zip(&pair_channels)
        .map(|((mid, device), channel)| -> [&dyn Arg; 7] {
            [mid, device, &pushed, &NONE, channel, &NONE, &t.created_at]
        })
        .collect();
    // In this order on one connection: the task, each message, its deliveries, then the
    // vendor sends and the journal.
    let writes = std::iter::once(tx.execute(&sql::INSERT_TASK, &task_args))
        .chain(message_args.iter().map(|a| tx.execute(&sql::INSERT_MESSAGE, a)))
        .chain(delivery_args.iter().map(|a| tx.execute(&sql::INSERT_DELIVERY, a)))
        .chain(vendor_args.iter().map(|a| tx.execute(&sql::INSERT_VENDOR_SEND, a)))
        .chain(journal_args.iter().map(|a| tx.execute(&sql::JOURNAL, a)));
    try_join_all(writes).await?;
    Ok(CommittedPush { task_id: t.task_id.clone(), replayed: false, outcomes })
}

/// Deliveries not yet acknowledged and within their validity, oldest first, broadcasts the
/// device qualifies for included.
pub(crate) async fn pending<X: Tx>(
    tx: &X,
    device_id: &DeviceId,
    now: i64,
    limit: usize,
) -> StoreResult<Vec<PendingDelivery>> {
    let device = device_id.as_str();
    let unicast = tx.query(&sql::PENDING_UNICAST, &[&device, &now, &(limit as i64)], rows::pending).await?;
    let broadcasts = tx.query(&sql::PENDING_BROADCASTS, &[&device, &now], rows::pending).await?;
    Ok(logic::merge_pending(unicast, broadcasts, limit))
}

const OWN: &str = Channel::Own.as_str();
const NONE: Option<&str> = None;

/// Applies one status update, and journals the change it made. A broadcast's id starts with `b`: its updates go to the
/// broadcast's sparse acknowledgements without a lookup.
pub(crate) async fn apply_update<X: Tx>(tx: &X, update: &StatusUpdate) -> StoreResult<()> {
    match update {
        StatusUpdate::Sent { message_id, device_id, at } => {
            let s = if message_id.is_broadcast() { &sql::ACK_SENT } else { &sql::MARK_SENT };
            let (mid, device) = (message_id.as_str(), device_id.as_str());
            let rows = tx.query(s, &[&mid, &device, at], ledger::changed).await?;
            journal_changed(tx, mid, device, Change::Sent, rows).await?;
        }
        StatusUpdate::Delivered { message_id, device_id, sent_at, at } => {
            let s = if message_id.is_broadcast() { &sql::ACK_DELIVERED } else { &sql::MARK_DELIVERED };
            let (mid, device) = (message_id.as_str(), device_id.as_str());
            let rows = tx.query(s, &[&mid, &device, sent_at, at], ledger::changed).await?;
            journal_changed(tx, mid, device, Change::Delivered, rows).await?;
        }
        StatusUpdate::Event { message_id, device_id, event, at, received_at } => {
            // A device's word about a message only moves its delivery forward.
            let s = match (message_id.is_broadcast(), event) {
                (false, DeviceEvent::Arrived) => &sql::EVENT_ARRIVED,
                (false, DeviceEvent::Opened) => &sql::EVENT_OPENED,
                (false, DeviceEvent::Ignored) => &sql::EVENT_IGNORED,
                (true, DeviceEvent::Arrived) => &sql::BROADCAST_ARRIVED,
                (true, DeviceEvent::Opened) => &sql::BROADCAST_OPENED,
                (true, DeviceEvent::Ignored) => &sql::BROADCAST_IGNORED,
            };
            let change = match event {
                DeviceEvent::Arrived => Change::Delivered,
                DeviceEvent::Opened => Change::Opened,
                DeviceEvent::Ignored => Change::Ignored,
            };
            let (mid, device) = (message_id.as_str(), device_id.as_str());
            let rows = tx.query(s, &[&mid, &device, at, received_at], ledger::changed).await?;
            journal_changed(tx, mid, device, change, rows).await?;
        }
        StatusUpdate::Disconnected { device_id, presence, at } => {
            let generation = presence.generation as i64;
            tx.execute(&sql::DISCONNECTED, &[&device_id.as_str(), &presence.node, &generation, at]).await?;
        }
        StatusUpdate::KeyUsed { key_id, at } => {
            tx.execute(&sql::KEY_USED, &[&key_id.as_str(), at]).await?;
        }
    }
    Ok(())
}

/// Marks deliveries past their validity `expired`; how many.
pub(crate) async fn expire<X: Tx>(tx: &X, now: i64) -> StoreResult<u64> {
    let rows = tx.query(&sql::EXPIRE, &[&now], ledger::changed_delivery).await?;
    let n = rows.len() as u64;
    for (mid, device, c) in rows {
        journal(tx, &mid, Some(&device), Change::Expired, &c, None).await?;
    }
    Ok(n)
}
