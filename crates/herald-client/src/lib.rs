//! Herald's device client: what an app embeds to be a Herald device.
//!
//! [`Client::start`] registers the install once (or reuses the identity its [`Store`]
//! keeps), then keeps one MQTT connection to Herald: reconnecting with exponential back-off
//! and jitter, saying each change of [`State`], and handing each notification to the app
//! once ([`Event::Notification`]) even when the server delivers it again (deliveries are at
//! least once; the client keeps a window of recent messageIds in its store), then
//! acknowledging it. A revoke comes as [`Event::Revoke`] so the app can withdraw what it
//! shows. The app reports vendor tokens and its version ([`Client::report`]), tells what
//! became of a notification ([`Client::event`]), and binds its user with a proof from its
//! own server ([`Client::bind`]). docs/clients.md describes the concepts shared with the
//! Java and web clients; docs/device-protocol.md the protocol underneath.

mod api;
mod session;
mod store;
pub mod transport;

use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::CertificateDer;
use serde_json::{Map, Value, json};
use tokio::sync::{mpsc, watch};

pub use store::{FileStore, Identity, MemoryStore, Store};
use transport::Endpoint;

/// What went wrong.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("configuration: {0}")]
    Config(String),
    #[error("network: {0}")]
    Io(#[from] std::io::Error),
    #[error("timed out: {0}")]
    Timeout(&'static str),
    /// The server refused the call: its HTTP status and Herald's code (docs/errors.md).
    #[error("refused ({status} {code}): {message}")]
    Refused { status: u16, code: String, message: String },
    #[error("protocol: {0}")]
    Protocol(String),
}

/// How a device finds and identifies itself to Herald.
#[derive(Debug, Clone)]
pub struct Config {
    /// The device API: `http://host:8080` or `https://host:8443`.
    pub http_url: String,
    /// The MQTT listener: `tcp://host:1883`, `tls://host:8883`, `ws://host:8080/mqtt` or
    /// `wss://host:8443/mqtt`.
    pub mqtt_url: String,
    pub app_id: String,
    pub app_key: String,
    /// `android`, `ios`, `harmonyos` or `web`.
    pub platform: String,
    pub app_version: Option<String>,
    pub os_version: Option<String>,
    pub model: Option<String>,
    /// Seconds between PINGREQs when nothing else is sent (the server closes a connection
    /// silent for 1.5 times it).
    pub keep_alive: Duration,
    /// The first wait before reconnecting, doubled after each failed attempt up to
    /// `backoff_max`; each wait is drawn at random between half of it and all of it.
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
    /// Every network wait (connect, CONNACK, an HTTP call).
    pub timeout: Duration,
    /// How many recent messageIds are kept to drop repeated deliveries.
    pub dedup_window: usize,
    /// Root certificates trusted beside the usual web roots (a private CA).
    pub extra_roots: Vec<CertificateDer<'static>>,
}

impl Config {
    pub fn new(http_url: &str, mqtt_url: &str, app_id: &str, app_key: &str, platform: &str) -> Config {
        Config {
            http_url: http_url.into(),
            mqtt_url: mqtt_url.into(),
            app_id: app_id.into(),
            app_key: app_key.into(),
            platform: platform.into(),
            app_version: None,
            os_version: None,
            model: None,
            keep_alive: Duration::from_secs(60),
            backoff_initial: Duration::from_secs(1),
            backoff_max: Duration::from_secs(120),
            timeout: Duration::from_secs(15),
            dedup_window: 1000,
            extra_roots: Vec::new(),
        }
    }
}

/// The own channel's state, as the app shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    Connecting,
    Online,
    /// Lost or not reached; the client tries again after `retry_in`.
    Offline {
        reason: String,
        retry_in: Duration,
    },
    /// The server refused the device for good (wrong app key, device unknown and not
    /// registrable): the client stopped.
    Refused {
        reason: String,
    },
}

/// A notification as the server delivered it (docs/device-protocol.md).
#[derive(Debug, Clone, PartialEq)]
pub struct Notification {
    pub message_id: String,
    pub title: String,
    pub content: String,
    /// The whole payload: `msgKey`, `taskId`, `uri`, `extendedParams`, `expiresAt`…
    pub payload: Value,
}

/// What the client tells the app.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    State(State),
    Notification(Notification),
    /// Withdraw the notification `message_id` if it is shown (it may never have arrived).
    Revoke {
        message_id: String,
        payload: Value,
    },
}

/// What became of a notification, for [`Client::event`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Got through a vendor channel (the own channel acknowledges by itself).
    Arrived,
    Opened,
    Ignored,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Outcome::Arrived => "arrived",
            Outcome::Opened => "opened",
            Outcome::Ignored => "ignored",
        }
    }
}

/// A running device. Dropping it stops the connection.
pub struct Client {
    inner: Arc<session::Inner>,
    stop: watch::Sender<bool>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Client {
    /// Registers the install unless `store` holds an identity, then connects and stays
    /// connected. `install_id` is this install's stable id (1-128 characters), used when
    /// registering. The events come on the returned receiver; the client waits for the app
    /// to take each notification before acknowledging it.
    pub async fn start(
        config: Config,
        install_id: &str,
        store: Arc<dyn Store>,
    ) -> Result<(Client, mpsc::Receiver<Event>), Error> {
        let inner = Arc::new(session::Inner::new(config, store)?);
        if inner.identity().is_none() {
            inner.register(install_id, None).await?;
        }
        let (events_tx, events) = mpsc::channel(64);
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(session::run(inner.clone(), events_tx, stopped));
        Ok((Client { inner, stop, task: Some(task) }, events))
    }

    /// This device's id (the target of `DeliveryType` 1 pushes).
    pub fn device_id(&self) -> String {
        self.inner.identity().map(|i| i.device_id).unwrap_or_default()
    }

    /// Reports vendor tokens (`apns`, `fcm`, `hms`, `xiaomi`, `webpush`; `Value::Null`
    /// removes one) and the app's version.
    pub async fn report(&self, vendor_tokens: Map<String, Value>, app_version: Option<&str>) -> Result<(), Error> {
        let mut body = json!({"vendorTokens": vendor_tokens});
        if let Some(v) = app_version {
            body["appVersion"] = json!(v);
        }
        self.inner.device_call("/device/v1/report", &body).await.map(drop)
    }

    /// Tells what became of a notification.
    pub async fn event(&self, message_id: &str, outcome: Outcome) -> Result<(), Error> {
        let body = json!({"messageId": message_id, "event": outcome.as_str()});
        self.inner.device_call("/device/v1/events", &body).await.map(drop)
    }

    /// Binds `user_id` with the proof the app's server made (docs/device-protocol.md); an
    /// app that trusts client binds takes `None`.
    pub async fn bind(&self, user_id: &str, proof: Option<(&str, i64)>) -> Result<(), Error> {
        let mut body = json!({"userId": user_id});
        if let Some((proof, expires_at)) = proof {
            body["bindProof"] = json!(proof);
            body["expiresAt"] = json!(expires_at);
        }
        self.inner.device_call("/device/v1/bind", &body).await.map(drop)
    }

    pub async fn unbind(&self) -> Result<(), Error> {
        self.inner.device_call("/device/v1/unbind", &json!({})).await.map(drop)
    }

    /// Closes the connection (sending DISCONNECT) and stops reconnecting.
    pub async fn stop(mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
        }
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

pub(crate) fn endpoint(url: &str) -> Result<Endpoint, Error> {
    Endpoint::parse(url)
}
