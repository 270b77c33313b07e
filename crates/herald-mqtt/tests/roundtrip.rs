//! Property tests: every packet the codec can encode decodes back to itself, in one piece
//! or fed byte by byte, and arbitrary input never panics the decoder.

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

fn packet() -> impl Strategy<Value = Packet> {
    let connect = (
        mqtt_str(),
        any::<bool>(),
        any::<u16>(),
        proptest::option::of(mqtt_str()),
        proptest::option::of(payload()),
        proptest::option::of((topic_name(), payload(), qos(), any::<bool>())),
    )
        .prop_map(|(client_id, clean_session, keep_alive, username, password, will)| {
            // MQTT 3.1.1 allows a password only together with a username.
            let password = if username.is_some() { password } else { None };
            Packet::Connect(Connect {
                protocol: Protocol::V311,
                clean_session,
                keep_alive,
                client_id,
                will: will.map(|(topic, message, qos, retain)| LastWill { topic, message, qos, retain }),
                username,
                password,
            })
        });
    let publish = (topic_name(), qos(), any::<bool>(), any::<bool>(), 1u16.., payload()).prop_map(
        |(topic, qos, dup, retain, id, payload)| {
            let packet_id = (qos != QoS::AtMostOnce).then_some(id);
            Packet::Publish(Publish { dup: dup && packet_id.is_some(), qos, retain, topic, packet_id, payload })
        },
    );
    let subscribe = (1u16.., proptest::collection::vec((topic_name(), qos()), 1..5)).prop_map(|(packet_id, f)| {
        Packet::Subscribe(Subscribe {
            packet_id,
            filters: f.into_iter().map(|(filter, qos)| SubscribeFilter { filter, qos }).collect(),
        })
    });
    let suback = (
        1u16..,
        proptest::collection::vec(
            prop_oneof![qos().prop_map(SubscribeReturnCode::Success), Just(SubscribeReturnCode::Failure)],
            1..5,
        ),
    )
        .prop_map(|(packet_id, return_codes)| Packet::SubAck(SubAck { packet_id, return_codes }));
    let unsubscribe = (1u16.., proptest::collection::vec(topic_name(), 1..5))
        .prop_map(|(packet_id, filters)| Packet::Unsubscribe(Unsubscribe { packet_id, filters }));
    let connack = (any::<bool>(), 0u8..6).prop_map(|(session_present, code)| {
        let code = [
            ConnectReturnCode::Accepted,
            ConnectReturnCode::UnacceptableProtocolVersion,
            ConnectReturnCode::IdentifierRejected,
            ConnectReturnCode::ServerUnavailable,
            ConnectReturnCode::BadUserNameOrPassword,
            ConnectReturnCode::NotAuthorized,
        ][code as usize];
        Packet::ConnAck(ConnAck { session_present, code })
    });
    prop_oneof![
        connect,
        connack,
        publish,
        (1u16..).prop_map(|packet_id| Packet::PubAck(PubAck { packet_id })),
        (1u16..).prop_map(|packet_id| Packet::PubRec(PubRec { packet_id })),
        (1u16..).prop_map(|packet_id| Packet::PubRel(PubRel { packet_id })),
        (1u16..).prop_map(|packet_id| Packet::PubComp(PubComp { packet_id })),
        subscribe,
        suback,
        unsubscribe,
        (1u16..).prop_map(|packet_id| Packet::UnsubAck(UnsubAck { packet_id })),
        Just(Packet::PingReq),
        Just(Packet::PingResp),
        Just(Packet::Disconnect),
    ]
}

proptest! {
    #[test]
    fn encode_then_decode_is_identity(p in packet()) {
        let mut buf = BytesMut::new();
        p.encode(&mut buf);
        let decoded = decode(&mut buf, usize::MAX).unwrap().unwrap();
        prop_assert_eq!(decoded, p);
        prop_assert!(buf.is_empty());
    }

    #[test]
    fn decoding_byte_by_byte_waits_then_yields_the_packet(p in packet()) {
        let wire = p.to_bytes();
        let mut buf = BytesMut::new();
        for (i, byte) in wire.iter().enumerate() {
            buf.extend_from_slice(&[*byte]);
            let got = decode(&mut buf, usize::MAX).unwrap();
            if i + 1 < wire.len() {
                prop_assert!(got.is_none());
            } else {
                prop_assert_eq!(got, Some(p.clone()));
            }
        }
    }

    #[test]
    fn two_packets_in_one_buffer(a in packet(), b in packet()) {
        let mut buf = BytesMut::new();
        a.encode(&mut buf);
        b.encode(&mut buf);
        prop_assert_eq!(decode(&mut buf, usize::MAX).unwrap(), Some(a));
        prop_assert_eq!(decode(&mut buf, usize::MAX).unwrap(), Some(b));
    }

    #[test]
    fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..200)) {
        let mut buf = BytesMut::from(&data[..]);
        while let Ok(Some(_)) = decode(&mut buf, 4096) {}
    }

    #[test]
    fn oversized_packets_are_refused_before_buffering(len in 1025usize..100_000) {
        let p = Packet::Publish(Publish {
            dup: false, qos: QoS::AtMostOnce, retain: false,
            topic: MqttStr::new("t"), packet_id: None, payload: Bytes::from(vec![0u8; len]),
        });
        let wire = p.to_bytes();
        // Only the fixed header has arrived: the size is already known to be too large.
        let mut buf = BytesMut::from(&wire[..5]);
        let is_too_large = matches!(decode(&mut buf, 1024), Err(DecodeError::PacketTooLarge { .. }));
        prop_assert!(is_too_large);
    }
}
