//! Settings, leases, apps, API keys and templates.

use herald_core::ids::{AppId, KeyId};
use herald_core::model::{ApiKeyRecord, AppRecord, AppUpdate, ClusterView, ConsoleSession, TemplateRecord};

use crate::tx::{Tx, exists, query_one, query_opt};
use crate::{StoreResult, TemplateCreated, rows, sql};

pub(crate) async fn setting<X: Tx>(tx: &X, name: &str) -> StoreResult<Option<String>> {
    query_opt(tx, &sql::SETTING, &[&name], |r| r.text(0)).await
}

pub(crate) async fn init_setting<X: Tx>(tx: &X, name: &str, value: &str) -> StoreResult<String> {
    tx.execute(&sql::INIT_SETTING, &[&name, &value]).await?;
    query_one(tx, &sql::SETTING, &[&name], |r| r.text(0)).await
}

pub(crate) async fn try_lease<X: Tx>(tx: &X, name: &str, holder: &str, now: i64, ttl_ms: i64) -> StoreResult<bool> {
    Ok(tx.execute(&sql::TRY_LEASE, &[&name, &holder, &(now + ttl_ms), &now]).await? == 1)
}

pub(crate) async fn create_app<X: Tx>(tx: &X, app: &AppRecord, first_key: &ApiKeyRecord) -> StoreResult<()> {
    let a = app;
    tx.execute(
        &sql::INSERT_APP,
        &[
            &a.app_id.as_str(),
            &a.name,
            &a.app_key_hash,
            &a.bind_secret_sealed,
            &a.trust_client_bind,
            &a.created_at,
            &a.workspace_id,
        ],
    )
    .await?;
    create_api_key(tx, first_key).await
}

pub(crate) async fn app<X: Tx>(tx: &X, app_id: &AppId) -> StoreResult<Option<AppRecord>> {
    query_opt(tx, &sql::APP, &[&app_id.as_str()], rows::app).await
}

pub(crate) async fn apps<X: Tx>(tx: &X) -> StoreResult<Vec<AppRecord>> {
    tx.query(&sql::APPS, &[], rows::app).await
}

pub(crate) async fn create_api_key<X: Tx>(tx: &X, key: &ApiKeyRecord) -> StoreResult<()> {
    let k = key;
    tx.execute(
        &sql::INSERT_KEY,
        &[
            &k.key_id.as_str(),
            &k.app_id.as_str(),
            &k.kind.as_str(),
            &k.material,
            &k.created_at,
            &k.revoked_at,
            &k.last_used_at,
        ],
    )
    .await?;
    Ok(())
}

pub(crate) async fn api_key<X: Tx>(tx: &X, key_id: &KeyId) -> StoreResult<Option<ApiKeyRecord>> {
    query_opt(tx, &sql::API_KEY, &[&key_id.as_str()], rows::api_key).await
}

pub(crate) async fn api_keys<X: Tx>(tx: &X, app_id: &AppId) -> StoreResult<Vec<ApiKeyRecord>> {
    tx.query(&sql::API_KEYS, &[&app_id.as_str()], rows::api_key).await
}

/// False when the app has no such key; revoking a revoked key keeps its first time.
/// Returns false when there is no such app.
pub(crate) async fn update_app<X: Tx>(tx: &X, app_id: &AppId, u: &AppUpdate) -> StoreResult<bool> {
    Ok(tx.execute(&sql::UPDATE_APP, &[&app_id.as_str(), &u.name, &u.trust_client_bind, &u.workspace_id]).await? == 1)
}

/// Stores a new session (and drops the expired ones: sign-ins are rare, so this keeps the
/// table small without a sweep of its own).
pub(crate) async fn put_console_session<X: Tx>(tx: &X, s: &ConsoleSession, now: i64) -> StoreResult<()> {
    tx.execute(&sql::DROP_EXPIRED_SESSIONS, &[&now]).await?;
    tx.execute(&sql::INSERT_SESSION, &[&s.id_hash, &s.who, &s.created_at, &s.expires_at]).await?;
    Ok(())
}

pub(crate) async fn console_session<X: Tx>(tx: &X, id_hash: &str, now: i64) -> StoreResult<Option<ConsoleSession>> {
    query_opt(tx, &sql::SESSION, &[&id_hash, &now], |r| {
        Ok(ConsoleSession { id_hash: r.text(0)?, who: r.text(1)?, created_at: r.i64(2)?, expires_at: r.i64(3)? })
    })
    .await
}

pub(crate) async fn cluster<X: Tx>(tx: &X) -> StoreResult<ClusterView> {
    let connections = tx.query(&sql::CONNECTIONS_PER_NODE, &[], |r| Ok((r.text(0)?, r.i64(1)? as u64))).await?;
    Ok(ClusterView { connections, leases: leases(tx).await? })
}

pub(crate) async fn leases<X: Tx>(tx: &X) -> StoreResult<Vec<(String, String, i64)>> {
    tx.query(&sql::LEASES, &[], |r| Ok((r.text(0)?, r.text(1)?, r.i64(2)?))).await
}

pub(crate) async fn end_console_session<X: Tx>(tx: &X, id_hash: &str) -> StoreResult<bool> {
    Ok(tx.execute(&sql::END_SESSION, &[&id_hash]).await? == 1)
}

pub(crate) async fn revoke_api_key<X: Tx>(tx: &X, app_id: &AppId, key_id: &KeyId, now: i64) -> StoreResult<bool> {
    let args: [&dyn crate::tx::Arg; 2] = [&app_id.as_str(), &key_id.as_str()];
    if !exists(tx, &sql::KEY_OF_APP, &args).await? {
        return Ok(false);
    }
    tx.execute(&sql::REVOKE_KEY, &[&app_id.as_str(), &key_id.as_str(), &now]).await?;
    Ok(true)
}

pub(crate) async fn create_template<X: Tx>(
    tx: &X,
    t: &TemplateRecord,
    max_per_app: usize,
) -> StoreResult<TemplateCreated> {
    let app = t.app_id.as_str();
    // Two creations of one app at once cannot both pass the count (PostgreSQL locks the app).
    query_one(tx, &sql::LOCK_APP, &[&app], |_| Ok(())).await?;
    if exists(tx, &sql::TEMPLATE_EXISTS, &[&app, &t.name]).await? {
        return Ok(TemplateCreated::Exists);
    }
    let count = query_one(tx, &sql::TEMPLATE_COUNT, &[&app], |r| r.i64(0)).await?;
    if count as usize >= max_per_app {
        return Ok(TemplateCreated::TooMany);
    }
    tx.execute(
        &sql::INSERT_TEMPLATE,
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

pub(crate) async fn template<X: Tx>(tx: &X, app_id: &AppId, name: &str) -> StoreResult<Option<TemplateRecord>> {
    query_opt(tx, &sql::TEMPLATE, &[&app_id.as_str(), &name], rows::template).await
}

pub(crate) async fn templates<X: Tx>(tx: &X, app_id: &AppId) -> StoreResult<Vec<TemplateRecord>> {
    tx.query(&sql::TEMPLATES, &[&app_id.as_str()], rows::template).await
}

pub(crate) async fn update_template<X: Tx>(tx: &X, t: &TemplateRecord) -> StoreResult<bool> {
    let changed = tx
        .execute(
            &sql::UPDATE_TEMPLATE,
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
    Ok(changed == 1)
}

pub(crate) async fn delete_template<X: Tx>(tx: &X, app_id: &AppId, name: &str) -> StoreResult<bool> {
    Ok(tx.execute(&sql::DELETE_TEMPLATE, &[&app_id.as_str(), &name]).await? == 1)
}
