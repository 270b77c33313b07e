//! Receipt webhooks: an app's configuration, and its outbox as the sender works through it
//! (one node at a time per app, the head first, given up past an age).

use herald_core::ids::{AppId, DeviceId};
use herald_core::ledger::{StoredReceipt, WebhookRecord};
use herald_core::state::{Change, Channel};

use crate::ops::ledger::{self, runs};
use crate::tx::{Arg, Row, Tx, query_one, query_opt};
use crate::{StoreResult, sql};

fn webhook_row(r: &dyn Row) -> StoreResult<WebhookRecord> {
    Ok(WebhookRecord {
        app_id: AppId::new(r.text(0)?),
        url: r.text(1)?,
        enabled: r.bool(2)?,
        secret_sealed: r.text(3)?,
        created_at: r.i64(4)?,
        updated_at: r.i64(5)?,
        attempts: r.i64(6)?,
        next_at: r.i64(7)?,
        last_success: r.opt_i64(8)?,
        last_error_at: r.opt_i64(9)?,
        last_error: r.opt_text(10)?,
    })
}

pub(crate) async fn webhook<X: Tx>(tx: &X, app: &AppId) -> StoreResult<Option<WebhookRecord>> {
    query_opt(tx, &sql::WEBHOOK, &[&app.as_str()], webhook_row).await
}

pub(crate) async fn put_webhook<X: Tx>(tx: &X, w: &WebhookRecord) -> StoreResult<()> {
    let args: [&dyn Arg; 5] = [&w.app_id.as_str(), &w.url, &w.enabled, &w.secret_sealed, &w.updated_at];
    tx.execute(&sql::PUT_WEBHOOK, &args).await.map(|_| ())
}

pub(crate) async fn due<X: Tx>(tx: &X, node: &str, now: i64, limit: usize) -> StoreResult<Vec<AppId>> {
    tx.query(&sql::DUE_WEBHOOKS, &[&now, &node, &(limit as i64)], |r| Ok(AppId::new(r.text(0)?))).await
}

pub(crate) async fn claim<X: Tx>(tx: &X, app: &AppId, node: &str, until: i64, now: i64) -> StoreResult<bool> {
    Ok(tx.execute(&sql::CLAIM_WEBHOOK, &[&app.as_str(), &node, &until, &now]).await? == 1)
}

pub(crate) async fn release<X: Tx>(tx: &X, app: &AppId, node: &str) -> StoreResult<()> {
    tx.execute(&sql::RELEASE_WEBHOOK, &[&app.as_str(), &node]).await.map(|_| ())
}

pub(crate) async fn head<X: Tx>(tx: &X, app: &AppId, limit: usize) -> StoreResult<Vec<StoredReceipt>> {
    tx.query(&sql::OUTBOX_HEAD, &[&app.as_str(), &(limit as i64)], |r| {
        Ok(StoredReceipt { seq: r.i64(0)?, receipt: r.text(1)?, created_at: r.i64(2)?, reason: None, failed_at: None })
    })
    .await
}

/// The receipts `seqs` were acknowledged at `now`.
pub(crate) async fn sent<X: Tx>(tx: &X, app: &AppId, seqs: &[i64], now: i64) -> StoreResult<()> {
    let app = app.as_str();
    for (first, last) in runs(seqs) {
        tx.execute(&sql::RECEIPTS_DONE, &[&app, &first, &last]).await?;
    }
    tx.execute(&sql::WEBHOOK_OK, &[&app, &now]).await.map(|_| ())
}

pub(crate) async fn failed<X: Tx>(
    tx: &X,
    app: &AppId,
    attempts: i64,
    next_at: i64,
    now: i64,
    error: &str,
) -> StoreResult<()> {
    let args: [&dyn Arg; 5] = [&app.as_str(), &attempts, &next_at, &now, &error];
    tx.execute(&sql::WEBHOOK_FAILED, &args).await.map(|_| ())
}

/// Moves the app's receipts created before `before` to its failures; how many.
pub(crate) async fn give_up<X: Tx>(tx: &X, app: &AppId, before: i64, reason: &str, now: i64) -> StoreResult<u64> {
    let app = app.as_str();
    let n = tx.execute(&sql::GIVE_UP_RECEIPTS, &[&app, &before, &reason, &now]).await?;
    if n > 0 {
        tx.execute(&sql::DROP_GIVEN_UP, &[&app, &before]).await?;
    }
    Ok(n)
}

/// The device the app's send of `message` through `channel` to `token` went to.
pub(crate) async fn vendor_device<X: Tx>(
    tx: &X,
    app: &AppId,
    channel: Channel,
    message: &str,
    token: &str,
) -> StoreResult<Option<DeviceId>> {
    let args: [&dyn Arg; 4] = [&message, &app.as_str(), &channel.as_str(), &token];
    query_opt(tx, &sql::VENDOR_DEVICE, &args, |r| Ok(DeviceId::new(r.text(0)?))).await
}

/// A vendor reported that it could not deliver `message` to the device.
pub(crate) async fn vendor_failed<X: Tx>(
    tx: &X,
    message: &str,
    device: &DeviceId,
    channel: Channel,
    reason: &str,
    at: i64,
) -> StoreResult<()> {
    let failed = ledger::Changed::new(Some(channel.as_str()), at);
    ledger::journal(tx, message, Some(device.as_str()), Change::Failed, &failed, Some(reason)).await
}

pub(crate) async fn outbox_size<X: Tx>(tx: &X, app: &AppId) -> StoreResult<u64> {
    Ok(query_one(tx, &sql::OUTBOX_SIZE, &[&app.as_str()], |r| r.i64(0)).await? as u64)
}

pub(crate) async fn failures<X: Tx>(
    tx: &X,
    app: &AppId,
    offset: u64,
    limit: u64,
) -> StoreResult<(u64, Vec<StoredReceipt>)> {
    let app = app.as_str();
    let total = query_one(tx, &sql::FAILURE_COUNT, &[&app], |r| r.i64(0)).await?;
    let page = tx
        .query(&sql::FAILURES, &[&app, &(limit as i64), &(offset as i64)], |r| {
            Ok(StoredReceipt {
                seq: r.i64(0)?,
                receipt: r.text(1)?,
                reason: Some(r.text(2)?),
                created_at: r.i64(3)?,
                failed_at: Some(r.i64(4)?),
            })
        })
        .await?;
    Ok((total as u64, page))
}

/// Puts the app's failures (`ids`, or all) back at the tail of its outbox, tried at once;
/// how many.
pub(crate) async fn replay<X: Tx>(tx: &X, app: &AppId, ids: Option<&[i64]>, now: i64) -> StoreResult<u64> {
    let app = app.as_str();
    let mut n = 0;
    let one = |id: Option<i64>| async move {
        let moved = tx.execute(&sql::REPLAY, &[&app, &now, &id]).await?;
        tx.execute(&sql::DROP_REPLAYED, &[&app, &id]).await?;
        StoreResult::Ok(moved)
    };
    match ids {
        None => n += one(None).await?,
        Some(ids) => {
            for id in ids {
                n += one(Some(*id)).await?;
            }
        }
    }
    if n > 0 {
        tx.execute(&sql::WEBHOOK_NOW, &[&app, &now]).await?;
    }
    Ok(n)
}
