//! FCM HTTP v1: an OAuth2 access token from the service account (a JWT-bearer grant signed
//! RS256), cached until a minute before it expires; then
//! `POST {fcm_url}/v1/projects/{project}/messages:send`.

use std::collections::HashMap;

use bytes::Bytes;
use herald_core::channel::{VendorNotification, VendorOutcome};
use http_body_util::Full;
use hyper::Request;
use jsonwebtoken::Algorithm;
use parking_lot::Mutex;
use serde_json::{Value, json};

use crate::http::HttpsClient;
use crate::setup::FcmCredential;
use crate::{ChannelsConfig, Payload, throttled, ttl_secs, unavailable, unreachable};

const SCOPE: &str = "https://www.googleapis.com/auth/firebase.messaging";

/// Access tokens by service account: (token, valid until, Unix ms).
#[derive(Default)]
pub(crate) struct TokenCache(Mutex<HashMap<String, (String, i64)>>);

impl TokenCache {
    pub(crate) fn get(&self, key: &str, now: i64) -> Option<String> {
        self.0.lock().get(key).filter(|(_, until)| *until > now).map(|(t, _)| t.clone())
    }

    pub(crate) fn put(&self, key: &str, token: String, until: i64) {
        self.0.lock().insert(key.to_owned(), (token, until));
    }

    pub(crate) fn forget(&self, key: &str) {
        self.0.lock().remove(key);
    }
}

/// Reads an OAuth token answer `{access_token, expires_in}`: the token and until when it may
/// be used (a minute before it expires).
pub(crate) fn token_answer(v: &Value, now: i64) -> Option<(String, i64)> {
    let token = v.get("access_token")?.as_str()?.to_owned();
    let expires_in = v.get("expires_in").and_then(|e| e.as_i64().or_else(|| e.as_str()?.parse().ok())).unwrap_or(3600);
    Some((token, now + (expires_in - 60).max(10) * 1000))
}

async fn access_token(
    http: &HttpsClient,
    cache: &TokenCache,
    c: &FcmCredential,
    now: i64,
) -> Result<String, VendorOutcome> {
    let key = format!("{}|{}", c.client_email, c.token_uri);
    if let Some(token) = cache.get(&key, now) {
        return Ok(token);
    }
    let secs = now / 1000;
    let claims = json!({"iss": c.client_email, "scope": SCOPE, "aud": c.token_uri, "iat": secs, "exp": secs + 3600});
    let kid = (!c.key_id.is_empty()).then_some(c.key_id.as_str());
    let assertion =
        crate::jwt::sign(Algorithm::RS256, kid, &claims, &c.key).map_err(|reason| VendorOutcome::Failed { reason })?;
    let form = format!("grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion={assertion}");
    let req = Request::post(&c.token_uri)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Full::new(Bytes::from(form)))
        .map_err(|e| VendorOutcome::Failed { reason: format!("FCM token request: {e}") })?;
    let answer = http.send(req).await.map_err(|e| unreachable("FCM OAuth", e))?;
    match answer.status.as_u16() {
        200 => {
            let (token, until) = token_answer(&answer.json(), now)
                .ok_or_else(|| VendorOutcome::Failed { reason: "FCM OAuth answer without access_token".into() })?;
            cache.put(&key, token.clone(), until);
            Ok(token)
        }
        429 => Err(throttled("FCM OAuth", &answer.headers, "")),
        s @ 500.. => Err(unavailable("FCM OAuth", s, &answer.headers, "")),
        s => {
            let why = answer.json().get("error").map(|e| e.to_string()).unwrap_or_default();
            Err(VendorOutcome::Failed { reason: format!("FCM OAuth refused the service account ({s}): {why}") })
        }
    }
}

pub(crate) async fn send(
    http: &HttpsClient,
    cache: &TokenCache,
    cfg: &ChannelsConfig,
    c: &FcmCredential,
    n: &VendorNotification,
) -> VendorOutcome {
    let now = herald_core::now_ms();
    let token = match access_token(http, cache, c, now).await {
        Ok(t) => t,
        Err(outcome) => return outcome,
    };
    let p = Payload::of(n, &cfg.recall_text);
    let silent = p.silent != 0;
    let mut message = json!({
        "token": n.token,
        "data": p.string_data(),
        "android": {
            "ttl": format!("{}s", ttl_secs(n, now)),
            "priority": if silent { "NORMAL" } else { "HIGH" },
            "collapse_key": p.msg_key.chars().take(64).collect::<String>(),
        },
    });
    if !silent {
        message["notification"] = json!({"title": p.title, "body": p.content});
        // The same tag on a later notification (a revoke's recall) replaces this one.
        message["android"]["notification"] = json!({"tag": p.message_id});
    }
    let url = format!("{}/v1/projects/{}/messages:send", cfg.fcm_url.trim_end_matches('/'), c.project_id);
    let req = Request::post(url)
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {token}"))
        .body(Full::new(Bytes::from(json!({"message": message}).to_string())));
    let req = match req {
        Ok(r) => r,
        Err(e) => return VendorOutcome::Failed { reason: format!("FCM request: {e}") },
    };
    let answer = match http.send(req).await {
        Ok(a) => a,
        Err(e) => return unreachable("FCM", e),
    };
    let status = answer.status.as_u16();
    let body = answer.json();
    if status == 200 {
        return VendorOutcome::Accepted { vendor_id: body.get("name").and_then(Value::as_str).map(str::to_owned) };
    }
    let error = &body["error"];
    let rpc = error.get("status").and_then(Value::as_str).unwrap_or("");
    let code = fcm_error_code(error).unwrap_or(rpc).to_owned();
    match (status, code.as_str()) {
        (_, "UNREGISTERED") | (404, _) | (403, "SENDER_ID_MISMATCH") => {
            VendorOutcome::InvalidToken { reason: format!("FCM {status} {code}") }
        }
        (401, _) => {
            cache.forget(&format!("{}|{}", c.client_email, c.token_uri));
            VendorOutcome::Retry { after: None, throttled: false, reason: format!("FCM 401 {code}") }
        }
        (429, _) => throttled("FCM", &answer.headers, &code),
        (500.., _) => unavailable("FCM", status, &answer.headers, &code),
        _ => VendorOutcome::Failed { reason: format!("FCM {status} {code}") },
    }
}

/// The FcmError `errorCode` among a google.rpc status's details.
fn fcm_error_code(error: &Value) -> Option<&str> {
    error.get("details")?.as_array()?.iter().find_map(|d| d.get("errorCode")?.as_str())
}
