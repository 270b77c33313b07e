//! Devices: registration, reports, user binds, and the presence of their connections.

use herald_core::crypto;
use herald_core::ids::{AppId, DeviceId, UserId};
use herald_core::model::{Bound, DeviceFilter, DeviceRecord, DeviceRegistration, Presence};
use herald_core::state::{Change, Channel};
use serde_json::{Map, Value};

use crate::ops::ledger;
use crate::tx::{Dialect, Tx, query_one, query_opt};
use crate::{Registered, StoreResult, logic, rows, sql};

fn tokens_json(tokens: &Map<String, Value>) -> String {
    Value::Object(tokens.clone()).to_string()
}

/// Registers a new installId, or renews the device of a known one when the registration
/// proves it is that device (it presents the device's current token).
pub(crate) async fn register<X: Tx>(tx: &X, reg: &DeviceRegistration) -> StoreResult<Registered> {
    let app = reg.app_id.as_str();
    let tokens = reg.vendor_tokens.as_ref().map(tokens_json);
    let inserted = tx
        .execute(
            &sql::INSERT_DEVICE,
            &[
                &reg.new_device_id.as_str(),
                &app,
                &reg.install_id,
                &reg.token_hash,
                &reg.platform.as_str(),
                &reg.app_version,
                &reg.os_version,
                &reg.model,
                &tokens.as_deref().unwrap_or("{}"),
                &reg.now,
            ],
        )
        .await?;
    if inserted == 1 {
        let device = query_one(tx, &sql::DEVICE_BY_INSTALL, &[&app, &reg.install_id], rows::device).await?;
        return Ok(Registered::Created(device));
    }
    // Known installId: locked until this decides (two registrations at once see one row).
    let (device_id, current) =
        query_one(tx, &sql::INSTALL_TOKEN, &[&app, &reg.install_id], |r| Ok((r.text(0)?, r.text(1)?))).await?;
    // An imported device's first registration claims it (it has never had a token).
    let proven = current.starts_with(crate::IMPORTED_TOKEN_PREFIX)
        || reg.proof_token_hash.as_deref().is_some_and(|p| crypto::constant_time_eq(p.as_bytes(), current.as_bytes()));
    if !proven {
        return Ok(Registered::Taken);
    }
    tx.execute(
        &sql::RENEW_DEVICE,
        &[&device_id, &reg.token_hash, &reg.platform.as_str(), &reg.app_version, &reg.os_version, &reg.model, &tokens],
    )
    .await?;
    let device = query_one(tx, &sql::DEVICE_BY_INSTALL, &[&app, &reg.install_id], rows::device).await?;
    Ok(Registered::Renewed(device))
}

pub(crate) async fn device_by_token_hash<X: Tx>(tx: &X, token_hash: &str) -> StoreResult<Option<DeviceRecord>> {
    query_opt(tx, &sql::DEVICE_BY_TOKEN, &[&token_hash], rows::device).await
}

pub(crate) async fn device<X: Tx>(tx: &X, app_id: &AppId, device_id: &DeviceId) -> StoreResult<Option<DeviceRecord>> {
    query_opt(tx, &sql::DEVICE, &[&device_id.as_str(), &app_id.as_str()], rows::device).await
}

/// One page of the app's devices that `filter` selects, newest first, and how many it
/// selects. A deviceId, installId or userId names at most a few devices: they are read by
/// their key and the rest of the filter applied to them; otherwise the page is read in the
/// order of the (app_id, created_at) index and counted from it.
pub(crate) async fn devices<X: Tx>(
    tx: &X,
    app_id: &AppId,
    filter: &DeviceFilter,
    offset: u64,
    limit: u64,
) -> StoreResult<(u64, Vec<DeviceRecord>)> {
    let app = app_id.as_str();
    let few = if let Some(id) = &filter.device_id {
        Some(query_opt(tx, &sql::DEVICE, &[&id.as_str(), &app], rows::device).await?.into_iter().collect())
    } else if let Some(install) = &filter.install_id {
        Some(
            query_opt(tx, &sql::DEVICE_BY_INSTALL, &[&app, &install.as_str()], rows::device)
                .await?
                .into_iter()
                .collect(),
        )
    } else if let Some(user) = &filter.user_id {
        Some(tx.query(&sql::USER_DEVICES, &[&app, &user.as_str()], rows::device).await?)
    } else {
        None
    };
    if let Some(mut few) = few {
        let selected = |d: &DeviceRecord| {
            filter.device_id.as_ref().is_none_or(|id| d.device_id.as_str() == id)
                && filter.install_id.as_ref().is_none_or(|i| &d.install_id == i)
                && filter.user_id.as_ref().is_none_or(|u| d.user_id.as_ref().is_some_and(|du| du.as_str() == u))
                && filter.platform.is_none_or(|p| d.platform == p)
        };
        few.retain(selected);
        few.sort_by(|a, b| (b.created_at, &b.device_id).cmp(&(a.created_at, &a.device_id)));
        let total = few.len() as u64;
        let page = few.into_iter().skip(offset as usize).take(limit as usize).collect();
        return Ok((total, page));
    }
    let (limit, offset) = (limit as i64, offset as i64);
    match filter.platform {
        None => {
            let total = query_one(tx, &sql::DEVICE_COUNT, &[&app], |r| r.i64(0)).await? as u64;
            Ok((total, tx.query(&sql::DEVICE_PAGE, &[&app, &limit, &offset], rows::device).await?))
        }
        Some(platform) => {
            let platform = platform.as_str();
            let total = query_one(tx, &sql::DEVICE_COUNT_OF_PLATFORM, &[&app, &platform], |r| r.i64(0)).await? as u64;
            let args: [&dyn crate::tx::Arg; 4] = [&app, &platform, &limit, &offset];
            Ok((total, tx.query(&sql::DEVICE_PAGE_OF_PLATFORM, &args, rows::device).await?))
        }
    }
}

pub(crate) async fn credentials<X: Tx>(tx: &X, device_id: &DeviceId) -> StoreResult<Option<(AppId, String)>> {
    query_opt(tx, &sql::DEVICE_CREDENTIALS, &[&device_id.as_str()], |r| Ok((AppId::new(r.text(0)?), r.text(1)?))).await
}

/// Updates what the device reported: the app version, and vendor tokens merged into the
/// known ones. False when the app has no such device.
pub(crate) async fn report<X: Tx>(
    tx: &X,
    app_id: &AppId,
    device_id: &DeviceId,
    app_version: Option<&str>,
    vendor_tokens: Option<Map<String, Value>>,
) -> StoreResult<bool> {
    let locked = query_opt(tx, &sql::DEVICE_FOR_UPDATE, &[&device_id.as_str(), &app_id.as_str()], rows::device).await?;
    let Some(device) = locked else {
        return Ok(false);
    };
    let reported = vendor_tokens.unwrap_or_default();
    // A fresh token replaces one a vendor called invalid: it leaves the app's list.
    for (channel, token) in &reported {
        if !token.is_null() && device.vendor_tokens.get(channel) != Some(token) {
            tx.execute(&sql::CLEAR_INVALID_TOKEN, &[&app_id.as_str(), &device_id.as_str(), channel]).await?;
        }
    }
    let mut tokens = device.vendor_tokens;
    logic::merge_vendor_tokens(&mut tokens, reported);
    tx.execute(&sql::REPORT_DEVICE, &[&device_id.as_str(), &app_version, &tokens_json(&tokens)]).await?;
    Ok(true)
}

/// Binds `user` to the device (replacing an earlier user, whose undelivered messages stop
/// going to it) and creates deliveries of the user's messages still within their validity.
/// `None` when the app has no such device.
pub(crate) async fn bind<X: Tx>(
    tx: &X,
    app_id: &AppId,
    device_id: &DeviceId,
    user: &UserId,
    now: i64,
) -> StoreResult<Option<Bound>> {
    let (app, device, user) = (app_id.as_str(), device_id.as_str(), user.as_str());
    // Locked from here on: a connect's presence is either already recorded, or waits for
    // this bind to commit (and then reads its deliveries).
    let Some(current) = query_opt(tx, &sql::DEVICE_FOR_UPDATE, &[&device, &app], rows::device).await? else {
        return Ok(None);
    };
    if let Some(previous) = current.user_id.as_ref().filter(|p| p.as_str() != user) {
        tx.execute(&sql::DROP_USER_DELIVERIES, &[&device, &app, &previous.as_str()]).await?;
    }
    tx.execute(&sql::BIND, &[&device, &user, &now]).await?;
    for mid in tx.query(&sql::USER_BACKLOG, &[&device, &now, &app, &user], |r| r.text(0)).await? {
        let pushed = ledger::Changed::new(Some(Channel::Own.as_str()), now);
        ledger::journal(tx, &mid, Some(device), Change::Pushed, &pushed, None).await?;
    }
    let pending = tx.query(&sql::USER_PENDING, &[&device, &now, &app, &user], rows::pending).await?;
    let online_node = query_one(tx, &sql::ONLINE_NODE, &[&device], |r| r.opt_text(0)).await?;
    Ok(Some(Bound { pending, online_node }))
}

/// Unbinds the device's user; pending user-targeted deliveries to it are dropped. False
/// when the app has no such device.
pub(crate) async fn unbind<X: Tx>(tx: &X, app_id: &AppId, device_id: &DeviceId, now: i64) -> StoreResult<bool> {
    let (app, device) = (app_id.as_str(), device_id.as_str());
    let Some(current) = query_opt(tx, &sql::DEVICE_FOR_UPDATE, &[&device, &app], rows::device).await? else {
        return Ok(false);
    };
    if let Some(user) = &current.user_id {
        tx.execute(&sql::DROP_USER_DELIVERIES, &[&device, &app, &user.as_str()]).await?;
        tx.execute(&sql::UNBIND, &[&device, &now]).await?;
    }
    Ok(true)
}

pub(crate) async fn user_devices<X: Tx>(tx: &X, app_id: &AppId, user: &UserId) -> StoreResult<Vec<DeviceRecord>> {
    tx.query(&sql::USER_DEVICES, &[&app_id.as_str(), &user.as_str()], rows::device).await
}

/// Records that `presence` holds the device's connection; the presence it replaced when
/// that was another connection.
pub(crate) async fn connected<X: Tx>(
    tx: &X,
    device_id: &DeviceId,
    presence: &Presence,
    now: i64,
) -> StoreResult<Option<Presence>> {
    let args: [&dyn crate::tx::Arg; 4] = [&device_id.as_str(), &presence.node, &(presence.generation as i64), &now];
    let old = |r: &dyn crate::tx::Row| Ok((r.opt_text(0)?, r.opt_i64(1)?));
    let before = match tx.dialect() {
        // One statement that locks the row, reads the old presence and writes the new one:
        // a connect costs one round trip.
        Dialect::Postgres => query_opt(tx, &sql::CONNECT_RETURNING_OLD, &args, old).await?,
        // The writer thread is the only writer: read, then write. (SQLite's RETURNING shows
        // only the new row.)
        Dialect::Sqlite => {
            let before = query_opt(tx, &sql::PRESENCE, &args[..1], old).await?;
            tx.execute(&sql::CONNECT, &args).await?;
            before
        }
    };
    Ok(logic::replaced(before, presence))
}

pub(crate) async fn node_started<X: Tx>(tx: &X, node: &str) -> StoreResult<u64> {
    tx.execute(&sql::NODE_STARTED, &[&node]).await
}

/// Devices connected to `node` with a delivery waiting since before `created_before`, or a
/// broadcast created in [`broadcasts_since`, `created_before`), at most `limit`.
pub(crate) async fn stale<X: Tx>(
    tx: &X,
    node: &str,
    created_before: i64,
    broadcasts_since: i64,
    now: i64,
    limit: usize,
) -> StoreResult<Vec<DeviceId>> {
    let args: [&dyn crate::tx::Arg; 5] = [&node, &created_before, &now, &(limit as i64), &broadcasts_since];
    let mut devices = tx.query(&sql::STALE_UNICAST, &args[..4], rows::device_id).await?;
    if devices.len() < limit {
        let mut seen: std::collections::HashSet<DeviceId> = devices.iter().cloned().collect();
        for d in tx.query(&sql::STALE_BROADCAST, &args, rows::device_id).await? {
            if devices.len() < limit && seen.insert(d.clone()) {
                devices.push(d);
            }
        }
    }
    Ok(devices)
}
