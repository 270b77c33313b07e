//! Pure MQTT 3.1.1 codec for the Herald gateway.
//!
//! Bytes in, packets out: no I/O, no allocation for payloads. A decoded packet keeps
//! slices ([`Bytes`]) of the frame it came from, so a PUBLISH payload received once can
//! be shared by any number of outgoing frames without a copy.
//!
//! Modules, one per packet (the acknowledgements that carry only a packet id share one):
//! - [`header`]: fixed header and the variable-length "remaining length";
//! - [`string`]: [`MqttStr`], a UTF-8 checked, zero-copy MQTT string;
//! - [`connect`], [`connack`], [`publish`], [`ack`], [`subscribe`], [`suback`],
//!   [`unsubscribe`]; PINGREQ, PINGRESP and DISCONNECT have no body and live here.
//!
//! Entry points: [`decode`] (take one complete packet off the front of a buffer, or
//! `None` when more bytes are needed) and [`Packet::encode`].

pub mod ack;
pub mod connack;
pub mod connect;
mod error;
pub mod header;
pub mod publish;
pub mod string;
pub mod suback;
pub mod subscribe;
pub mod unsubscribe;

use bytes::{Buf, Bytes, BytesMut};

pub use ack::{PubAck, PubComp, PubRec, PubRel, UnsubAck};
pub use connack::{ConnAck, ConnectReturnCode};
pub use connect::{Connect, LastWill, Protocol};
pub use error::DecodeError;
pub use header::{FixedHeader, PacketType};
pub use publish::{Publish, QoS};
pub use string::MqttStr;
pub use suback::{SubAck, SubscribeReturnCode};
pub use subscribe::{Subscribe, SubscribeFilter};
pub use unsubscribe::Unsubscribe;

/// One MQTT 3.1.1 control packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet {
    Connect(Connect),
    ConnAck(ConnAck),
    Publish(Publish),
    PubAck(PubAck),
    PubRec(PubRec),
    PubRel(PubRel),
    PubComp(PubComp),
    Subscribe(Subscribe),
    SubAck(SubAck),
    Unsubscribe(Unsubscribe),
    UnsubAck(UnsubAck),
    PingReq,
    PingResp,
    Disconnect,
}

/// Takes one complete packet off the front of `buf`.
///
/// Returns `Ok(None)` when `buf` does not yet hold a whole packet (nothing is consumed),
/// and an error as soon as the bytes seen so far cannot be valid, including a declared
/// size above `max_packet_size`, so that a peer cannot make us buffer a huge frame.
pub fn decode(buf: &mut BytesMut, max_packet_size: usize) -> Result<Option<Packet>, DecodeError> {
    let Some(header) = FixedHeader::peek(buf)? else {
        return Ok(None);
    };
    let total = header.header_len + header.remaining_len;
    if total > max_packet_size {
        return Err(DecodeError::PacketTooLarge { size: total, max: max_packet_size });
    }
    if buf.len() < total {
        return Ok(None);
    }
    let mut frame = buf.split_to(total).freeze();
    frame.advance(header.header_len);
    decode_body(header, frame).map(Some)
}

/// Decodes the body of a packet whose fixed header was already read.
pub fn decode_body(header: FixedHeader, body: Bytes) -> Result<Packet, DecodeError> {
    let flags = header.flags;
    let expect_flags = |want: u8| {
        if flags == want { Ok(()) } else { Err(DecodeError::InvalidHeaderFlags(header.packet_type)) }
    };
    let empty = |packet: Packet| {
        if body.is_empty() { Ok(packet) } else { Err(DecodeError::TrailingBytes) }
    };
    match header.packet_type {
        PacketType::Connect => {
            expect_flags(0)?;
            Connect::decode(body).map(Packet::Connect)
        }
        PacketType::ConnAck => {
            expect_flags(0)?;
            ConnAck::decode(body).map(Packet::ConnAck)
        }
        PacketType::Publish => Publish::decode(flags, body).map(Packet::Publish),
        PacketType::PubAck => {
            expect_flags(0)?;
            PubAck::decode(body).map(Packet::PubAck)
        }
        PacketType::PubRec => {
            expect_flags(0)?;
            PubRec::decode(body).map(Packet::PubRec)
        }
        PacketType::PubRel => {
            expect_flags(0b0010)?;
            PubRel::decode(body).map(Packet::PubRel)
        }
        PacketType::PubComp => {
            expect_flags(0)?;
            PubComp::decode(body).map(Packet::PubComp)
        }
        PacketType::Subscribe => {
            expect_flags(0b0010)?;
            Subscribe::decode(body).map(Packet::Subscribe)
        }
        PacketType::SubAck => {
            expect_flags(0)?;
            SubAck::decode(body).map(Packet::SubAck)
        }
        PacketType::Unsubscribe => {
            expect_flags(0b0010)?;
            Unsubscribe::decode(body).map(Packet::Unsubscribe)
        }
        PacketType::UnsubAck => {
            expect_flags(0)?;
            UnsubAck::decode(body).map(Packet::UnsubAck)
        }
        PacketType::PingReq => {
            expect_flags(0)?;
            empty(Packet::PingReq)
        }
        PacketType::PingResp => {
            expect_flags(0)?;
            empty(Packet::PingResp)
        }
        PacketType::Disconnect => {
            expect_flags(0)?;
            empty(Packet::Disconnect)
        }
    }
}

impl Packet {
    /// The packet's type as the specification names it (for logs: it carries none of the
    /// client's bytes).
    pub fn name(&self) -> &'static str {
        match self {
            Packet::Connect(_) => "CONNECT",
            Packet::ConnAck(_) => "CONNACK",
            Packet::Publish(_) => "PUBLISH",
            Packet::PubAck(_) => "PUBACK",
            Packet::PubRec(_) => "PUBREC",
            Packet::PubRel(_) => "PUBREL",
            Packet::PubComp(_) => "PUBCOMP",
            Packet::Subscribe(_) => "SUBSCRIBE",
            Packet::SubAck(_) => "SUBACK",
            Packet::Unsubscribe(_) => "UNSUBSCRIBE",
            Packet::UnsubAck(_) => "UNSUBACK",
            Packet::PingReq => "PINGREQ",
            Packet::PingResp => "PINGRESP",
            Packet::Disconnect => "DISCONNECT",
        }
    }

    /// Appends the encoded packet to `out`.
    pub fn encode(&self, out: &mut BytesMut) {
        match self {
            Packet::Connect(p) => p.encode(out),
            Packet::ConnAck(p) => p.encode(out),
            Packet::Publish(p) => p.encode(out),
            Packet::PubAck(p) => p.encode(out),
            Packet::PubRec(p) => p.encode(out),
            Packet::PubRel(p) => p.encode(out),
            Packet::PubComp(p) => p.encode(out),
            Packet::Subscribe(p) => p.encode(out),
            Packet::SubAck(p) => p.encode(out),
            Packet::Unsubscribe(p) => p.encode(out),
            Packet::UnsubAck(p) => p.encode(out),
            Packet::PingReq => header::write_header(out, PacketType::PingReq, 0, 0),
            Packet::PingResp => header::write_header(out, PacketType::PingResp, 0, 0),
            Packet::Disconnect => header::write_header(out, PacketType::Disconnect, 0, 0),
        }
    }

    /// The encoded packet as a new buffer.
    pub fn to_bytes(&self) -> Bytes {
        let mut out = BytesMut::new();
        self.encode(&mut out);
        out.freeze()
    }
}

/// Reads a big-endian u16, or fails with [`DecodeError::UnexpectedEof`].
pub(crate) fn read_u16(buf: &mut Bytes) -> Result<u16, DecodeError> {
    if buf.remaining() < 2 {
        return Err(DecodeError::UnexpectedEof);
    }
    Ok(buf.get_u16())
}

/// Reads one byte, or fails with [`DecodeError::UnexpectedEof`].
pub(crate) fn read_u8(buf: &mut Bytes) -> Result<u8, DecodeError> {
    if !buf.has_remaining() {
        return Err(DecodeError::UnexpectedEof);
    }
    Ok(buf.get_u8())
}

/// Reads a packet identifier, which MQTT forbids to be zero.
pub(crate) fn read_packet_id(buf: &mut Bytes) -> Result<u16, DecodeError> {
    match read_u16(buf)? {
        0 => Err(DecodeError::ZeroPacketId),
        id => Ok(id),
    }
}

/// Reads a length-prefixed binary field (CONNECT password, will message).
pub(crate) fn read_binary(buf: &mut Bytes) -> Result<Bytes, DecodeError> {
    let len = read_u16(buf)? as usize;
    if buf.remaining() < len {
        return Err(DecodeError::UnexpectedEof);
    }
    Ok(buf.split_to(len))
}

pub(crate) fn write_binary(out: &mut BytesMut, data: &[u8]) {
    debug_assert!(data.len() <= u16::MAX as usize);
    out.extend_from_slice(&(data.len() as u16).to_be_bytes());
    out.extend_from_slice(data);
}
