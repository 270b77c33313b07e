//! SUBACK (MQTT 3.1.1 §3.9).

use bytes::{BufMut, Bytes, BytesMut};

use crate::header::{PacketType, write_header};
use crate::{DecodeError, QoS, read_packet_id};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubscribeReturnCode {
    Success(QoS),
    /// 0x80: the server refused the filter.
    Failure,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubAck {
    pub packet_id: u16,
    pub return_codes: Vec<SubscribeReturnCode>,
}

impl SubAck {
    pub(crate) fn decode(mut buf: Bytes) -> Result<Self, DecodeError> {
        let packet_id = read_packet_id(&mut buf)?;
        let return_codes = buf
            .iter()
            .map(|&code| match code {
                0x80 => Ok(SubscribeReturnCode::Failure),
                0..=2 => Ok(SubscribeReturnCode::Success(QoS::from_u8(code)?)),
                other => Err(DecodeError::InvalidReturnCode(other)),
            })
            .collect::<Result<Vec<_>, _>>()?;
        if return_codes.is_empty() {
            return Err(DecodeError::UnexpectedEof);
        }
        Ok(SubAck { packet_id, return_codes })
    }

    pub(crate) fn encode(&self, out: &mut BytesMut) {
        write_header(out, PacketType::SubAck, 0, 2 + self.return_codes.len());
        out.put_u16(self.packet_id);
        for code in &self.return_codes {
            out.put_u8(match code {
                SubscribeReturnCode::Success(qos) => *qos as u8,
                SubscribeReturnCode::Failure => 0x80,
            });
        }
    }
}
