//! The MQTT gateway: CONNECT checks, subscriptions, device publishes, takeover,
//! redelivery with DUP, keepalive, packet limits and slow clients.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use herald_mqtt::{Connect, MqttStr, Packet, Properties, Protocol, ReasonCode, decode_with};
use rumqttc::{ConnectReturnCode as Code, QoS, SubscribeReasonCode};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::*;

/// A hand-driven MQTT connection for what a well-behaved client library will not do.
pub(crate) struct Raw {
    pub(crate) stream: TcpStream,
    buf: BytesMut,
    /// What the CONNECT sent spoke: packets after it are written and read in it.
    pub(crate) protocol: Protocol,
}

/// A CONNECT of `creds`' device.
pub(crate) fn connect_packet(creds: &Creds, keep_alive: u16, protocol: Protocol, properties: Properties) -> Packet {
    Packet::Connect(Connect {
        protocol,
        clean_session: true,
        keep_alive,
        client_id: MqttStr::new(creds.device_id.clone()),
        will: None,
        username: Some(MqttStr::new(creds.app_id.clone())),
        password: Some(Bytes::from(creds.token.clone())),
        properties,
    })
}

impl Raw {
    pub(crate) async fn open(addr: &str) -> Raw {
        Raw { stream: TcpStream::connect(addr).await.unwrap(), buf: BytesMut::new(), protocol: Protocol::V311 }
    }

    /// A connection from another loopback address than 127.0.0.1 (Linux routes all of
    /// 127/8 to the loopback): a client the per-address limits apply to.
    pub(crate) async fn open_from(addr: &str, source: &str) -> Raw {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(format!("{source}:0").parse().unwrap()).unwrap();
        Raw {
            stream: socket.connect(addr.parse().unwrap()).await.unwrap(),
            buf: BytesMut::new(),
            protocol: Protocol::V311,
        }
    }

    /// A connection through a load balancer speaking the PROXY protocol (v1) for `client`.
    async fn behind_proxy(addr: &str, client: &str) -> Raw {
        let mut raw = Raw::open(addr).await;
        raw.stream.write_all(format!("PROXY TCP4 {client} 10.0.0.1 40000 1883\r\n").as_bytes()).await.unwrap();
        raw
    }

    async fn connect_as(mut self, creds: &Creds) -> Option<Packet> {
        self.send(connect_packet(creds, 30, Protocol::V311, Properties::new())).await;
        let answer = self.recv().await;
        // Kept open until the caller's scope ends.
        std::mem::forget(self);
        answer
    }

    pub(crate) async fn send(&mut self, packet: Packet) {
        if let Packet::Connect(c) = &packet {
            self.protocol = c.protocol;
        }
        self.stream.write_all(&packet.to_bytes_with(self.protocol)).await.unwrap();
    }

    async fn connect(addr: &str, creds: &Creds, keep_alive: u16) -> Raw {
        Raw::connect_with(addr, connect_packet(creds, keep_alive, Protocol::V311, Properties::new())).await.0
    }

    /// Opens a connection, sends `connect` and expects it accepted: the connection and
    /// the CONNACK.
    pub(crate) async fn connect_with(addr: &str, connect: Packet) -> (Raw, herald_mqtt::ConnAck) {
        let mut raw = Raw::open(addr).await;
        raw.send(connect).await;
        match raw.recv().await {
            Some(Packet::ConnAck(a)) if a.code == ReasonCode::SUCCESS => (raw, a),
            other => panic!("expected CONNACK, got {other:?}"),
        }
    }

    /// The next packet, or `None` once the server closed the connection.
    pub(crate) async fn recv(&mut self) -> Option<Packet> {
        loop {
            if let Some(p) = decode_with(&mut self.buf, 1 << 20, self.protocol).unwrap() {
                return Some(p);
            }
            let n =
                tokio::time::timeout(WAIT, self.stream.read_buf(&mut self.buf)).await.expect("server silent").ok()?;
            if n == 0 {
                return None;
            }
        }
    }

    pub(crate) async fn until_closed(&mut self) {
        while self.recv().await.is_some() {}
    }
}

#[tokio::test]
async fn connect_is_refused_with_4_or_5_and_unsupported_versions_with_1() {
    let Some(server) = start_server().await else { return };
    let app = server.create_app().await;
    let other = server.create_app().await;
    let creds = app.register("i").await;

    let mut wrong_token = creds.clone();
    wrong_token.token = "forged".into();
    let err = TestDevice::connect_with(wrong_token.options(), false).await.err().unwrap();
    assert!(err.contains(&format!("{:?}", Code::BadUserNamePassword)), "{err}");

    let mut unknown = creds.clone();
    unknown.device_id = "dnosuchdevice".into();
    let err = TestDevice::connect_with(unknown.options(), false).await.err().unwrap();
    assert!(err.contains(&format!("{:?}", Code::BadUserNamePassword)), "{err}");

    let mut wrong_app = creds.clone();
    wrong_app.app_id = other.app_id.clone();
    let err = TestDevice::connect_with(wrong_app.options(), false).await.err().unwrap();
    assert!(err.contains(&format!("{:?}", Code::NotAuthorized)), "{err}");

    // A protocol level after MQTT 5 (6): CONNACK 1, unacceptable protocol version.
    let mut raw = Raw::open(&server.mqtt).await;
    raw.stream.write_all(b"\x10\x0d\x00\x04MQTT\x06\x02\x00\x3c\x00\x00\x00").await.unwrap();
    match raw.recv().await {
        Some(Packet::ConnAck(a)) => {
            assert_eq!(a.code, ReasonCode::UNSUPPORTED_PROTOCOL_VERSION)
        }
        other => panic!("expected CONNACK 1, got {other:?}"),
    }
    raw.until_closed().await;
}

/// Issue 12: a client id is the client's before it is authenticated. One with a newline
/// and a made-up line after it, and one of 65,000 bytes, are refused and logged escaped and
/// cut: no forged line, no log line longer than a few hundred bytes.
#[tokio::test]
async fn a_refused_client_id_can_neither_forge_nor_flood_the_log() {
    let Some(server) = start_server().await else { return };
    let app = server.create_app().await;
    let forged = "2026-12-05T00:00:00.000000Z  INFO herald::api: admin token accepted";
    for client_id in [format!("d1\n{forged}"), "z".repeat(65_000)] {
        let mut raw = Raw::open(&server.mqtt).await;
        raw.send(Packet::Connect(Connect {
            protocol: Protocol::V311,
            clean_session: true,
            keep_alive: 30,
            client_id: MqttStr::new(client_id.clone()),
            will: None,
            username: Some(MqttStr::new(app.app_id.clone())),
            password: Some(Bytes::from_static(b"not-a-token")),
            properties: Properties::new(),
        }))
        .await;
        // An id longer than any deviceId is not looked up: CONNACK 2.
        let code = if client_id.len() > 64 {
            ReasonCode::CLIENT_IDENTIFIER_NOT_VALID
        } else {
            ReasonCode::BAD_USER_NAME_OR_PASSWORD
        };
        match raw.recv().await {
            Some(Packet::ConnAck(a)) => assert_eq!(a.code, code),
            other => panic!("expected CONNACK {code:?}, got {other:?}"),
        }
        raw.until_closed().await;
    }
    let lines = server.log.tail(500);
    let refused: Vec<&String> = lines.iter().filter(|l| l.contains("CONNECT refused")).collect();
    assert_eq!(refused.len(), 2, "{lines:#?}");
    assert!(!lines.iter().any(|l| l.starts_with(forged)), "a forged line reached the log: {lines:#?}");
    assert!(refused[0].contains("d1\\n2026-12-05T00:00:00.000000Z"), "{}", refused[0]);
    assert!(refused.iter().all(|l| l.len() < 400), "{refused:?}");
    assert!(refused[1].contains("(+64936 bytes)"), "{}", refused[1]);
}

/// Issue 12: nothing limited how many connections one address may open. Now one address
/// holds at most `mqtt.max_connections_per_address` at once (more are refused), another address is not held back, a slot comes back when a connection ends,
/// and exempt addresses (a local proxy's) are not limited. (The CONNECT rate's token bucket
/// is tested beside the gateway.)
/// A node whose MQTT settings `configure` adjusts, and a device of it.
pub(crate) async fn limited(configure: impl FnOnce(&mut herald::config::MqttConfig)) -> Option<(TestServer, Creds)> {
    let server = TestServer::start_with(crate::BACKEND, |cfg| configure(&mut cfg.mqtt)).await?;
    let creds = server.create_app().await.register("i").await;
    Some((server, creds))
}

/// CONNACK 0.
fn accepted(answer: Option<Packet>) -> bool {
    matches!(answer, Some(Packet::ConnAck(a)) if a.code == ReasonCode::SUCCESS)
}

#[tokio::test]
async fn one_address_can_hold_only_so_many_connections() {
    let Some((server, creds)) = limited(|mqtt| {
        mqtt.max_connections_per_address = 2;
        mqtt.limits_exempt = vec!["127.0.0.1".parse().unwrap()];
    })
    .await
    else {
        return;
    };

    let first = Raw::open_from(&server.mqtt, "127.0.0.2").await; // open, no CONNECT yet
    assert!(accepted(Raw::open_from(&server.mqtt, "127.0.0.2").await.connect_as(&creds).await));
    // A third is told to come back later (MQTT 3.1.1 has only "server unavailable").
    let third = Raw::open_from(&server.mqtt, "127.0.0.2").await.connect_as(&creds).await;
    assert!(matches!(&third, Some(Packet::ConnAck(a)) if a.code == ReasonCode::SERVER_UNAVAILABLE), "{third:?}");
    assert!(accepted(Raw::open_from(&server.mqtt, "127.0.0.3").await.connect_as(&creds).await));
    drop(first);
    // The slot comes back once the server has seen the first connection end.
    let deadline = tokio::time::Instant::now() + WAIT;
    while !accepted(Raw::open_from(&server.mqtt, "127.0.0.2").await.connect_as(&creds).await) {
        assert!(tokio::time::Instant::now() < deadline, "the slot of a closed connection did not come back");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    for _ in 0..4 {
        assert!(accepted(Raw::open(&server.mqtt).await.connect_as(&creds).await), "exempt");
    }
}

#[tokio::test]
async fn own_push_topic_is_granted_qos1_and_any_other_filter_is_refused() {
    let Some(server) = start_server().await else { return };
    let app = server.create_app().await;
    let creds = app.register("i").await;
    let mut device = TestDevice::connect(&creds).await;
    device.client.subscribe(format!("push/{}", creds.device_id), QoS::AtLeastOnce).await.unwrap();
    match device.next().await {
        Seen::SubAck(codes) => {
            assert_eq!(codes, vec![SubscribeReasonCode::Success(QoS::AtLeastOnce)])
        }
        other => panic!("{other:?}"),
    }
    device.client.subscribe("push/#", QoS::AtLeastOnce).await.unwrap();
    match device.next().await {
        Seen::SubAck(codes) => assert_eq!(codes, vec![SubscribeReasonCode::Failure]),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_device_publishes_events_to_its_own_topic_only() {
    let Some(server) = start_server().await else { return };
    let app = server.create_app().await;
    let creds = app.register("i").await;
    let victim = app.register("j").await;
    let mut device = TestDevice::connect(&creds).await;
    let (_, m) = app.push_to_device(&creds.device_id, "k", "t").await;
    device.next_push().await;
    publish_event(&device, &creds.device_id, json!({"messageId": m, "event": "opened"})).await;
    app.wait_status(&m, "opened").await;
    // Publishing to another device's topic closes the connection.
    device.client.publish(format!("push/{}", victim.device_id), QoS::AtLeastOnce, false, "x").await.unwrap();
    device.closed().await;
}

#[tokio::test]
async fn a_second_connection_takes_over_and_closes_the_first() {
    let Some(server) = start_server().await else { return };
    let app = server.create_app().await;
    let creds = app.register("i").await;
    let mut first = TestDevice::connect(&creds).await;
    let mut second = TestDevice::connect(&creds).await;
    first.closed().await;
    let (_, m) = app.push_to_device(&creds.device_id, "k", "after takeover").await;
    assert_eq!(second.next_push().await.1["messageId"], m.as_str());
}

#[tokio::test]
async fn an_unacknowledged_delivery_comes_again_with_dup_on_the_next_connect() {
    let Some(server) = start_server().await else { return };
    let app = server.create_app().await;
    let creds = app.register("i").await;
    let mut device = TestDevice::connect_manual_ack(&creds).await;
    let (_, m) = app.push_to_device(&creds.device_id, "k", "ack me").await;
    let (first, payload) = device.next_push().await;
    assert!(!first.dup);
    assert_eq!(payload["messageId"], m.as_str());
    device.stop();
    // Written, never acknowledged, connection gone: recorded as sent.
    app.wait_status(&m, "sent").await;
    let mut again = TestDevice::connect(&creds).await;
    let (publish, payload) = again.next_push().await;
    assert!(publish.dup, "a redelivery carries DUP");
    assert_eq!(payload["messageId"], m.as_str());
    app.wait_status(&m, "delivered").await;
}

#[tokio::test]
async fn keepalive_is_enforced_at_one_and_a_half_times() {
    let Some(server) = start_server().await else { return };
    let app = server.create_app().await;
    let creds = app.register("i").await;
    let mut raw = Raw::connect(&server.mqtt, &creds, 1).await;
    let started = tokio::time::Instant::now();
    raw.until_closed().await;
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(1400) && waited < Duration::from_secs(4), "closed after {waited:?}");
}

#[tokio::test]
async fn packets_over_the_size_limit_close_the_connection() {
    let Some(server) = start_server().await else { return };
    let app = server.create_app().await;
    let creds = app.register("i").await;
    let mut raw = Raw::connect(&server.mqtt, &creds, 60).await;
    // A PUBLISH header announcing 10 MB; the server must not wait for the bytes.
    raw.stream.write_all(&[0x30, 0x80, 0xad, 0xe2, 0x04]).await.unwrap();
    raw.until_closed().await;
}

#[tokio::test]
async fn a_client_that_stops_reading_does_not_hold_back_others() {
    let Some(server) = start_server().await else { return };
    let app = server.create_app().await;
    let stuck = app.register("stuck").await;
    let healthy = app.register("healthy").await;
    // Connected, never reads, never acknowledges.
    let _raw = Raw::connect(&server.mqtt, &stuck, 600).await;
    let big = "x".repeat(4000);
    for i in 0..300 {
        let r = app
            .push_simple(json!({"deliveryType": 1, "targetMsgkey": {stuck.device_id.clone(): format!("k{i}")},
                "title": "t", "content": big, "expiredSeconds": 300}))
            .await;
        assert_eq!(r.status, 200);
    }
    let mut device = TestDevice::connect(&healthy).await;
    let (_, m) = app.push_to_device(&healthy.device_id, "k", "still fast").await;
    let started = tokio::time::Instant::now();
    assert_eq!(device.next_push().await.1["messageId"], m.as_str());
    assert!(started.elapsed() < Duration::from_secs(2), "took {:?}", started.elapsed());
}

#[tokio::test]
async fn behind_a_load_balancer_the_limits_count_the_client_its_proxy_header_names() {
    let Some((server, creds)) = limited(|mqtt| {
        mqtt.proxy_protocol = true;
        mqtt.max_connections_per_address = 1;
    })
    .await
    else {
        return;
    };
    // All come from 127.0.0.1 (exempt); the header's address is what counts.
    assert!(accepted(Raw::behind_proxy(&server.mqtt, "203.0.113.7").await.connect_as(&creds).await));
    let mut again = Raw::behind_proxy(&server.mqtt, "203.0.113.7").await;
    assert_eq!(again.recv().await, None, "a second connection of that client is over its limit of 1");
    assert!(accepted(Raw::behind_proxy(&server.mqtt, "203.0.113.8").await.connect_as(&creds).await));
    assert_eq!(Raw::open(&server.mqtt).await.connect_as(&creds).await, None, "no header: closed");
}

#[tokio::test]
async fn behind_a_load_balancer_http_reads_the_proxy_header_first() {
    // A process: the in-process node's readiness probe sends no header.
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("herald.toml");
    std::fs::write(&config, "[http]\nproxy_protocol = true\n").unwrap();
    let args = ["--config", config.to_str().unwrap()];
    let Some(server) = TestProcess::start_with(herald_bin!(), crate::BACKEND, &args).await else { return };
    let get = "GET /healthz HTTP/1.1\r\nHost: herald\r\nConnection: close\r\n\r\n";
    let answer = |wire: String| {
        let http = server.http.clone();
        async move {
            let mut s = TcpStream::connect(&http).await.unwrap();
            s.write_all(wire.as_bytes()).await.unwrap();
            let mut out = Vec::new();
            let _ = tokio::time::timeout(WAIT, s.read_to_end(&mut out)).await;
            String::from_utf8_lossy(&out).to_string()
        }
    };
    let through = answer(format!("PROXY TCP4 203.0.113.7 10.0.0.1 40000 8080\r\n{get}")).await;
    assert!(through.starts_with("HTTP/1.1 200"), "{through}");
    assert_eq!(answer(get.to_string()).await, "", "no header: closed unanswered");
}
