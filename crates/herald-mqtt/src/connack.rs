//! CONNACK (MQTT 3.1.1 §3.2, MQTT 5.0 §3.2).

use bytes::{BufMut, Bytes, BytesMut};

use crate::header::{PacketType, write_header};
use crate::properties::{Place, Properties};
use crate::reason::{ReasonCode, allowed, read_reason};
use crate::{DecodeError, Protocol, read_u8};

/// CONNACK. The outcome is one [`ReasonCode`] for both versions: MQTT 3.1.1 carries it as
/// the nearest return code ([`ReasonCode::to_v3_connack`]), and properties only in MQTT 5.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnAck {
    pub session_present: bool,
    pub code: ReasonCode,
    pub properties: Properties,
}

impl ConnAck {
    pub fn new(session_present: bool, code: ReasonCode) -> ConnAck {
        ConnAck { session_present, code, properties: Properties::new() }
    }

    pub(crate) fn decode(mut buf: Bytes, protocol: Protocol) -> Result<Self, DecodeError> {
        let flags = read_u8(&mut buf)?;
        if flags & 0xfe != 0 {
            return Err(DecodeError::TrailingBytes);
        }
        let (code, properties) = if protocol.is_v5() {
            let code = read_reason(&mut buf, allowed::CONNACK)?;
            (code, Properties::read(&mut buf, Place::ConnAck)?)
        } else {
            let raw = read_u8(&mut buf)?;
            let code = ReasonCode::from_v3_connack(raw).ok_or(DecodeError::InvalidReturnCode(raw))?;
            (code, Properties::new())
        };
        if !buf.is_empty() {
            return Err(DecodeError::TrailingBytes);
        }
        Ok(ConnAck { session_present: flags & 1 == 1, code, properties })
    }

    pub(crate) fn encode(&self, out: &mut BytesMut, protocol: Protocol) {
        if protocol.is_v5() {
            write_header(out, PacketType::ConnAck, 0, 2 + self.properties.wire_len());
            out.put_u8(self.session_present as u8);
            out.put_u8(self.code.0);
            self.properties.write(out);
        } else {
            write_header(out, PacketType::ConnAck, 0, 2);
            out.put_u8(self.session_present as u8);
            out.put_u8(self.code.to_v3_connack());
        }
    }
}
