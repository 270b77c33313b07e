//! Herald's vendor senders: APNs (HTTP/2, token or certificate), FCM HTTP v1, Huawei Push
//! Kit, Xiaomi and Web Push (RFC 8291 and 8292), each speaking its vendor's documented
//! wire protocol (see `../shared/reference/vendors.md` and docs/channels.md).
//!
//! - [`setup`]: a channel's configuration as an app sends it (`PUT /v1/channels/{kind}`),
//!   checked and split into what may be shown and the secrets to seal; and back, into a
//!   [`setup::Credential`] the senders use;
//! - [`Senders`]: one pooled HTTPS client (rustls, HTTP/2 where the vendor speaks it) and
//!   the per-credential state (APNs provider tokens, OAuth access tokens, certificate
//!   clients), shared by every app of the node;
//! - one module per vendor, each turning a [`VendorNotification`] into one request and the
//!   vendor's answer into a [`VendorOutcome`].
//!
//! Retries, back-off, throttling and token hygiene are the dispatcher's: a sender makes one
//! attempt and says what the vendor answered.

mod apns;
mod fcm;
mod hms;
mod http;
mod jwt;
pub mod setup;
mod webpush;
mod xiaomi;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use herald_core::channel::{VendorNotification, VendorOutcome};
use serde::Deserialize;

pub use http::HttpsClient;
pub use setup::{Credential, SetupError};
pub use webpush::{decode_vapid_public, generate_vapid_key};

/// The `[channels]` table of the configuration: vendor endpoints (DESIGN §7), extra trusted
/// roots, and the senders' limits.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ChannelsConfig {
    pub apns_url: String,
    pub apns_sandbox_url: String,
    /// FCM's send endpoint; the OAuth token URI comes from each service account.
    pub fcm_url: String,
    pub hms_url: String,
    pub hms_token_url: String,
    pub xiaomi_url: String,
    /// Extra trusted roots (PEM) for outbound TLS, beside the Mozilla roots built in.
    pub ca_file: Option<PathBuf>,
    /// Longest wait for one vendor request, connecting included (seconds).
    pub request_timeout_secs: u64,
    /// Requests in flight at once per vendor (each vendor has its own: a slow vendor never
    /// holds another's).
    pub max_in_flight: usize,
    /// HTTP/2 connections to APNs per pool (one pool for token-authenticated apps, one per
    /// certificate), used in turn.
    pub apns_connections: usize,
    /// Requests per second per vendor on this node (0: no limit beyond `max_in_flight`).
    pub max_per_second: u32,
    /// Sends claimed from the store at a time.
    pub claim_batch: usize,
    /// How long a claimed send belongs to the node that claimed it (seconds): after a
    /// crash, another node sends it after this.
    pub claim_lease_secs: u64,
    /// How often the store is asked for due sends when nothing rang (milliseconds).
    pub poll_ms: u64,
    /// The longest wait between two attempts of one send (seconds).
    pub max_backoff_secs: u64,
    /// What a recall shows in place of a revoked message's text (its title is kept).
    pub recall_text: String,
    /// This node's public base URL (`https://push.example.com`), from which vendors reach
    /// its receipt callbacks (`/vendor/v1/receipts/…`). Empty: receipt URLs are shown as
    /// paths, and Xiaomi is not asked for receipts (it needs an absolute URL per message).
    pub receipt_base_url: String,
}

impl Default for ChannelsConfig {
    fn default() -> Self {
        ChannelsConfig {
            apns_url: "https://api.push.apple.com".into(),
            apns_sandbox_url: "https://api.sandbox.push.apple.com".into(),
            fcm_url: "https://fcm.googleapis.com".into(),
            hms_url: "https://push-api.cloud.huawei.com".into(),
            hms_token_url: "https://oauth-login.cloud.huawei.com/oauth2/v3/token".into(),
            xiaomi_url: "https://api.xmpush.xiaomi.com".into(),
            ca_file: None,
            request_timeout_secs: 10,
            max_in_flight: 512,
            apns_connections: 4,
            max_per_second: 0,
            claim_batch: 1000,
            claim_lease_secs: 60,
            poll_ms: 1000,
            max_backoff_secs: 600,
            recall_text: "This message was withdrawn.".into(),
            receipt_base_url: String::new(),
        }
    }
}

/// The node's senders: one HTTPS client and the state each vendor keeps per credential.
pub struct Senders {
    config: ChannelsConfig,
    http: HttpsClient,
    apns: apns::Apns,
    oauth: fcm::TokenCache,
    hms: hms::TokenCache,
}

impl Senders {
    pub fn new(config: ChannelsConfig) -> anyhow::Result<Arc<Senders>> {
        let timeout = Duration::from_secs(config.request_timeout_secs.max(1));
        let roots = http::roots(config.ca_file.as_deref())?;
        let http = HttpsClient::new(roots.clone(), None, timeout)?;
        Ok(Arc::new(Senders {
            apns: apns::Apns::new(roots, timeout, config.apns_connections),
            oauth: fcm::TokenCache::default(),
            hms: hms::TokenCache::default(),
            http,
            config,
        }))
    }

    pub fn config(&self) -> &ChannelsConfig {
        &self.config
    }

    /// Makes one attempt to hand `n` to its vendor with the app's `credential`.
    pub async fn send(&self, credential: &Credential, n: &VendorNotification) -> VendorOutcome {
        match credential {
            Credential::Apns(c) => self.apns.send(&self.config, c, n).await,
            Credential::Fcm(c) => fcm::send(&self.http, &self.oauth, &self.config, c, n).await,
            Credential::Hms(c) => hms::send(&self.http, &self.hms, &self.config, c, n).await,
            Credential::Xiaomi(c) => xiaomi::send(&self.http, &self.config, c, n).await,
            Credential::WebPush(c) => webpush::send(&self.http, c, n).await,
        }
    }
}

/// The fields of the device JSON that the vendors' bodies are built from.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct Payload {
    message_id: String,
    msg_key: String,
    task_id: String,
    title: String,
    content: String,
    uri: Option<String>,
    silent: i64,
    extended_params: serde_json::Map<String, serde_json::Value>,
}

impl Payload {
    /// The message's fields; for a recall, its text is `recall_text` and its data say
    /// `revoked`.
    fn of(n: &VendorNotification, recall_text: &str) -> Payload {
        let mut p: Payload = serde_json::from_slice(&n.payload).unwrap_or_default();
        if n.recall {
            p.content = recall_text.to_string();
            p.uri = None;
            p.extended_params = serde_json::Map::new();
            p.extended_params.insert("revoked".into(), "true".into());
        }
        p
    }

    /// The message's ids and extended params as string pairs (FCM `data`, Xiaomi `extra`).
    fn string_data(&self) -> serde_json::Map<String, serde_json::Value> {
        let mut data = serde_json::Map::new();
        for (k, v) in &self.extended_params {
            let text = match v {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            data.insert(k.clone(), text.into());
        }
        data.insert("messageId".into(), self.message_id.clone().into());
        data.insert("msgKey".into(), self.msg_key.clone().into());
        data.insert("taskId".into(), self.task_id.clone().into());
        if let Some(uri) = &self.uri {
            data.insert("uri".into(), uri.clone().into());
        }
        data
    }
}

/// A message's number for the vendors that replace a notification by an integer id (HMS and
/// Xiaomi `notify_id`): 31 bits of its SHA-256, the same for the message and its recall.
fn notify_id(message_id: &str) -> i64 {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, message_id.as_bytes());
    i64::from(u32::from_be_bytes([d.as_ref()[0], d.as_ref()[1], d.as_ref()[2], d.as_ref()[3]]) & 0x7fff_ffff)
}

/// A message's Web Push `Topic` (at most 32 base64url characters): a later push with the same
/// topic replaces one the push service has not delivered yet.
fn topic(message_id: &str) -> String {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, message_id.as_bytes());
    herald_core::crypto::b64url(&d.as_ref()[..24])
}

/// The device JSON a recall carries where a vendor passes data through (Web Push, silent
/// messages): the message's id and `revoked`.
fn recall_json(message_id: &str) -> Vec<u8> {
    serde_json::json!({"messageId": message_id, "revoked": true}).to_string().into_bytes()
}

/// Seconds of validity left at `now` (at least 1: a vendor's TTL of 0 means "now or never").
fn ttl_secs(n: &VendorNotification, now: i64) -> i64 {
    ((n.expires_at - now) / 1000).max(1)
}

/// `Retry-After` in seconds, when the vendor gave one.
fn retry_after(headers: &hyper::HeaderMap) -> Option<Duration> {
    let secs: u64 = headers.get(hyper::header::RETRY_AFTER)?.to_str().ok()?.trim().parse().ok()?;
    Some(Duration::from_secs(secs.min(3600)))
}

/// What a transport failure (no answer) means: try again.
fn unreachable(vendor: &str, why: impl std::fmt::Display) -> VendorOutcome {
    VendorOutcome::Retry { after: None, throttled: false, reason: format!("{vendor} unreachable: {why}") }
}

/// A vendor's 5xx: try again (after what it says).
fn unavailable(vendor: &str, status: u16, headers: &hyper::HeaderMap, detail: &str) -> VendorOutcome {
    VendorOutcome::Retry {
        after: retry_after(headers),
        throttled: false,
        reason: format!("{vendor} {status} {detail}"),
    }
}

/// A vendor's 429 (or quota answer): slow this app's channel down.
fn throttled(vendor: &str, headers: &hyper::HeaderMap, detail: &str) -> VendorOutcome {
    VendorOutcome::Retry {
        after: retry_after(headers),
        throttled: true,
        reason: format!("{vendor} throttled: {detail}"),
    }
}
