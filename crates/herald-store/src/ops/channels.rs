//! Vendor channels: an app's channel settings and routing policy, the vendor outbox (sends
//! written with the push, claimed under a lease, finished with the vendor's answer) and
//! the tokens vendors called invalid.

use std::collections::BTreeMap;

use futures_util::future::try_join_all;
use herald_core::channel::route::Routing;
use herald_core::ids::{AppId, MessageId};
use herald_core::model::{ChannelRecord, InvalidToken, VendorSend, VendorSendDone, VendorSendView};
use herald_core::state::{Change, Channel, VendorSendStatus};
use serde_json::Value;

use crate::ops::ledger;
use crate::rows::Target;
use crate::tx::{Arg, Tx, query_one, query_opt};
use crate::{StoreResult, rows, sql};

pub(crate) async fn put<X: Tx>(tx: &X, c: &ChannelRecord) -> StoreResult<()> {
    let settings = Value::Object(c.settings.clone()).to_string();
    let args: [&dyn Arg; 5] = [&c.app_id.as_str(), &c.kind.as_str(), &settings, &c.secret_sealed, &c.updated_at];
    tx.execute(&sql::PUT_CHANNEL, &args).await?;
    Ok(())
}

pub(crate) async fn get<X: Tx>(tx: &X, app: &AppId, kind: Channel) -> StoreResult<Option<ChannelRecord>> {
    query_opt(tx, &sql::CHANNEL, &[&app.as_str(), &kind.as_str()], rows::channel).await
}

pub(crate) async fn all<X: Tx>(tx: &X, app: &AppId) -> StoreResult<Vec<ChannelRecord>> {
    tx.query(&sql::CHANNELS, &[&app.as_str()], rows::channel).await
}

pub(crate) async fn delete<X: Tx>(tx: &X, app: &AppId, kind: Channel) -> StoreResult<bool> {
    Ok(tx.execute(&sql::DELETE_CHANNEL, &[&app.as_str(), &kind.as_str()]).await? == 1)
}

pub(crate) async fn routing<X: Tx>(tx: &X, app: &AppId) -> StoreResult<Option<Routing>> {
    query_opt(tx, &sql::ROUTING, &[&app.as_str()], |r| Ok(Routing::from_stored(&r.text(0)?, &r.text(1)?))).await
}

pub(crate) async fn set_routing<X: Tx>(tx: &X, app: &AppId, routing: &Routing) -> StoreResult<bool> {
    let (policy, order) = (routing.policy.as_str(), routing.stored_order());
    Ok(tx.execute(&sql::SET_ROUTING, &[&app.as_str(), &policy, &order]).await? == 1)
}

/// What a push needs to route to vendors: the app's routing and its configured channels.
pub(crate) async fn route_context<X: Tx>(tx: &X, app: &str) -> StoreResult<(Routing, Vec<Channel>)> {
    let args: [&dyn Arg; 1] = [&app];
    let routing = query_opt(tx, &sql::ROUTING, &args, |r| Ok(Routing::from_stored(&r.text(0)?, &r.text(1)?)));
    let kinds = tx.query(&sql::CHANNEL_KINDS, &args, |r| Ok(Channel::parse(&r.text(0)?)));
    let (routing, kinds) = tokio::try_join!(routing, kinds)?;
    Ok((routing.unwrap_or_default(), kinds.into_iter().flatten().collect()))
}

/// A vendor send to write with a push: (device index among the targets, channel, token).
pub(crate) struct Routed {
    pub(crate) channel: Channel,
    pub(crate) token: String,
}

/// The vendor (if any) that carries a message to `target` now.
pub(crate) fn route(ctx: &(Routing, Vec<Channel>), vendor_allowed: bool, target: &Target) -> Option<Routed> {
    let (routing, kinds) = ctx;
    if kinds.is_empty() || !routing.wants_vendor(vendor_allowed, target.online_node.is_some()) {
        return None;
    }
    let (channel, token) = routing.vendor_for(target.platform, &target.tokens, kinds)?;
    Some(Routed { channel, token })
}

/// Sends due at `now`, claimed until `now + lease_ms` (a node that dies leaves them to
/// another after that), each with the payload it carries (`None` once revoked).
pub(crate) async fn claim<X: Tx>(
    tx: &X,
    channel: Channel,
    now: i64,
    lease_ms: i64,
    limit: usize,
) -> StoreResult<Vec<VendorSend>> {
    let sends = claim_rows(tx, channel, now, lease_ms, limit).await?;
    with_payloads(tx, sends).await
}

/// Apps whose sends one claim takes in turn; the others get their turn at later claims.
const APPS_PER_CLAIM: i64 = 64;

/// The claim itself: due sends of `channel` taken for `lease_ms`, without their payloads.
/// When several apps have sends waiting, each gets an equal share of `limit` (so one app's
/// backlog, a broadcast to millions, never holds another app's sends back); the apps
/// considered start after a random app id, so that beyond `APPS_PER_CLAIM` apps each gets
/// its turn.
pub(crate) async fn claim_rows<X: Tx>(
    tx: &X,
    channel: Channel,
    now: i64,
    lease_ms: i64,
    limit: usize,
) -> StoreResult<Vec<VendorSend>> {
    let kind = channel.as_str();
    let start = format!("app{}", herald_core::crypto::random_alnum(2));
    let mut apps = tx.query(&sql::WAITING_APPS, &[&kind, &start, &APPS_PER_CLAIM], |r| r.text(0)).await?;
    if (apps.len() as i64) < APPS_PER_CLAIM {
        let rest = APPS_PER_CLAIM - apps.len() as i64;
        let from_first: Vec<String> = tx.query(&sql::WAITING_APPS, &[&kind, &"", &rest], |r| r.text(0)).await?;
        for app in from_first {
            if !apps.contains(&app) {
                apps.push(app);
            }
        }
    }
    let until = now + lease_ms;
    if apps.len() <= 1 {
        let args: [&dyn Arg; 4] = [&now, &until, &(limit as i64), &kind];
        return tx.query(&sql::CLAIM_VENDOR_SENDS, &args, rows::claimed_send).await;
    }
    // Rounds: each app with sends left asks for an equal share of what is left; an app that
    // got less than it asked for has none due (or claimable) and sits out the next round.
    let mut sends = Vec::with_capacity(limit);
    let mut hungry = apps;
    for _ in 0..3 {
        if hungry.is_empty() || sends.len() >= limit {
            break;
        }
        let share = (limit - sends.len()).div_ceil(hungry.len());
        let mut still = Vec::new();
        for app in hungry {
            let ask = share.min(limit - sends.len()) as i64;
            if ask == 0 {
                break;
            }
            let args: [&dyn Arg; 5] = [&now, &until, &ask, &kind, &app];
            let got = tx.query(&sql::CLAIM_APP_VENDOR_SENDS, &args, rows::claimed_send).await?;
            if got.len() as i64 == ask {
                still.push(app);
            }
            sends.extend(got);
        }
        hungry = still;
    }
    Ok(sends)
}

/// Claimed sends with the payload of their message (none when it was revoked, unless the
/// send is a recall, which is built from it): a read of committed, unchanging rows, which
/// SQLite makes on a reader rather than its writer.
pub(crate) async fn with_payloads<X: Tx>(tx: &X, mut sends: Vec<VendorSend>) -> StoreResult<Vec<VendorSend>> {
    let mut ids: Vec<(&str, bool)> = sends.iter().map(|s| (s.message_id.as_str(), s.recall)).collect();
    ids.sort_unstable();
    ids.dedup();
    let args: Vec<[&dyn Arg; 1]> = ids.iter().map(|(id, _)| -> [&dyn Arg; 1] { [id] }).collect();
    let reads = ids.iter().zip(&args).map(|((id, recall), a)| {
        let s = match (id.starts_with('b'), recall) {
            (true, false) => &sql::BROADCAST_PAYLOAD,
            (false, false) => &sql::MESSAGE_PAYLOAD,
            (true, true) => &sql::BROADCAST_PAYLOAD_REVOKED,
            (false, true) => &sql::MESSAGE_PAYLOAD_REVOKED,
        };
        query_opt(tx, s, a, |r| r.text(0))
    });
    let payloads: BTreeMap<(String, bool), Option<String>> =
        ids.iter().map(|(id, recall)| (id.to_string(), *recall)).zip(try_join_all(reads).await?).collect();
    for s in &mut sends {
        s.payload = payloads.get(&(s.message_id.to_string(), s.recall)).cloned().flatten();
    }
    Ok(sends)
}

/// Records how sends ended (or when each is tried again): a send the vendor took marks its
/// delivery `sent` through that channel; a token the vendor called invalid is removed from
/// its device and listed; each channel's health records its last success and error.
pub(crate) async fn finish<X: Tx>(tx: &X, done: &[VendorSendDone]) -> StoreResult<()> {
    let mut success: BTreeMap<(&str, Channel), i64> = BTreeMap::new();
    for d in done {
        let (mid, device) = (d.message_id.as_str(), d.device_id.as_str());
        let status = d.status.as_str();
        let args: [&dyn Arg; 8] = [&mid, &device, &status, &d.attempts, &d.next_at, &d.vendor_id, &d.reason, &d.at];
        if tx.execute(&sql::FINISH_VENDOR_SEND, &args).await? == 0 {
            continue; // revoked (or finished by another claim) meanwhile
        }
        let channel = d.channel.as_str();
        match d.status {
            VendorSendStatus::Sent => {
                let s =
                    if d.message_id.is_broadcast() { &sql::BROADCAST_VIA_VENDOR } else { &sql::DELIVERY_VIA_VENDOR };
                let rows = tx.query(s, &[&mid, &device, &channel, &d.at], ledger::changed).await?;
                ledger::journal_changed(tx, mid, device, Change::Sent, rows).await?;
                let at = success.entry((d.app_id.as_str(), d.channel)).or_insert(d.at);
                *at = (*at).max(d.at);
            }
            VendorSendStatus::InvalidToken => {
                let reason = d.reason.as_deref().unwrap_or("invalid token");
                invalidate(tx, d, reason).await?;
                let failed = ledger::Changed::new(Some(channel), d.at);
                ledger::journal(tx, mid, Some(device), Change::Failed, &failed, Some(reason)).await?;
            }
            VendorSendStatus::Failed | VendorSendStatus::Waiting => {
                let reason = d.reason.as_deref().unwrap_or("");
                tx.execute(&sql::CHANNEL_ERROR, &[&d.app_id.as_str(), &channel, &d.at, &reason]).await?;
                if d.status == VendorSendStatus::Failed {
                    let why = Some(reason);
                    let failed = ledger::Changed::new(Some(channel), d.at);
                    ledger::journal(tx, mid, Some(device), Change::Failed, &failed, why).await?;
                }
            }
            VendorSendStatus::Recalled => {
                let at = success.entry((d.app_id.as_str(), d.channel)).or_insert(d.at);
                *at = (*at).max(d.at);
            }
            VendorSendStatus::Expired | VendorSendStatus::Revoked => {}
        }
    }
    for ((app, channel), at) in success {
        tx.execute(&sql::CHANNEL_SUCCESS, &[&app, &channel.as_str(), &at]).await?;
    }
    Ok(())
}

/// Removes a token a vendor called invalid from its device (unless the device reported
/// another since) and lists it for the app.
async fn invalidate<X: Tx>(tx: &X, d: &VendorSendDone, reason: &str) -> StoreResult<()> {
    let device = d.device_id.as_str();
    if let Some(text) = query_opt(tx, &sql::DEVICE_TOKENS, &[&device], |r| r.text(0)).await? {
        let mut tokens: serde_json::Map<String, Value> = serde_json::from_str(&text).unwrap_or_default();
        if tokens.get(d.channel.as_str()).and_then(Value::as_str) == Some(d.token.as_str()) {
            tokens.remove(d.channel.as_str());
            tx.execute(&sql::SET_DEVICE_TOKENS, &[&device, &Value::Object(tokens).to_string()]).await?;
        }
    }
    let args: [&dyn Arg; 6] = [&d.app_id.as_str(), &d.channel.as_str(), &d.token, &device, &reason, &d.at];
    tx.execute(&sql::INSERT_INVALID_TOKEN, &args).await?;
    Ok(())
}

/// How long a recall is tried after the revoke (a shown notification outlives the
/// message's validity).
const RECALL_WINDOW_MS: i64 = 24 * 3_600_000;

/// Withdraws the sends of revoked messages not made yet and queues a recall for each send a
/// vendor had already taken; how many recalls.
pub(crate) async fn revoke<X: Tx>(tx: &X, messages: &[MessageId], now: i64) -> StoreResult<u64> {
    let mut recalls = 0;
    for m in messages {
        tx.execute(&sql::REVOKE_VENDOR_SENDS, &[&m.as_str(), &now]).await?;
        recalls += tx.execute(&sql::RECALL_VENDOR_SENDS, &[&m.as_str(), &now, &(now + RECALL_WINDOW_MS)]).await?;
    }
    Ok(recalls)
}

pub(crate) async fn sends_of<X: Tx>(tx: &X, message: &MessageId) -> StoreResult<Vec<VendorSendView>> {
    tx.query(&sql::MESSAGE_VENDOR_SENDS, &[&message.as_str()], rows::vendor_send_view).await
}

/// The app's invalid tokens, newest first: (how many in all, this page).
pub(crate) async fn invalid_tokens<X: Tx>(
    tx: &X,
    app: &AppId,
    offset: u64,
    limit: u64,
) -> StoreResult<(u64, Vec<InvalidToken>)> {
    let app = app.as_str();
    let total = query_one(tx, &sql::INVALID_TOKEN_COUNT, &[&app], |r| r.i64(0)).await? as u64;
    let page = tx.query(&sql::INVALID_TOKENS, &[&app, &(limit as i64), &(offset as i64)], rows::invalid_token).await?;
    Ok((total, page))
}
