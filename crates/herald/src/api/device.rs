//! `/device/v1`: what an app on a device calls. Registration authenticates with the app
//! key (and, to register an install again, with the device's current token); everything
//! after with the device token it returned.

use axum::extract::{FromRequestParts, State};
use axum::http::HeaderMap;
use axum::http::request::Parts;
use herald_core::crypto;
use herald_core::error::ErrorCode;
use herald_core::events::{EventReport, parse_events};
use herald_core::ids::{AppId, DeviceId, KeyId, valid_external_id};
use herald_core::model::{DeviceRegistration, StatusUpdate};
use herald_core::signing::bind_message;
use herald_core::state::{Channel, Platform};
use herald_store::Registered;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::devices::user_id;
use super::envelope::Refusals;
use super::extract::bearer;
use super::{AppState, DeviceAuth, Json, LimitedBody, Refusal, parse_json};

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(register))
        .routes(routes!(bind))
        .routes(routes!(unbind))
        .routes(routes!(report))
        .routes(routes!(events))
        .routes(routes!(webpush_key))
}

/// The app's VAPID public key (base64url), which a browser passes to
/// `pushManager.subscribe` as `applicationServerKey`: `{publicKey}`.
#[utoipa::path(get, path = "/webpush-key", tag = "device",
    responses((status = 200, description = "`{publicKey}`", body = serde_json::Value), Refusals),
    security(("device" = [])))]
async fn webpush_key(State(state): State<AppState>, DeviceAuth(device): DeviceAuth) -> Result<Json, Refusal> {
    let channel = state.store.channel(&device.app_id, Channel::WebPush).await?;
    let key = channel.as_ref().and_then(|c| c.settings.get("publicKey")).cloned();
    match key {
        Some(key) => Ok(Json(json!({"publicKey": key}))),
        None => Err(Refusal::new(ErrorCode::ChannelNotConfigured, "the app has no webpush channel")),
    }
}

/// `POST /device/v1/register`.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct RegisterBody {
    #[schema(value_type = Platform)]
    pub(super) platform: String,
    /// The app's own id of this installation, 1-128 characters.
    pub(super) install_id: String,
    /// At most 128 characters, as the next three.
    pub(super) app_version: Option<String>,
    pub(super) os_version: Option<String>,
    pub(super) model: Option<String>,
    /// `{channel: token}` for vendor channels (`apns`, `fcm`, `hms`, `xiaomi`, `webpush`);
    /// null removes one.
    #[schema(value_type = Option<Object>)]
    pub(super) vendor_tokens: Option<Map<String, Value>>,
}

/// What a registration answers.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct Registration {
    device_id: String,
    /// The bearer token of every later device call and the MQTT password; keep it.
    device_token: String,
}

/// Checks reported vendor tokens and puts each in its stored form (docs/channels.md gives
/// each kind's limits).
fn check_vendor_tokens(tokens: Option<Map<String, Value>>) -> Result<Option<Map<String, Value>>, Refusal> {
    tokens
        .map(herald_core::channel::tokens::check_reported)
        .transpose()
        .map_err(|why| Refusal::new(ErrorCode::InvalidParam, why))
}

/// A registration of `body` for `app_id` (a new device's id, the token's hash, the proof
/// of a registration again), once every field is checked: what `/device/v1/register` and
/// the admin import accept alike.
pub(super) fn checked(
    app_id: AppId,
    body: RegisterBody,
    token_hash: String,
    proof_token_hash: Option<String>,
    now: i64,
) -> Result<DeviceRegistration, Refusal> {
    let platform = Platform::parse(&body.platform).ok_or_else(|| {
        let names: Vec<&str> = Platform::ALL.iter().map(|p| p.as_str()).collect();
        Refusal::new(ErrorCode::InvalidParam, format!("platform must be one of {}", names.join(", ")))
    })?;
    if !valid_external_id(&body.install_id) {
        return Err(Refusal::new(
            ErrorCode::InvalidParam,
            "installId must be 1 to 128 characters without control characters",
        ));
    }
    short_text("appVersion", &body.app_version)?;
    short_text("osVersion", &body.os_version)?;
    short_text("model", &body.model)?;
    Ok(DeviceRegistration {
        app_id,
        install_id: body.install_id,
        new_device_id: DeviceId::generate(),
        token_hash,
        proof_token_hash,
        platform,
        app_version: body.app_version,
        os_version: body.os_version,
        model: body.model,
        vendor_tokens: check_vendor_tokens(body.vendor_tokens)?,
        now,
    })
}

fn short_text(name: &str, value: &Option<String>) -> Result<(), Refusal> {
    match value {
        Some(v) if v.chars().count() > 128 => {
            Err(Refusal::new(ErrorCode::InvalidParam, format!("{name} is longer than 128 characters")))
        }
        _ => Ok(()),
    }
}

/// The optional `Authorization: Bearer <deviceToken>` of a registration: the proof that a
/// registration of a known installId comes from that device.
struct OptionalBearer(Option<String>);

impl FromRequestParts<AppState> for OptionalBearer {
    type Rejection = Refusal;

    async fn from_request_parts(parts: &mut Parts, _: &AppState) -> Result<Self, Refusal> {
        Ok(OptionalBearer(bearer(parts).map(str::to_owned)))
    }
}

/// Register an installation (or register it again) and get its device token.
///
/// Registering an installId that is registered already needs the device's current token
/// as `Authorization: Bearer`; without it the answer is 409 `DEVICE_ALREADY_REGISTERED`
/// (see docs/device-protocol.md).
#[utoipa::path(post, path = "/register", tag = "device", operation_id = "device_register", request_body = RegisterBody,
    params(("X-Herald-App" = String, Header, description = "The app id")),
    responses((status = 200, description = "Registered", body = Registration), Refusals),
    security(("appKey" = []), ("appKey" = [], "device" = [])))]
async fn register(
    State(state): State<AppState>,
    headers: HeaderMap,
    console: Option<axum::Extension<crate::console::ConsoleCall>>,
    OptionalBearer(current_token): OptionalBearer,
    LimitedBody(body): LimitedBody,
) -> Result<Json, Refusal> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let refuse = || Refusal::new(ErrorCode::AppKeyInvalid, "X-Herald-App and X-Herald-App-Key do not name an app");
    // The console's test device: its operator signed in with the admin token, which stands
    // for the app key (the console never knows an app key: only its hash is kept).
    let app_id = match console.and_then(|c| c.0.app_id) {
        Some(app_id) => state.store.app(&app_id).await?.ok_or_else(refuse)?.app_id,
        None => {
            let app_id = AppId::new(header("x-herald-app"));
            let app_key = header("x-herald-app-key");
            let app = state.store.app(&app_id).await?.ok_or_else(refuse)?;
            if !crypto::constant_time_eq(crypto::sha256_hex(app_key.as_bytes()).as_bytes(), app.app_key_hash.as_bytes())
            {
                return Err(refuse());
            }
            app_id
        }
    };
    let body: RegisterBody = parse_json(&body)?;
    let token = crypto::random_secret();
    let proof = current_token.map(|t| crypto::sha256_hex(t.as_bytes()));
    let registration = checked(app_id, body, crypto::sha256_hex(token.as_bytes()), proof, herald_core::now_ms())?;
    let registered = state.store.register_device(registration).await?;
    match registered {
        Registered::Created(device) | Registered::Renewed(device) => {
            let answer = Registration { device_id: device.device_id.to_string(), device_token: token };
            Ok(Json(serde_json::to_value(answer).unwrap_or_default()))
        }
        Registered::Taken => Err(Refusal::new(
            ErrorCode::DeviceAlreadyRegistered,
            "this installId is registered: send the device's current token as Authorization: Bearer, \
             or register with a new installId",
        )),
    }
}

/// `POST /device/v1/bind`.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct BindBody {
    /// 1-128 characters without control characters.
    user_id: String,
    /// base64url HMAC-SHA256 of `deviceId\nuserId\nexpiresAt` with the app's bind secret,
    /// made by the app's server; not needed when the app trusts client binds.
    bind_proof: Option<String>,
    /// Unix milliseconds after which the proof is no longer accepted: at most
    /// `limits.bind_proof_max_secs` (600 s) from the server's clock. A proof binds once.
    expires_at: Option<i64>,
}

/// Bind a user to this device. Messages waiting for the user are delivered to it.
#[utoipa::path(post, path = "/bind", tag = "device", operation_id = "device_bind", request_body = BindBody,
    responses((status = 200, description = "`{deviceId, userId}`", body = serde_json::Value), Refusals),
    security(("device" = [])))]
async fn bind(
    State(state): State<AppState>,
    DeviceAuth(device): DeviceAuth,
    LimitedBody(body): LimitedBody,
) -> Result<Json, Refusal> {
    let body: BindBody = parse_json(&body)?;
    let user = user_id(body.user_id)?;
    let now = herald_core::now_ms();
    let app = state
        .store
        .app(&device.app_id)
        .await?
        .ok_or_else(|| Refusal::new(ErrorCode::AppNotExist, "the device's app is gone"))?;
    if !app.trust_client_bind {
        let invalid = |why: &str| Refusal::new(ErrorCode::BindProofInvalid, why);
        let (Some(proof), Some(expires_at)) = (body.bind_proof.as_deref(), body.expires_at) else {
            return Err(invalid("this app requires bindProof and expiresAt from the app's server"));
        };
        if expires_at <= now {
            return Err(invalid("the bind proof has expired"));
        }
        let longest = state.cfg.limits.bind_proof_max_secs;
        if expires_at > now + longest * 1000 {
            return Err(invalid(&format!(
                "expiresAt is more than {longest} s away: a bind proof is valid at most that long"
            )));
        }
        let secret = state.master.open(&app.bind_secret_sealed).ok_or_else(|| {
            tracing::error!(app = %app.app_id, "bind secret cannot be decrypted: wrong master key?");
            Refusal::new(ErrorCode::SystemError, "internal error")
        })?;
        let given = crypto::b64url_decode(proof).unwrap_or_default();
        let message = bind_message(device.device_id.as_str(), user.as_str(), expires_at);
        if !crypto::hmac_sha256_verify(&secret, message.as_bytes(), &given) {
            return Err(invalid("the bind proof does not match this device, user and expiry"));
        }
        // Once it held: a proof seen on the wire cannot bind again while it is valid.
        let proofs = KeyId::new(format!("bind-proofs-{}", app.app_id));
        if !state.store.claim_nonce(&proofs, &crypto::b64url(&given), now, expires_at).await? {
            return Err(invalid("this bind proof was already used; ask the app's server for a new one"));
        }
    }
    if !state.dispatcher.bind(&device.app_id, &device.device_id, &user, now).await? {
        return Err(Refusal::new(ErrorCode::DeviceNotExist, "the device is gone"));
    }
    Ok(Json(json!({"deviceId": device.device_id, "userId": user})))
}

/// Unbind this device's user.
#[utoipa::path(post, path = "/unbind", tag = "device", operation_id = "device_unbind",
    responses((status = 200, description = "`{deviceId, userId: null}`", body = serde_json::Value), Refusals),
    security(("device" = [])))]
async fn unbind(State(state): State<AppState>, DeviceAuth(device): DeviceAuth) -> Result<Json, Refusal> {
    state.dispatcher.unbind(&device.app_id, &device.device_id, herald_core::now_ms()).await?;
    Ok(Json(json!({"deviceId": device.device_id, "userId": null})))
}

/// `POST /device/v1/report`.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct ReportBody {
    /// At most 128 characters.
    app_version: Option<String>,
    /// As at registration: `{channel: token}`, null removes one; others are kept.
    #[schema(value_type = Option<Object>)]
    vendor_tokens: Option<Map<String, Value>>,
}

/// Report the app version and vendor tokens.
#[utoipa::path(post, path = "/report", tag = "device", operation_id = "device_report", request_body = ReportBody,
    responses((status = 200, description = "`{deviceId}`", body = serde_json::Value), Refusals),
    security(("device" = [])))]
async fn report(
    State(state): State<AppState>,
    DeviceAuth(device): DeviceAuth,
    LimitedBody(body): LimitedBody,
) -> Result<Json, Refusal> {
    let body: ReportBody = parse_json(&body)?;
    short_text("appVersion", &body.app_version)?;
    let vendor_tokens = check_vendor_tokens(body.vendor_tokens)?;
    state.store.report_device(&device.app_id, &device.device_id, body.app_version, vendor_tokens).await?;
    Ok(Json(json!({"deviceId": device.device_id})))
}

/// Report that messages arrived, were opened or were ignored (one event or an array).
#[utoipa::path(post, path = "/events", tag = "device", operation_id = "device_events", request_body = EventReport,
    responses((status = 200, description = "`{accepted: n}`", body = serde_json::Value), Refusals),
    security(("device" = [])))]
async fn events(
    State(state): State<AppState>,
    DeviceAuth(device): DeviceAuth,
    LimitedBody(body): LimitedBody,
) -> Result<Json, Refusal> {
    let now = herald_core::now_ms();
    let events = parse_events(&body, now)?;
    let n = events.len();
    for e in events {
        // The update only touches this device's own deliveries.
        state.store.record(StatusUpdate::Event {
            message_id: e.message_id,
            device_id: device.device_id.clone(),
            event: e.event,
            at: e.at,
            received_at: now,
        });
    }
    Ok(Json(json!({"accepted": n})))
}
