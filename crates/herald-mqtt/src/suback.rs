//! SUBACK (MQTT 3.1.1 §3.9, MQTT 5.0 §3.9).

use bytes::{BufMut, Bytes, BytesMut};

use crate::header::{PacketType, write_header};
use crate::properties::{Place, Properties};
use crate::reason::{ReasonCode, allowed, read_reason};
use crate::{DecodeError, Protocol, read_packet_id};

/// SUBACK: one reason per filter of the SUBSCRIBE. A granted QoS is the reason code of the
/// same value (0, 1, 2); MQTT 3.1.1 has one failure, 0x80, which every MQTT 5 failure
/// becomes on a 3.1.1 connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubAck {
    pub packet_id: u16,
    pub return_codes: Vec<ReasonCode>,
    /// MQTT 5 only.
    pub properties: Properties,
}

impl SubAck {
    pub(crate) fn decode(mut buf: Bytes, protocol: Protocol) -> Result<Self, DecodeError> {
        let packet_id = read_packet_id(&mut buf)?;
        let v5 = protocol.is_v5();
        let properties = if v5 { Properties::read(&mut buf, Place::SubAckFamily)? } else { Properties::new() };
        let codes: &[u8] = if v5 { allowed::SUBACK } else { &[0x00, 0x01, 0x02, 0x80] };
        let mut return_codes = Vec::new();
        while !buf.is_empty() {
            return_codes.push(read_reason(&mut buf, codes)?);
        }
        if return_codes.is_empty() {
            return Err(DecodeError::UnexpectedEof);
        }
        Ok(SubAck { packet_id, return_codes, properties })
    }

    pub(crate) fn encode(&self, out: &mut BytesMut, protocol: Protocol) {
        let v5 = protocol.is_v5();
        let props = if v5 { self.properties.wire_len() } else { 0 };
        write_header(out, PacketType::SubAck, 0, 2 + props + self.return_codes.len());
        out.put_u16(self.packet_id);
        if v5 {
            self.properties.write(out);
        }
        for code in &self.return_codes {
            out.put_u8(if v5 || code.0 <= 2 { code.0 } else { 0x80 });
        }
    }
}
