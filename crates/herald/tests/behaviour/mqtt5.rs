//! MQTT 5 on the gateway, driven packet by packet: CONNACK properties and reason codes,
//! deliveries with Message Expiry Interval and user properties, the device's Receive
//! Maximum, negative acknowledgements, and the server's DISCONNECT with a reason on
//! takeover, keepalive, oversized packets and shutdown. (Clients from registries speaking
//! MQTT 5, mosquitto_sub and paho, are in tls.rs and websocket.rs.)

use std::time::Duration;

use bytes::Bytes;
use herald_mqtt::{Packet, Properties, Property, Protocol, PubAck, Publish, QoS, ReasonCode};
use serde_json::Value;

use super::gateway::{Raw, connect_packet, limited};
use crate::common::*;

fn v5(creds: &Creds, keep_alive: u16, properties: Vec<Property>) -> Packet {
    connect_packet(creds, keep_alive, Protocol::V5, Properties(properties))
}

/// The next PUBLISH (answering nothing else), or a panic naming what came instead.
async fn next_publish(raw: &mut Raw) -> Publish {
    match raw.recv().await {
        Some(Packet::Publish(p)) => p,
        other => panic!("expected PUBLISH, got {other:?}"),
    }
}

fn user<'a>(p: &'a Publish, name: &str) -> Option<&'a str> {
    p.properties.user().find(|(k, _)| *k == name).map(|(_, v)| v)
}

fn expiry(p: &Publish) -> u32 {
    match p.properties.get(0x02) {
        Some(Property::MessageExpiryInterval(s)) => *s,
        other => panic!("no Message Expiry Interval: {other:?}"),
    }
}

#[tokio::test]
async fn connack_tells_the_limits_and_a_delivery_carries_its_expiry_and_ids() {
    let Some(server) = start_server().await else { return };
    let app = server.create_app().await;
    let creds = app.register("i").await;
    let (mut raw, ack) = Raw::connect_with(&server.mqtt, v5(&creds, 60, vec![])).await;
    let props = &ack.properties;
    assert!(matches!(props.get(0x27), Some(Property::MaximumPacketSize(n)) if *n == 65_536), "{props:?}");
    for unavailable in [0x25, 0x28, 0x29, 0x2A] {
        assert!(matches!(props.get(unavailable), Some(p) if *p == unavailable_flag(unavailable)), "{props:?}");
    }

    let (task, m) = app.push_to_device(&creds.device_id, "k", "five").await;
    let p = next_publish(&mut raw).await;
    let payload: Value = serde_json::from_slice(&p.payload).unwrap();
    assert_eq!(payload["messageId"], m.as_str());
    // Pushed with expiredSeconds 300: what is left, rounded up, never more.
    let left = expiry(&p);
    assert!((290..=300).contains(&left), "Message Expiry Interval {left}");
    assert_eq!(user(&p, "type"), Some("notification"));
    assert_eq!(user(&p, "messageId"), Some(m.as_str()));
    assert_eq!(user(&p, "taskId"), Some(task.as_str()));
    raw.send(Packet::PubAck(PubAck::new(p.packet_id.unwrap()))).await;
    app.wait_status(&m, "delivered").await;
}

fn unavailable_flag(id: u8) -> Property {
    match id {
        0x25 => Property::RetainAvailable(0),
        0x28 => Property::WildcardSubscriptionAvailable(0),
        0x29 => Property::SubscriptionIdentifierAvailable(0),
        _ => Property::SharedSubscriptionAvailable(0),
    }
}

#[tokio::test]
async fn receive_maximum_bounds_the_deliveries_in_flight() {
    let Some(server) = start_server().await else { return };
    let app = server.create_app().await;
    let creds = app.register("i").await;
    let (_, first) = app.push_to_device(&creds.device_id, "a", "one").await;
    let (_, second) = app.push_to_device(&creds.device_id, "b", "two").await;
    let (mut raw, _) = Raw::connect_with(&server.mqtt, v5(&creds, 60, vec![Property::ReceiveMaximum(1)])).await;
    let p = next_publish(&mut raw).await;
    assert_eq!(user(&p, "messageId"), Some(first.as_str()));
    // The second waits for the first's PUBACK.
    let early = tokio::time::timeout(Duration::from_millis(700), raw.recv()).await;
    assert!(early.is_err(), "a second delivery beyond Receive Maximum 1: {early:?}");
    raw.send(Packet::PubAck(PubAck::new(p.packet_id.unwrap()))).await;
    let p = next_publish(&mut raw).await;
    assert_eq!(user(&p, "messageId"), Some(second.as_str()));
}

#[tokio::test]
async fn a_refused_delivery_is_not_arrived_and_comes_again_on_the_next_connection() {
    let Some(server) = start_server().await else { return };
    let app = server.create_app().await;
    let creds = app.register("i").await;
    let (mut raw, _) = Raw::connect_with(&server.mqtt, v5(&creds, 60, vec![])).await;
    let (_, m) = app.push_to_device(&creds.device_id, "k", "refuse me").await;
    let p = next_publish(&mut raw).await;
    let refusal = PubAck { reason: ReasonCode::UNSPECIFIED_ERROR, ..PubAck::new(p.packet_id.unwrap()) };
    raw.send(Packet::PubAck(refusal)).await;
    // Still answering, and the refusal is no "arrived".
    raw.send(Packet::PingReq).await;
    assert_eq!(raw.recv().await, Some(Packet::PingResp));
    // Time for an acknowledgement's status to be committed, had it been taken as one.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let status = app.message_status(&m).await;
    assert_ne!(status, "delivered", "a refused delivery counted as arrived");
    drop(raw);
    let (mut again, _) = Raw::connect_with(&server.mqtt, v5(&creds, 60, vec![])).await;
    let p = next_publish(&mut again).await;
    assert_eq!(user(&p, "messageId"), Some(m.as_str()));
    again.send(Packet::PubAck(PubAck::new(p.packet_id.unwrap()))).await;
    app.wait_status(&m, "delivered").await;
}

#[tokio::test]
async fn refusals_carry_mqtt5_reason_codes() {
    let Some(server) = start_server().await else { return };
    let app = server.create_app().await;
    let creds = app.register("i").await;
    let mut forged = creds.clone();
    forged.token = "forged".into();
    let cases = [
        (v5(&forged, 60, vec![]), ReasonCode::BAD_USER_NAME_OR_PASSWORD),
        (
            v5(&creds, 60, vec![Property::AuthenticationMethod(herald_mqtt::MqttStr::new("SCRAM-SHA-1"))]),
            ReasonCode::BAD_AUTHENTICATION_METHOD,
        ),
    ];
    for (connect, want) in cases {
        let mut raw = Raw::open(&server.mqtt).await;
        raw.send(connect).await;
        match raw.recv().await {
            Some(Packet::ConnAck(a)) => {
                assert_eq!(a.code, want);
                assert!(matches!(a.properties.get(0x1F), Some(Property::ReasonString(_))), "{a:?}");
            }
            other => panic!("expected CONNACK {want:?}, got {other:?}"),
        }
        raw.until_closed().await;
    }
}

#[tokio::test]
async fn a_publish_to_a_foreign_topic_is_refused_without_closing() {
    let Some(server) = start_server().await else { return };
    let app = server.create_app().await;
    let creds = app.register("i").await;
    let (mut raw, _) = Raw::connect_with(&server.mqtt, v5(&creds, 60, vec![])).await;
    let publish = Publish {
        dup: false,
        qos: QoS::AtLeastOnce,
        retain: false,
        topic: herald_mqtt::MqttStr::new("events/someone-else"),
        packet_id: Some(9),
        payload: Bytes::from_static(b"[]"),
        properties: Properties::new(),
    };
    raw.send(Packet::Publish(publish)).await;
    match raw.recv().await {
        Some(Packet::PubAck(a)) => assert_eq!((a.packet_id, a.reason), (9, ReasonCode::NOT_AUTHORIZED)),
        other => panic!("expected PUBACK 0x87, got {other:?}"),
    }
    raw.send(Packet::PingReq).await;
    assert_eq!(raw.recv().await, Some(Packet::PingResp));
}

/// The reason of the server's DISCONNECT, then the connection's end.
async fn disconnected(raw: &mut Raw) -> ReasonCode {
    let reason = match raw.recv().await {
        Some(Packet::Disconnect(d)) => d.reason,
        other => panic!("expected DISCONNECT, got {other:?}"),
    };
    raw.until_closed().await;
    reason
}

#[tokio::test]
async fn the_server_says_why_it_disconnects() {
    let Some(server) = start_server().await else { return };
    let app = server.create_app().await;
    let creds = app.register("i").await;

    let (mut first, _) = Raw::connect_with(&server.mqtt, v5(&creds, 60, vec![])).await;
    let (mut second, _) = Raw::connect_with(&server.mqtt, v5(&creds, 60, vec![])).await;
    assert_eq!(disconnected(&mut first).await, ReasonCode::SESSION_TAKEN_OVER);

    // A PUBLISH header announcing 10 MB.
    use tokio::io::AsyncWriteExt;
    second.stream.write_all(&[0x30, 0x80, 0xad, 0xe2, 0x04]).await.unwrap();
    assert_eq!(disconnected(&mut second).await, ReasonCode::PACKET_TOO_LARGE);

    let (mut quiet, _) = Raw::connect_with(&server.mqtt, v5(&creds, 1, vec![])).await;
    assert_eq!(disconnected(&mut quiet).await, ReasonCode::KEEP_ALIVE_TIMEOUT);

    let (mut last, _) = Raw::connect_with(&server.mqtt, v5(&creds, 60, vec![])).await;
    let stopping = tokio::task::spawn_blocking(move || server.stop());
    assert_eq!(disconnected(&mut last).await, ReasonCode::SERVER_SHUTTING_DOWN);
    stopping.await.unwrap();
}

#[tokio::test]
async fn a_device_on_mqtt311_still_gets_no_properties_and_closes_silently() {
    let Some(server) = start_server().await else { return };
    let app = server.create_app().await;
    let creds = app.register("i").await;
    let (mut first, ack) =
        Raw::connect_with(&server.mqtt, connect_packet(&creds, 60, Protocol::V311, Properties::new())).await;
    assert!(ack.properties.is_empty());
    let (_second, _) =
        Raw::connect_with(&server.mqtt, connect_packet(&creds, 60, Protocol::V311, Properties::new())).await;
    // 3.1.1 has no server DISCONNECT: the connection just ends.
    assert_eq!(first.recv().await, None);
}

/// The CONNACK a refused MQTT 5 connection from 127.0.0.2 gets: its reason code and the
/// `retry-after-ms` it advises.
async fn refused_from_elsewhere(mqtt: &str, creds: &Creds) -> (ReasonCode, u64) {
    let mut raw = Raw::open_from(mqtt, "127.0.0.2").await;
    raw.send(v5(creds, 60, vec![])).await;
    match raw.recv().await {
        Some(Packet::ConnAck(a)) => {
            let retry = a.properties.user().find(|(k, _)| *k == "retry-after-ms").map(|(_, v)| v.parse().unwrap());
            (a.code, retry.unwrap_or_else(|| panic!("no retry-after-ms: {a:?}")))
        }
        other => panic!("expected CONNACK, got {other:?}"),
    }
}

#[tokio::test]
async fn a_refused_reconnect_is_told_when_to_come_back_with_jitter() {
    let Some((server, creds)) = limited(|mqtt| {
        mqtt.connects_per_second_per_address = 1;
        mqtt.connect_burst_per_address = 1;
        mqtt.max_connections_per_address = 2;
        mqtt.limits_exempt = vec![];
    })
    .await
    else {
        return;
    };
    let mut first = Raw::open_from(&server.mqtt, "127.0.0.2").await;
    first.send(v5(&creds, 60, vec![])).await;
    assert!(matches!(first.recv().await, Some(Packet::ConnAck(a)) if a.code == ReasonCode::SUCCESS));
    // The bucket is empty for about a second: come back in one to two.
    let mut advised = Vec::new();
    // Four refusals, well within the second the bucket takes to refill.
    for _ in 0..4 {
        let (code, retry) = refused_from_elsewhere(&server.mqtt, &creds).await;
        assert_eq!(code, ReasonCode::CONNECTION_RATE_EXCEEDED);
        assert!((1000..2000).contains(&retry), "retry-after-ms {retry}");
        advised.push(retry);
    }
    advised.dedup();
    assert!(advised.len() > 1, "the same advice to every refused client: {advised:?}");

    // Two open (the limit; another device, not a takeover), a third: quota exceeded, come
    // back in 10 to 20 s.
    let other = server.create_app().await.register("j").await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let mut second = Raw::open_from(&server.mqtt, "127.0.0.2").await;
    second.send(v5(&other, 60, vec![])).await;
    assert!(matches!(second.recv().await, Some(Packet::ConnAck(a)) if a.code == ReasonCode::SUCCESS));
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (code, retry) = refused_from_elsewhere(&server.mqtt, &creds).await;
    assert_eq!(code, ReasonCode::QUOTA_EXCEEDED);
    assert!((10_000..20_000).contains(&retry), "retry-after-ms {retry}");
}

/// The server's DISCONNECT is written after what was pending, and what was in flight is
/// still recorded as sent (so that it comes again with DUP).
#[tokio::test]
async fn a_delivery_unacknowledged_when_the_server_disconnects_is_sent_and_comes_again_with_dup() {
    let Some(server) = start_server().await else { return };
    let app = server.create_app().await;
    let creds = app.register("i").await;
    let (mut first, _) = Raw::connect_with(&server.mqtt, v5(&creds, 60, vec![])).await;
    let (_, m) = app.push_to_device(&creds.device_id, "k", "unacked").await;
    assert!(!next_publish(&mut first).await.dup);
    use tokio::io::AsyncWriteExt;
    first.stream.write_all(&[0x30, 0x80, 0xad, 0xe2, 0x04]).await.unwrap();
    assert_eq!(disconnected(&mut first).await, ReasonCode::PACKET_TOO_LARGE);
    app.wait_status(&m, "sent").await;
    let (mut second, _) = Raw::connect_with(&server.mqtt, v5(&creds, 60, vec![])).await;
    let again = next_publish(&mut second).await;
    assert_eq!(user(&again, "messageId"), Some(m.as_str()));
    assert!(again.dup, "written before and not acknowledged: DUP");
}
