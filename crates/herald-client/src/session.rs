//! The connection loop: register when asked, connect, receive, acknowledge, reconnect.

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use herald_mqtt::{
    Connect, Disconnect, MqttStr, Packet, Protocol, PubAck, QoS, ReasonCode, Subscribe, SubscribeFilter,
};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, watch};

use crate::api::DeviceApi;
use crate::transport::{Endpoint, Io, open, tls_connector};
use crate::{Config, Error, Event, Identity, Notification, State, Store, endpoint};

/// The largest packet read (the server's own limit is 64 KiB by default).
const MAX_PACKET: usize = 1 << 20;

pub(crate) struct Inner {
    config: Config,
    store: Arc<dyn Store>,
    api: DeviceApi,
    mqtt: Endpoint,
    tls: tokio_rustls::TlsConnector,
    identity: Mutex<Option<Identity>>,
    seen: Mutex<Window>,
}

impl Inner {
    pub(crate) fn new(config: Config, store: Arc<dyn Store>) -> Result<Inner, Error> {
        let tls = tls_connector(&config.extra_roots)?;
        let api = DeviceApi { endpoint: endpoint(&config.http_url)?, tls: tls.clone(), timeout: config.timeout };
        let mqtt = endpoint(&config.mqtt_url)?;
        let identity = Mutex::new(store.identity());
        let seen = Mutex::new(Window::new(config.dedup_window.max(1), store.seen()));
        Ok(Inner { config, store, api, mqtt, tls, identity, seen })
    }

    pub(crate) fn identity(&self) -> Option<Identity> {
        self.identity.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Registers `install_id` (again, with `current_token`, when the server must see that it
    /// is this device) and keeps what the server answered.
    pub(crate) async fn register(&self, install_id: &str, current_token: Option<&str>) -> Result<Identity, Error> {
        let c = &self.config;
        let mut body = json!({"platform": c.platform, "installId": install_id});
        for (k, v) in [("appVersion", &c.app_version), ("osVersion", &c.os_version), ("model", &c.model)] {
            if let Some(v) = v {
                body[k] = json!(v);
            }
        }
        let bearer = current_token.map(|t| format!("Bearer {t}"));
        let mut headers = vec![("x-herald-app", c.app_id.as_str()), ("x-herald-app-key", c.app_key.as_str())];
        if let Some(b) = &bearer {
            headers.push(("authorization", b.as_str()));
        }
        let answer = self.api.post("/device/v1/register", &headers, &body).await?;
        let field = |k: &str| answer[k].as_str().map(str::to_owned).ok_or_else(|| Error::Protocol(format!("no {k}")));
        let identity = Identity {
            install_id: install_id.into(),
            device_id: field("deviceId")?,
            device_token: field("deviceToken")?,
        };
        self.store.save_identity(&identity)?;
        *self.identity.lock().unwrap_or_else(|e| e.into_inner()) = Some(identity.clone());
        Ok(identity)
    }

    /// A device API call with the device's token.
    pub(crate) async fn device_call(&self, path: &str, body: &Value) -> Result<Value, Error> {
        let token = self.identity().map(|i| i.device_token).ok_or_else(|| Error::Config("not registered".into()))?;
        let bearer = format!("Bearer {token}");
        self.api.post(path, &[("authorization", bearer.as_str())], body).await
    }

    /// Records `id` as given to the app; false when it already was.
    fn first_time(&self, id: &str) -> bool {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        if seen.contains(id) {
            return false;
        }
        seen.push(id.to_string());
        if let Err(e) = self.store.save_seen(&seen.order.iter().cloned().collect::<Vec<_>>()) {
            // Kept in memory: a repeat is still dropped until the app restarts.
            eprintln!("herald-client: the seen messageIds were not saved: {e}");
        }
        true
    }

    fn seen(&self, id: &str) -> bool {
        self.seen.lock().unwrap_or_else(|e| e.into_inner()).contains(id)
    }
}

/// The most recent messageIds, oldest first.
pub(crate) struct Window {
    capacity: usize,
    order: VecDeque<String>,
    set: HashSet<String>,
}

impl Window {
    fn new(capacity: usize, saved: Vec<String>) -> Window {
        let mut w = Window { capacity, order: VecDeque::new(), set: HashSet::new() };
        for id in saved {
            w.push(id);
        }
        w
    }
    fn contains(&self, id: &str) -> bool {
        self.set.contains(id)
    }
    fn push(&mut self, id: String) {
        if self.set.insert(id.clone()) {
            self.order.push_back(id);
        }
        while self.order.len() > self.capacity {
            if let Some(old) = self.order.pop_front() {
                self.set.remove(&old);
            }
        }
    }
}

/// How a connection ended.
enum End {
    /// The app stopped the client (or dropped its events).
    Stopped,
    /// Lost or not reached: try again. `online` says whether it had been accepted.
    Lost {
        reason: String,
        online: bool,
    },
    Refused(String),
}

pub(crate) async fn run(inner: Arc<Inner>, events: mpsc::Sender<Event>, mut stopped: watch::Receiver<bool>) {
    let mut failures = 0u32;
    let mut random = Jitter::new();
    loop {
        if *stopped.borrow() || events.send(Event::State(State::Connecting)).await.is_err() {
            return;
        }
        let end = connection(&inner, &events, &mut stopped).await;
        let (reason, online) = match end {
            End::Stopped => return,
            End::Refused(reason) => {
                let _ = events.send(Event::State(State::Refused { reason })).await;
                return;
            }
            End::Lost { reason, online } => (reason, online),
        };
        failures = if online { 0 } else { failures.saturating_add(1) };
        let c = &inner.config;
        let ceiling = c.backoff_initial.saturating_mul(1 << failures.min(16)).min(c.backoff_max);
        let wait = random.between(ceiling / 2, ceiling);
        if events.send(Event::State(State::Offline { reason, retry_in: wait })).await.is_err() {
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stopped.changed() => return,
        }
    }
}

/// One connection, from CONNECT to its end.
async fn connection(inner: &Inner, events: &mpsc::Sender<Event>, stopped: &mut watch::Receiver<bool>) -> End {
    let lost = |reason: String| End::Lost { reason, online: false };
    let Some(identity) = inner.identity() else { return End::Refused("not registered".into()) };
    let timeout = inner.config.timeout;
    let mut stream = match open(&inner.mqtt, &inner.tls, timeout).await {
        Ok(s) => s,
        Err(e) => return lost(e.to_string()),
    };
    let keep_alive = inner.config.keep_alive;
    let connect = Packet::Connect(Connect {
        protocol: Protocol::V311,
        clean_session: true,
        keep_alive: keep_alive.as_secs().min(u16::MAX as u64) as u16,
        client_id: MqttStr::new(identity.device_id.clone()),
        will: None,
        username: Some(MqttStr::new(inner.config.app_id.clone())),
        password: Some(Bytes::from(identity.device_token.clone())),
        properties: Default::default(),
    });
    let mut buf = BytesMut::with_capacity(4096);
    if let Err(e) = send(&mut stream, &connect).await {
        return lost(e.to_string());
    }
    let code = match tokio::time::timeout(timeout, next_packet(&mut stream, &mut buf)).await {
        Err(_) => return lost("no CONNACK in time".into()),
        Ok(Err(e)) => return lost(e),
        Ok(Ok(Packet::ConnAck(ack))) => ack.code,
        Ok(Ok(other)) => return lost(format!("expected CONNACK, got {other:?}")),
    };
    match code {
        ReasonCode::SUCCESS => {}
        ReasonCode::BAD_USER_NAME_OR_PASSWORD => {
            // The token is not (or no longer) this device's: register again with it, which
            // the server allows only to the device itself.
            return match inner.register(&identity.install_id, Some(&identity.device_token)).await {
                Ok(_) => End::Lost { reason: "the server asked the device to register again".into(), online: true },
                // The server said no: the install is another device's now.
                Err(e @ Error::Refused { .. }) => {
                    End::Refused(format!("the device's credentials were refused and it could not register again: {e}"))
                }
                // Not reached: try again later.
                Err(e) => lost(format!("registering again failed: {e}")),
            };
        }
        ReasonCode::NOT_AUTHORIZED | ReasonCode::CLIENT_IDENTIFIER_NOT_VALID => {
            return End::Refused(format!("CONNACK {}", code.name()));
        }
        other => return lost(format!("CONNACK {}", other.name())),
    }
    // The server subscribes the device itself; asking again costs nothing and keeps the
    // client right with a server that would not.
    let topic = format!("push/{}", identity.device_id);
    let subscribe = Packet::Subscribe(Subscribe {
        properties: Default::default(),
        packet_id: 1,
        filters: vec![SubscribeFilter { filter: MqttStr::new(topic), qos: QoS::AtLeastOnce, options: 0 }],
    });
    if let Err(e) = send(&mut stream, &subscribe).await {
        return lost(e.to_string());
    }
    if events.send(Event::State(State::Online)).await.is_err() {
        return End::Stopped;
    }
    let online = |reason: String| End::Lost { reason, online: true };
    let (mut last_sent, mut last_heard) = (Instant::now(), Instant::now());
    let tick = if keep_alive.is_zero() { Duration::from_secs(3600) } else { keep_alive / 4 };
    let mut ticker = tokio::time::interval(tick.max(Duration::from_millis(100)));
    loop {
        tokio::select! {
            packet = next_packet(&mut stream, &mut buf) => {
                let packet = match packet {
                    Ok(p) => p,
                    Err(e) => return online(e),
                };
                last_heard = Instant::now();
                let Packet::Publish(publish) = packet else { continue };
                let Some(packet_id) = publish.packet_id else { continue };
                if !deliver(inner, events, &publish.payload).await {
                    return End::Stopped;
                }
                if let Err(e) = send(&mut stream, &Packet::PubAck(PubAck::new(packet_id))).await {
                    return online(e.to_string());
                }
                last_sent = Instant::now();
            }
            _ = ticker.tick(), if !keep_alive.is_zero() => {
                if last_heard.elapsed() > keep_alive + keep_alive / 2 {
                    return online("the server did not answer within the keep alive".into());
                }
                if last_sent.elapsed() >= keep_alive / 2 {
                    if let Err(e) = send(&mut stream, &Packet::PingReq).await {
                        return online(e.to_string());
                    }
                    last_sent = Instant::now();
                }
            }
            _ = stopped.changed() => {
                let _ = send(&mut stream, &Packet::Disconnect(Disconnect::new(ReasonCode::SUCCESS))).await;
                let _ = stream.shutdown().await;
                return End::Stopped;
            }
        }
    }
}

/// Gives a delivery to the app unless it already has it; false when the app is gone.
async fn deliver(inner: &Inner, events: &mpsc::Sender<Event>, payload: &[u8]) -> bool {
    let Ok(payload) = serde_json::from_slice::<Value>(payload) else { return true };
    let text = |k: &str| payload[k].as_str().unwrap_or_default().to_string();
    let (key, event) = match payload["type"].as_str() {
        Some("revoke") => {
            // Known by the control message's own id; names the withdrawn message.
            let event = Event::Revoke { message_id: text("messageId"), payload: payload.clone() };
            (format!("revoke:{}", text("revokeId")), event)
        }
        Some("notification") => {
            let n = Notification {
                message_id: text("messageId"),
                title: text("title"),
                content: text("content"),
                payload: payload.clone(),
            };
            (n.message_id.clone(), Event::Notification(n))
        }
        _ => return true,
    };
    if inner.seen(&key) {
        return true;
    }
    if events.send(event).await.is_err() {
        return false;
    }
    inner.first_time(&key);
    true
}

async fn send(stream: &mut Box<dyn Io>, packet: &Packet) -> std::io::Result<()> {
    stream.write_all(&packet.to_bytes()).await?;
    stream.flush().await
}

/// The next whole packet; `Err` with why the connection ended.
async fn next_packet(stream: &mut Box<dyn Io>, buf: &mut BytesMut) -> Result<Packet, String> {
    loop {
        match herald_mqtt::decode(buf, MAX_PACKET) {
            Ok(Some(packet)) => return Ok(packet),
            Ok(None) => {}
            Err(e) => return Err(format!("malformed packet from the server: {e:?}")),
        }
        match stream.read_buf(buf).await {
            Ok(0) => return Err("the server closed the connection".into()),
            Ok(_) => {}
            Err(e) => return Err(e.to_string()),
        }
    }
}

/// Random waits for the back-off (xorshift seeded by the process's random hasher keys).
struct Jitter(u64);

impl Jitter {
    fn new() -> Jitter {
        use std::hash::{BuildHasher, Hasher};
        let seed = std::collections::hash_map::RandomState::new().build_hasher().finish();
        Jitter(seed | 1)
    }
    fn between(&mut self, low: Duration, high: Duration) -> Duration {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        let span = high.saturating_sub(low).as_millis() as u64;
        low + Duration::from_millis(if span == 0 { 0 } else { self.0 % (span + 1) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_forgets_the_oldest() {
        let mut w = Window::new(2, vec!["a".into(), "b".into(), "c".into()]);
        assert!(!w.contains("a") && w.contains("b") && w.contains("c"));
        w.push("b".into());
        w.push("d".into());
        assert!(!w.contains("b") && w.contains("c") && w.contains("d"));
    }

    #[test]
    fn jitter_stays_between_its_bounds() {
        let mut j = Jitter::new();
        for _ in 0..1000 {
            let d = j.between(Duration::from_millis(500), Duration::from_millis(1000));
            assert!((500..=1000).contains(&d.as_millis()), "{d:?}");
        }
    }
}
