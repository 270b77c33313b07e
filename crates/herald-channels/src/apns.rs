//! APNs provider API: `POST /3/device/<token>` over HTTP/2 and TLS (ALPN h2), with an ES256
//! provider token (token auth) or the app's certificate as the TLS client certificate.
//!
//! Provider tokens are cached per key and renewed after 50 minutes: Apple refuses tokens
//! older than an hour and renewals more often than every 20 minutes.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use herald_core::channel::{VendorNotification, VendorOutcome};
use http_body_util::Full;
use hyper::Request;
use jsonwebtoken::Algorithm;
use parking_lot::Mutex;
use rustls::RootCertStore;
use serde_json::{Map, Value, json};

use crate::http::{ClientAuth, HttpsClient};
use crate::setup::{ApnsAuth, ApnsCredential};
use crate::{ChannelsConfig, Payload, throttled, unavailable, unreachable};

/// A provider token is renewed at this age (seconds): past Apple's 20-minute floor, well
/// before its one-hour limit.
const TOKEN_RENEW_SECS: i64 = 50 * 60;
/// Apple refuses renewals more often than this (seconds).
const TOKEN_MIN_AGE_SECS: i64 = 20 * 60;
/// The largest payload APNs takes for an alert.
const MAX_PAYLOAD: usize = 4096;

/// Several HTTP/2 connections to APNs, used in turn: one connection is one TLS stream and
/// one task on each side, and Apple advises more than one for throughput.
#[derive(Clone)]
struct Connections {
    clients: Arc<Vec<HttpsClient>>,
    next: Arc<AtomicUsize>,
}

impl Connections {
    fn new(n: usize, roots: &Arc<RootCertStore>, auth: Option<ClientAuth>, timeout: Duration) -> Result<Self, String> {
        let clients = (0..n.max(1))
            .map(|_| {
                let auth = auth.as_ref().map(|(chain, key)| (chain.clone(), key.clone_key()));
                HttpsClient::h2(roots.clone(), auth, timeout).map_err(|e| e.to_string())
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Connections { clients: Arc::new(clients), next: Arc::new(AtomicUsize::new(0)) })
    }

    fn pick(&self) -> HttpsClient {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.clients.len();
        self.clients[i].clone()
    }
}

pub(crate) struct Apns {
    roots: Arc<RootCertStore>,
    timeout: Duration,
    /// Connections per pool (`channels.apns_connections`).
    connections: usize,
    /// One pool for every token-authenticated app: the token travels per request.
    shared: Mutex<Option<Connections>>,
    /// One pool per certificate (the certificate is the TLS client's).
    by_certificate: Mutex<HashMap<String, Connections>>,
    /// Provider tokens by key: (token, issued at, Unix seconds).
    tokens: Mutex<HashMap<String, (String, i64)>>,
}

impl Apns {
    pub(crate) fn new(roots: Arc<RootCertStore>, timeout: Duration, connections: usize) -> Apns {
        Apns {
            roots,
            timeout,
            connections,
            shared: Mutex::default(),
            by_certificate: Mutex::default(),
            tokens: Mutex::default(),
        }
    }

    fn client(&self, c: &ApnsCredential) -> Result<HttpsClient, String> {
        match &c.auth {
            ApnsAuth::Token { .. } => {
                let mut shared = self.shared.lock();
                if shared.is_none() {
                    *shared = Some(Connections::new(self.connections, &self.roots, None, self.timeout)?);
                }
                Ok(shared.as_ref().expect("set above").pick())
            }
            ApnsAuth::Certificate { chain, key } => {
                let mut pools = self.by_certificate.lock();
                if let Some(pool) = pools.get(&c.id) {
                    return Ok(pool.pick());
                }
                let auth = Some((chain.clone(), key.clone_key()));
                let pool = Connections::new(self.connections, &self.roots, auth, self.timeout)?;
                let client = pool.pick();
                pools.insert(c.id.clone(), pool);
                Ok(client)
            }
        }
    }

    /// The provider token of `c`'s key, renewed when it is old enough.
    fn provider_token(&self, c: &ApnsCredential, now: i64) -> Result<Option<String>, String> {
        let ApnsAuth::Token { key_id, team_id, key } = &c.auth else {
            return Ok(None);
        };
        let mut tokens = self.tokens.lock();
        if let Some((token, issued)) = tokens.get(&c.id)
            && now - issued < TOKEN_RENEW_SECS
        {
            return Ok(Some(token.clone()));
        }
        let token = crate::jwt::sign(Algorithm::ES256, Some(key_id), &json!({"iss": team_id, "iat": now}), key)?;
        tokens.insert(c.id.clone(), (token.clone(), now));
        Ok(Some(token))
    }

    /// Apple called the token expired or invalid: forget it, if it may be renewed already.
    fn drop_token(&self, c: &ApnsCredential, now: i64) {
        let mut tokens = self.tokens.lock();
        if tokens.get(&c.id).is_some_and(|(_, issued)| now - issued >= TOKEN_MIN_AGE_SECS) {
            tokens.remove(&c.id);
        }
    }

    pub(crate) async fn send(&self, cfg: &ChannelsConfig, c: &ApnsCredential, n: &VendorNotification) -> VendorOutcome {
        let now_ms = herald_core::now_ms();
        let p = Payload::of(n, &cfg.recall_text);
        let body = payload(&p, n.recall);
        if body.len() > MAX_PAYLOAD {
            return VendorOutcome::Failed {
                reason: format!("PayloadTooLarge: {} bytes, APNs takes {MAX_PAYLOAD}", body.len()),
            };
        }
        let client = match self.client(c) {
            Ok(client) => client,
            Err(e) => return VendorOutcome::Failed { reason: format!("APNs client: {e}") },
        };
        let base = if c.sandbox { &cfg.apns_sandbox_url } else { &cfg.apns_url };
        let silent = p.silent != 0;
        let mut req = Request::post(format!("{}/3/device/{}", base.trim_end_matches('/'), n.token))
            .header("content-type", "application/json")
            .header("apns-topic", &c.topic)
            .header("apns-push-type", if silent { "background" } else { "alert" })
            .header("apns-priority", if silent { "5" } else { "10" })
            .header("apns-expiration", (n.expires_at / 1000).to_string())
            // The same id on a later copy replaces this one on the device (a revoke's recall).
            .header("apns-collapse-id", collapse_id(&p.message_id));
        match self.provider_token(c, now_ms / 1000) {
            Ok(Some(token)) => req = req.header("authorization", format!("bearer {token}")),
            Ok(None) => {}
            Err(e) => return VendorOutcome::Failed { reason: e },
        }
        let req = match req.body(Full::new(Bytes::from(body))) {
            Ok(req) => req,
            Err(e) => return VendorOutcome::Failed { reason: format!("APNs request: {e}") },
        };
        let answer = match client.send(req).await {
            Ok(a) => a,
            Err(e) => return unreachable("APNs", e),
        };
        let status = answer.status.as_u16();
        if status == 200 {
            let id = answer.headers.get("apns-id").and_then(|v| v.to_str().ok()).map(str::to_owned);
            return VendorOutcome::Accepted { vendor_id: id };
        }
        let reason = answer.json().get("reason").and_then(Value::as_str).unwrap_or("").to_owned();
        match (status, reason.as_str()) {
            (410, _) | (400, "BadDeviceToken") | (400, "DeviceTokenNotForTopic") => {
                VendorOutcome::InvalidToken { reason: format!("APNs {status} {reason}") }
            }
            (403, "ExpiredProviderToken" | "InvalidProviderToken") => {
                self.drop_token(c, now_ms / 1000);
                VendorOutcome::Retry { after: None, throttled: false, reason: format!("APNs 403 {reason}") }
            }
            (429, _) => throttled("APNs", &answer.headers, &reason),
            (500.., _) => unavailable("APNs", status, &answer.headers, &reason),
            _ => VendorOutcome::Failed { reason: format!("APNs {status} {reason}") },
        }
    }
}

/// `apns-collapse-id`: at most 64 bytes.
fn collapse_id(message_id: &str) -> &str {
    let mut end = message_id.len().min(64);
    while !message_id.is_char_boundary(end) {
        end -= 1;
    }
    &message_id[..end]
}

/// The APNs JSON: the `aps` dictionary from the title, content and silent flag (with
/// `badge` and `sound` taken from extendedParams when given), Herald's ids under `herald`,
/// and the other extendedParams as custom keys beside `aps`.
/// A recall (`recall`) has the same title, the recall text, no sound, and `herald.revoked`.
fn payload(p: &Payload, recall: bool) -> Vec<u8> {
    let mut aps = Map::new();
    if p.silent != 0 {
        aps.insert("content-available".into(), 1.into());
    } else {
        aps.insert("alert".into(), json!({"title": p.title, "body": p.content}));
        if !recall {
            aps.insert("sound".into(), p.extended_params.get("sound").cloned().unwrap_or_else(|| "default".into()));
        }
        aps.insert("mutable-content".into(), 1.into());
    }
    if let Some(badge) = p.extended_params.get("badge").filter(|b| b.is_u64()) {
        aps.insert("badge".into(), badge.clone());
    }
    let mut root = Map::new();
    for (k, v) in &p.extended_params {
        if !matches!(k.as_str(), "aps" | "herald" | "sound" | "badge" | "revoked") {
            root.insert(k.clone(), v.clone());
        }
    }
    root.insert("aps".into(), Value::Object(aps));
    let mut herald = json!({"messageId": p.message_id, "msgKey": p.msg_key, "taskId": p.task_id, "uri": p.uri});
    if recall {
        herald["revoked"] = true.into();
    }
    root.insert("herald".into(), herald);
    Value::Object(root).to_string().into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_aps_dictionary_follows_the_message() {
        let mut p = Payload { title: "T".into(), content: "C".into(), message_id: "m1".into(), ..Payload::default() };
        p.extended_params.insert("badge".into(), 3.into());
        p.extended_params.insert("orderId".into(), "7".into());
        let v: Value = serde_json::from_slice(&payload(&p, false)).unwrap();
        assert_eq!(v["aps"]["alert"], json!({"title": "T", "body": "C"}));
        assert_eq!((v["aps"]["badge"].clone(), v["orderId"].clone()), (json!(3), json!("7")));
        assert_eq!(v["herald"]["messageId"], "m1");
        p.silent = 1;
        let v: Value = serde_json::from_slice(&payload(&p, false)).unwrap();
        assert_eq!(v["aps"]["content-available"], 1);
        assert!(v["aps"].get("alert").is_none());
        assert_eq!(collapse_id(&"x".repeat(80)).len(), 64);
    }
}
