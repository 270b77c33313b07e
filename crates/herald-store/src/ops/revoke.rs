//! Revoke: messages get `revoked_at`, open deliveries become `revoked`, and devices that got
//! a message get a control message (a message of kind `revoke`) through ordinary deliveries.

use herald_core::ids::{AppId, MessageId, TaskId};
use herald_core::model::{Recall, Recipient, Revocation, RevokeTarget};
use herald_core::state::{Change, TargetKind};

use crate::ops::ledger::{self, journal};
use crate::tx::{Tx, query_opt};
use crate::{StoreResult, logic, rows, sql};

/// A message being revoked, as its recall needs it.
struct Revoked {
    message_id: String,
    task_id: String,
    msg_key: String,
    target_kind: TargetKind,
    target: String,
    expires_at: i64,
}

/// What became of a task's broadcast.
enum BroadcastRevoke {
    /// The task has no broadcast in the window.
    None,
    /// It was revoked before.
    Earlier,
    /// Revoked now; the recall for devices that got it.
    Now { message_id: MessageId, recall: Option<Recall> },
}

/// Revokes the app's notifications that `what` names, created since `since` and not revoked
/// before. `None` when the app has no such message or task in the window.
pub(crate) async fn revoke<X: Tx>(
    tx: &X,
    app_id: &AppId,
    what: &RevokeTarget,
    now: i64,
    since: i64,
) -> StoreResult<Option<Revocation>> {
    let app = app_id.as_str();
    // Locked (PostgreSQL): two revokes of one message at once do not both send a recall.
    let row = |r: &dyn crate::tx::Row| {
        let revoked = Revoked {
            message_id: r.text(0)?,
            task_id: r.text(1)?,
            msg_key: r.text(2)?,
            target_kind: rows::target_kind(r, 3)?,
            target: r.text(4)?,
            expires_at: r.i64(5)?,
        };
        Ok((revoked, r.opt_i64(6)?))
    };
    let (found, broadcast) = match what {
        RevokeTarget::Message { msg_key, target } => {
            (tx.query(&sql::REVOCABLE_BY_KEY, &[&app, msg_key, target, &since], row).await?, BroadcastRevoke::None)
        }
        RevokeTarget::Task(task_id) => (
            tx.query(&sql::REVOCABLE_OF_TASK, &[&app, &task_id.as_str(), &since], row).await?,
            revoke_broadcast(tx, app_id, task_id, now, since).await?,
        ),
    };
    let mut out = Revocation::default();
    match broadcast {
        BroadcastRevoke::None if found.is_empty() => return Ok(None),
        BroadcastRevoke::None | BroadcastRevoke::Earlier => {}
        BroadcastRevoke::Now { message_id, recall } => {
            out.messages.push(message_id);
            out.recalls.extend(recall);
        }
    }
    for (m, revoked_at) in found {
        if revoked_at.is_some() {
            continue;
        }
        tx.execute(&sql::MARK_MESSAGE_REVOKED, &[&m.message_id, &now]).await?;
        let devices = tx.query(&sql::RECALL_TARGETS, &[&m.message_id], rows::recipient).await?;
        let withdrawn = tx.query(&sql::WITHDRAW, &[&m.message_id, &now], ledger::changed_delivery).await?;
        out.withdrawn += withdrawn.len() as u64;
        for (mid, device, c) in withdrawn {
            journal(tx, &mid, Some(&device), Change::Revoked, &c, None).await?;
        }
        if !devices.is_empty() && m.expires_at > now {
            out.recalls.push(insert_recall(tx, app, &m, devices, now).await?);
        }
        out.messages.push(MessageId::new(m.message_id));
    }
    out.vendor_recalls = crate::ops::channels::revoke(tx, &out.messages, now).await?;
    Ok(Some(out))
}

async fn revoke_broadcast<X: Tx>(
    tx: &X,
    app_id: &AppId,
    task_id: &TaskId,
    now: i64,
    since: i64,
) -> StoreResult<BroadcastRevoke> {
    let row = |r: &dyn crate::tx::Row| Ok((r.text(0)?, r.text(1)?, r.i64(2)?, r.opt_i64(3)?));
    let found = query_opt(tx, &sql::REVOCABLE_BROADCAST, &[&task_id.as_str(), &app_id.as_str(), &since], row).await?;
    let Some((message_id, msg_key, expires_at, revoked_at)) = found else {
        return Ok(BroadcastRevoke::None);
    };
    if revoked_at.is_some() {
        return Ok(BroadcastRevoke::Earlier);
    }
    tx.execute(&sql::REVOKE_BROADCAST, &[&message_id, &now]).await?;
    let devices = tx.query(&sql::BROADCAST_RECALL_TARGETS, &[&message_id], rows::recipient).await?;
    let mut recall = None;
    if !devices.is_empty() && expires_at > now {
        let revoked = Revoked {
            message_id: message_id.clone(),
            task_id: task_id.as_str().to_owned(),
            msg_key,
            target_kind: TargetKind::Device,
            target: "*".into(),
            expires_at,
        };
        recall = Some(insert_recall(tx, app_id.as_str(), &revoked, devices, now).await?);
    }
    Ok(BroadcastRevoke::Now { message_id: MessageId::new(message_id), recall })
}

/// Stores the control message that withdraws `revoked` from `devices` (pending for each of
/// them) and returns it for dispatch.
async fn insert_recall<X: Tx>(
    tx: &X,
    app: &str,
    revoked: &Revoked,
    devices: Vec<Recipient>,
    now: i64,
) -> StoreResult<Recall> {
    let control = MessageId::generate(now);
    let payload = logic::recall_payload(&revoked.message_id, &revoked.msg_key, &revoked.task_id, &control, now);
    let r = revoked;
    tx.execute(
        &sql::INSERT_RECALL,
        &[
            &control.as_str(),
            &app,
            &r.task_id,
            &r.msg_key,
            &r.target_kind.as_str(),
            &r.target,
            &payload,
            &now,
            &r.expires_at,
        ],
    )
    .await?;
    for d in &devices {
        tx.execute(&sql::INSERT_DELIVERY, &[&control.as_str(), &d.device_id.as_str(), &now, &r.expires_at]).await?;
    }
    Ok(Recall { message_id: control, payload: payload.into(), expires_at: r.expires_at, devices })
}
