//! CONNACK (MQTT 3.1.1 §3.2).

use bytes::{BufMut, Bytes, BytesMut};

use crate::header::{PacketType, write_header};
use crate::{DecodeError, read_u8};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ConnectReturnCode {
    Accepted = 0,
    UnacceptableProtocolVersion = 1,
    IdentifierRejected = 2,
    ServerUnavailable = 3,
    BadUserNameOrPassword = 4,
    NotAuthorized = 5,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnAck {
    pub session_present: bool,
    pub code: ConnectReturnCode,
}

impl ConnAck {
    pub(crate) fn decode(mut buf: Bytes) -> Result<Self, DecodeError> {
        let flags = read_u8(&mut buf)?;
        let code = match read_u8(&mut buf)? {
            0 => ConnectReturnCode::Accepted,
            1 => ConnectReturnCode::UnacceptableProtocolVersion,
            2 => ConnectReturnCode::IdentifierRejected,
            3 => ConnectReturnCode::ServerUnavailable,
            4 => ConnectReturnCode::BadUserNameOrPassword,
            5 => ConnectReturnCode::NotAuthorized,
            other => return Err(DecodeError::InvalidReturnCode(other)),
        };
        if flags & 0xfe != 0 || !buf.is_empty() {
            return Err(DecodeError::TrailingBytes);
        }
        Ok(ConnAck { session_present: flags & 1 == 1, code })
    }

    pub(crate) fn encode(&self, out: &mut BytesMut) {
        write_header(out, PacketType::ConnAck, 0, 2);
        out.put_u8(self.session_present as u8);
        out.put_u8(self.code as u8);
    }
}
