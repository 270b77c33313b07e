//! The fixed header: packet type, flags and the variable-length "remaining length".

use bytes::{BufMut, BytesMut};

use crate::DecodeError;

/// Largest value the four-byte remaining-length field can carry (MQTT 3.1.1 §2.2.3, MQTT 5.0 §1.5.5).
pub const MAX_REMAINING_LENGTH: usize = 268_435_455;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum PacketType {
    Connect = 1,
    ConnAck = 2,
    Publish = 3,
    PubAck = 4,
    PubRec = 5,
    PubRel = 6,
    PubComp = 7,
    Subscribe = 8,
    SubAck = 9,
    Unsubscribe = 10,
    UnsubAck = 11,
    PingReq = 12,
    PingResp = 13,
    Disconnect = 14,
    /// MQTT 5 only (reserved in 3.1.1).
    Auth = 15,
}

impl PacketType {
    fn from_u8(v: u8) -> Result<Self, DecodeError> {
        Ok(match v {
            1 => PacketType::Connect,
            2 => PacketType::ConnAck,
            3 => PacketType::Publish,
            4 => PacketType::PubAck,
            5 => PacketType::PubRec,
            6 => PacketType::PubRel,
            7 => PacketType::PubComp,
            8 => PacketType::Subscribe,
            9 => PacketType::SubAck,
            10 => PacketType::Unsubscribe,
            11 => PacketType::UnsubAck,
            12 => PacketType::PingReq,
            13 => PacketType::PingResp,
            14 => PacketType::Disconnect,
            15 => PacketType::Auth,
            other => return Err(DecodeError::InvalidPacketType(other)),
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FixedHeader {
    pub packet_type: PacketType,
    /// The low four bits of the first byte.
    pub flags: u8,
    /// Bytes taken by the fixed header itself (2 to 5).
    pub header_len: usize,
    /// Bytes that follow the fixed header.
    pub remaining_len: usize,
}

impl FixedHeader {
    /// Reads the fixed header at the front of `buf` without consuming it; `None` when
    /// the header is not complete yet.
    pub fn peek(buf: &[u8]) -> Result<Option<FixedHeader>, DecodeError> {
        let Some(&first) = buf.first() else {
            return Ok(None);
        };
        let packet_type = PacketType::from_u8(first >> 4)?;
        let mut remaining_len = 0usize;
        let mut shift = 0;
        for (i, &byte) in buf[1..].iter().enumerate() {
            if i == 4 {
                return Err(DecodeError::MalformedRemainingLength);
            }
            remaining_len |= ((byte & 0x7f) as usize) << shift;
            if byte & 0x80 == 0 {
                return Ok(Some(FixedHeader { packet_type, flags: first & 0x0f, header_len: 2 + i, remaining_len }));
            }
            shift += 7;
        }
        if buf.len() > 4 {
            return Err(DecodeError::MalformedRemainingLength);
        }
        Ok(None)
    }
}

/// Writes a fixed header. `remaining_len` must not exceed [`MAX_REMAINING_LENGTH`].
pub fn write_header(out: &mut BytesMut, packet_type: PacketType, flags: u8, remaining_len: usize) {
    debug_assert!(remaining_len <= MAX_REMAINING_LENGTH);
    out.reserve(5 + remaining_len);
    out.put_u8(((packet_type as u8) << 4) | (flags & 0x0f));
    crate::properties::write_varint(out, remaining_len);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remaining_length_boundaries() {
        for len in [0usize, 127, 128, 16_383, 16_384, 2_097_151, 2_097_152, MAX_REMAINING_LENGTH] {
            let mut out = BytesMut::new();
            write_header(&mut out, PacketType::Publish, 0, len);
            let h = FixedHeader::peek(&out).unwrap().unwrap();
            assert_eq!(h.remaining_len, len);
            assert_eq!(h.header_len, out.len());
        }
    }

    #[test]
    fn five_length_bytes_are_malformed() {
        let buf = [0x30, 0xff, 0xff, 0xff, 0xff, 0x01];
        assert_eq!(FixedHeader::peek(&buf), Err(DecodeError::MalformedRemainingLength));
    }

    #[test]
    fn partial_header_needs_more() {
        assert_eq!(FixedHeader::peek(&[0x30, 0x80]), Ok(None));
        assert_eq!(FixedHeader::peek(&[]), Ok(None));
    }

    #[test]
    fn reserved_types_are_refused() {
        assert_eq!(FixedHeader::peek(&[0x00, 0x00]), Err(DecodeError::InvalidPacketType(0)));
        // 15 is AUTH in MQTT 5: `decode_with` refuses it on a 3.1.1 connection.
    }
}
