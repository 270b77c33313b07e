//! The acknowledgements of a PUBLISH: PUBACK, PUBREC, PUBREL, PUBCOMP (MQTT 3.1.1
//! §3.4–3.7, MQTT 5.0 §3.4–3.7). In MQTT 3.1.1 their body is a packet identifier; MQTT 5
//! may add a reason code and properties, both left out on the wire when the reason is
//! Success and there are no properties (the form every 3.1.1 peer also sends).

use bytes::{BufMut, Bytes, BytesMut};

use crate::header::{PacketType, write_header};
use crate::properties::{Place, Properties};
use crate::reason::{ReasonCode, allowed, read_reason};
use crate::{DecodeError, Protocol, read_packet_id};

macro_rules! publish_ack {
    ($(#[$doc:meta])* $name:ident, $ty:expr, $flags:expr, $reasons:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub struct $name {
            pub packet_id: u16,
            /// Always Success in MQTT 3.1.1.
            pub reason: ReasonCode,
            pub properties: Properties,
        }

        impl $name {
            /// A successful acknowledgement without properties.
            pub fn new(packet_id: u16) -> Self {
                $name { packet_id, reason: ReasonCode::SUCCESS, properties: Properties::new() }
            }

            pub(crate) fn decode(mut buf: Bytes, protocol: Protocol) -> Result<Self, DecodeError> {
                let packet_id = read_packet_id(&mut buf)?;
                let mut ack = $name::new(packet_id);
                if protocol.is_v5() && !buf.is_empty() {
                    ack.reason = read_reason(&mut buf, $reasons)?;
                    if !buf.is_empty() {
                        ack.properties = Properties::read(&mut buf, Place::PubAckFamily)?;
                    }
                }
                if !buf.is_empty() {
                    return Err(DecodeError::TrailingBytes);
                }
                Ok(ack)
            }

            pub(crate) fn encode(&self, out: &mut BytesMut, protocol: Protocol) {
                if !protocol.is_v5() || (self.reason == ReasonCode::SUCCESS && self.properties.is_empty()) {
                    write_header(out, $ty, $flags, 2);
                    out.put_u16(self.packet_id);
                } else if self.properties.is_empty() {
                    write_header(out, $ty, $flags, 3);
                    out.put_u16(self.packet_id);
                    out.put_u8(self.reason.0);
                } else {
                    write_header(out, $ty, $flags, 3 + self.properties.wire_len());
                    out.put_u16(self.packet_id);
                    out.put_u8(self.reason.0);
                    self.properties.write(out);
                }
            }
        }
    };
}

publish_ack!(
    /// Acknowledges a QoS 1 PUBLISH; for Herald a device's PUBACK means "arrived".
    PubAck, PacketType::PubAck, 0, allowed::PUBACK
);
publish_ack!(PubRec, PacketType::PubRec, 0, allowed::PUBACK);
publish_ack!(PubRel, PacketType::PubRel, 0b0010, allowed::PUBREL);
publish_ack!(PubComp, PacketType::PubComp, 0, allowed::PUBREL);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Packet, decode_with};

    #[test]
    fn mqtt5_puback_forms() {
        // Two bytes: Success. Three: a reason. Four: a reason and an empty property list.
        for (wire, reason) in [
            (&b"\x40\x02\x00\x07"[..], ReasonCode::SUCCESS),
            (&b"\x40\x03\x00\x07\x10"[..], ReasonCode::NO_MATCHING_SUBSCRIBERS),
            (&b"\x40\x04\x00\x07\x80\x00"[..], ReasonCode::UNSPECIFIED_ERROR),
        ] {
            let mut buf = BytesMut::from(wire);
            let Packet::PubAck(ack) = decode_with(&mut buf, 1024, Protocol::V5).unwrap().unwrap() else { panic!() };
            assert_eq!((ack.packet_id, ack.reason), (7, reason));
        }
    }

    #[test]
    fn a_reason_puback_may_not_carry_is_refused() {
        let mut buf = BytesMut::from(&b"\x40\x03\x00\x07\x8e"[..]);
        assert_eq!(decode_with(&mut buf, 1024, Protocol::V5), Err(DecodeError::InvalidReturnCode(0x8e)));
    }

    #[test]
    fn mqtt311_puback_has_no_reason() {
        let mut buf = BytesMut::from(&b"\x40\x03\x00\x07\x10"[..]);
        assert_eq!(decode_with(&mut buf, 1024, Protocol::V311), Err(DecodeError::TrailingBytes));
    }
}
