//! The load: keep-alive HTTP connections to a server, bench apps and devices, and raw MQTT
//! devices (on the `herald-mqtt` codec) that acknowledge and time what they receive.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::{Bytes, BytesMut};
use herald_mqtt::{Connect, MqttStr, Packet, Protocol, PubAck, QoS, Subscribe, SubscribeFilter, decode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use parking_lot::Mutex;
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;

use crate::servers::ADMIN_TOKEN;

/// Keep-alive HTTP/1.1 connections to one server, one request at a time each.
pub(crate) struct HttpPool {
    pub(crate) senders: Vec<tokio::sync::Mutex<hyper::client::conn::http1::SendRequest<Full<Bytes>>>>,
    pub(crate) next: AtomicUsize,
    pub(crate) addr: String,
}

impl HttpPool {
    pub(crate) async fn new(addr: &str, size: usize) -> anyhow::Result<Self> {
        let mut senders = Vec::with_capacity(size);
        for _ in 0..size {
            let stream = TcpStream::connect(addr).await?;
            stream.set_nodelay(true)?;
            let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
            tokio::spawn(async move {
                let _ = conn.await;
            });
            senders.push(tokio::sync::Mutex::new(sender));
        }
        Ok(HttpPool { senders, next: AtomicUsize::new(0), addr: addr.to_string() })
    }

    pub(crate) async fn send(
        &self,
        method: &str,
        path: &str,
        headers: &[(String, String)],
        body: Bytes,
    ) -> anyhow::Result<(u16, Bytes)> {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.senders.len();
        let mut sender = self.senders[i].lock().await;
        let mut req = hyper::Request::builder().method(method).uri(path).header("host", &self.addr);
        for (k, v) in headers {
            req = req.header(k.as_str(), v.as_str());
        }
        sender.ready().await?;
        let resp = sender.send_request(req.body(Full::new(body))?).await?;
        let status = resp.status().as_u16();
        Ok((status, resp.into_body().collect().await?.to_bytes()))
    }

    /// Sends a `/v1` request signed with the app's HMAC key.
    pub(crate) async fn send_signed(
        &self,
        app: &BenchApp,
        method: &str,
        path: &str,
        body: String,
    ) -> anyhow::Result<(u16, Bytes)> {
        let headers = herald_core::signing::sign_hmac(
            &app.key_id,
            &app.secret,
            method,
            path,
            body.as_bytes(),
            herald_core::now_ms(),
        );
        self.send(method, path, &headers, Bytes::from(body)).await
    }
}

pub(crate) struct BenchApp {
    pub(crate) app_id: String,
    pub(crate) app_key: String,
    pub(crate) key_id: String,
    pub(crate) secret: String,
}

pub(crate) async fn create_app(pool: &HttpPool) -> anyhow::Result<BenchApp> {
    let headers = vec![("authorization".to_string(), format!("Bearer {ADMIN_TOKEN}"))];
    let (status, body) =
        pool.send("POST", "/admin/v1/apps", &headers, Bytes::from(json!({"name": "bench"}).to_string())).await?;
    if status != 200 {
        bail!("creating the bench app: {status} {}", String::from_utf8_lossy(&body));
    }
    let j: Value = serde_json::from_slice(&body)?;
    let s = |k: &str| j[k].as_str().map(str::to_string).context("app field");
    Ok(BenchApp { app_id: s("appId")?, app_key: s("appKey")?, key_id: s("apiKeyId")?, secret: s("apiSecret")? })
}

/// Registers `n` devices (install ids from `first` on); returns (deviceId, deviceToken) pairs.
pub(crate) async fn register_devices(
    pool: Arc<HttpPool>,
    app: &BenchApp,
    n: usize,
    first: usize,
) -> anyhow::Result<Vec<(String, String)>> {
    let bodies = (first..first + n).map(|i| json!({"platform": "android", "installId": format!("bench-{i}")}));
    register_each(pool, app, bodies.collect()).await
}

/// Registers a device per `/device/v1/register` body; returns (deviceId, deviceToken) pairs.
pub(crate) async fn register_each(
    pool: Arc<HttpPool>,
    app: &BenchApp,
    bodies: Vec<Value>,
) -> anyhow::Result<Vec<(String, String)>> {
    let headers = Arc::new(vec![
        ("x-herald-app".to_string(), app.app_id.clone()),
        ("x-herald-app-key".to_string(), app.app_key.clone()),
    ]);
    let sem = Arc::new(Semaphore::new(pool.senders.len()));
    let mut tasks = Vec::with_capacity(bodies.len());
    for body in bodies {
        let (pool, headers, sem) = (pool.clone(), headers.clone(), sem.clone());
        tasks.push(tokio::spawn(async move {
            let _permit = sem.acquire().await?;
            let (status, body) =
                pool.send("POST", "/device/v1/register", &headers, Bytes::from(body.to_string())).await?;
            if status != 200 {
                bail!("register: {status}");
            }
            let j: Value = serde_json::from_slice(&body)?;
            Ok::<_, anyhow::Error>((
                j["deviceId"].as_str().context("deviceId")?.to_string(),
                j["deviceToken"].as_str().context("deviceToken")?.to_string(),
            ))
        }));
    }
    let mut out = Vec::with_capacity(tasks.len());
    for t in tasks {
        out.push(t.await??);
    }
    Ok(out)
}

/// One bench device: identity, and what it should subscribe to (Mosquitto) or not (Herald
/// subscribes devices itself).
#[derive(Clone)]
pub(crate) struct DeviceSpec {
    pub(crate) client_id: String,
    pub(crate) username: Option<String>,
    pub(crate) password: Option<String>,
    pub(crate) subscribe: Option<String>,
    /// The local address the connection is made from (the kernel's choice when `None`).
    pub(crate) source: Option<std::net::Ipv4Addr>,
}

/// What the receiving side of the push phases records. Each payload carries its send time
/// (`bench#SEQ@MICROS`, Unix µs): receivers in other processes measure latency too.
#[derive(Default)]
pub(crate) struct Receipts {
    pub(crate) latencies_us: Mutex<Vec<u64>>,
    /// The send time of each entry of `latencies_us`, in the same order (locked after it).
    pub(crate) sent_us: Mutex<Vec<u64>>,
    pub(crate) received: AtomicU64,
}

impl Receipts {
    pub(crate) fn mark_received(&self, payload: &[u8]) {
        if let Some(sent_us) = sent_us_of(payload) {
            let mut latencies = self.latencies_us.lock();
            latencies.push(now_us().saturating_sub(sent_us));
            self.sent_us.lock().push(sent_us);
        }
        self.received.fetch_add(1, Ordering::Relaxed);
    }

    /// The latencies by message sent (each send time is one message), in the order sent:
    /// (microseconds after the first send, the latencies of its copies, sorted). Takes them.
    pub(crate) fn take_by_send(&self) -> Vec<(u64, Vec<u64>)> {
        let mut latencies = self.latencies_us.lock();
        let sent = std::mem::take(&mut *self.sent_us.lock());
        let mut by: std::collections::BTreeMap<u64, Vec<u64>> = Default::default();
        for (at, lat) in sent.into_iter().zip(std::mem::take(&mut *latencies)) {
            by.entry(at).or_default().push(lat);
        }
        let first = by.keys().next().copied().unwrap_or(0);
        by.into_iter()
            .map(|(at, mut lat)| {
                lat.sort_unstable();
                (at - first, lat)
            })
            .collect()
    }
}

pub(crate) fn now_us() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_micros() as u64).unwrap_or(0)
}

/// The title of bench message `seq`, stamped with the time it is sent.
pub(crate) fn bench_title(seq: usize) -> String {
    format!("bench#{seq}@{}", now_us())
}

/// Finds the send time of `bench#SEQ@MICROS` in a payload without parsing all of it.
pub(crate) fn sent_us_of(payload: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(payload).ok()?;
    let start = text.find("bench#")?;
    let at = start + text[start..].find('@')? + 1;
    let digits: String = text[at..].chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// Connects a device, keeps it open, acknowledges and reports every delivery.
/// A device's byte stream: TCP, TLS over it, or a WebSocket.
trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// How bench devices reach their server.
#[derive(Clone)]
pub(crate) enum Link {
    Tcp,
    /// TLS, trusting the bench's CA, to `localhost`.
    Tls(tokio_rustls::TlsConnector),
    /// A WebSocket to `/mqtt`, subprotocol `mqtt`.
    Ws,
}

pub(crate) async fn device_task(
    addr: String,
    spec: DeviceSpec,
    receipts: Option<Arc<Receipts>>,
    connected: Arc<AtomicUsize>,
    link: Link,
) -> anyhow::Result<()> {
    let tcp = match spec.source {
        None => TcpStream::connect(&addr).await?,
        Some(ip) => {
            let socket = tokio::net::TcpSocket::new_v4()?;
            socket.bind((ip, 0).into()).with_context(|| format!("binding {ip}"))?;
            socket.connect(addr.parse()?).await?
        }
    };
    tcp.set_nodelay(true)?;
    let mut stream: Box<dyn Io> = match link {
        Link::Tcp => Box::new(tcp),
        Link::Tls(connector) => {
            let name = rustls_pki_types::ServerName::try_from("localhost")?;
            Box::new(connector.connect(name, tcp).await?)
        }
        Link::Ws => Box::new(herald_client::transport::websocket(&addr, tcp).await?),
    };
    let connect = Packet::Connect(Connect {
        protocol: Protocol::V311,
        clean_session: true,
        keep_alive: 600,
        client_id: MqttStr::new(spec.client_id.clone()),
        will: None,
        username: spec.username.clone().map(MqttStr::new),
        password: spec.password.clone().map(Bytes::from),
        properties: Default::default(),
    });
    stream.write_all(&connect.to_bytes()).await?;
    stream.flush().await?;
    let mut buf = BytesMut::with_capacity(256);
    let mut subscribed = spec.subscribe.is_none();
    loop {
        while let Some(packet) = decode(&mut buf, 1 << 20)? {
            match packet {
                Packet::ConnAck(a) => {
                    if a.code != herald_mqtt::ReasonCode::SUCCESS {
                        bail!("CONNACK {:?}", a.code);
                    }
                    if let Some(topic) = &spec.subscribe {
                        let sub = Packet::Subscribe(Subscribe {
                            properties: Default::default(),
                            packet_id: 1,
                            filters: vec![SubscribeFilter {
                                filter: MqttStr::new(topic.clone()),
                                qos: QoS::AtLeastOnce,
                                options: 0,
                            }],
                        });
                        stream.write_all(&sub.to_bytes()).await?;
                        stream.flush().await?;
                    } else {
                        connected.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Packet::SubAck(_) if !subscribed => {
                    subscribed = true;
                    connected.fetch_add(1, Ordering::Relaxed);
                }
                Packet::Publish(p) => {
                    if let Some(packet_id) = p.packet_id {
                        stream.write_all(&Packet::PubAck(PubAck::new(packet_id)).to_bytes()).await?;
                        stream.flush().await?;
                    }
                    if let Some(r) = &receipts {
                        r.mark_received(&p.payload);
                    }
                }
                _ => {}
            }
        }
        if buf.capacity() - buf.len() < 128 {
            buf.reserve(4096);
        }
        if stream.read_buf(&mut buf).await? == 0 {
            return Ok(());
        }
    }
}

/// Opens connections for `specs` (at most `parallel` handshakes at once) and waits until
/// all are connected and subscribed.
pub(crate) async fn connect_all(
    addr: &str,
    specs: Vec<DeviceSpec>,
    receipts: Option<Arc<Receipts>>,
) -> anyhow::Result<Vec<tokio::task::JoinHandle<()>>> {
    connect_all_with(addr, specs, receipts, Link::Tcp).await
}

/// [`connect_all`] over `link`.
pub(crate) async fn connect_all_with(
    addr: &str,
    specs: Vec<DeviceSpec>,
    receipts: Option<Arc<Receipts>>,
    link: Link,
) -> anyhow::Result<Vec<tokio::task::JoinHandle<()>>> {
    let connected = Arc::new(AtomicUsize::new(0));
    let n = specs.len();
    let mut handles = Vec::with_capacity(n);
    for (i, spec) in specs.into_iter().enumerate() {
        let (addr, receipts, up, link) = (addr.to_string(), receipts.clone(), connected.clone(), link.clone());
        handles.push(tokio::spawn(async move {
            if let Err(e) = device_task(addr, spec, receipts, up, link).await {
                eprintln!("bench device error: {e:#}");
            }
        }));
        // Pace the handshakes so the listen backlog never overflows (rumqttd resets
        // connections when a few hundred arrive at once).
        while i + 1 - connected.load(Ordering::Relaxed) > 128 {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    while connected.load(Ordering::Relaxed) < n {
        if Instant::now() > deadline {
            bail!("only {} of {n} connections came up", connected.load(Ordering::Relaxed));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(handles)
}

pub(crate) fn herald_specs(app: &BenchApp, devices: &[(String, String)]) -> Vec<DeviceSpec> {
    devices
        .iter()
        .map(|(id, token)| DeviceSpec {
            client_id: id.clone(),
            username: Some(app.app_id.clone()),
            password: Some(token.clone()),
            subscribe: None,
            source: None,
        })
        .collect()
}

pub(crate) fn mosquitto_specs(n: usize) -> Vec<DeviceSpec> {
    (0..n)
        .map(|i| DeviceSpec {
            client_id: format!("bench-{i}"),
            username: None,
            password: None,
            subscribe: Some(format!("push/bench-{i}")),
            source: None,
        })
        .collect()
}
