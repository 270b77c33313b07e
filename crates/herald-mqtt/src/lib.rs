//! Pure MQTT codec (3.1.1 and 5.0) for the Herald gateway.
//!
//! Bytes in, packets out: no I/O, no allocation for payloads. A decoded packet keeps
//! slices ([`Bytes`]) of the frame it came from, so a PUBLISH payload received once can
//! be shared by any number of outgoing frames without a copy.
//!
//! One packet type serves both versions: the MQTT 5 parts (reason codes, [`Properties`])
//! are left out when a packet is written for a 3.1.1 connection and empty when one is read
//! from it. A connection's version is what its CONNECT said ([`Connect::protocol`]); the
//! CONNECT itself decodes whatever version the caller expects.
//!
//! Modules, one per packet (packets of the same shape share one):
//! - [`header`]: fixed header and the variable-length "remaining length";
//! - [`string`]: [`MqttStr`], a UTF-8 checked, zero-copy MQTT string;
//! - [`properties`] and [`reason`]: MQTT 5 properties and reason codes;
//! - [`connect`], [`connack`], [`publish`], [`ack`], [`subscribe`], [`suback`],
//!   [`unsubscribe`], [`disconnect`] (with AUTH); PINGREQ and PINGRESP have no body and
//!   live here.
//!
//! Entry points: [`decode_with`] (take one complete packet off the front of a buffer, or
//! `None` when more bytes are needed) and [`Packet::encode_with`]; [`decode`] and
//! [`Packet::encode`] are the same for MQTT 3.1.1.

pub mod ack;
pub mod connack;
pub mod connect;
pub mod disconnect;
mod error;
pub mod header;
pub mod properties;
pub mod publish;
pub mod reason;
pub mod string;
pub mod suback;
pub mod subscribe;
pub mod unsubscribe;

use bytes::{Buf, Bytes, BytesMut};

pub use ack::{PubAck, PubComp, PubRec, PubRel};
pub use connack::ConnAck;
pub use connect::{Connect, LastWill, Protocol};
pub use disconnect::{Auth, Disconnect};
pub use error::DecodeError;
pub use header::{FixedHeader, PacketType};
pub use properties::{Properties, Property};
pub use publish::{Publish, QoS};
pub use reason::ReasonCode;
pub use string::MqttStr;
pub use suback::SubAck;
pub use subscribe::{Subscribe, SubscribeFilter};
pub use unsubscribe::{UnsubAck, Unsubscribe};

/// One MQTT control packet.
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
    Disconnect(Disconnect),
    /// MQTT 5 only.
    Auth(Auth),
}

/// [`decode_with`] for an MQTT 3.1.1 connection (or for the CONNECT of any connection).
pub fn decode(buf: &mut BytesMut, max_packet_size: usize) -> Result<Option<Packet>, DecodeError> {
    decode_with(buf, max_packet_size, Protocol::V311)
}

/// Takes one complete packet of a `protocol` connection off the front of `buf`.
///
/// Returns `Ok(None)` when `buf` does not yet hold a whole packet (nothing is consumed),
/// and an error as soon as the bytes seen so far cannot be valid, including a declared
/// size above `max_packet_size`, so that a peer cannot make us buffer a huge frame.
pub fn decode_with(
    buf: &mut BytesMut,
    max_packet_size: usize,
    protocol: Protocol,
) -> Result<Option<Packet>, DecodeError> {
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
    decode_body(header, frame, protocol).map(Some)
}

/// Decodes the body of a packet whose fixed header was already read.
pub fn decode_body(header: FixedHeader, body: Bytes, protocol: Protocol) -> Result<Packet, DecodeError> {
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
            ConnAck::decode(body, protocol).map(Packet::ConnAck)
        }
        PacketType::Publish => Publish::decode(flags, body, protocol).map(Packet::Publish),
        PacketType::PubAck => {
            expect_flags(0)?;
            PubAck::decode(body, protocol).map(Packet::PubAck)
        }
        PacketType::PubRec => {
            expect_flags(0)?;
            PubRec::decode(body, protocol).map(Packet::PubRec)
        }
        PacketType::PubRel => {
            expect_flags(0b0010)?;
            PubRel::decode(body, protocol).map(Packet::PubRel)
        }
        PacketType::PubComp => {
            expect_flags(0)?;
            PubComp::decode(body, protocol).map(Packet::PubComp)
        }
        PacketType::Subscribe => {
            expect_flags(0b0010)?;
            Subscribe::decode(body, protocol).map(Packet::Subscribe)
        }
        PacketType::SubAck => {
            expect_flags(0)?;
            SubAck::decode(body, protocol).map(Packet::SubAck)
        }
        PacketType::Unsubscribe => {
            expect_flags(0b0010)?;
            Unsubscribe::decode(body, protocol).map(Packet::Unsubscribe)
        }
        PacketType::UnsubAck => {
            expect_flags(0)?;
            UnsubAck::decode(body, protocol).map(Packet::UnsubAck)
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
            Disconnect::decode(body, protocol).map(Packet::Disconnect)
        }
        PacketType::Auth if protocol.is_v5() => {
            expect_flags(0)?;
            Auth::decode(body, protocol).map(Packet::Auth)
        }
        PacketType::Auth => Err(DecodeError::InvalidPacketType(15)),
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
            Packet::Disconnect(_) => "DISCONNECT",
            Packet::Auth(_) => "AUTH",
        }
    }

    /// [`Packet::encode_with`] for an MQTT 3.1.1 connection.
    pub fn encode(&self, out: &mut BytesMut) {
        self.encode_with(out, Protocol::V311)
    }

    /// Appends the packet, as a `protocol` connection carries it, to `out`. A CONNECT is
    /// written in its own [`Connect::protocol`]; an AUTH only exists in MQTT 5 and is
    /// written as such.
    pub fn encode_with(&self, out: &mut BytesMut, protocol: Protocol) {
        match self {
            Packet::Connect(p) => p.encode(out),
            Packet::ConnAck(p) => p.encode(out, protocol),
            Packet::Publish(p) => p.encode(out, protocol),
            Packet::PubAck(p) => p.encode(out, protocol),
            Packet::PubRec(p) => p.encode(out, protocol),
            Packet::PubRel(p) => p.encode(out, protocol),
            Packet::PubComp(p) => p.encode(out, protocol),
            Packet::Subscribe(p) => p.encode(out, protocol),
            Packet::SubAck(p) => p.encode(out, protocol),
            Packet::Unsubscribe(p) => p.encode(out, protocol),
            Packet::UnsubAck(p) => p.encode(out, protocol),
            Packet::PingReq => header::write_header(out, PacketType::PingReq, 0, 0),
            Packet::PingResp => header::write_header(out, PacketType::PingResp, 0, 0),
            Packet::Disconnect(p) => p.encode(out, protocol),
            Packet::Auth(p) => p.encode(out, Protocol::V5),
        }
    }

    /// The encoded packet (MQTT 3.1.1) as a new buffer.
    pub fn to_bytes(&self) -> Bytes {
        self.to_bytes_with(Protocol::V311)
    }

    /// The encoded packet as a `protocol` connection carries it, as a new buffer.
    pub fn to_bytes_with(&self, protocol: Protocol) -> Bytes {
        let mut out = BytesMut::new();
        self.encode_with(&mut out, protocol);
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
