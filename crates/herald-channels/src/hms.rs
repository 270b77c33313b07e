//! Huawei Push Kit: an OAuth2 client-credentials token (cached until a minute before it
//! expires), then `POST {hms_url}/v1/{appId}/messages:send`. Huawei answers HTTP 200 with a
//! result code in the body for most outcomes.

use bytes::Bytes;
use herald_core::channel::{VendorNotification, VendorOutcome};
use http_body_util::Full;
use hyper::Request;
use serde_json::{Value, json};

use crate::fcm::token_answer;
use crate::http::HttpsClient;
use crate::setup::HmsCredential;
use crate::{ChannelsConfig, Payload, throttled, ttl_secs, unavailable, unreachable};

pub(crate) type TokenCache = crate::fcm::TokenCache;

/// Success.
pub const SUCCESS: &str = "80000000";
/// Partly successful: `msg` lists the illegal tokens.
pub const PARTIAL: &str = "80100000";
/// The OAuth token expired.
pub const TOKEN_EXPIRED: &str = "80200003";
/// Every token of the request is invalid.
pub const ALL_TOKENS_INVALID: &str = "80300007";
/// Huawei's internal error.
pub const INTERNAL: &str = "81000001";

/// A form value: everything but the unreserved characters percent-encoded.
pub(crate) use herald_core::signing::encode_component as form_encode;

pub(crate) use form_encode as encode;

async fn access_token(
    http: &HttpsClient,
    cache: &TokenCache,
    cfg: &ChannelsConfig,
    c: &HmsCredential,
    now: i64,
) -> Result<String, VendorOutcome> {
    if let Some(token) = cache.get(&c.app_id, now) {
        return Ok(token);
    }
    let form = format!(
        "grant_type=client_credentials&client_id={}&client_secret={}",
        form_encode(&c.app_id),
        form_encode(&c.client_secret)
    );
    let req = Request::post(&cfg.hms_token_url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Full::new(Bytes::from(form)))
        .map_err(|e| VendorOutcome::Failed { reason: format!("HMS token request: {e}") })?;
    let answer = http.send(req).await.map_err(|e| unreachable("HMS OAuth", e))?;
    match answer.status.as_u16() {
        200 => match token_answer(&answer.json(), now) {
            Some((token, until)) => {
                cache.put(&c.app_id, token.clone(), until);
                Ok(token)
            }
            None => Err(VendorOutcome::Failed { reason: "HMS OAuth answer without access_token".into() }),
        },
        429 => Err(throttled("HMS OAuth", &answer.headers, "")),
        s @ 500.. => Err(unavailable("HMS OAuth", s, &answer.headers, "")),
        s => Err(VendorOutcome::Failed { reason: format!("HMS OAuth refused appId/clientSecret ({s})") }),
    }
}

pub(crate) async fn send(
    http: &HttpsClient,
    cache: &TokenCache,
    cfg: &ChannelsConfig,
    c: &HmsCredential,
    n: &VendorNotification,
) -> VendorOutcome {
    let now = herald_core::now_ms();
    let token = match access_token(http, cache, cfg, c, now).await {
        Ok(t) => t,
        Err(outcome) => return outcome,
    };
    let p = Payload::of(n, &cfg.recall_text);
    let silent = p.silent != 0;
    // bi_tag comes back in the receipt: it names the message.
    let mut android = json!({"ttl": format!("{}s", ttl_secs(n, now)), "urgency": if silent { "NORMAL" } else { "HIGH" },
        "bi_tag": p.message_id});
    let mut message = json!({"token": [n.token]});
    if silent {
        // A data message: the app gets the device JSON as it would on the own channel.
        let data = if n.recall { crate::recall_json(&p.message_id) } else { n.payload.to_vec() };
        message["data"] = Value::String(String::from_utf8_lossy(&data).into_owned());
    } else {
        let click = match &p.uri {
            Some(uri) if uri.starts_with("http") => json!({"type": 2, "url": uri}),
            Some(uri) => json!({"type": 1, "intent": uri}),
            None => json!({"type": 3}),
        };
        android["notification"] = json!({
            "title": p.title, "body": p.content, "click_action": click, "importance": "NORMAL",
            // The same id on a later notification (a revoke's recall) replaces this one.
            "notify_id": crate::notify_id(&p.message_id),
        });
        android["category"] =
            Value::String(p.extended_params.get("category").and_then(Value::as_str).unwrap_or("").into());
        if android["category"] == "" {
            android.as_object_mut().map(|a| a.remove("category"));
        }
        message["data"] = Value::String(Value::Object(p.string_data()).to_string());
    }
    message["android"] = android;
    let url = format!("{}/v1/{}/messages:send", cfg.hms_url.trim_end_matches('/'), c.app_id);
    let req = Request::post(url)
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {token}"))
        .body(Full::new(Bytes::from(json!({"validate_only": false, "message": message}).to_string())));
    let req = match req {
        Ok(r) => r,
        Err(e) => return VendorOutcome::Failed { reason: format!("HMS request: {e}") },
    };
    let answer = match http.send(req).await {
        Ok(a) => a,
        Err(e) => return unreachable("HMS", e),
    };
    let status = answer.status.as_u16();
    let body = answer.json();
    let code = body.get("code").and_then(Value::as_str).unwrap_or("").to_owned();
    let msg = body.get("msg").and_then(Value::as_str).unwrap_or("").to_owned();
    match (status, code.as_str()) {
        (200, SUCCESS) => {
            VendorOutcome::Accepted { vendor_id: body.get("requestId").and_then(Value::as_str).map(str::to_owned) }
        }
        (_, ALL_TOKENS_INVALID) => VendorOutcome::InvalidToken { reason: format!("HMS {code} {msg}") },
        (_, PARTIAL) => {
            // One token per request: a partial success means it was the illegal one.
            VendorOutcome::InvalidToken { reason: format!("HMS {code} {msg}") }
        }
        (_, TOKEN_EXPIRED) | (401, _) => {
            cache.forget(&c.app_id);
            VendorOutcome::Retry { after: None, throttled: false, reason: format!("HMS {status} {code}") }
        }
        (429, _) => throttled("HMS", &answer.headers, &code),
        (500.., _) | (_, INTERNAL) => unavailable("HMS", status, &answer.headers, &code),
        _ => VendorOutcome::Failed { reason: format!("HMS {status} {code} {msg}") },
    }
}
