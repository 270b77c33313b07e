//! MPS's device actions from the app's server: `PushBind`, `PushUnBind`, `PushReport` and
//! `PushQueryDeviceState`, on `/v1/devices`. MPS's `DeliveryToken` is Herald's `deviceId`.

use axum::extract::{Path, State};
use serde_json::{Value, json};

use herald_core::error::ErrorCode;
use herald_core::ids::DeviceId;

use super::super::{AppState, Json, Refusal, Signed, devices};

pub(super) const ACTIONS: [&str; 4] = ["PushBind", "PushUnBind", "PushReport", "PushQueryDeviceState"];

/// Runs one of [`ACTIONS`]: its MPS answer (a refusal of what was asked included), or a
/// refusal of the node or of the app's pace, which the gateway answers.
pub(super) async fn run(state: &AppState, action: &str, signed: Signed) -> Result<Value, Refusal> {
    let params: Value = serde_json::from_slice(&signed.body).unwrap_or_default();
    let text = |name: &str| params[name].as_str().map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned);
    let app_id = signed.app_id.clone();
    let with_body = |body: Value| Signed { app_id: app_id.clone(), body: body.to_string().into() };
    if action == "PushQueryDeviceState" {
        let outcome = query_state(state, &text("target").unwrap_or_default(), text("targetType"), &with_body).await;
        return match outcome {
            Ok(data) => {
                Ok(json!({"RequestId": request_id(), "Success": true, "Code": "OK", "Message": "OK", "Data": data}))
            }
            Err(Refusal(e)) if super::of_the_node(&e) => Err(Refusal(e)),
            Err(Refusal(e)) => {
                Ok(json!({"RequestId": request_id(), "Success": false, "Code": e.code.as_str(), "Message": e.message}))
            }
        };
    }
    let Some(token) = text("deliveryToken") else {
        return settle(Err(Refusal::new(ErrorCode::InvalidParam, "DeliveryToken (the device's id) is required")));
    };
    let outcome = match action {
        "PushBind" => {
            let user = text("userId").unwrap_or_default();
            devices::bind(State(state.clone()), Path(token.clone()), with_body(json!({"userId": user})))
                .await
                .map(|_| ())
        }
        "PushUnBind" => unbind(state, &token, text("userId"), &with_body).await,
        _ => report(state, &signed.app_id, &token, &params).await,
    };
    settle(outcome.map(|()| token))
}

fn request_id() -> String {
    herald_core::crypto::random_alnum(20)
}

/// The push envelope's answer: `Data` is the device.
fn settle(outcome: Result<String, Refusal>) -> Result<Value, Refusal> {
    match outcome {
        Ok(device) => Ok(json!({"RequestId": request_id(), "ResultCode": "OK", "ResultMessage": "OK",
            "PushResult": {"Success": true, "ResultMsg": "OK", "Data": device}})),
        Err(Refusal(e)) if super::of_the_node(&e) => Err(Refusal(e)),
        Err(Refusal(e)) => {
            Ok(json!({"RequestId": request_id(), "ResultCode": e.code.as_str(), "ResultMessage": e.message,
            "PushResult": {"Success": false, "ResultMsg": e.message, "Data": Value::Null}}))
        }
    }
}

/// Unbinds the device's user; with `UserId`, only when that is the user bound.
async fn unbind(
    state: &AppState,
    token: &str,
    user: Option<String>,
    with_body: &impl Fn(Value) -> Signed,
) -> Result<(), Refusal> {
    let signed = with_body(Value::Null);
    if let Some(user) = user {
        let device = state.store.device(&signed.app_id, &DeviceId::new(token)).await?;
        let bound = device.as_ref().and_then(|d| d.user_id.as_ref()).map(|u| u.as_str().to_owned());
        if device.is_some() && bound.as_deref() != Some(user.as_str()) {
            return Err(Refusal::new(ErrorCode::InvalidParam, "the device is not bound to this UserId"));
        }
    }
    devices::unbind(State(state.clone()), Path(token.to_owned()), signed).await.map(|_| ())
}

/// The app version of a device, as its server reports it. Vendor tokens come from the
/// device itself (`POST /device/v1/report`): MPS's numeric `ThirdChannel` codes are not
/// mapped to Herald's channels, so a `ThirdChannelDeviceToken` is refused rather than lost.
async fn report(state: &AppState, app: &herald_core::ids::AppId, token: &str, params: &Value) -> Result<(), Refusal> {
    if params["thirdChannelDeviceToken"].as_str().is_some_and(|t| !t.is_empty()) {
        return Err(Refusal::new(
            ErrorCode::InvalidParam,
            "vendor tokens are reported by the device (POST /device/v1/report), not by ThirdChannel code",
        ));
    }
    let version = params["appVersion"].as_str().map(str::to_owned);
    if version.as_ref().is_some_and(|v| v.chars().count() > 128) {
        return Err(Refusal::new(ErrorCode::InvalidParam, "AppVersion is longer than 128 characters"));
    }
    if !state.store.report_device(app, &DeviceId::new(token), version, None).await? {
        return Err(Refusal::new(ErrorCode::DeviceNotExist, "no such device in this app"));
    }
    Ok(())
}

/// A device's state, by `TargetType` 1 (or none) a device id, 2 a user id (the user's
/// first device).
async fn query_state(
    state: &AppState,
    target: &str,
    target_type: Option<String>,
    with_body: &impl Fn(Value) -> Signed,
) -> Result<Value, Refusal> {
    let view = match target_type.as_deref().unwrap_or("1") {
        "1" => {
            let Json(v1) =
                devices::device(State(state.clone()), Path(target.to_owned()), with_body(Value::Null)).await?;
            v1["resultContent"]["data"].clone()
        }
        "2" => {
            let Json(v1) =
                devices::user_devices(State(state.clone()), Path(target.to_owned()), with_body(Value::Null)).await?;
            match v1["resultContent"]["data"]["devices"].get(0) {
                Some(d) => d.clone(),
                None => return Err(Refusal::new(ErrorCode::DeviceNotExist, "no device is bound to this user")),
            }
        }
        _ => return Err(Refusal::new(ErrorCode::InvalidParam, "TargetType must be 1 (device) or 2 (user)")),
    };
    let channels: Vec<&str> =
        view["vendorChannels"].as_array().map(|a| a.iter().filter_map(Value::as_str).collect()).unwrap_or_default();
    Ok(json!({
        "DeliveryToken": view["deviceId"],
        "DeviceId": view["deviceId"],
        "UserId": view["userId"],
        "Platform": view["platform"],
        "Manufacturer": view["model"],
        // MPS's field name; the own channel's state.
        "Statue": if view["online"].as_bool() == Some(true) { "online" } else { "offline" },
        "ThirdToken": if channels.is_empty() { Value::Null } else { Value::String(channels.join(",")) },
    }))
}
