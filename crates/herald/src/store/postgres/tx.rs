//! The SQL of the PostgreSQL backend. Every function takes a client or a transaction
//! ([`GenericClient`]); the caller decides the transaction boundaries.

use tokio_postgres::types::ToSql;
use tokio_postgres::{Error, GenericClient, Row};

use super::{Db, Pool};
use crate::store::broadcast_sql::{self, pg};
use crate::store::schedule_sql;
use crate::store::*;

type Params<'a> = &'a [&'a (dyn ToSql + Sync)];

const APP_COLUMNS: &str = "app_id, name, app_key_hash, bind_secret_sealed, trust_client_bind, created_at";
const KEY_COLUMNS: &str = "key_id, app_id, kind, material, created_at, revoked_at";
const DEVICE_COLUMNS: &str = "device_id, app_id, install_id, platform, app_version, os_version, model, \
                              vendor_tokens, user_id, bound_at, created_at, last_seen";

const TEMPLATE_COLUMNS: &str =
    "app_id, name, title, content, uri, desc_info, push_style, silent, created_at, updated_at";

fn template_row(r: &Row) -> Result<TemplateRecord, Error> {
    Ok(TemplateRecord {
        app_id: AppId::new(r.try_get::<_, String>(0)?),
        name: r.try_get(1)?,
        title: r.try_get(2)?,
        content: r.try_get(3)?,
        uri: r.try_get(4)?,
        desc_info: r.try_get(5)?,
        push_style: r.try_get(6)?,
        silent: r.try_get(7)?,
        created_at: r.try_get(8)?,
        updated_at: r.try_get(9)?,
    })
}

pub(super) async fn create_template<C: GenericClient + Sync>(
    c: &Db<'_, C>,
    t: &TemplateRecord,
    max_per_app: usize,
) -> Result<TemplateCreated, Error> {
    let app = t.app_id.as_str();
    // Serialises creations of one app, so that two at once cannot pass the count together.
    c.query_one("SELECT app_id FROM apps WHERE app_id = $1 FOR UPDATE", &[&app]).await?;
    if c.query_opt("SELECT 1 FROM templates WHERE app_id = $1 AND name = $2", &[&app, &t.name]).await?.is_some() {
        return Ok(TemplateCreated::Exists);
    }
    let count: i64 = c.query_one("SELECT COUNT(*) FROM templates WHERE app_id = $1", &[&app]).await?.try_get(0)?;
    if count as usize >= max_per_app {
        return Ok(TemplateCreated::TooMany);
    }
    c.execute(
        &format!("INSERT INTO templates ({TEMPLATE_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"),
        &[
            &app,
            &t.name,
            &t.title,
            &t.content,
            &t.uri,
            &t.desc_info,
            &t.push_style,
            &t.silent,
            &t.created_at,
            &t.updated_at,
        ],
    )
    .await?;
    Ok(TemplateCreated::Created)
}

pub(super) async fn template<C: GenericClient + Sync>(
    c: &Db<'_, C>,
    app_id: &AppId,
    name: &str,
) -> Result<Option<TemplateRecord>, Error> {
    c.query_opt(
        &format!("SELECT {TEMPLATE_COLUMNS} FROM templates WHERE app_id = $1 AND name = $2"),
        &[&app_id.as_str(), &name],
    )
    .await?
    .map(|r| template_row(&r))
    .transpose()
}

pub(super) async fn templates<C: GenericClient + Sync>(
    c: &Db<'_, C>,
    app_id: &AppId,
) -> Result<Vec<TemplateRecord>, Error> {
    c.query(&format!("SELECT {TEMPLATE_COLUMNS} FROM templates WHERE app_id = $1 ORDER BY name"), &[&app_id.as_str()])
        .await?
        .iter()
        .map(template_row)
        .collect()
}

pub(super) async fn update_template<C: GenericClient + Sync>(c: &Db<'_, C>, t: &TemplateRecord) -> Result<bool, Error> {
    let n = c
        .execute(
            "UPDATE templates SET title = $3, content = $4, uri = $5, desc_info = $6, push_style = $7, silent = $8, \
             updated_at = $9 WHERE app_id = $1 AND name = $2",
            &[
                &t.app_id.as_str(),
                &t.name,
                &t.title,
                &t.content,
                &t.uri,
                &t.desc_info,
                &t.push_style,
                &t.silent,
                &t.updated_at,
            ],
        )
        .await?;
    Ok(n == 1)
}

pub(super) async fn delete_template<C: GenericClient + Sync>(
    c: &Db<'_, C>,
    app_id: &AppId,
    name: &str,
) -> Result<bool, Error> {
    Ok(c.execute("DELETE FROM templates WHERE app_id = $1 AND name = $2", &[&app_id.as_str(), &name]).await? == 1)
}

fn app_row(r: &Row) -> Result<AppRecord, Error> {
    Ok(AppRecord {
        app_id: AppId::new(r.try_get::<_, String>(0)?),
        name: r.try_get(1)?,
        app_key_hash: r.try_get(2)?,
        bind_secret_sealed: r.try_get(3)?,
        trust_client_bind: r.try_get(4)?,
        created_at: r.try_get(5)?,
    })
}

fn key_row(r: &Row) -> Result<Option<ApiKeyRecord>, Error> {
    let kind: String = r.try_get(2)?;
    let Some(kind) = KeyKind::parse(&kind) else {
        tracing::error!(%kind, "unknown key kind in the store");
        return Ok(None);
    };
    Ok(Some(ApiKeyRecord {
        key_id: KeyId::new(r.try_get::<_, String>(0)?),
        app_id: AppId::new(r.try_get::<_, String>(1)?),
        kind,
        material: r.try_get(3)?,
        created_at: r.try_get(4)?,
        revoked_at: r.try_get(5)?,
    }))
}

fn device_row(r: &Row) -> Result<DeviceRecord, Error> {
    let tokens: String = r.try_get(7)?;
    Ok(DeviceRecord {
        device_id: DeviceId::new(r.try_get::<_, String>(0)?),
        app_id: AppId::new(r.try_get::<_, String>(1)?),
        install_id: r.try_get(2)?,
        platform: r.try_get(3)?,
        app_version: r.try_get(4)?,
        os_version: r.try_get(5)?,
        model: r.try_get(6)?,
        vendor_tokens: serde_json::from_str(&tokens).unwrap_or_default(),
        user_id: r.try_get::<_, Option<String>>(8)?.map(UserId::new),
        bound_at: r.try_get(9)?,
        created_at: r.try_get(10)?,
        last_seen: r.try_get(11)?,
    })
}

fn pending_row(r: &Row) -> Result<PendingDelivery, Error> {
    let status: String = r.try_get(3)?;
    Ok(PendingDelivery {
        message_id: MessageId::new(r.try_get::<_, String>(0)?),
        payload: r.try_get(1)?,
        expires_at: r.try_get(2)?,
        sent_before: status == "sent",
    })
}

pub(super) async fn setting<C: GenericClient + Sync>(c: &Db<'_, C>, name: &str) -> Result<Option<String>, Error> {
    c.query_opt("SELECT value FROM settings WHERE name = $1", &[&name]).await?.map(|r| r.try_get(0)).transpose()
}

pub(super) async fn init_setting<C: GenericClient + Sync>(
    c: &Db<'_, C>,
    name: &str,
    value: &str,
) -> Result<String, Error> {
    c.execute("INSERT INTO settings (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING", &[&name, &value])
        .await?;
    c.query_one("SELECT value FROM settings WHERE name = $1", &[&name]).await?.try_get(0)
}

pub(super) async fn insert_app<C: GenericClient + Sync>(c: &Db<'_, C>, app: &AppRecord) -> Result<(), Error> {
    c.execute(
        &format!("INSERT INTO apps ({APP_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6)"),
        &[
            &app.app_id.as_str(),
            &app.name,
            &app.app_key_hash,
            &app.bind_secret_sealed,
            &app.trust_client_bind,
            &app.created_at,
        ],
    )
    .await?;
    Ok(())
}

pub(super) async fn insert_key<C: GenericClient + Sync>(c: &Db<'_, C>, key: &ApiKeyRecord) -> Result<(), Error> {
    c.execute(
        &format!("INSERT INTO api_keys ({KEY_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6)"),
        &[
            &key.key_id.as_str(),
            &key.app_id.as_str(),
            &key.kind.as_str(),
            &key.material,
            &key.created_at,
            &key.revoked_at,
        ],
    )
    .await?;
    Ok(())
}

pub(super) async fn app<C: GenericClient + Sync>(c: &Db<'_, C>, app_id: &AppId) -> Result<Option<AppRecord>, Error> {
    c.query_opt(&format!("SELECT {APP_COLUMNS} FROM apps WHERE app_id = $1"), &[&app_id.as_str()])
        .await?
        .map(|r| app_row(&r))
        .transpose()
}

pub(super) async fn apps<C: GenericClient + Sync>(c: &Db<'_, C>) -> Result<Vec<AppRecord>, Error> {
    c.query(&format!("SELECT {APP_COLUMNS} FROM apps ORDER BY created_at, app_id"), &[])
        .await?
        .iter()
        .map(app_row)
        .collect()
}

pub(super) async fn api_key<C: GenericClient + Sync>(
    c: &Db<'_, C>,
    key_id: &KeyId,
) -> Result<Option<ApiKeyRecord>, Error> {
    match c.query_opt(&format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE key_id = $1"), &[&key_id.as_str()]).await? {
        Some(r) => key_row(&r),
        None => Ok(None),
    }
}

pub(super) async fn api_keys<C: GenericClient + Sync>(
    c: &Db<'_, C>,
    app_id: &AppId,
) -> Result<Vec<ApiKeyRecord>, Error> {
    let rows = c
        .query(
            &format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE app_id = $1 ORDER BY created_at, key_id"),
            &[&app_id.as_str()],
        )
        .await?;
    Ok(rows.iter().map(key_row).collect::<Result<Vec<_>, _>>()?.into_iter().flatten().collect())
}

pub(super) async fn revoke_api_key<C: GenericClient + Sync>(
    c: &Db<'_, C>,
    app_id: &AppId,
    key_id: &KeyId,
    now: i64,
) -> Result<bool, Error> {
    let exists = c
        .query_opt("SELECT 1 FROM api_keys WHERE app_id = $1 AND key_id = $2", &[&app_id.as_str(), &key_id.as_str()])
        .await?
        .is_some();
    c.execute(
        "UPDATE api_keys SET revoked_at = $3 WHERE app_id = $1 AND key_id = $2 AND revoked_at IS NULL",
        &[&app_id.as_str(), &key_id.as_str(), &now],
    )
    .await?;
    Ok(exists)
}

pub(super) async fn device_by<C: GenericClient + Sync>(
    c: &Db<'_, C>,
    filter: &str,
    args: Params<'_>,
) -> Result<Option<DeviceRecord>, Error> {
    c.query_opt(&format!("SELECT {DEVICE_COLUMNS} FROM devices WHERE {filter}"), args)
        .await?
        .map(|r| device_row(&r))
        .transpose()
}

pub(super) async fn device_credentials<C: GenericClient + Sync>(
    c: &Db<'_, C>,
    device_id: &DeviceId,
) -> Result<Option<(AppId, String)>, Error> {
    c.query_opt("SELECT app_id, token_hash FROM devices WHERE device_id = $1", &[&device_id.as_str()])
        .await?
        .map(|r| Ok((AppId::new(r.try_get::<_, String>(0)?), r.try_get(1)?)))
        .transpose()
}

pub(super) async fn register_device<C: GenericClient + Sync>(
    c: &Db<'_, C>,
    reg: DeviceRegistration,
) -> Result<DeviceRecord, Error> {
    let app = reg.app_id.as_str();
    let tokens = reg.vendor_tokens.as_ref().map(|t| serde_json::Value::Object(t.clone()).to_string());
    // Two registrations of one install at once: the insert of the second does nothing and
    // both then read the same row.
    c.execute(
        "INSERT INTO devices (device_id, app_id, install_id, token_hash, platform, app_version, os_version, model, \
         vendor_tokens, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
         ON CONFLICT (app_id, install_id) DO UPDATE SET token_hash = excluded.token_hash, platform = excluded.platform, \
         app_version = COALESCE($6, devices.app_version), os_version = COALESCE($7, devices.os_version), \
         model = COALESCE($8, devices.model), vendor_tokens = COALESCE($11, devices.vendor_tokens)",
        &[
            &reg.new_device_id.as_str(),
            &app,
            &reg.install_id,
            &reg.token_hash,
            &reg.platform,
            &reg.app_version,
            &reg.os_version,
            &reg.model,
            &tokens.clone().unwrap_or_else(|| "{}".into()),
            &reg.now,
            &tokens,
        ],
    )
    .await?;
    let row = c
        .query_one(
            &format!("SELECT {DEVICE_COLUMNS} FROM devices WHERE app_id = $1 AND install_id = $2"),
            &[&app, &reg.install_id],
        )
        .await?;
    device_row(&row)
}

pub(super) async fn report_device<C: GenericClient + Sync>(
    c: &Db<'_, C>,
    app_id: &AppId,
    device_id: &DeviceId,
    app_version: Option<String>,
    vendor_tokens: Option<serde_json::Map<String, serde_json::Value>>,
) -> Result<bool, Error> {
    let Some(device) =
        device_by(c, "device_id = $1 AND app_id = $2 FOR UPDATE", &[&device_id.as_str(), &app_id.as_str()]).await?
    else {
        return Ok(false);
    };
    let mut tokens = device.vendor_tokens;
    for (k, v) in vendor_tokens.unwrap_or_default() {
        if v.is_null() {
            tokens.remove(&k);
        } else {
            tokens.insert(k, v);
        }
    }
    c.execute(
        "UPDATE devices SET app_version = COALESCE($2, app_version), vendor_tokens = $3 WHERE device_id = $1",
        &[&device_id.as_str(), &app_version, &serde_json::Value::Object(tokens).to_string()],
    )
    .await?;
    Ok(true)
}

async fn drop_user_deliveries<C: GenericClient + Sync>(
    c: &Db<'_, C>,
    app: &str,
    device: &str,
    user: &str,
) -> Result<(), Error> {
    c.execute(
        "DELETE FROM deliveries WHERE device_id = $1 AND status IN ('pending', 'sent') AND message_id IN \
         (SELECT message_id FROM messages WHERE app_id = $2 AND target_kind = 'user' AND target = $3)",
        &[&device, &app, &user],
    )
    .await?;
    Ok(())
}

pub(super) async fn bind_user<C: GenericClient + Sync>(
    c: &Db<'_, C>,
    app_id: &AppId,
    device_id: &DeviceId,
    user_id: &UserId,
    now: i64,
) -> Result<Option<Bound>, Error> {
    let (app, device, user) = (app_id.as_str(), device_id.as_str(), user_id.as_str());
    let Some(current) = device_by(c, "device_id = $1 AND app_id = $2 FOR UPDATE", &[&device, &app]).await? else {
        return Ok(None);
    };
    if let Some(previous) = current.user_id.as_ref().filter(|p| p.as_str() != user) {
        drop_user_deliveries(c, app, device, previous.as_str()).await?;
    }
    c.execute(
        "UPDATE devices SET user_id = $2, bound_at = $3, unbound_at = NULL WHERE device_id = $1",
        &[&device, &user, &now],
    )
    .await?;
    c.execute(
        "INSERT INTO deliveries (message_id, device_id, status, created_at, updated_at, expires_at) \
         SELECT message_id, $1, 'pending', $2, $2, expires_at FROM messages \
         WHERE app_id = $3 AND target_kind = 'user' AND target = $4 AND expires_at > $2 \
         AND kind = 'notification' AND revoked_at IS NULL \
         ON CONFLICT (message_id, device_id) DO NOTHING",
        &[&device, &now, &app, &user],
    )
    .await?;
    let rows = c
        .query(
            "SELECT d.message_id, m.payload, d.expires_at, d.status FROM deliveries d \
             JOIN messages m ON m.message_id = d.message_id \
             WHERE d.device_id = $1 AND d.status IN ('pending', 'sent') AND d.expires_at > $2 \
             AND m.app_id = $3 AND m.target_kind = 'user' AND m.target = $4 ORDER BY d.message_id",
            &[&device, &now, &app, &user],
        )
        .await?;
    // The row is locked since the start: a connect's presence is either already here or
    // waits for this bind to commit (and then reads its deliveries).
    let online_node =
        c.query_one("SELECT online_node FROM devices WHERE device_id = $1", &[&device]).await?.try_get(0)?;
    Ok(Some(Bound { pending: rows.iter().map(pending_row).collect::<Result<_, _>>()?, online_node }))
}

pub(super) async fn unbind_user<C: GenericClient + Sync>(
    c: &Db<'_, C>,
    app_id: &AppId,
    device_id: &DeviceId,
    now: i64,
) -> Result<bool, Error> {
    let (app, device) = (app_id.as_str(), device_id.as_str());
    let Some(current) = device_by(c, "device_id = $1 AND app_id = $2 FOR UPDATE", &[&device, &app]).await? else {
        return Ok(false);
    };
    if let Some(user) = &current.user_id {
        drop_user_deliveries(c, app, device, user.as_str()).await?;
        c.execute("UPDATE devices SET user_id = NULL, unbound_at = $2 WHERE device_id = $1", &[&device, &now]).await?;
    }
    Ok(true)
}

pub(super) async fn user_devices<C: GenericClient + Sync>(
    c: &Db<'_, C>,
    app_id: &AppId,
    user_id: &UserId,
) -> Result<Vec<DeviceRecord>, Error> {
    c.query(
        &format!("SELECT {DEVICE_COLUMNS} FROM devices WHERE app_id = $1 AND user_id = $2 ORDER BY device_id"),
        &[&app_id.as_str(), &user_id.as_str()],
    )
    .await?
    .iter()
    .map(device_row)
    .collect()
}

/// Commits a push in four round trips whatever its size: BEGIN; the idempotency claims,
/// the task and the device lookups, pipelined; the messages and deliveries, pipelined;
/// COMMIT. A whole repeat of an earlier request is answered from the claims, and the
/// caller must roll back instead of committing (the task row was written already).
pub(super) async fn commit_push<C: GenericClient + Sync>(
    c: &Db<'_, C>,
    push: NewPush,
    now: i64,
) -> Result<CommittedPush, Error> {
    use futures_util::future::try_join_all;
    let app = push.task.app_id.as_str();
    let t = &push.task;
    let task_id = t.task_id.as_str();
    let kinds: Vec<&str> = push.messages.iter().map(|m| m.target_kind.as_str()).collect();
    let mids: Vec<&str> = push.messages.iter().map(|m| m.message_id.as_str()).collect();
    // The parameters live here: the pipelined statements borrow them.
    // A firing of a recurring schedule claims no key: no claim statement at all.
    let claim_params: Vec<[&(dyn ToSql + Sync); 8]> = push
        .messages
        .iter()
        .take(if push.skip_idempotency { 0 } else { usize::MAX })
        .enumerate()
        .map(|(i, m)| -> [&(dyn ToSql + Sync); 8] {
            [&app, &m.msg_key, &kinds[i], &m.target, &mids[i], &task_id, &t.expires_at, &now]
        })
        .collect();
    let claims = try_join_all(claim_params.iter().map(|p| {
        c.execute(
            "INSERT INTO idempotency (app_id, msg_key, target_kind, target, message_id, task_id, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) \
             ON CONFLICT (app_id, msg_key, target_kind, target) DO UPDATE SET \
             message_id = excluded.message_id, task_id = excluded.task_id, expires_at = excluded.expires_at \
             WHERE idempotency.expires_at <= $8",
            p,
        )
    }));
    let task_params: [&(dyn ToSql + Sync); 7] =
        [&task_id, &app, &t.push_type, &t.task_name, &t.delivery_type, &t.created_at, &t.expires_at];
    let task_sql = pg(INSERT_TASK);
    let task = c.execute(&task_sql, &task_params);
    // FOR SHARE: a connect recording its presence after this read waits until this push
    // commits, so the connect's read of pending deliveries finds it; a presence committed
    // before this read is seen, and the push rings that node.
    let lookup_params: Vec<[&(dyn ToSql + Sync); 2]> =
        push.messages.iter().map(|m| -> [&(dyn ToSql + Sync); 2] { [&app, &m.target] }).collect();
    let lookups = try_join_all(push.messages.iter().zip(&lookup_params).map(|(m, p)| {
        let sql = match m.target_kind {
            TargetKind::Device => {
                "SELECT device_id, online_node FROM devices WHERE app_id = $1 AND device_id = $2 FOR SHARE"
            }
            TargetKind::User => {
                "SELECT device_id, online_node FROM devices WHERE app_id = $1 AND user_id = $2 \
                 ORDER BY device_id FOR SHARE"
            }
        };
        c.query(sql, p)
    }));
    let (claims, _, lookups) = tokio::try_join!(claims, task, lookups)?;
    let mut earlier = Vec::with_capacity(push.messages.len());
    if push.skip_idempotency {
        earlier.resize(push.messages.len(), None);
    }
    for (p, claimed) in claim_params.iter().zip(&claims) {
        earlier.push(if *claimed == 1 {
            None
        } else {
            let r = c
                .query_one(
                    "SELECT message_id, task_id FROM idempotency \
                     WHERE app_id = $1 AND msg_key = $2 AND target_kind = $3 AND target = $4",
                    &p[..4],
                )
                .await?;
            Some((r.try_get::<_, String>(0)?, r.try_get::<_, String>(1)?))
        });
    }
    if let Some(replay) = replay_of(&earlier) {
        return Ok(replay);
    }
    let mut outcomes = Vec::with_capacity(push.messages.len());
    // Payloads are built from Rust strings: always UTF-8.
    let payloads: Vec<String> =
        push.messages.iter().map(|m| String::from_utf8_lossy(&m.payload).into_owned()).collect();
    let mut undeliverable = vec![false; push.messages.len()];
    let mut stored = vec![false; push.messages.len()];
    for (i, (earlier, rows)) in earlier.into_iter().zip(&lookups).enumerate() {
        let message_id = push.messages[i].message_id.clone();
        if let Some((mid, _)) = earlier {
            outcomes.push((message_id, TargetOutcome::Duplicate { message_id: MessageId::new(mid) }));
            continue;
        }
        let devices: Vec<Recipient> = rows
            .iter()
            .map(|r| Ok(Recipient { device_id: DeviceId::new(r.try_get::<_, String>(0)?), online_node: r.try_get(1)? }))
            .collect::<Result<_, Error>>()?;
        stored[i] = true;
        undeliverable[i] = push.messages[i].target_kind == TargetKind::Device && devices.is_empty();
        let outcome = if undeliverable[i] { TargetOutcome::Undeliverable } else { TargetOutcome::Accepted { devices } };
        outcomes.push((message_id, outcome));
    }
    let message_params: Vec<[&(dyn ToSql + Sync); 10]> = (0..push.messages.len())
        .filter(|i| stored[*i])
        .map(|i| -> [&(dyn ToSql + Sync); 10] {
            let m = &push.messages[i];
            [
                &mids[i],
                &app,
                &task_id,
                &m.msg_key,
                &kinds[i],
                &m.target,
                &payloads[i],
                &undeliverable[i],
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
            _ => None,
        })
        .flatten()
        .collect();
    let delivery_params: Vec<[&(dyn ToSql + Sync); 4]> = pairs
        .iter()
        .map(|(mid, device)| -> [&(dyn ToSql + Sync); 4] { [mid, device, &t.created_at, &t.expires_at] })
        .collect();
    let messages = message_params.iter().map(|p| {
        c.execute(
            "INSERT INTO messages (message_id, app_id, task_id, msg_key, target_kind, target, payload, undeliverable, \
             created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            p,
        )
    });
    let deliveries = delivery_params.iter().map(|p| {
        c.execute(
            "INSERT INTO deliveries (message_id, device_id, status, created_at, updated_at, expires_at) \
             VALUES ($1, $2, 'pending', $3, $3, $4)",
            p,
        )
    });
    // Sent in this order on one connection: each message precedes its deliveries.
    try_join_all(messages.chain(deliveries)).await?;
    Ok(CommittedPush { task_id: push.task.task_id, replayed: false, outcomes })
}

pub(super) async fn pending_deliveries<C: GenericClient + Sync>(
    c: &Db<'_, C>,
    device_id: &DeviceId,
    now: i64,
    limit: usize,
) -> Result<Vec<PendingDelivery>, Error> {
    let unicast = c
        .query(
            "SELECT d.message_id, m.payload, d.expires_at, d.status FROM deliveries d \
             JOIN messages m ON m.message_id = d.message_id \
             WHERE d.device_id = $1 AND d.status IN ('pending', 'sent') AND d.expires_at > $2 \
             ORDER BY d.message_id LIMIT $3",
            &[&device_id.as_str(), &now, &(limit as i64)],
        )
        .await?
        .iter()
        .map(pending_row)
        .collect::<Result<Vec<_>, _>>()?;
    let broadcasts = c
        .query(&pg(&broadcast_sql::pending()), &[&device_id.as_str(), &now])
        .await?
        .iter()
        .map(pending_row)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(merge_pending(unicast, broadcasts, limit))
}

/// Applies status updates in order: those of deliveries in one transaction, then those of
/// device rows one statement each. A transaction that held one device row while waiting for
/// another could deadlock with a push holding share locks on devices in another order.
pub(super) async fn apply_updates(pool: &Pool, updates: &[StatusUpdate]) -> Result<(), StoreError> {
    let mut conn = pool.get().await?;
    let (devices, deliveries): (Vec<&StatusUpdate>, Vec<&StatusUpdate>) =
        updates.iter().partition(|u| matches!(u, StatusUpdate::Disconnected { .. }));
    if !deliveries.is_empty() {
        let (tx, cache) = conn.transaction().await.map_err(super::map_err)?;
        let db = Db::new(&tx, cache);
        for u in deliveries {
            apply_update(&db, u).await.map_err(super::map_err)?;
        }
        tx.commit().await.map_err(super::map_err)?;
    }
    for u in devices {
        apply_update(&conn.db(), u).await.map_err(super::map_err)?;
    }
    Ok(())
}

pub(super) async fn device_connected<C: GenericClient + Sync>(
    c: &Db<'_, C>,
    device_id: &DeviceId,
    presence: &Presence,
    now: i64,
) -> Result<Option<Presence>, Error> {
    // One statement: the row is locked while the old presence is read and replaced.
    let row = c
        .query_opt(
            "UPDATE devices d SET online_node = $2, online_gen = $3, last_seen = $4 \
             FROM (SELECT online_node, online_gen FROM devices WHERE device_id = $1 FOR UPDATE) old \
             WHERE d.device_id = $1 RETURNING old.online_node, old.online_gen",
            &[&device_id.as_str(), &presence.node, &(presence.generation as i64), &now],
        )
        .await?;
    Ok(match row {
        Some(r) => replaced(Some((r.try_get(0)?, r.try_get(1)?)), presence),
        None => None,
    })
}

pub(super) async fn stale_pending<C: GenericClient + Sync>(
    c: &Db<'_, C>,
    node: &str,
    created_before: i64,
    now: i64,
    limit: usize,
) -> Result<Vec<DeviceId>, Error> {
    c.query(
        "SELECT v.device_id FROM devices v WHERE v.online_node = $1 AND EXISTS \
         (SELECT 1 FROM deliveries d WHERE d.device_id = v.device_id AND d.status IN ('pending', 'sent') \
         AND d.created_at < $2 AND d.expires_at > $3) LIMIT $4",
        &[&node, &created_before, &now, &(limit as i64)],
    )
    .await?
    .iter()
    .map(|r| r.try_get::<_, String>(0).map(DeviceId::new))
    .collect()
}

async fn apply_update<C: GenericClient + Sync>(c: &Db<'_, C>, update: &StatusUpdate) -> Result<(), Error> {
    match update {
        StatusUpdate::Sent { message_id, device_id, at } if message_id.is_broadcast() => {
            c.execute(&pg(broadcast_sql::ACK_SENT), &[&message_id.as_str(), &device_id.as_str(), at]).await?;
        }
        StatusUpdate::Delivered { message_id, device_id, sent_at, at } if message_id.is_broadcast() => {
            c.execute(&pg(broadcast_sql::ACK_DELIVERED), &[&message_id.as_str(), &device_id.as_str(), sent_at, at])
                .await?;
        }
        StatusUpdate::Sent { message_id, device_id, at } => {
            c.execute(
                "UPDATE deliveries SET status = 'sent', sent_at = $3, updated_at = $3 \
                 WHERE message_id = $1 AND device_id = $2 AND status = 'pending'",
                &[&message_id.as_str(), &device_id.as_str(), at],
            )
            .await?;
        }
        StatusUpdate::Delivered { message_id, device_id, sent_at, at } => {
            c.execute(
                "UPDATE deliveries SET status = 'delivered', sent_at = COALESCE(sent_at, $3), delivered_at = $4, \
                 updated_at = $4 WHERE message_id = $1 AND device_id = $2 AND \
                 (status IN ('pending', 'sent') OR (status = 'expired' AND $3 < expires_at))",
                &[&message_id.as_str(), &device_id.as_str(), sent_at, at],
            )
            .await?;
        }
        StatusUpdate::Event { message_id, device_id, event, at } => {
            let sql = match event {
                DeviceEvent::Arrived => {
                    "UPDATE deliveries SET status = 'delivered', delivered_at = $3, updated_at = $3 \
                     WHERE message_id = $1 AND device_id = $2 AND \
                     (status IN ('pending', 'sent') OR (status = 'expired' AND sent_at IS NOT NULL))"
                }
                DeviceEvent::Opened => {
                    "UPDATE deliveries SET status = 'opened', delivered_at = COALESCE(delivered_at, $3), \
                     updated_at = $3 WHERE message_id = $1 AND device_id = $2 AND \
                     status IN ('pending', 'sent', 'delivered', 'ignored')"
                }
                DeviceEvent::Ignored => {
                    "UPDATE deliveries SET status = 'ignored', delivered_at = COALESCE(delivered_at, $3), \
                     updated_at = $3 WHERE message_id = $1 AND device_id = $2 AND \
                     status IN ('pending', 'sent', 'delivered')"
                }
            };
            if !message_id.is_broadcast() {
                c.execute(sql, &[&message_id.as_str(), &device_id.as_str(), at]).await?;
            } else {
                let ack = match event {
                    DeviceEvent::Arrived => broadcast_sql::EVENT_ARRIVED,
                    DeviceEvent::Opened => broadcast_sql::EVENT_OPENED,
                    DeviceEvent::Ignored => broadcast_sql::EVENT_IGNORED,
                };
                c.execute(&pg(ack), &[&message_id.as_str(), &device_id.as_str(), at]).await?;
            }
        }
        StatusUpdate::Disconnected { device_id, presence, at } => {
            c.execute(
                "UPDATE devices SET last_seen = $4, \
                 online_node = CASE WHEN online_node = $2 AND online_gen = $3 THEN NULL ELSE online_node END, \
                 online_gen = CASE WHEN online_node = $2 AND online_gen = $3 THEN NULL ELSE online_gen END \
                 WHERE device_id = $1",
                &[&device_id.as_str(), &presence.node, &(presence.generation as i64), at],
            )
            .await?;
        }
    }
    Ok(())
}

pub(super) async fn claim_nonce<C: GenericClient + Sync>(
    c: &Db<'_, C>,
    key_id: &KeyId,
    nonce: &str,
    now: i64,
    expires_at: i64,
) -> Result<bool, Error> {
    let n = c
        .execute(
            "INSERT INTO nonces (key_id, nonce, expires_at) VALUES ($1, $2, $3) \
             ON CONFLICT (key_id, nonce) DO UPDATE SET expires_at = excluded.expires_at \
             WHERE nonces.expires_at <= $4",
            &[&key_id.as_str(), &nonce, &expires_at, &now],
        )
        .await?;
    Ok(n == 1)
}

pub(super) async fn try_lease<C: GenericClient + Sync>(
    c: &Db<'_, C>,
    name: &str,
    holder: &str,
    now: i64,
    ttl_ms: i64,
) -> Result<bool, Error> {
    let n = c
        .execute(
            "INSERT INTO leases (name, holder, expires_at) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at \
             WHERE leases.holder = excluded.holder OR leases.expires_at <= $4",
            &[&name, &holder, &(now + ttl_ms), &now],
        )
        .await?;
    Ok(n == 1)
}

pub(super) async fn expire_due<C: GenericClient + Sync>(c: &Db<'_, C>, now: i64) -> Result<u64, Error> {
    c.execute("DELETE FROM nonces WHERE expires_at <= $1", &[&now]).await?;
    c.execute(
        "UPDATE deliveries SET status = 'expired', updated_at = $1 WHERE status IN ('pending', 'sent') AND expires_at <= $1",
        &[&now],
    )
    .await
}

pub(super) async fn message_views<C: GenericClient + Sync>(
    c: &Db<'_, C>,
    filter: &str,
    args: Params<'_>,
) -> Result<Vec<MessageView>, Error> {
    let rows = c
        .query(
            &format!(
                "SELECT message_id, task_id, msg_key, target_kind, target, undeliverable, created_at, expires_at, revoked_at \
                 FROM messages WHERE {filter} AND kind = 'notification' ORDER BY message_id"
            ),
            args,
        )
        .await?;
    let mut views = Vec::with_capacity(rows.len());
    for r in rows {
        let kind: String = r.try_get(3)?;
        let Some(target_kind) = TargetKind::parse(&kind) else {
            tracing::error!(%kind, "unknown target kind in the store");
            continue;
        };
        let message_id = MessageId::new(r.try_get::<_, String>(0)?);
        let deliveries = c
            .query(
                "SELECT device_id, status, created_at, updated_at, sent_at, delivered_at FROM deliveries \
                 WHERE message_id = $1 ORDER BY device_id",
                &[&message_id.as_str()],
            )
            .await?
            .iter()
            .map(|d| {
                Ok(DeliveryView {
                    device_id: DeviceId::new(d.try_get::<_, String>(0)?),
                    status: d.try_get(1)?,
                    created_at: d.try_get(2)?,
                    updated_at: d.try_get(3)?,
                    sent_at: d.try_get(4)?,
                    delivered_at: d.try_get(5)?,
                })
            })
            .collect::<Result<_, Error>>()?;
        views.push(MessageView {
            message_id,
            task_id: TaskId::new(r.try_get::<_, String>(1)?),
            msg_key: r.try_get(2)?,
            target_kind,
            target: r.try_get(4)?,
            undeliverable: r.try_get(5)?,
            created_at: r.try_get(6)?,
            expires_at: r.try_get(7)?,
            revoked_at: r.try_get(8)?,
            deliveries,
        });
    }
    Ok(views)
}

pub(super) async fn task<C: GenericClient + Sync>(
    c: &Db<'_, C>,
    app_id: &AppId,
    task_id: &TaskId,
) -> Result<Option<TaskView>, Error> {
    let Some(r) = c
        .query_opt(
            "SELECT push_type, task_name, delivery_type, created_at, expires_at FROM tasks WHERE task_id = $1 AND app_id = $2",
            &[&task_id.as_str(), &app_id.as_str()],
        )
        .await?
    else {
        return Ok(None);
    };
    Ok(Some(TaskView {
        task_id: task_id.clone(),
        push_type: r.try_get(0)?,
        task_name: r.try_get(1)?,
        delivery_type: r.try_get(2)?,
        created_at: r.try_get(3)?,
        expires_at: r.try_get(4)?,
        messages: message_views(c, "task_id = $1 AND app_id = $2", &[&task_id.as_str(), &app_id.as_str()]).await?,
        broadcast: broadcast_view(c, task_id, app_id).await?,
    }))
}

async fn broadcast_view<C: GenericClient + Sync>(
    c: &Db<'_, C>,
    task_id: &TaskId,
    app_id: &AppId,
) -> Result<Option<BroadcastView>, Error> {
    let Some(r) = c.query_opt(&pg(broadcast_sql::OF_TASK), &[&task_id.as_str(), &app_id.as_str()]).await? else {
        return Ok(None);
    };
    let message_id: String = r.try_get(0)?;
    let eligible: i64 = c.query_one(&pg(&broadcast_sql::eligible_count()), &[&message_id]).await?.try_get(0)?;
    let counts = c
        .query(&pg(broadcast_sql::COUNTS), &[&message_id])
        .await?
        .iter()
        .map(|r| Ok((r.try_get::<_, String>(0)?, r.try_get::<_, i64>(1)? as u64)))
        .collect::<Result<Vec<_>, Error>>()?;
    Ok(Some(BroadcastView {
        message_id: MessageId::new(message_id),
        msg_key: r.try_get(1)?,
        eligible: eligible as u64,
        counts,
        revoked_at: r.try_get(3)?,
    }))
}

pub(super) async fn commit_broadcast<C: GenericClient + Sync>(
    c: &Db<'_, C>,
    b: &NewBroadcast,
    now: i64,
) -> Result<BroadcastCommitted, Error> {
    let t = &b.task;
    let app = t.app_id.as_str();
    let claimed = if b.skip_idempotency {
        1
    } else {
        c.execute(
            "INSERT INTO idempotency (app_id, msg_key, target_kind, target, message_id, task_id, expires_at) \
             VALUES ($1, $2, 'broadcast', '', $3, $4, $5) \
             ON CONFLICT (app_id, msg_key, target_kind, target) DO UPDATE SET \
             message_id = excluded.message_id, task_id = excluded.task_id, expires_at = excluded.expires_at \
             WHERE idempotency.expires_at <= $6",
            &[&app, &b.msg_key, &b.message_id.as_str(), &t.task_id.as_str(), &t.expires_at, &now],
        )
        .await?
    };
    if claimed == 0 {
        let r = c
            .query_one(
                "SELECT message_id, task_id FROM idempotency \
                 WHERE app_id = $1 AND msg_key = $2 AND target_kind = 'broadcast' AND target = ''",
                &[&app, &b.msg_key],
            )
            .await?;
        return Ok(BroadcastCommitted {
            task_id: TaskId::new(r.try_get::<_, String>(1)?),
            message_id: MessageId::new(r.try_get::<_, String>(0)?),
            replayed: true,
        });
    }
    c.execute(
        &pg(INSERT_TASK),
        &[&t.task_id.as_str(), &app, &t.push_type, &t.task_name, &t.delivery_type, &t.created_at, &t.expires_at],
    )
    .await?;
    let payload = String::from_utf8_lossy(&b.payload);
    c.execute(
        &pg(broadcast_sql::INSERT),
        &[
            &b.message_id.as_str(),
            &t.task_id.as_str(),
            &app,
            &b.msg_key,
            &b.platform,
            &b.push_status,
            &b.bind_since,
            &b.unbind_since,
            &payload.as_ref(),
            &t.created_at,
            &t.expires_at,
        ],
    )
    .await?;
    Ok(BroadcastCommitted { task_id: t.task_id.clone(), message_id: b.message_id.clone(), replayed: false })
}

pub(super) async fn broadcast_recipients<C: GenericClient + Sync>(
    c: &Db<'_, C>,
    message_id: &MessageId,
    node: &str,
) -> Result<Vec<DeviceId>, Error> {
    c.query(&pg(&broadcast_sql::recipients()), &[&message_id.as_str(), &node])
        .await?
        .iter()
        .map(|r| r.try_get::<_, String>(0).map(DeviceId::new))
        .collect()
}

pub(super) async fn revoke<C: GenericClient + Sync>(
    c: &Db<'_, C>,
    app_id: &AppId,
    what: &RevokeTarget,
    now: i64,
    since: i64,
) -> Result<Option<Revocation>, Error> {
    let app = app_id.as_str();
    let columns = "message_id, task_id, msg_key, target_kind, target, expires_at, revoked_at";
    // FOR UPDATE: two revokes of one message at once do not both send a recall.
    let rows = match what {
        RevokeTarget::Message { msg_key, target } => {
            c.query(
                &format!(
                    "SELECT {columns} FROM messages WHERE app_id = $1 AND msg_key = $2 AND target = $3 \
                     AND kind = 'notification' AND created_at >= $4 ORDER BY message_id FOR UPDATE"
                ),
                &[&app, msg_key, target, &since],
            )
            .await?
        }
        RevokeTarget::Task(task_id) => {
            c.query(
                &format!(
                    "SELECT {columns} FROM messages WHERE app_id = $1 AND task_id = $2 \
                     AND kind = 'notification' AND created_at >= $3 ORDER BY message_id FOR UPDATE"
                ),
                &[&app, &task_id.as_str(), &since],
            )
            .await?
        }
    };
    let broadcast = match what {
        RevokeTarget::Task(task_id) => revoke_broadcast(c, app_id, task_id, now, since).await?,
        RevokeTarget::Message { .. } => None,
    };
    if rows.is_empty() && broadcast.is_none() {
        return Ok(None);
    }
    let mut out = Revocation::default();
    if let Some(Some((mid, recall))) = broadcast {
        out.messages.push(mid);
        out.recalls.extend(recall);
    }
    for r in rows {
        let (mid, task_id, msg_key, target_kind, target): (String, String, String, String, String) =
            (r.try_get(0)?, r.try_get(1)?, r.try_get(2)?, r.try_get(3)?, r.try_get(4)?);
        let expires_at: i64 = r.try_get(5)?;
        if r.try_get::<_, Option<i64>>(6)?.is_some() {
            continue;
        }
        c.execute("UPDATE messages SET revoked_at = $2 WHERE message_id = $1", &[&mid, &now]).await?;
        let devices: Vec<Recipient> = c
            .query(
                "SELECT d.device_id, v.online_node FROM deliveries d JOIN devices v ON v.device_id = d.device_id \
                 WHERE d.message_id = $1 AND (d.status IN ('sent', 'delivered', 'opened', 'ignored') \
                 OR (d.status = 'pending' AND v.online_node IS NOT NULL)) ORDER BY d.device_id",
                &[&mid],
            )
            .await?
            .iter()
            .map(|r| Ok(Recipient { device_id: DeviceId::new(r.try_get::<_, String>(0)?), online_node: r.try_get(1)? }))
            .collect::<Result<_, Error>>()?;
        out.withdrawn += c
            .execute(
                "UPDATE deliveries SET status = 'revoked', updated_at = $2 \
                 WHERE message_id = $1 AND status IN ('pending', 'sent')",
                &[&mid, &now],
            )
            .await?;
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
            out.recalls.push(insert_recall(c, &revoked, devices, now).await?);
        }
        out.messages.push(MessageId::new(mid));
    }
    Ok(Some(out))
}

/// Revokes the broadcast of a task (see [`BroadcastRevoke`]).
async fn revoke_broadcast<C: GenericClient + Sync>(
    c: &Db<'_, C>,
    app_id: &AppId,
    task_id: &TaskId,
    now: i64,
    since: i64,
) -> Result<BroadcastRevoke, Error> {
    let sql = format!("{} FOR UPDATE", pg(broadcast_sql::REVOCABLE));
    let Some(r) = c.query_opt(&sql, &[&task_id.as_str(), &app_id.as_str(), &since]).await? else {
        return Ok(None);
    };
    let (mid, msg_key, expires_at): (String, String, i64) = (r.try_get(0)?, r.try_get(1)?, r.try_get(2)?);
    if r.try_get::<_, Option<i64>>(3)?.is_some() {
        return Ok(Some(None));
    }
    c.execute("UPDATE broadcasts SET revoked_at = $2 WHERE message_id = $1", &[&mid, &now]).await?;
    let devices: Vec<Recipient> = c
        .query(&pg(broadcast_sql::RECALL_DEVICES), &[&mid])
        .await?
        .iter()
        .map(|r| Ok(Recipient { device_id: DeviceId::new(r.try_get::<_, String>(0)?), online_node: r.try_get(1)? }))
        .collect::<Result<_, Error>>()?;
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
        recall = Some(insert_recall(c, &revoked, devices, now).await?);
    }
    Ok(Some(Some((MessageId::new(mid), recall))))
}

/// Stores the control message that withdraws `revoked` from `devices` (a message of kind
/// `revoke`, pending for each of them) and returns it for dispatch.
async fn insert_recall<C: GenericClient + Sync>(
    c: &Db<'_, C>,
    revoked: &Revoked<'_>,
    devices: Vec<Recipient>,
    now: i64,
) -> Result<Recall, Error> {
    let control = MessageId::generate(now);
    let payload = recall_payload(revoked.message_id, revoked.msg_key, revoked.task_id, &control, now);
    c.execute(
        "INSERT INTO messages (message_id, app_id, task_id, msg_key, target_kind, target, payload, undeliverable, \
         created_at, expires_at, kind) VALUES ($1, $2, $3, $4, $5, $6, $7, false, $8, $9, 'revoke')",
        &[
            &control.as_str(),
            &revoked.app,
            &revoked.task_id,
            &revoked.msg_key,
            &revoked.target_kind,
            &revoked.target,
            &payload,
            &now,
            &revoked.expires_at,
        ],
    )
    .await?;
    for d in &devices {
        c.execute(
            "INSERT INTO deliveries (message_id, device_id, status, created_at, updated_at, expires_at) \
             VALUES ($1, $2, 'pending', $3, $3, $4)",
            &[&control.as_str(), &d.device_id.as_str(), &now, &revoked.expires_at],
        )
        .await?;
    }
    Ok(Recall { message_id: control, payload: payload.into(), expires_at: revoked.expires_at, devices })
}

pub(super) fn schedule_row(r: &Row) -> Result<ScheduleRecord, Error> {
    Ok(ScheduleRecord {
        unique_id: r.try_get(0)?,
        parent_id: r.try_get(1)?,
        app_id: AppId::new(r.try_get::<_, String>(2)?),
        push_type: r.try_get(3)?,
        delivery_type: r.try_get(4)?,
        template_name: r.try_get(5)?,
        title: r.try_get(6)?,
        content: r.try_get(7)?,
        body: r.try_get(8)?,
        strategy_type: r.try_get(9)?,
        strategy: r.try_get(10)?,
        push_time: r.try_get(11)?,
        expires_ms: r.try_get(12)?,
        status: r.try_get(13)?,
        task_id: r.try_get(14)?,
        created_at: r.try_get(15)?,
    })
}

pub(super) async fn insert_schedule<C: GenericClient + Sync>(c: &Db<'_, C>, s: &ScheduleRecord) -> Result<(), Error> {
    c.execute(
        &pg(schedule_sql::INSERT),
        &[
            &s.unique_id,
            &s.parent_id,
            &s.app_id.as_str(),
            &s.push_type,
            &s.delivery_type,
            &s.template_name,
            &s.title,
            &s.content,
            &s.body,
            &s.strategy_type,
            &s.strategy,
            &s.push_time,
            &s.expires_ms,
            &s.status,
            &s.task_id,
            &s.created_at,
        ],
    )
    .await?;
    Ok(())
}

pub(super) async fn fire_schedule<C: GenericClient + Sync>(
    c: &Db<'_, C>,
    claim: FireClaim,
    now: i64,
) -> Result<Option<Option<Fired>>, Error> {
    let plan = claim.plan();
    let claimed = c
        .execute(
            &pg(schedule_sql::CLAIM),
            &[&claim.unique_id, &claim.due, &plan.status, &plan.row_task, &plan.push_time],
        )
        .await?;
    if claimed == 0 {
        return Ok(None);
    }
    if claim.recurring {
        let child = format!("s{}", &MessageId::generate(now).as_str()[1..]);
        c.execute(
            &pg(schedule_sql::CHILD),
            &[&child, &claim.unique_id, &claim.due, &plan.outcome, &plan.task_id, &now],
        )
        .await?;
    }
    Ok(Some(match claim.firing {
        None => None,
        Some(Firing::Push(p)) => Some(Fired::Push(commit_push(c, p, now).await?)),
        Some(Firing::Broadcast(b)) => Some(Fired::Broadcast(commit_broadcast(c, &b, now).await?)),
    }))
}
