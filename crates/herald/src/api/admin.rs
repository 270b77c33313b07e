//! `/admin/v1`: apps and their API keys, for the operator (and `herald app create`).

use axum::Router;
use axum::extract::{Path, State};
use axum::routing::{delete, get};
use serde::Deserialize;
use serde_json::{Value, json};

use herald_core::crypto;
use herald_core::error::ErrorCode;
use herald_core::ids::{AppId, KeyId};
use herald_core::model::{ApiKeyRecord, AppRecord};
use herald_core::state::KeyKind;

use super::{Admin, AppState, Json, LimitedBody, Refusal, parse_json};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/apps", get(list_apps).post(create_app))
        .route("/apps/{app_id}/keys", get(list_keys).post(create_key))
        .route("/apps/{app_id}/keys/{key_id}", delete(revoke_key))
        .route("/node", get(node))
}

/// This node as the cluster sees it: id, bus, connections, leases held.
async fn node(State(state): State<AppState>, _: Admin) -> Json {
    let d = &state.dispatcher;
    Json(json!({
        "nodeId": state.cfg.node_id,
        "bus": d.bus().kind(),
        "busConnected": d.bus().available(),
        "connections": d.hub().connections(),
        "leases": d.leases_held(),
    }))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CreateApp {
    name: String,
    #[serde(default)]
    trust_client_bind: bool,
    workspace_id: Option<String>,
}

async fn create_app(State(state): State<AppState>, _: Admin, LimitedBody(body): LimitedBody) -> Result<Json, Refusal> {
    let req: CreateApp = parse_json(&body)?;
    let name = req.name.trim().to_string();
    if name.is_empty() || name.chars().count() > 128 {
        return Err(Refusal::new(ErrorCode::InvalidParam, "name must be 1 to 128 characters"));
    }
    let now = herald_core::now_ms();
    let app_id = AppId::generate();
    let app_key = crypto::random_secret();
    let bind_secret = crypto::random_secret();
    let api_secret = crypto::random_secret();
    let key_id = KeyId::generate();
    let app = AppRecord {
        app_id: app_id.clone(),
        name: name.clone(),
        app_key_hash: crypto::sha256_hex(app_key.as_bytes()),
        bind_secret_sealed: state.master.seal(bind_secret.as_bytes()),
        trust_client_bind: req.trust_client_bind,
        created_at: now,
    };
    let key = ApiKeyRecord {
        key_id: key_id.clone(),
        app_id: app_id.clone(),
        kind: KeyKind::Hmac,
        material: state.master.seal(api_secret.as_bytes()),
        created_at: now,
        revoked_at: None,
    };
    state.store.create_app(app, key).await?;
    tracing::info!(app = %app_id, %name, "app created");
    Ok(Json(json!({
        "appId": app_id,
        "name": name,
        "workspaceId": req.workspace_id,
        "appKey": app_key,
        "apiKeyId": key_id,
        "apiSecret": api_secret,
        "bindSecret": bind_secret,
        "trustClientBind": req.trust_client_bind,
    })))
}

async fn list_apps(State(state): State<AppState>, _: Admin) -> Result<Json, Refusal> {
    let apps: Vec<Value> = state
        .store
        .apps()
        .await?
        .iter()
        .map(|a| json!({"appId": a.app_id, "name": a.name, "trustClientBind": a.trust_client_bind, "createdAt": a.created_at}))
        .collect();
    Ok(Json(json!({"apps": apps})))
}

async fn existing_app(state: &AppState, app_id: String) -> Result<AppId, Refusal> {
    let app_id = AppId::new(app_id);
    match state.store.app(&app_id).await? {
        Some(_) => Ok(app_id),
        None => Err(Refusal::new(ErrorCode::AppNotExist, "no such app")),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CreateKey {
    #[serde(rename = "type")]
    kind: String,
    /// PEM of the RSA public key ("PUBLIC KEY" or "RSA PUBLIC KEY"), for type "rsa".
    public_key: Option<String>,
}

async fn create_key(
    State(state): State<AppState>,
    _: Admin,
    Path(app_id): Path<String>,
    LimitedBody(body): LimitedBody,
) -> Result<Json, Refusal> {
    let app_id = existing_app(&state, app_id).await?;
    let req: CreateKey = parse_json(&body)?;
    let key_id = KeyId::generate();
    let (kind, material, secret) = match (KeyKind::parse(&req.kind), req.public_key) {
        (Some(KeyKind::Hmac), None) => {
            let secret = crypto::random_secret();
            (KeyKind::Hmac, state.master.seal(secret.as_bytes()), Some(secret))
        }
        (Some(KeyKind::Rsa), Some(pem)) => {
            let der = crypto::pem_to_der(&pem)
                .filter(|der| crypto::rsa_public_key_valid(der))
                .ok_or_else(|| Refusal::new(ErrorCode::InvalidParam, "publicKey must be a PEM RSA public key"))?;
            (KeyKind::Rsa, crypto::b64url(&der), None)
        }
        _ => {
            return Err(Refusal::new(
                ErrorCode::InvalidParam,
                "type must be \"hmac\" (no publicKey) or \"rsa\" (with publicKey as PEM)",
            ));
        }
    };
    let record = ApiKeyRecord {
        key_id: key_id.clone(),
        app_id,
        kind,
        material,
        created_at: herald_core::now_ms(),
        revoked_at: None,
    };
    state.store.create_api_key(record).await?;
    Ok(Json(json!({"keyId": key_id, "type": kind, "secret": secret})))
}

async fn list_keys(State(state): State<AppState>, _: Admin, Path(app_id): Path<String>) -> Result<Json, Refusal> {
    let app_id = existing_app(&state, app_id).await?;
    let keys: Vec<Value> = state
        .store
        .api_keys(&app_id)
        .await?
        .iter()
        .map(|k| json!({"keyId": k.key_id, "type": k.kind, "createdAt": k.created_at, "revokedAt": k.revoked_at}))
        .collect();
    Ok(Json(json!({"keys": keys})))
}

async fn revoke_key(
    State(state): State<AppState>,
    _: Admin,
    Path((app_id, key_id)): Path<(String, String)>,
) -> Result<Json, Refusal> {
    let app_id = existing_app(&state, app_id).await?;
    let key_id = KeyId::new(key_id);
    if !state.store.revoke_api_key(&app_id, &key_id, herald_core::now_ms()).await? {
        return Err(Refusal::new(ErrorCode::KeyNotExist, "no such key in this app"));
    }
    state.verifier.forget(&key_id);
    // The other nodes drop the key from their caches now rather than within key_cache_secs.
    state.dispatcher.announce_key_revoked(key_id.clone()).await;
    Ok(Json(json!({"keyId": key_id, "revoked": true})))
}
