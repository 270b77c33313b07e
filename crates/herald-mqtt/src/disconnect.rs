//! DISCONNECT (MQTT 3.1.1 §3.14, MQTT 5.0 §3.14) and AUTH (MQTT 5.0 §3.15).
//!
//! In MQTT 3.1.1 DISCONNECT has no body and only a client sends it. MQTT 5 lets either
//! side send it with a reason (a server: session taken over, keepalive timeout, shutting
//! down...) and properties; an empty body means "normal disconnection". AUTH exists only in
//! MQTT 5 (packet type 15, reserved in 3.1.1) and has the same optional shape.

use bytes::{BufMut, Bytes, BytesMut};

use crate::header::{PacketType, write_header};
use crate::properties::{Place, Properties};
use crate::reason::{ReasonCode, allowed, read_reason};
use crate::{DecodeError, Protocol};

macro_rules! reason_packet {
    ($(#[$doc:meta])* $name:ident, $ty:expr, $place:expr, $reasons:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub struct $name {
            pub reason: ReasonCode,
            pub properties: Properties,
        }

        impl $name {
            pub fn new(reason: ReasonCode) -> Self {
                $name { reason, properties: Properties::new() }
            }

            pub(crate) fn decode(mut buf: Bytes, protocol: Protocol) -> Result<Self, DecodeError> {
                let mut packet = $name::new(ReasonCode::SUCCESS);
                if protocol.is_v5() && !buf.is_empty() {
                    packet.reason = read_reason(&mut buf, $reasons)?;
                    if !buf.is_empty() {
                        packet.properties = Properties::read(&mut buf, $place)?;
                    }
                }
                if !buf.is_empty() {
                    return Err(DecodeError::TrailingBytes);
                }
                Ok(packet)
            }

            pub(crate) fn encode(&self, out: &mut BytesMut, protocol: Protocol) {
                if !protocol.is_v5() || (self.reason == ReasonCode::SUCCESS && self.properties.is_empty()) {
                    write_header(out, $ty, 0, 0);
                } else if self.properties.is_empty() {
                    write_header(out, $ty, 0, 1);
                    out.put_u8(self.reason.0);
                } else {
                    write_header(out, $ty, 0, 1 + self.properties.wire_len());
                    out.put_u8(self.reason.0);
                    self.properties.write(out);
                }
            }
        }

        impl Default for $name {
            fn default() -> Self {
                $name::new(ReasonCode::SUCCESS)
            }
        }
    };
}

reason_packet!(
    /// DISCONNECT; `reason` is Success ("normal disconnection") in MQTT 3.1.1.
    Disconnect, PacketType::Disconnect, Place::Disconnect, allowed::DISCONNECT
);
reason_packet!(
    /// AUTH (MQTT 5 only): a step of enhanced authentication.
    Auth, PacketType::Auth, Place::Auth, allowed::AUTH
);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Packet, decode_with};

    #[test]
    fn a_server_disconnect_with_a_reason_string() {
        let mut d = Disconnect::new(ReasonCode::SESSION_TAKEN_OVER);
        d.properties.push(crate::Property::ReasonString(crate::MqttStr::new("taken over")));
        let mut out = BytesMut::new();
        Packet::Disconnect(d.clone()).encode_with(&mut out, Protocol::V5);
        assert_eq!(&out[..4], b"\xe0\x0f\x8e\x0d");
        assert_eq!(decode_with(&mut out, 1024, Protocol::V5).unwrap(), Some(Packet::Disconnect(d)));
        // The same packet on a 3.1.1 connection has no body.
        let mut out = BytesMut::new();
        Packet::Disconnect(Disconnect::new(ReasonCode::SESSION_TAKEN_OVER)).encode_with(&mut out, Protocol::V311);
        assert_eq!(&out[..], b"\xe0\x00");
    }

    #[test]
    fn auth_is_reserved_in_mqtt311() {
        let mut buf = BytesMut::from(&b"\xf0\x00"[..]);
        assert_eq!(decode_with(&mut buf, 1024, Protocol::V311), Err(DecodeError::InvalidPacketType(15)));
        let mut buf = BytesMut::from(&b"\xf0\x00"[..]);
        assert_eq!(decode_with(&mut buf, 1024, Protocol::V5), Ok(Some(Packet::Auth(Auth::default()))));
    }
}
