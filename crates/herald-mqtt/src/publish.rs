//! PUBLISH (MQTT 3.1.1 §3.3, MQTT 5.0 §3.3). The payload is a slice of the received frame, and an
//! outgoing payload can be one [`Bytes`] shared by every connection of a fan-out.

use bytes::{BufMut, Bytes, BytesMut};

use crate::header::{PacketType, write_header};
use crate::properties::{Place, Properties};
use crate::{DecodeError, MqttStr, Protocol, read_packet_id};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub enum QoS {
    AtMostOnce = 0,
    AtLeastOnce = 1,
    ExactlyOnce = 2,
}

impl QoS {
    pub fn from_u8(v: u8) -> Result<QoS, DecodeError> {
        match v {
            0 => Ok(QoS::AtMostOnce),
            1 => Ok(QoS::AtLeastOnce),
            2 => Ok(QoS::ExactlyOnce),
            _ => Err(DecodeError::InvalidQoS),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publish {
    pub dup: bool,
    pub qos: QoS,
    pub retain: bool,
    pub topic: MqttStr,
    /// Present exactly when `qos` is above 0.
    pub packet_id: Option<u16>,
    pub payload: Bytes,
    /// MQTT 5 only.
    pub properties: Properties,
}

impl Publish {
    pub(crate) fn decode(flags: u8, mut buf: Bytes, protocol: Protocol) -> Result<Self, DecodeError> {
        let qos = QoS::from_u8((flags >> 1) & 0x03)?;
        let dup = flags & 0x08 != 0;
        if qos == QoS::AtMostOnce && dup {
            return Err(DecodeError::InvalidHeaderFlags(PacketType::Publish));
        }
        let topic = MqttStr::read(&mut buf)?;
        if topic.as_str().contains(['+', '#']) {
            return Err(DecodeError::InvalidTopicName);
        }
        let packet_id = if qos == QoS::AtMostOnce { None } else { Some(read_packet_id(&mut buf)?) };
        let properties = if protocol.is_v5() { Properties::read(&mut buf, Place::Publish)? } else { Properties::new() };
        // MQTT 5 allows an empty topic name only with a Topic Alias standing for it.
        if topic.is_empty() && properties.get(0x23).is_none() {
            return Err(DecodeError::InvalidTopicName);
        }
        Ok(Publish { dup, qos, retain: flags & 0x01 != 0, topic, packet_id, payload: buf, properties })
    }

    pub(crate) fn encode(&self, out: &mut BytesMut, protocol: Protocol) {
        let mut flags = ((self.qos as u8) << 1) | self.retain as u8;
        if self.dup {
            flags |= 0x08;
        }
        let id_len = if self.packet_id.is_some() { 2 } else { 0 };
        let v5 = protocol.is_v5();
        let props = if v5 { self.properties.wire_len() } else { 0 };
        write_header(out, PacketType::Publish, flags, self.topic.wire_len() + id_len + props + self.payload.len());
        self.topic.write(out);
        if let Some(id) = self.packet_id {
            out.put_u16(id);
        }
        if v5 {
            self.properties.write(out);
        }
        out.extend_from_slice(&self.payload);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Packet, decode};

    #[test]
    fn wildcard_topics_are_refused() {
        let mut bytes = BytesMut::from(&b"\x30\x05\x00\x03a/#"[..]);
        assert_eq!(decode(&mut bytes, 1024), Err(DecodeError::InvalidTopicName));
    }

    #[test]
    fn qos1_without_packet_id_is_short() {
        let mut bytes = BytesMut::from(&b"\x32\x05\x00\x03a/b"[..]);
        assert_eq!(decode(&mut bytes, 1024), Err(DecodeError::UnexpectedEof));
    }

    #[test]
    fn payload_shares_the_frame() {
        let mut bytes = BytesMut::from(&b"\x32\x0c\x00\x03a/b\x00\x07hello"[..]);
        let Packet::Publish(p) = decode(&mut bytes, 1024).unwrap().unwrap() else { panic!() };
        assert_eq!(p.packet_id, Some(7));
        assert_eq!(&p.payload[..], b"hello");
    }

    #[test]
    fn mqtt5_publish_carries_properties_before_the_payload() {
        // Message Expiry 60 s, then the payload "hi".
        let mut bytes = BytesMut::from(&b"\x32\x0f\x00\x03a/b\x00\x07\x05\x02\x00\x00\x00\x3chi"[..]);
        let Packet::Publish(p) = crate::decode_with(&mut bytes, 1024, Protocol::V5).unwrap().unwrap() else { panic!() };
        assert_eq!(p.properties.0, vec![crate::Property::MessageExpiryInterval(60)]);
        assert_eq!(&p.payload[..], b"hi");
    }

    #[test]
    fn an_empty_topic_needs_an_alias() {
        let mut bytes = BytesMut::from(&b"\x30\x03\x00\x00\x00"[..]);
        assert_eq!(crate::decode_with(&mut bytes, 1024, Protocol::V5), Err(DecodeError::InvalidTopicName));
        let mut bytes = BytesMut::from(&b"\x30\x06\x00\x00\x03\x23\x00\x01"[..]);
        assert!(crate::decode_with(&mut bytes, 1024, Protocol::V5).unwrap().is_some());
    }
}
