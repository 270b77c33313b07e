//! `/admin/v1`: apps and their API keys, for the operator (and `herald app create`).

use axum::extract::{Path, State};
use serde::Deserialize;
use serde_json::{Value, json};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use herald_core::crypto;
use herald_core::error::ErrorCode;
use herald_core::ids::{AppId, KeyId};
use herald_core::model::{ApiKeyRecord, AppRecord};
use herald_core::state::KeyKind;

use super::envelope::Refusals;
use super::{Admin, AppState, Json, LimitedBody, Refusal, parse_json};

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_apps, create_app))
        .routes(routes!(show_app, update_app))
        .routes(routes!(import_devices))
        .routes(routes!(list_keys, create_key))
        .routes(routes!(revoke_key))
        .routes(routes!(node))
        .routes(routes!(cluster))
}

/// This node as the cluster sees it: `{nodeId, bus (local or nats), busConnected,
/// busDownSince (Unix ms, null while connected), clusterDegraded, connections, leases}`.
#[utoipa::path(get, path = "/node", tag = "admin",
    responses((status = 200, description = "This node", body = serde_json::Value), Refusals),
    security(("admin" = [])))]
async fn node(State(state): State<AppState>, _: Admin) -> Json {
    let d = &state.dispatcher;
    Json(json!({
        "nodeId": state.cfg.node_id,
        "bus": d.bus().kind(),
        "busConnected": d.bus().available(),
        "busDownSince": d.bus().down_since(),
        "clusterDegraded": d.degraded(),
        "connections": d.hub().connections(),
        "leases": d.leases_held(),
    }))
}

/// The cluster as the store records it: `{nodes: [{nodeId, connections}], leases: [{name,
/// holder, expiresAt}]}`. A node is listed while it holds device connections (their
/// presence in the store); the leases name the node doing each piece of work that one node
/// does (scheduler, expiry sweep, analytics tally). On a single node the same, for itself.
#[utoipa::path(get, path = "/cluster", tag = "admin",
    responses((status = 200, description = "Nodes and leases", body = serde_json::Value), Refusals),
    security(("admin" = [])))]
async fn cluster(State(state): State<AppState>, _: Admin) -> Result<Json, Refusal> {
    let view = state.store.cluster().await?;
    let nodes: Vec<Value> = view.connections.iter().map(|(n, c)| json!({"nodeId": n, "connections": c})).collect();
    let leases: Vec<Value> =
        view.leases.iter().map(|(n, h, e)| json!({"name": n, "holder": h, "expiresAt": e})).collect();
    Ok(Json(json!({"nodes": nodes, "leases": leases})))
}

/// `POST /admin/v1/apps`.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct CreateApp {
    /// 1-128 characters.
    name: String,
    /// Accept a device's bind without a proof from the app's server (default false).
    #[serde(default)]
    trust_client_bind: bool,
    /// The MPS workspace the app answers for: the MPS endpoint's `WorkspaceId` must then be
    /// this (1-64 printable ASCII characters, no spaces); without it any is accepted.
    workspace_id: Option<String>,
}

/// A workspace id as given: 1-64 printable ASCII characters without spaces.
fn check_workspace(w: &str) -> Result<(), Refusal> {
    if (1..=64).contains(&w.len()) && w.bytes().all(|b| b.is_ascii_graphic()) {
        return Ok(());
    }
    Err(Refusal::new(ErrorCode::InvalidParam, "workspaceId must be 1 to 64 printable ASCII characters without spaces"))
}

/// Create an app with its first HMAC key. The answer shows the secrets once:
/// `{appId, name, workspaceId, appKey, apiKeyId, apiSecret, bindSecret, trustClientBind}`.
#[utoipa::path(post, path = "/apps", tag = "admin", request_body = CreateApp,
    responses((status = 200, description = "The app and its secrets", body = serde_json::Value), Refusals),
    security(("admin" = [])))]
async fn create_app(State(state): State<AppState>, _: Admin, LimitedBody(body): LimitedBody) -> Result<Json, Refusal> {
    let req: CreateApp = parse_json(&body)?;
    let name = req.name.trim().to_string();
    if name.is_empty() || name.chars().count() > 128 {
        return Err(Refusal::new(ErrorCode::InvalidParam, "name must be 1 to 128 characters"));
    }
    if let Some(w) = &req.workspace_id {
        check_workspace(w)?;
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
        workspace_id: req.workspace_id.clone(),
    };
    let key = ApiKeyRecord {
        key_id: key_id.clone(),
        app_id: app_id.clone(),
        kind: KeyKind::Hmac,
        material: state.master.seal(api_secret.as_bytes()),
        created_at: now,
        revoked_at: None,
        last_used_at: None,
    };
    state.store.create_app(app, key).await?;
    tracing::info!(app = %app_id, name = %herald_core::untrusted::Untrusted(&name), "app created");
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

/// Every app: `{apps: [{appId, name, trustClientBind, createdAt, workspaceId}]}`.
#[utoipa::path(get, path = "/apps", tag = "admin",
    responses((status = 200, description = "The apps", body = serde_json::Value), Refusals),
    security(("admin" = [])))]
async fn list_apps(State(state): State<AppState>, _: Admin) -> Result<Json, Refusal> {
    let apps: Vec<Value> = state.store.apps().await?.iter().map(app_view).collect();
    Ok(Json(json!({"apps": apps})))
}

/// One app: `{appId, name, trustClientBind, createdAt, workspaceId, bindSecret, keys}`, `keys` as
/// `GET /admin/v1/apps/{appId}/keys` lists them; 404 `APP_NOT_EXIST`. The bind secret is
/// shown to the admin (the app's server needs it to sign binds; the app key is kept only as
/// a hash and cannot be shown again).
#[utoipa::path(get, path = "/apps/{appId}", tag = "admin",
    params(("appId" = String, Path, description = "The app")),
    responses((status = 200, description = "The app", body = serde_json::Value), Refusals),
    security(("admin" = [])))]
async fn show_app(State(state): State<AppState>, _: Admin, Path(app_id): Path<String>) -> Result<Json, Refusal> {
    let app_id = AppId::new(app_id);
    let Some(app) = state.store.app(&app_id).await? else {
        return Err(Refusal::new(ErrorCode::AppNotExist, "no such app"));
    };
    let bind_secret = state.master.open(&app.bind_secret_sealed).map(|b| String::from_utf8_lossy(&b).into_owned());
    let mut view = app_view(&app);
    view["bindSecret"] = json!(bind_secret);
    view["keys"] = json!(key_views(&state, &app_id).await?);
    Ok(Json(view))
}

/// An app as the admin API lists it: `{appId, name, trustClientBind, createdAt, workspaceId}`.
fn app_view(a: &AppRecord) -> Value {
    json!({"appId": a.app_id, "name": a.name, "trustClientBind": a.trust_client_bind, "createdAt": a.created_at,
        "workspaceId": a.workspace_id})
}

/// `PATCH /admin/v1/apps/{appId}`: what is given changes.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct UpdateApp {
    /// 1-128 characters.
    name: Option<String>,
    /// Accept a device's bind without a proof from the app's server.
    trust_client_bind: Option<bool>,
    /// The MPS workspace the app answers for; `""` clears it (any is then accepted).
    workspace_id: Option<String>,
}

/// Rename an app, set whether it trusts client binds or its MPS workspace; answers the app
/// as `GET` does without its keys and secret: `{appId, name, trustClientBind, createdAt,
/// workspaceId}`.
#[utoipa::path(patch, path = "/apps/{appId}", tag = "admin", request_body = UpdateApp,
    params(("appId" = String, Path, description = "The app")),
    responses((status = 200, description = "The app", body = serde_json::Value), Refusals),
    security(("admin" = [])))]
async fn update_app(
    State(state): State<AppState>,
    _: Admin,
    Path(app_id): Path<String>,
    LimitedBody(body): LimitedBody,
) -> Result<Json, Refusal> {
    let app_id = existing_app(&state, app_id).await?;
    let req: UpdateApp = parse_json(&body)?;
    let name = req.name.map(|n| n.trim().to_string());
    if name.as_ref().is_some_and(|n| n.is_empty() || n.chars().count() > 128) {
        return Err(Refusal::new(ErrorCode::InvalidParam, "name must be 1 to 128 characters"));
    }
    if let Some(w) = req.workspace_id.as_deref().filter(|w| !w.is_empty()) {
        check_workspace(w)?;
    }
    let update = herald_core::model::AppUpdate {
        name,
        trust_client_bind: req.trust_client_bind,
        workspace_id: req.workspace_id,
    };
    if !state.store.update_app(&app_id, update).await? {
        return Err(Refusal::new(ErrorCode::AppNotExist, "no such app"));
    }
    state.verifier.forget_workspace(&app_id);
    let app = state.store.app(&app_id).await?.ok_or_else(|| Refusal::new(ErrorCode::AppNotExist, "no such app"))?;
    Ok(Json(app_view(&app)))
}

/// The most devices one import call takes (its body stays under the request limit).
const MAX_IMPORT: usize = 500;

/// `POST /admin/v1/apps/{appId}/devices/import`.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct ImportDevices {
    /// 1-500 devices, each `{installId, platform, appVersion?, osVersion?, model?,
    /// vendorTokens?, userId?}` with the limits of `/device/v1/register`.
    #[schema(value_type = Vec<Object>)]
    devices: Vec<Value>,
}

/// One device of an import.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ImportRow {
    install_id: String,
    platform: String,
    app_version: Option<String>,
    os_version: Option<String>,
    model: Option<String>,
    vendor_tokens: Option<serde_json::Map<String, Value>>,
    user_id: Option<String>,
}

/// Imports devices from another push provider's export, with their vendor tokens (and
/// users), so that vendor channels reach them before the app registers with Herald. An
/// imported device has no token: its first `/device/v1/register` (same installId) takes
/// the record over without one. Each device is checked as a registration; a refused one is
/// listed and the others are imported. An installId imported before and not yet registered
/// is updated (an import can be run again); one a device has registered is left as it is
/// and refused. `{imported, updated, refused: [{index, installId, code, reason}]}`.
#[utoipa::path(post, path = "/apps/{appId}/devices/import", tag = "admin", request_body = ImportDevices,
    params(("appId" = String, Path, description = "The app")),
    responses((status = 200, description = "What was imported and what refused", body = serde_json::Value), Refusals),
    security(("admin" = [])))]
async fn import_devices(
    State(state): State<AppState>,
    _: Admin,
    Path(app_id): Path<String>,
    LimitedBody(body): LimitedBody,
) -> Result<Json, Refusal> {
    let app_id = existing_app(&state, app_id).await?;
    let req: ImportDevices = parse_json(&body)?;
    if req.devices.is_empty() || req.devices.len() > MAX_IMPORT {
        return Err(Refusal::new(ErrorCode::InvalidParam, format!("devices must hold 1 to {MAX_IMPORT} devices")));
    }
    let (mut imported, mut updated, mut refused) = (0u64, 0u64, Vec::new());
    for (index, row) in req.devices.into_iter().enumerate() {
        let install = row.get("installId").and_then(Value::as_str).map(|s| s.chars().take(128).collect::<String>());
        match import_one(&state, &app_id, row).await {
            Ok(true) => imported += 1,
            Ok(false) => updated += 1,
            Err(Refusal(e)) => refused.push(json!({
                "index": index, "installId": install, "code": e.code.as_str(), "reason": e.message,
            })),
        }
    }
    tracing::info!(app = %app_id, imported, updated, refused = refused.len(), "devices imported");
    Ok(Json(json!({"imported": imported, "updated": updated, "refused": refused})))
}

/// Imports one device: `true` when it is new, `false` when an earlier import of it was
/// updated.
async fn import_one(state: &AppState, app_id: &AppId, row: Value) -> Result<bool, Refusal> {
    let row: ImportRow = serde_json::from_value(row).map_err(|_| {
        Refusal::new(
            ErrorCode::InvalidParam,
            "a device is an object of installId, platform, appVersion, osVersion, model, vendorTokens and userId",
        )
    })?;
    let user = row.user_id.map(super::devices::user_id).transpose()?;
    let body = super::device::RegisterBody {
        platform: row.platform,
        install_id: row.install_id,
        app_version: row.app_version,
        os_version: row.os_version,
        model: row.model,
        vendor_tokens: row.vendor_tokens,
    };
    let now = herald_core::now_ms();
    let token_hash = format!("{}{}", herald_store::IMPORTED_TOKEN_PREFIX, crypto::random_alnum(32));
    let registration = super::device::checked(app_id.clone(), body, token_hash, None, now)?;
    let (device, created) = match state.store.register_device(registration).await? {
        herald_store::Registered::Created(device) => (device, true),
        // Only an imported device not registered yet is renewed without a proof.
        herald_store::Registered::Renewed(device) => (device, false),
        herald_store::Registered::Taken => {
            return Err(Refusal::new(
                ErrorCode::DeviceAlreadyRegistered,
                "a device of the app registered this installId",
            ));
        }
    };
    if let Some(user) = user {
        state.dispatcher.bind(app_id, &device.device_id, &user, now).await?;
    }
    Ok(created)
}

pub(super) async fn existing_app(state: &AppState, app_id: String) -> Result<AppId, Refusal> {
    let app_id = AppId::new(app_id);
    match state.store.app(&app_id).await? {
        Some(_) => Ok(app_id),
        None => Err(Refusal::new(ErrorCode::AppNotExist, "no such app")),
    }
}

/// `POST /admin/v1/apps/{appId}/keys`.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct CreateKey {
    /// `hmac` (Herald makes the secret) or `rsa` (with publicKey).
    #[serde(rename = "type")]
    #[schema(example = "hmac")]
    kind: String,
    /// PEM of the RSA public key ("PUBLIC KEY" or "RSA PUBLIC KEY"), for type "rsa".
    public_key: Option<String>,
}

/// Add an API key to an app: `{keyId, type, secret}` (the secret of an HMAC key, shown
/// once; null for RSA).
#[utoipa::path(post, path = "/apps/{appId}/keys", tag = "admin", request_body = CreateKey,
    params(("appId" = String, Path, description = "The app")),
    responses((status = 200, description = "The key", body = serde_json::Value), Refusals),
    security(("admin" = [])))]
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
            let der = crypto::pem_to_der(&pem).filter(|der| crypto::rsa_public_key_valid(der)).ok_or_else(|| {
                Refusal::new(ErrorCode::InvalidParam, "publicKey must be a PEM RSA public key of 2048 to 8192 bits")
            })?;
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
        last_used_at: None,
    };
    state.store.create_api_key(record).await?;
    Ok(Json(json!({"keyId": key_id, "type": kind, "secret": secret})))
}

/// The app's keys: `{keys: [{keyId, type, createdAt, revokedAt}]}`.
#[utoipa::path(get, path = "/apps/{appId}/keys", tag = "admin",
    params(("appId" = String, Path, description = "The app")),
    responses((status = 200, description = "The keys", body = serde_json::Value), Refusals),
    security(("admin" = [])))]
async fn list_keys(State(state): State<AppState>, _: Admin, Path(app_id): Path<String>) -> Result<Json, Refusal> {
    let app_id = existing_app(&state, app_id).await?;
    Ok(Json(json!({"keys": key_views(&state, &app_id).await?})))
}

/// The app's API keys as the admin API shows them (never a secret).
async fn key_views(state: &AppState, app_id: &AppId) -> Result<Vec<Value>, Refusal> {
    let keys = state.store.api_keys(app_id).await?;
    Ok(keys
        .iter()
        .map(|k| {
            json!({"keyId": k.key_id, "type": k.kind, "createdAt": k.created_at, "revokedAt": k.revoked_at,
                "lastUsedAt": k.last_used_at})
        })
        .collect())
}

/// Revoke a key: signatures made with it are refused from now on, on every node.
#[utoipa::path(delete, path = "/apps/{appId}/keys/{keyId}", tag = "admin",
    params(("appId" = String, Path, description = "The app"), ("keyId" = String, Path, description = "The key")),
    responses((status = 200, description = "`{keyId, revoked: true}`", body = serde_json::Value), Refusals),
    security(("admin" = [])))]
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
