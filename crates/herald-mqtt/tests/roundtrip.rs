//! Property tests: every packet the codec can encode decodes back to itself, in MQTT 3.1.1
//! and MQTT 5, in one piece or fed byte by byte, and arbitrary input never panics the
//! decoder.

use bytes::{Bytes, BytesMut};
use herald_mqtt::*;
use proptest::prelude::*;

fn mqtt_str() -> impl Strategy<Value = MqttStr> {
    "[a-zA-Z0-9/_\\-é]{0,40}".prop_map(MqttStr::new)
}

fn topic_name() -> impl Strategy<Value = MqttStr> {
    "[a-z0-9/_]{1,40}".prop_map(MqttStr::new)
}

fn qos() -> impl Strategy<Value = QoS> {
    prop_oneof![Just(QoS::AtMostOnce), Just(QoS::AtLeastOnce), Just(QoS::ExactlyOnce)]
}

fn payload() -> impl Strategy<Value = Bytes> {
    proptest::collection::vec(any::<u8>(), 0..300).prop_map(Bytes::from)
}

fn protocol() -> impl Strategy<Value = Protocol> {
    prop_oneof![Just(Protocol::V311), Just(Protocol::V5)]
}

/// User properties (allowed in every MQTT 5 packet) and a reason string, or none at all
/// on a 3.1.1 connection.
fn properties(v5: bool, extra: Vec<Property>) -> impl Strategy<Value = Properties> {
    proptest::collection::vec((mqtt_str(), mqtt_str()), 0..3).prop_map(move |pairs| {
        if !v5 {
            return Properties::new();
        }
        let mut props = Properties(extra.clone());
        for (k, v) in pairs {
            props.push(Property::UserProperty(k, v));
        }
        props
    })
}

fn reason(v5: bool, codes: &'static [u8]) -> impl Strategy<Value = ReasonCode> {
    proptest::sample::select(codes).prop_map(move |c| if v5 { ReasonCode(c) } else { ReasonCode::SUCCESS })
}

fn packet_for(protocol: Protocol) -> BoxedStrategy<Packet> {
    let v5 = protocol.is_v5();
    let connect = (
        mqtt_str(),
        any::<bool>(),
        any::<u16>(),
        proptest::option::of(mqtt_str()),
        proptest::option::of(payload()),
        proptest::option::of((
            topic_name(),
            payload(),
            qos(),
            any::<bool>(),
            properties(v5, vec![Property::WillDelayInterval(30), Property::MessageExpiryInterval(60)]),
        )),
        properties(v5, vec![Property::SessionExpiryInterval(3600), Property::ReceiveMaximum(20)]),
    )
        .prop_map(move |(client_id, clean_session, keep_alive, username, password, will, properties)| {
            // MQTT 3.1.1 allows a password only together with a username.
            let password = if username.is_some() || v5 { password } else { None };
            Packet::Connect(Connect {
                protocol,
                clean_session,
                keep_alive,
                client_id,
                will: will.map(|(topic, message, qos, retain, properties)| LastWill {
                    topic,
                    message,
                    qos,
                    retain,
                    properties,
                }),
                username,
                password,
                properties,
            })
        });
    let publish = (
        topic_name(),
        qos(),
        any::<bool>(),
        any::<bool>(),
        1u16..,
        payload(),
        properties(v5, vec![Property::MessageExpiryInterval(259_200), Property::PayloadFormatIndicator(1)]),
    )
        .prop_map(|(topic, qos, dup, retain, id, payload, properties)| {
            let packet_id = (qos != QoS::AtMostOnce).then_some(id);
            Packet::Publish(Publish {
                dup: dup && packet_id.is_some(),
                qos,
                retain,
                topic,
                packet_id,
                payload,
                properties,
            })
        });
    let options = if v5 { 0u8..=2 } else { 0u8..=0 };
    let subscribe = (
        1u16..,
        proptest::collection::vec((topic_name(), qos(), options), 1..5),
        properties(v5, vec![Property::SubscriptionIdentifier(7)]),
    )
        .prop_map(|(packet_id, f, properties)| {
            Packet::Subscribe(Subscribe {
                packet_id,
                filters: f
                    .into_iter()
                    .map(|(filter, qos, o)| SubscribeFilter { filter, qos, options: o << 2 })
                    .collect(),
                properties,
            })
        });
    let suback_codes: &'static [u8] = if v5 { &[0, 1, 2, 0x80, 0x87, 0x8f, 0xa2] } else { &[0, 1, 2, 0x80] };
    let suback = (
        1u16..,
        proptest::collection::vec(proptest::sample::select(suback_codes).prop_map(ReasonCode), 1..5),
        properties(v5, vec![]),
    )
        .prop_map(|(packet_id, return_codes, properties)| {
            Packet::SubAck(SubAck { packet_id, return_codes, properties })
        });
    let unsubscribe = (1u16.., proptest::collection::vec(topic_name(), 1..5), properties(v5, vec![])).prop_map(
        |(packet_id, filters, properties)| Packet::Unsubscribe(Unsubscribe { packet_id, filters, properties }),
    );
    let unsuback = (
        1u16..,
        proptest::collection::vec(proptest::sample::select(&[0u8, 0x11, 0x80, 0x87][..]).prop_map(ReasonCode), 1..4),
        properties(v5, vec![]),
    )
        .prop_map(move |(packet_id, reasons, properties)| {
            let reasons = if v5 { reasons } else { Vec::new() };
            Packet::UnsubAck(UnsubAck { packet_id, reasons, properties })
        });
    let connack_codes: &'static [u8] = if v5 {
        &[0, 0x80, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8c, 0x9f]
    } else {
        &[0, 0x84, 0x85, 0x86, 0x87, 0x88]
    };
    let connack = (
        any::<bool>(),
        proptest::sample::select(connack_codes),
        properties(v5, vec![Property::ReceiveMaximum(32), Property::MaximumPacketSize(65_536)]),
    )
        .prop_map(|(session_present, code, properties)| {
            Packet::ConnAck(ConnAck { session_present, code: ReasonCode(code), properties })
        });
    let ack = || (1u16.., reason(v5, &[0x00, 0x10, 0x80, 0x87, 0x97]), properties(v5, vec![]));
    let rel = || (1u16.., reason(v5, &[0x00, 0x92]), properties(v5, vec![]));
    let disconnect = (reason(v5, &[0x00, 0x04, 0x8b, 0x8d, 0x8e, 0x9f]), properties(v5, vec![]))
        .prop_map(|(reason, properties)| Packet::Disconnect(Disconnect { reason, properties }));
    let mut all = vec![
        connect.boxed(),
        connack.boxed(),
        publish.boxed(),
        ack()
            .prop_map(|(packet_id, reason, properties)| Packet::PubAck(PubAck { packet_id, reason, properties }))
            .boxed(),
        ack()
            .prop_map(|(packet_id, reason, properties)| Packet::PubRec(PubRec { packet_id, reason, properties }))
            .boxed(),
        rel()
            .prop_map(|(packet_id, reason, properties)| Packet::PubRel(PubRel { packet_id, reason, properties }))
            .boxed(),
        rel()
            .prop_map(|(packet_id, reason, properties)| Packet::PubComp(PubComp { packet_id, reason, properties }))
            .boxed(),
        subscribe.boxed(),
        suback.boxed(),
        unsubscribe.boxed(),
        unsuback.boxed(),
        Just(Packet::PingReq).boxed(),
        Just(Packet::PingResp).boxed(),
        disconnect.boxed(),
    ];
    if v5 {
        let auth = (reason(true, &[0x00, 0x18, 0x19]), properties(true, vec![]))
            .prop_map(|(reason, properties)| Packet::Auth(Auth { reason, properties }));
        all.push(auth.boxed());
    }
    proptest::strategy::Union::new(all).boxed()
}

/// A connection's version and a packet it may carry.
fn packet() -> impl Strategy<Value = (Protocol, Packet)> {
    protocol().prop_flat_map(|protocol| packet_for(protocol).prop_map(move |p| (protocol, p)))
}

proptest! {
    #[test]
    fn encode_then_decode_is_identity((v, p) in packet()) {
        let mut buf = BytesMut::new();
        p.encode_with(&mut buf, v);
        let decoded = decode_with(&mut buf, usize::MAX, v).unwrap().unwrap();
        prop_assert_eq!(decoded, p);
        prop_assert!(buf.is_empty());
    }

    #[test]
    fn decoding_byte_by_byte_waits_then_yields_the_packet((v, p) in packet()) {
        let wire = p.to_bytes_with(v);
        let mut buf = BytesMut::new();
        for (i, byte) in wire.iter().enumerate() {
            buf.extend_from_slice(&[*byte]);
            let got = decode_with(&mut buf, usize::MAX, v).unwrap();
            if i + 1 < wire.len() {
                prop_assert!(got.is_none());
            } else {
                prop_assert_eq!(got, Some(p.clone()));
            }
        }
    }

    #[test]
    fn two_packets_in_one_buffer(
        (v, a, b) in protocol().prop_flat_map(|v| (Just(v), packet_for(v), packet_for(v)))
    ) {
        let mut buf = BytesMut::new();
        a.encode_with(&mut buf, v);
        b.encode_with(&mut buf, v);
        prop_assert_eq!(decode_with(&mut buf, usize::MAX, v).unwrap(), Some(a));
        prop_assert_eq!(decode_with(&mut buf, usize::MAX, v).unwrap(), Some(b));
    }

    #[test]
    fn arbitrary_bytes_never_panic(v in protocol(), data in proptest::collection::vec(any::<u8>(), 0..200)) {
        let mut buf = BytesMut::from(&data[..]);
        while let Ok(Some(_)) = decode_with(&mut buf, 4096, v) {}
    }

    #[test]
    fn oversized_packets_are_refused_before_buffering(len in 1025usize..100_000) {
        let p = Packet::Publish(Publish {
            dup: false, qos: QoS::AtMostOnce, retain: false,
            topic: MqttStr::new("t"), packet_id: None, payload: Bytes::from(vec![0u8; len]),
            properties: Properties::new(),
        });
        let wire = p.to_bytes();
        // Only the fixed header has arrived: the size is already known to be too large.
        let mut buf = BytesMut::from(&wire[..5]);
        let is_too_large = matches!(decode(&mut buf, 1024), Err(DecodeError::PacketTooLarge { .. }));
        prop_assert!(is_too_large);
    }
}
