//! The SQL of the SQLite backend that runs inside a transaction: row mapping, the push
//! commit, status updates. Everything here takes a `&Connection` already inside the
//! writer's transaction (or a reader's snapshot).

use rusqlite::{Connection, OptionalExtension, params};

use crate::store::*;

pub(super) const APP_COLUMNS: &str = "app_id, name, app_key_hash, bind_secret_sealed, trust_client_bind, created_at";

pub(super) fn app_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<AppRecord> {
    Ok(AppRecord {
        app_id: AppId::new(r.get::<_, String>(0)?),
        name: r.get(1)?,
        app_key_hash: r.get(2)?,
        bind_secret_sealed: r.get(3)?,
        trust_client_bind: r.get(4)?,
        created_at: r.get(5)?,
    })
}

pub(super) const KEY_COLUMNS: &str = "key_id, app_id, kind, material, created_at, revoked_at";

pub(super) fn key_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ApiKeyRecord> {
    let kind: String = r.get(2)?;
    Ok(ApiKeyRecord {
        key_id: KeyId::new(r.get::<_, String>(0)?),
        app_id: AppId::new(r.get::<_, String>(1)?),
        kind: KeyKind::parse(&kind).ok_or_else(|| corrupt(format!("unknown key kind {kind}")))?,
        material: r.get(3)?,
        created_at: r.get(4)?,
        revoked_at: r.get(5)?,
    })
}

pub(super) const DEVICE_COLUMNS: &str = "device_id, app_id, install_id, platform, app_version, os_version, model, \
                              vendor_tokens, user_id, bound_at, created_at, last_seen";

pub(super) const TEMPLATE_COLUMNS: &str =
    "app_id, name, title, content, uri, desc_info, push_style, silent, created_at, updated_at";

pub(super) fn template_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<TemplateRecord> {
    Ok(TemplateRecord {
        app_id: AppId::new(r.get::<_, String>(0)?),
        name: r.get(1)?,
        title: r.get(2)?,
        content: r.get(3)?,
        uri: r.get(4)?,
        desc_info: r.get(5)?,
        push_style: r.get(6)?,
        silent: r.get(7)?,
        created_at: r.get(8)?,
        updated_at: r.get(9)?,
    })
}

pub(super) fn device_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<DeviceRecord> {
    let tokens: String = r.get(7)?;
    Ok(DeviceRecord {
        device_id: DeviceId::new(r.get::<_, String>(0)?),
        app_id: AppId::new(r.get::<_, String>(1)?),
        install_id: r.get(2)?,
        platform: r.get(3)?,
        app_version: r.get(4)?,
        os_version: r.get(5)?,
        model: r.get(6)?,
        vendor_tokens: serde_json::from_str(&tokens).map_err(|e| corrupt(format!("vendor_tokens: {e}")))?,
        user_id: r.get::<_, Option<String>>(8)?.map(UserId::new),
        bound_at: r.get(9)?,
        created_at: r.get(10)?,
        last_seen: r.get(11)?,
    })
}

pub(super) fn corrupt(msg: String) -> rusqlite::Error {
    rusqlite::Error::ToSqlConversionFailure(msg.into())
}

pub(super) fn pending_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<PendingDelivery> {
    let status: String = r.get(3)?;
    Ok(PendingDelivery {
        message_id: MessageId::new(r.get::<_, String>(0)?),
        payload: r.get(1)?,
        expires_at: r.get(2)?,
        sent_before: status == "sent",
    })
}

pub(super) fn device_by(
    conn: &Connection,
    filter: &str,
    args: impl rusqlite::Params,
) -> rusqlite::Result<Option<DeviceRecord>> {
    conn.prepare_cached(&format!("SELECT {DEVICE_COLUMNS} FROM devices WHERE {filter}"))?
        .query_row(args, device_row)
        .optional()
}

/// Drops the device's undelivered deliveries of messages sent to `user`.
pub(super) fn drop_user_deliveries(
    conn: &Connection,
    app_id: &str,
    device_id: &str,
    user: &str,
) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "DELETE FROM deliveries WHERE device_id = ?1 AND status IN ('pending', 'sent') AND message_id IN \
         (SELECT message_id FROM messages WHERE app_id = ?2 AND target_kind = 'user' AND target = ?3)",
    )?
    .execute(params![device_id, app_id, user])?;
    Ok(())
}

pub(super) fn message_views(
    conn: &Connection,
    filter: &str,
    args: &[&dyn rusqlite::ToSql],
) -> rusqlite::Result<Vec<MessageView>> {
    let mut messages: Vec<MessageView> = conn
        .prepare_cached(&format!(
            "SELECT message_id, task_id, msg_key, target_kind, target, undeliverable, created_at, expires_at, revoked_at \
             FROM messages WHERE {filter} AND kind = 'notification' ORDER BY message_id"
        ))?
        .query_map(args, |r| {
            let kind: String = r.get(3)?;
            Ok(MessageView {
                message_id: MessageId::new(r.get::<_, String>(0)?),
                task_id: TaskId::new(r.get::<_, String>(1)?),
                msg_key: r.get(2)?,
                target_kind: TargetKind::parse(&kind).ok_or_else(|| corrupt(format!("target kind {kind}")))?,
                target: r.get(4)?,
                undeliverable: r.get(5)?,
                created_at: r.get(6)?,
                expires_at: r.get(7)?,
                revoked_at: r.get(8)?,
                deliveries: Vec::new(),
            })
        })?
        .collect::<rusqlite::Result<_>>()?;
    let mut stmt = conn.prepare_cached(
        "SELECT device_id, status, created_at, updated_at, sent_at, delivered_at FROM deliveries \
         WHERE message_id = ?1 ORDER BY device_id",
    )?;
    for m in &mut messages {
        m.deliveries = stmt
            .query_map([m.message_id.as_str()], |r| {
                Ok(DeliveryView {
                    device_id: DeviceId::new(r.get::<_, String>(0)?),
                    status: r.get(1)?,
                    created_at: r.get(2)?,
                    updated_at: r.get(3)?,
                    sent_at: r.get(4)?,
                    delivered_at: r.get(5)?,
                })
            })?
            .collect::<rusqlite::Result<_>>()?;
    }
    Ok(messages)
}

pub(super) fn commit_push_tx(conn: &Connection, push: NewPush, now: i64) -> rusqlite::Result<CommittedPush> {
    let app = push.task.app_id.as_str().to_owned();
    let t = &push.task;
    // Claim each (app, msgKey, target) for this message unless an earlier one is still
    // within its validity: one statement for a new key, a second read only for a repeat.
    let mut claim = conn.prepare_cached(
        "INSERT INTO idempotency (app_id, msg_key, target_kind, target, message_id, task_id, expires_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) \
         ON CONFLICT (app_id, msg_key, target_kind, target) DO UPDATE SET \
         message_id = excluded.message_id, task_id = excluded.task_id, expires_at = excluded.expires_at \
         WHERE idempotency.expires_at <= ?8",
    )?;
    let mut earlier_of = conn.prepare_cached(
        "SELECT message_id, task_id FROM idempotency \
         WHERE app_id = ?1 AND msg_key = ?2 AND target_kind = ?3 AND target = ?4",
    )?;
    let mut earlier = Vec::with_capacity(push.messages.len());
    for m in &push.messages {
        if push.skip_idempotency {
            earlier.push(None);
            continue;
        }
        let claimed = claim.execute(params![
            app,
            m.msg_key,
            m.target_kind.as_str(),
            m.target,
            m.message_id.as_str(),
            t.task_id.as_str(),
            t.expires_at,
            now
        ])?;
        earlier.push(if claimed == 1 {
            None
        } else {
            Some(earlier_of.query_row(params![app, m.msg_key, m.target_kind.as_str(), m.target], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
            })?)
        });
    }
    // A whole repeat of one earlier request (a client retry) answers with that task; no
    // claim above changed anything.
    if let Some(replay) = replay_of(&earlier) {
        return Ok(replay);
    }

    insert_task(conn, t)?;

    let mut outcomes = Vec::with_capacity(push.messages.len());
    let mut by_device =
        conn.prepare_cached("SELECT device_id, online_node FROM devices WHERE app_id = ?1 AND device_id = ?2")?;
    let mut by_user =
        conn.prepare_cached("SELECT device_id, online_node FROM devices WHERE app_id = ?1 AND user_id = ?2")?;
    let mut insert_message = conn.prepare_cached(
        "INSERT INTO messages (message_id, app_id, task_id, msg_key, target_kind, target, payload, undeliverable, \
         created_at, expires_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    )?;
    let mut insert_delivery = conn.prepare_cached(
        "INSERT INTO deliveries (message_id, device_id, status, created_at, updated_at, expires_at) \
         VALUES (?1, ?2, 'pending', ?3, ?3, ?4)",
    )?;
    for (m, earlier) in push.messages.into_iter().zip(earlier) {
        if let Some((mid, _)) = earlier {
            let mid = MessageId::new(mid);
            outcomes.push((m.message_id, TargetOutcome::Duplicate { message_id: mid }));
            continue;
        }
        let lookup = match m.target_kind {
            TargetKind::Device => &mut by_device,
            TargetKind::User => &mut by_user,
        };
        let devices: Vec<Recipient> = lookup
            .query_map(params![app, m.target], |r| {
                Ok(Recipient { device_id: DeviceId::new(r.get::<_, String>(0)?), online_node: r.get(1)? })
            })?
            .collect::<rusqlite::Result<_>>()?;
        let undeliverable = m.target_kind == TargetKind::Device && devices.is_empty();
        insert_message.execute(params![
            m.message_id.as_str(),
            app,
            t.task_id.as_str(),
            m.msg_key,
            m.target_kind.as_str(),
            m.target,
            std::str::from_utf8(&m.payload).map_err(|e| rusqlite::Error::ToSqlConversionFailure(e.into()))?,
            undeliverable,
            t.created_at,
            t.expires_at
        ])?;
        for d in &devices {
            insert_delivery.execute(params![
                m.message_id.as_str(),
                d.device_id.as_str(),
                t.created_at,
                t.expires_at
            ])?;
        }
        let outcome = if undeliverable { TargetOutcome::Undeliverable } else { TargetOutcome::Accepted { devices } };
        outcomes.push((m.message_id, outcome));
    }
    Ok(CommittedPush { task_id: push.task.task_id, replayed: false, outcomes })
}

/// Statements held for one batch of status updates: each is taken from the connection's
/// cache once per batch rather than once per update.
pub(super) struct BatchStatements<'c> {
    conn: &'c Connection,
    held: Vec<(&'static str, rusqlite::CachedStatement<'c>)>,
}

impl<'c> BatchStatements<'c> {
    pub(super) fn new(conn: &'c Connection) -> Self {
        BatchStatements { conn, held: Vec::new() }
    }

    fn get(&mut self, sql: &'static str) -> rusqlite::Result<&mut rusqlite::CachedStatement<'c>> {
        let i = match self.held.iter().position(|(held, _)| *held == sql) {
            Some(i) => i,
            None => {
                self.held.push((sql, self.conn.prepare_cached(sql)?));
                self.held.len() - 1
            }
        };
        Ok(&mut self.held[i].1)
    }
}

pub(super) fn apply_update(stmts: &mut BatchStatements<'_>, update: &StatusUpdate) -> rusqlite::Result<()> {
    match update {
        StatusUpdate::Sent { message_id, device_id, at } if message_id.is_broadcast() => {
            stmts.get(broadcast_sql::ACK_SENT)?.execute(params![message_id.as_str(), device_id.as_str(), at])?;
        }
        StatusUpdate::Delivered { message_id, device_id, sent_at, at } if message_id.is_broadcast() => {
            stmts.get(broadcast_sql::ACK_DELIVERED)?.execute(params![
                message_id.as_str(),
                device_id.as_str(),
                sent_at,
                at
            ])?;
        }
        StatusUpdate::Sent { message_id, device_id, at } => {
            stmts
                .get(
                    "UPDATE deliveries SET status = 'sent', sent_at = ?3, updated_at = ?3 \
                     WHERE message_id = ?1 AND device_id = ?2 AND status = 'pending'",
                )?
                .execute(params![message_id.as_str(), device_id.as_str(), at])?;
        }
        StatusUpdate::Delivered { message_id, device_id, sent_at, at } => {
            stmts
                .get(
                    "UPDATE deliveries SET status = 'delivered', sent_at = COALESCE(sent_at, ?3), delivered_at = ?4, \
                     updated_at = ?4 WHERE message_id = ?1 AND device_id = ?2 AND \
                     (status IN ('pending', 'sent') OR (status = 'expired' AND ?3 < expires_at))",
                )?
                .execute(params![message_id.as_str(), device_id.as_str(), sent_at, at])?;
        }
        StatusUpdate::Event { message_id, device_id, event, at } => {
            // A device's word about a message can only move its delivery forward; an
            // acknowledgement of a copy written before expiry still counts as delivered.
            let sql = match (message_id.is_broadcast(), event) {
                (false, DeviceEvent::Arrived) => {
                    "UPDATE deliveries SET status = 'delivered', delivered_at = ?3, updated_at = ?3 \
                     WHERE message_id = ?1 AND device_id = ?2 AND \
                     (status IN ('pending', 'sent') OR (status = 'expired' AND sent_at IS NOT NULL))"
                }
                (false, DeviceEvent::Opened) => {
                    "UPDATE deliveries SET status = 'opened', delivered_at = COALESCE(delivered_at, ?3), \
                     updated_at = ?3 WHERE message_id = ?1 AND device_id = ?2 AND \
                     status IN ('pending', 'sent', 'delivered', 'ignored')"
                }
                (false, DeviceEvent::Ignored) => {
                    "UPDATE deliveries SET status = 'ignored', delivered_at = COALESCE(delivered_at, ?3), \
                     updated_at = ?3 WHERE message_id = ?1 AND device_id = ?2 AND \
                     status IN ('pending', 'sent', 'delivered')"
                }
                (true, DeviceEvent::Arrived) => broadcast_sql::EVENT_ARRIVED,
                (true, DeviceEvent::Opened) => broadcast_sql::EVENT_OPENED,
                (true, DeviceEvent::Ignored) => broadcast_sql::EVENT_IGNORED,
            };
            stmts.get(sql)?.execute(params![message_id.as_str(), device_id.as_str(), at])?;
        }
        StatusUpdate::Disconnected { device_id, presence, at } => {
            stmts
                .get(
                    "UPDATE devices SET last_seen = ?4, \
                     online_node = CASE WHEN online_node = ?2 AND online_gen = ?3 THEN NULL ELSE online_node END, \
                     online_gen = CASE WHEN online_node = ?2 AND online_gen = ?3 THEN NULL ELSE online_gen END \
                     WHERE device_id = ?1",
                )?
                .execute(params![device_id.as_str(), presence.node, presence.generation as i64, at])?;
        }
    }
    Ok(())
}

pub(super) fn insert_key(c: &Connection, key: &ApiKeyRecord) -> rusqlite::Result<()> {
    c.prepare_cached(&format!("INSERT INTO api_keys ({KEY_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6)"))?.execute(
        params![
            key.key_id.as_str(),
            key.app_id.as_str(),
            key.kind.as_str(),
            key.material,
            key.created_at,
            key.revoked_at
        ],
    )?;
    Ok(())
}

/// message_id, task_id, msg_key, target_kind, target, expires_at, revoked_at.
type RevocableRow = (String, String, String, String, String, i64, Option<i64>);

pub(super) fn revoke_tx(
    c: &Connection,
    app_id: &AppId,
    what: &RevokeTarget,
    now: i64,
    since: i64,
) -> rusqlite::Result<Option<Revocation>> {
    let app = app_id.as_str();
    let row = |r: &rusqlite::Row<'_>| -> rusqlite::Result<RevocableRow> {
        Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?))
    };
    let columns = "message_id, task_id, msg_key, target_kind, target, expires_at, revoked_at";
    let found = match what {
        RevokeTarget::Message { msg_key, target } => c
            .prepare_cached(&format!(
                "SELECT {columns} FROM messages WHERE app_id = ?1 AND msg_key = ?2 AND target = ?3 \
                 AND kind = 'notification' AND created_at >= ?4 ORDER BY message_id"
            ))?
            .query_map(params![app, msg_key, target, since], row)?
            .collect::<rusqlite::Result<Vec<_>>>()?,
        RevokeTarget::Task(task_id) => c
            .prepare_cached(&format!(
                "SELECT {columns} FROM messages WHERE app_id = ?1 AND task_id = ?2 \
                 AND kind = 'notification' AND created_at >= ?3 ORDER BY message_id"
            ))?
            .query_map(params![app, task_id.as_str(), since], row)?
            .collect::<rusqlite::Result<Vec<_>>>()?,
    };
    let broadcast = match what {
        RevokeTarget::Task(task_id) => revoke_broadcast_tx(c, app_id, task_id, now, since)?,
        RevokeTarget::Message { .. } => None,
    };
    if found.is_empty() && broadcast.is_none() {
        return Ok(None);
    }
    let mut out = Revocation::default();
    if let Some(Some((mid, recall))) = broadcast {
        out.messages.push(mid);
        out.recalls.extend(recall);
    }
    for (mid, task_id, msg_key, target_kind, target, expires_at, revoked_at) in found {
        if revoked_at.is_some() {
            continue;
        }
        c.prepare_cached("UPDATE messages SET revoked_at = ?2 WHERE message_id = ?1")?.execute(params![mid, now])?;
        // Written to a device at some point, or pending for a device connected now (its
        // connection may be writing it this instant): withdraw it there too.
        let devices: Vec<Recipient> = c
            .prepare_cached(
                "SELECT d.device_id, v.online_node FROM deliveries d JOIN devices v ON v.device_id = d.device_id \
                 WHERE d.message_id = ?1 AND (d.status IN ('sent', 'delivered', 'opened', 'ignored') \
                 OR (d.status = 'pending' AND v.online_node IS NOT NULL)) ORDER BY d.device_id",
            )?
            .query_map([&mid], |r| {
                Ok(Recipient { device_id: DeviceId::new(r.get::<_, String>(0)?), online_node: r.get(1)? })
            })?
            .collect::<rusqlite::Result<_>>()?;
        out.withdrawn += c
            .prepare_cached(
                "UPDATE deliveries SET status = 'revoked', updated_at = ?2 \
                 WHERE message_id = ?1 AND status IN ('pending', 'sent')",
            )?
            .execute(params![mid, now])? as u64;
        if !devices.is_empty() && expires_at > now {
            let revoked = Revoked {
                message_id: &mid,
                app,
                task_id: &task_id,
                msg_key: &msg_key,
                target_kind: &target_kind,
                target: &target,
                expires_at,
            };
            out.recalls.push(insert_recall(c, &revoked, devices, now)?);
        }
        out.messages.push(MessageId::new(mid));
    }
    Ok(Some(out))
}

pub(super) fn commit_broadcast_tx(c: &Connection, b: &NewBroadcast, now: i64) -> rusqlite::Result<BroadcastCommitted> {
    let t = &b.task;
    let app = t.app_id.as_str();
    let claimed = if b.skip_idempotency {
        1
    } else {
        c.prepare_cached(
            "INSERT INTO idempotency (app_id, msg_key, target_kind, target, message_id, task_id, expires_at) \
             VALUES (?1, ?2, 'broadcast', '', ?3, ?4, ?5) \
             ON CONFLICT (app_id, msg_key, target_kind, target) DO UPDATE SET \
             message_id = excluded.message_id, task_id = excluded.task_id, expires_at = excluded.expires_at \
             WHERE idempotency.expires_at <= ?6",
        )?
        .execute(params![app, b.msg_key, b.message_id.as_str(), t.task_id.as_str(), t.expires_at, now])?
    };
    if claimed == 0 {
        let (message_id, task_id): (String, String) = c
            .prepare_cached(
                "SELECT message_id, task_id FROM idempotency \
                 WHERE app_id = ?1 AND msg_key = ?2 AND target_kind = 'broadcast' AND target = ''",
            )?
            .query_row(params![app, b.msg_key], |r| Ok((r.get(0)?, r.get(1)?)))?;
        return Ok(BroadcastCommitted {
            task_id: TaskId::new(task_id),
            message_id: MessageId::new(message_id),
            replayed: true,
        });
    }
    insert_task(c, t)?;
    let payload = std::str::from_utf8(&b.payload).map_err(|e| rusqlite::Error::ToSqlConversionFailure(e.into()))?;
    c.prepare_cached(broadcast_sql::INSERT)?.execute(params![
        b.message_id.as_str(),
        t.task_id.as_str(),
        app,
        b.msg_key,
        b.platform,
        b.push_status,
        b.bind_since,
        b.unbind_since,
        payload,
        t.created_at,
        t.expires_at
    ])?;
    Ok(BroadcastCommitted { task_id: t.task_id.clone(), message_id: b.message_id.clone(), replayed: false })
}

pub(super) fn broadcast_view(
    c: &Connection,
    task_id: &TaskId,
    app_id: &AppId,
) -> rusqlite::Result<Option<BroadcastView>> {
    let Some((message_id, msg_key, _expires_at, revoked_at)) = c
        .prepare_cached(broadcast_sql::OF_TASK)?
        .query_row(params![task_id.as_str(), app_id.as_str()], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, i64>(2)?, r.get::<_, Option<i64>>(3)?))
        })
        .optional()?
    else {
        return Ok(None);
    };
    let eligible: i64 = c.prepare_cached(&broadcast_sql::eligible_count())?.query_row([&message_id], |r| r.get(0))?;
    let counts = c
        .prepare_cached(broadcast_sql::COUNTS)?
        .query_map([&message_id], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64)))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(Some(BroadcastView {
        message_id: MessageId::new(message_id),
        msg_key,
        eligible: eligible as u64,
        counts,
        revoked_at,
    }))
}

/// Revokes the broadcast of a task (see [`BroadcastRevoke`]).
fn revoke_broadcast_tx(
    c: &Connection,
    app_id: &AppId,
    task_id: &TaskId,
    now: i64,
    since: i64,
) -> rusqlite::Result<BroadcastRevoke> {
    let Some((mid, msg_key, expires_at, revoked_at)) = c
        .prepare_cached(broadcast_sql::REVOCABLE)?
        .query_row(params![task_id.as_str(), app_id.as_str(), since], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, i64>(2)?, r.get::<_, Option<i64>>(3)?))
        })
        .optional()?
    else {
        return Ok(None);
    };
    if revoked_at.is_some() {
        return Ok(Some(None));
    }
    c.prepare_cached("UPDATE broadcasts SET revoked_at = ?2 WHERE message_id = ?1")?.execute(params![mid, now])?;
    let devices: Vec<Recipient> = c
        .prepare_cached(broadcast_sql::RECALL_DEVICES)?
        .query_map([&mid], |r| {
            Ok(Recipient { device_id: DeviceId::new(r.get::<_, String>(0)?), online_node: r.get(1)? })
        })?
        .collect::<rusqlite::Result<_>>()?;
    let mut recall = None;
    if !devices.is_empty() && expires_at > now {
        let revoked = Revoked {
            message_id: &mid,
            app: app_id.as_str(),
            task_id: task_id.as_str(),
            msg_key: &msg_key,
            target_kind: "device",
            target: "*",
            expires_at,
        };
        recall = Some(insert_recall(c, &revoked, devices, now)?);
    }
    Ok(Some(Some((MessageId::new(mid), recall))))
}

/// Stores the control message that withdraws `revoked` from `devices` (a message of kind
/// `revoke`, pending for each of them) and returns it for dispatch.
fn insert_recall(c: &Connection, revoked: &Revoked<'_>, devices: Vec<Recipient>, now: i64) -> rusqlite::Result<Recall> {
    let control = MessageId::generate(now);
    let payload = recall_payload(revoked.message_id, revoked.msg_key, revoked.task_id, &control, now);
    c.prepare_cached(
        "INSERT INTO messages (message_id, app_id, task_id, msg_key, target_kind, target, payload, undeliverable, \
         created_at, expires_at, kind) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 0, ?8, ?9, 'revoke')",
    )?
    .execute(params![
        control.as_str(),
        revoked.app,
        revoked.task_id,
        revoked.msg_key,
        revoked.target_kind,
        revoked.target,
        payload,
        now,
        revoked.expires_at
    ])?;
    for d in &devices {
        c.prepare_cached(
            "INSERT INTO deliveries (message_id, device_id, status, created_at, updated_at, expires_at) \
             VALUES (?1, ?2, 'pending', ?3, ?3, ?4)",
        )?
        .execute(params![control.as_str(), d.device_id.as_str(), now, revoked.expires_at])?;
    }
    Ok(Recall { message_id: control, payload: payload.into(), expires_at: revoked.expires_at, devices })
}

pub(super) fn schedule_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ScheduleRecord> {
    Ok(ScheduleRecord {
        unique_id: r.get(0)?,
        parent_id: r.get(1)?,
        app_id: AppId::new(r.get::<_, String>(2)?),
        push_type: r.get(3)?,
        delivery_type: r.get(4)?,
        template_name: r.get(5)?,
        title: r.get(6)?,
        content: r.get(7)?,
        body: r.get(8)?,
        strategy_type: r.get(9)?,
        strategy: r.get(10)?,
        push_time: r.get(11)?,
        expires_ms: r.get(12)?,
        status: r.get(13)?,
        task_id: r.get(14)?,
        created_at: r.get(15)?,
    })
}

pub(super) fn insert_schedule(c: &Connection, s: &ScheduleRecord) -> rusqlite::Result<()> {
    c.prepare_cached(schedule_sql::INSERT)?.execute(params![
        s.unique_id,
        s.parent_id,
        s.app_id.as_str(),
        s.push_type,
        s.delivery_type,
        s.template_name,
        s.title,
        s.content,
        s.body,
        s.strategy_type,
        s.strategy,
        s.push_time,
        s.expires_ms,
        s.status,
        s.task_id,
        s.created_at
    ])?;
    Ok(())
}

pub(super) fn fire_schedule_tx(c: &Connection, claim: FireClaim, now: i64) -> rusqlite::Result<Option<Option<Fired>>> {
    let plan = claim.plan();
    let claimed = c.prepare_cached(schedule_sql::CLAIM)?.execute(params![
        claim.unique_id,
        claim.due,
        plan.status,
        plan.row_task,
        plan.push_time
    ])?;
    if claimed == 0 {
        return Ok(None);
    }
    if claim.recurring {
        let child = crate::ids::MessageId::generate(now);
        c.prepare_cached(schedule_sql::CHILD)?.execute(params![
            format!("s{}", &child.as_str()[1..]),
            claim.unique_id,
            claim.due,
            plan.outcome,
            plan.task_id,
            now
        ])?;
    }
    Ok(Some(match claim.firing {
        None => None,
        Some(Firing::Push(p)) => Some(Fired::Push(commit_push_tx(c, p, now)?)),
        Some(Firing::Broadcast(b)) => Some(Fired::Broadcast(commit_broadcast_tx(c, &b, now)?)),
    }))
}

fn insert_task(c: &Connection, t: &NewTask) -> rusqlite::Result<()> {
    c.prepare_cached(INSERT_TASK)?.execute(params![
        t.task_id.as_str(),
        t.app_id.as_str(),
        t.push_type,
        t.task_name,
        t.delivery_type,
        t.created_at,
        t.expires_at
    ])?;
    Ok(())
}
