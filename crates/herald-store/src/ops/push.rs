//! Pushes: the commit of a push, the deliveries a device reads back, status updates and
//! the expiry of what was never acknowledged.

use futures_util::future::try_join_all;
use herald_core::channel::route::Routing;
use herald_core::ids::{DeviceId, MessageId};
use herald_core::model::{
    CommittedPush, NewMessage, NewPush, NewTask, PendingDelivery, Recipient, StatusUpdate, TargetOutcome,
};
use herald_core::state::{Change, Channel, DeviceEvent, TargetKind};

use crate::ops::channels;
use crate::ops::ledger::{self, journal, journal_changed};
use crate::tx::{Arg, Sql, Tx, query_one};
use crate::{StoreError, StoreResult, logic, rows, sql};

/// Commits a push: task, messages, deliveries and the sends a vendor is to make (the app's
/// routing decides which, DESIGN §7). Two rounds of statements whatever its size (each
/// round pipelined on PostgreSQL): the idempotency claims with the target lookups (and
/// the app's channels), then the writes. A whole repeat of one earlier request (a client
/// retry) is answered from the claims and writes nothing.
pub(crate) async fn commit<X: Tx>(tx: &X, push: &NewPush, now: i64) -> StoreResult<CommittedPush> {
    let (committed, rows) = claim(tx, push, now).await?;
    if let Some(rows) = rows {
        rows.write(tx).await?;
    }
    Ok(committed)
}

/// The first round of [`commit`]: claims the push's keys and reads its targets. Gives the
/// answer, and the rows still to write (none for a whole repeat).
pub(crate) async fn claim<'p, X: Tx>(
    tx: &X,
    push: &'p NewPush,
    now: i64,
) -> StoreResult<(CommittedPush, Option<PushRows<'p>>)> {
    let fetched = fetch(tx, push, now).await?;
    settle(tx, push, fetched).await
}

/// What the first round reads for a push: for each message whether its key was claimed, the
/// devices it targets, and the app's routing when a vendor may carry one of its messages.
pub(crate) struct Fetched {
    pub(crate) claimed: Vec<bool>,
    pub(crate) targets: Vec<Vec<rows::Target>>,
    pub(crate) context: Option<(Routing, Vec<Channel>)>,
}

/// The claims and lookups of one push, a statement each (pipelined on PostgreSQL).
async fn fetch<X: Tx>(tx: &X, push: &NewPush, now: i64) -> StoreResult<Fetched> {
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
        TargetKind::Broadcast => Err(not_a_push_target()),
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
    let (claims, targets, context): (Vec<u64>, Vec<Vec<rows::Target>>, _) = tokio::try_join!(claims, lookups, context)?;
    let claimed = match push.skip_idempotency {
        true => vec![true; push.messages.len()],
        false => claims.iter().map(|c| *c == 1).collect(),
    };
    Ok(Fetched { claimed, targets, context })
}

pub(crate) fn not_a_push_target() -> StoreError {
    StoreError::Internal("a push message cannot target a broadcast".into())
}

/// The rest of the first round once [`Fetched`]: who holds each key the push did not claim
/// (a statement each, pipelined), then the answer and the rows to write.
pub(crate) async fn settle<'p, X: Tx>(
    tx: &X,
    push: &'p NewPush,
    fetched: Fetched,
) -> StoreResult<(CommittedPush, Option<PushRows<'p>>)> {
    let t = &push.task;
    let app = t.app_id.as_str();
    let Fetched { claimed, targets: lookups, context } = fetched;
    let kinds: Vec<&str> = push.messages.iter().map(|m| m.target_kind.as_str()).collect();
    let holder_args: Vec<[&dyn Arg; 4]> = push
        .messages
        .iter()
        .zip(&kinds)
        .map(|(m, kind)| -> [&dyn Arg; 4] { [&app, &m.msg_key, kind, &m.target] })
        .collect();
    let earlier: Vec<Option<(String, String)>> =
        try_join_all(claimed.iter().zip(&holder_args).map(|(claimed, a)| async move {
            match claimed {
                true => Ok(None),
                false => query_one(tx, &sql::KEY_HOLDER, a, |r| Ok((r.text(0)?, r.text(1)?))).await.map(Some),
            }
        }))
        .await?;
    if let Some(replay) = logic::replay_of(&earlier) {
        return Ok((replay, None));
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
    let messages = stored
        .iter()
        .map(|&(i, undeliverable)| {
            let m = &push.messages[i];
            let payload =
                std::str::from_utf8(&m.payload).map_err(|_| StoreError::Internal("a payload is not UTF-8".into()))?;
            Ok(MessageRow { message: m, payload, undeliverable })
        })
        .collect::<StoreResult<Vec<_>>>()?;
    let vendor_sends: Vec<VendorRow<'p>> = routed
        .into_iter()
        .map(|(i, device, r)| VendorRow { message: push.messages[i].message_id.as_str(), device, routed: r })
        .collect();
    // Each delivery is journalled as pushed, by the channel the push routed it to.
    let vendor_of: std::collections::HashMap<(&str, &str), &'static str> =
        vendor_sends.iter().map(|v| ((v.message, v.device.as_str()), v.routed.channel.as_str())).collect();
    let deliveries: Vec<DeliveryRow<'p>> = push
        .messages
        .iter()
        .zip(&outcomes)
        .filter_map(|(m, (_, o))| match o {
            TargetOutcome::Accepted { devices } => Some(devices.iter().map(move |d| (m.message_id.as_str(), d))),
            TargetOutcome::Undeliverable | TargetOutcome::Duplicate { .. } => None,
        })
        .flatten()
        .map(|(mid, d)| DeliveryRow {
            message: mid,
            device: d.device_id.as_str().to_owned(),
            channel: vendor_of.get(&(mid, d.device_id.as_str())).copied().unwrap_or(OWN),
        })
        .collect();
    let rows = PushRows { task: t, messages, deliveries, vendor_sends, journal: tx.journal() };
    Ok((CommittedPush { task_id: t.task_id.clone(), replayed: false, outcomes }, Some(rows)))
}

/// What a push writes once its claims are made: the task, each message, its deliveries, the
/// sends a vendor is to make, and (when journalling) each delivery as pushed.
pub(crate) struct PushRows<'p> {
    pub(crate) task: &'p NewTask,
    pub(crate) messages: Vec<MessageRow<'p>>,
    pub(crate) deliveries: Vec<DeliveryRow<'p>>,
    pub(crate) vendor_sends: Vec<VendorRow<'p>>,
    pub(crate) journal: bool,
}

pub(crate) struct MessageRow<'p> {
    pub(crate) message: &'p NewMessage,
    pub(crate) payload: &'p str,
    pub(crate) undeliverable: bool,
}

/// A delivery, and the channel its journal entry names.
pub(crate) struct DeliveryRow<'p> {
    pub(crate) message: &'p str,
    pub(crate) device: String,
    pub(crate) channel: &'static str,
}

pub(crate) struct VendorRow<'p> {
    pub(crate) message: &'p str,
    pub(crate) device: DeviceId,
    pub(crate) routed: channels::Routed,
}

impl PushRows<'_> {
    /// The second round of [`commit`], a statement per row: the task, each message, its
    /// deliveries, then the vendor sends and the journal, in this order on one connection.
    pub(crate) async fn write<X: Tx>(&self, tx: &X) -> StoreResult<()> {
        let t = self.task;
        let (app, task_id, push_type) = (t.app_id.as_str(), t.task_id.as_str(), t.push_type.as_str());
        let task_args: [&dyn Arg; 7] =
            [&task_id, &app, &push_type, &t.task_name, &t.delivery_type, &t.created_at, &t.expires_at];
        let message_ids: Vec<&str> = self.messages.iter().map(|m| m.message.message_id.as_str()).collect();
        let kinds: Vec<&str> = self.messages.iter().map(|m| m.message.target_kind.as_str()).collect();
        let message_args: Vec<[&dyn Arg; 10]> = self
            .messages
            .iter()
            .enumerate()
            .map(|(i, m)| -> [&dyn Arg; 10] {
                [
                    &message_ids[i],
                    &app,
                    &task_id,
                    &m.message.msg_key,
                    &kinds[i],
                    &m.message.target,
                    &m.payload,
                    &m.undeliverable,
                    &t.created_at,
                    &t.expires_at,
                ]
            })
            .collect();
        let delivery_args: Vec<[&dyn Arg; 4]> = self
            .deliveries
            .iter()
            .map(|d| -> [&dyn Arg; 4] { [&d.message, &d.device, &t.created_at, &t.expires_at] })
            .collect();
        let pushed = Change::Pushed.as_str();
        let journal_args: Vec<[&dyn Arg; 7]> = self
            .deliveries
            .iter()
            .take(if self.journal { usize::MAX } else { 0 })
            .map(|d| -> [&dyn Arg; 7] { [&d.message, &d.device, &pushed, &NONE, &d.channel, &NONE, &t.created_at] })
            .collect();
        // try_join! polls in order: the statements reach the connection in this order.
        let rows = std::iter::once(tx.execute(&sql::INSERT_TASK, &task_args))
            .chain(message_args.iter().map(|a| tx.execute(&sql::INSERT_MESSAGE, a)))
            .chain(delivery_args.iter().map(|a| tx.execute(&sql::INSERT_DELIVERY, a)));
        let journal = journal_args.iter().map(|a| tx.execute(&sql::JOURNAL, a));
        tokio::try_join!(try_join_all(rows), self.write_vendor_sends(tx), try_join_all(journal))?;
        Ok(())
    }

    /// The sends a vendor is to make, a statement each (a push routes few).
    pub(crate) async fn write_vendor_sends<X: Tx>(&self, tx: &X) -> StoreResult<()> {
        let t = self.task;
        let app = t.app_id.as_str();
        let vendor_keys: Vec<(&str, &str)> =
            self.vendor_sends.iter().map(|v| (v.device.as_str(), v.routed.channel.as_str())).collect();
        let vendor_args: Vec<[&dyn Arg; 7]> = self
            .vendor_sends
            .iter()
            .zip(&vendor_keys)
            .map(|(v, (device, channel))| -> [&dyn Arg; 7] {
                [&v.message, device, &app, channel, &v.routed.token, &t.created_at, &t.expires_at]
            })
            .collect();
        try_join_all(vendor_args.iter().map(|a| tx.execute(&sql::INSERT_VENDOR_SEND, a))).await?;
        Ok(())
    }
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

/// The change one status update makes to a delivery: its statement, the message and device,
/// the statement's further arguments, and the change journalled for each row it changed.
struct DeliveryChange<'a> {
    sql: &'static Sql,
    mid: &'a str,
    device: &'a str,
    more: [&'a dyn Arg; 2],
    /// How many of `more` the statement takes.
    n_more: usize,
    change: Change,
}

impl<'a> DeliveryChange<'a> {
    /// `None` for the updates of device and key rows. A broadcast's id starts with `b`: its
    /// updates go to the broadcast's sparse acknowledgements without a lookup.
    fn of(update: &'a StatusUpdate) -> Option<Self> {
        let (sql, message_id, device_id, more, n_more, change): (_, _, _, [&'a dyn Arg; 2], _, _) = match update {
            StatusUpdate::Sent { message_id, device_id, at } => {
                let s = if message_id.is_broadcast() { &sql::ACK_SENT } else { &sql::MARK_SENT };
                (s, message_id, device_id, [at, at], 1, Change::Sent)
            }
            StatusUpdate::Delivered { message_id, device_id, sent_at, at } => {
                let s = if message_id.is_broadcast() { &sql::ACK_DELIVERED } else { &sql::MARK_DELIVERED };
                (s, message_id, device_id, [sent_at, at], 2, Change::Delivered)
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
                (s, message_id, device_id, [at, received_at], 2, change)
            }
            StatusUpdate::Disconnected { .. } | StatusUpdate::KeyUsed { .. } => return None,
        };
        Some(DeliveryChange { sql, mid: message_id.as_str(), device: device_id.as_str(), more, n_more, change })
    }

    /// The rows the statement changed.
    async fn apply<X: Tx>(&self, tx: &X) -> StoreResult<Vec<ledger::Changed>> {
        let args: [&dyn Arg; 4] = [&self.mid, &self.device, self.more[0], self.more[1]];
        tx.query(self.sql, &args[..2 + self.n_more], ledger::changed).await
    }

    async fn journal<X: Tx>(&self, tx: &X, rows: Vec<ledger::Changed>) -> StoreResult<()> {
        journal_changed(tx, self.mid, self.device, self.change, rows).await
    }
}

/// Applies one status update, and journals the change it made.
pub(crate) async fn apply_update<X: Tx>(tx: &X, update: &StatusUpdate) -> StoreResult<()> {
    if let Some(c) = DeliveryChange::of(update) {
        let rows = c.apply(tx).await?;
        return c.journal(tx, rows).await;
    }
    match update {
        StatusUpdate::Disconnected { device_id, presence, at } => {
            let generation = presence.generation as i64;
            tx.execute(&sql::DISCONNECTED, &[&device_id.as_str(), &presence.node, &generation, at]).await?;
        }
        StatusUpdate::KeyUsed { key_id, at } => {
            tx.execute(&sql::KEY_USED, &[&key_id.as_str(), at]).await?;
        }
        StatusUpdate::Sent { .. } | StatusUpdate::Delivered { .. } | StatusUpdate::Event { .. } => {}
    }
    Ok(())
}

/// Applies the status updates of deliveries in order, as [`apply_update`] one after the other
/// would, in two rounds of statements (pipelined on PostgreSQL): every update, then every
/// journal entry. Statements on one connection run in the order they are sent, so an update
/// sees the ones before it. Updates of device and key rows are left out.
pub(crate) async fn apply_delivery_updates<X: Tx>(tx: &X, updates: &[&StatusUpdate]) -> StoreResult<()> {
    let changes: Vec<DeliveryChange<'_>> = updates.iter().filter_map(|u| DeliveryChange::of(u)).collect();
    let rows = try_join_all(changes.iter().map(|c| c.apply(tx))).await?;
    try_join_all(changes.iter().zip(rows).map(|(c, rows)| c.journal(tx, rows))).await?;
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
