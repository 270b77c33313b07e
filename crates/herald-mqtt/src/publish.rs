//! PUBLISH (MQTT 3.1.1 §3.3). The payload is a slice of the received frame, and an
//! outgoing payload can be one [`Bytes`] shared by every connection of a fan-out.

use bytes::{BufMut, Bytes, BytesMut};

use crate::header::{PacketType, write_header};
use crate::{DecodeError, MqttStr, read_packet_id};

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
}

impl Publish {
    pub(crate) fn decode(flags: u8, mut buf: Bytes) -> Result<Self, DecodeError> {
        let qos = QoS::from_u8((flags >> 1) & 0x03)?;
        let dup = flags & 0x08 != 0;
        if qos == QoS::AtMostOnce && dup {
            return Err(DecodeError::InvalidHeaderFlags(PacketType::Publish));
        }
        let topic = MqttStr::read(&mut buf)?;
        if topic.is_empty() || topic.as_str().contains(['+', '#']) {
            return Err(DecodeError::InvalidTopicName);
        }
        let packet_id = if qos == QoS::AtMostOnce { None } else { Some(read_packet_id(&mut buf)?) };
        Ok(Publish { dup, qos, retain: flags & 0x01 != 0, topic, packet_id, payload: buf })
    }

    pub(crate) fn encode(&self, out: &mut BytesMut) {
        let mut flags = ((self.qos as u8) << 1) | self.retain as u8;
        if self.dup {
            flags |= 0x08;
        }
        let id_len = if self.packet_id.is_some() { 2 } else { 0 };
        write_header(out, PacketType::Publish, flags, self.topic.wire_len() + id_len + self.payload.len());
        self.topic.write(out);
        if let Some(id) = self.packet_id {
            out.put_u16(id);
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
}
