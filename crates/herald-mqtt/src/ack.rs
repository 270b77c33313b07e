//! The packets whose whole body is one packet identifier: PUBACK, PUBREC, PUBREL,
//! PUBCOMP (MQTT 3.1.1 §3.4–3.7) and UNSUBACK (§3.11). They differ only in type and flags.

use bytes::{BufMut, Bytes, BytesMut};

use crate::header::{PacketType, write_header};
use crate::{DecodeError, read_packet_id};

macro_rules! id_only_packet {
    ($(#[$doc:meta])* $name:ident, $ty:expr, $flags:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub struct $name {
            pub packet_id: u16,
        }

        impl $name {
            pub(crate) fn decode(mut buf: Bytes) -> Result<Self, DecodeError> {
                let packet_id = read_packet_id(&mut buf)?;
                if !buf.is_empty() {
                    return Err(DecodeError::TrailingBytes);
                }
                Ok($name { packet_id })
            }

            pub(crate) fn encode(&self, out: &mut BytesMut) {
                write_header(out, $ty, $flags, 2);
                out.put_u16(self.packet_id);
            }
        }
    };
}

id_only_packet!(
    /// Acknowledges a QoS 1 PUBLISH; for Herald a device's PUBACK means "arrived".
    PubAck, PacketType::PubAck, 0
);
id_only_packet!(PubRec, PacketType::PubRec, 0);
id_only_packet!(PubRel, PacketType::PubRel, 0b0010);
id_only_packet!(PubComp, PacketType::PubComp, 0);
id_only_packet!(UnsubAck, PacketType::UnsubAck, 0);
