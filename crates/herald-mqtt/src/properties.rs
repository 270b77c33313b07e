//! MQTT 5 properties (MQTT 5.0 §2.2.2): a length-prefixed list of identified values
//! after the variable header of most packets. MQTT 3.1.1 packets have none; the codec
//! then keeps an empty [`Properties`] (no allocation).
//!
//! Decoding checks what the specification makes a protocol error: an unknown identifier,
//! a property the packet may not carry, a property given twice that may appear once, and
//! values out of range (a zero Receive Maximum, a boolean other than 0 or 1...).

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::{DecodeError, MqttStr, read_binary, read_u8, read_u16, write_binary};

/// Where a property list sits: which packet (or the will in CONNECT's payload).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    Connect,
    ConnAck,
    Publish,
    Will,
    /// PUBACK, PUBREC, PUBREL, PUBCOMP.
    PubAckFamily,
    Subscribe,
    /// SUBACK and UNSUBACK.
    SubAckFamily,
    Unsubscribe,
    Disconnect,
    Auth,
}

impl Place {
    const fn bit(self) -> u16 {
        1 << self as u16
    }
}

/// One property. Strings and binary data share the frame they were read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Property {
    PayloadFormatIndicator(u8),
    /// Seconds the message stays valid.
    MessageExpiryInterval(u32),
    ContentType(MqttStr),
    ResponseTopic(MqttStr),
    CorrelationData(Bytes),
    SubscriptionIdentifier(u32),
    SessionExpiryInterval(u32),
    AssignedClientIdentifier(MqttStr),
    ServerKeepAlive(u16),
    AuthenticationMethod(MqttStr),
    AuthenticationData(Bytes),
    RequestProblemInformation(u8),
    WillDelayInterval(u32),
    RequestResponseInformation(u8),
    ResponseInformation(MqttStr),
    ServerReference(MqttStr),
    ReasonString(MqttStr),
    ReceiveMaximum(u16),
    TopicAliasMaximum(u16),
    TopicAlias(u16),
    MaximumQoS(u8),
    RetainAvailable(u8),
    UserProperty(MqttStr, MqttStr),
    MaximumPacketSize(u32),
    WildcardSubscriptionAvailable(u8),
    SubscriptionIdentifierAvailable(u8),
    SharedSubscriptionAvailable(u8),
}

const CONNECT: u16 = Place::Connect.bit();
const CONNACK: u16 = Place::ConnAck.bit();
const PUBLISH: u16 = Place::Publish.bit();
const WILL: u16 = Place::Will.bit();
const ACKS: u16 = Place::PubAckFamily.bit();
const SUBSCRIBE: u16 = Place::Subscribe.bit();
const SUBACKS: u16 = Place::SubAckFamily.bit();
const UNSUBSCRIBE: u16 = Place::Unsubscribe.bit();
const DISCONNECT: u16 = Place::Disconnect.bit();
const AUTH: u16 = Place::Auth.bit();
const EVERYWHERE: u16 =
    CONNECT | CONNACK | PUBLISH | WILL | ACKS | SUBSCRIBE | SUBACKS | UNSUBSCRIBE | DISCONNECT | AUTH;

/// The packets allowed to carry the property `id`; `None` for an unknown identifier.
const fn allowed_in(id: u8) -> Option<u16> {
    Some(match id {
        0x01 => PUBLISH | WILL,
        0x02 => PUBLISH | WILL,
        0x03 => PUBLISH | WILL,
        0x08 => PUBLISH | WILL,
        0x09 => PUBLISH | WILL,
        0x0B => PUBLISH | SUBSCRIBE,
        0x11 => CONNECT | CONNACK | DISCONNECT,
        0x12 => CONNACK,
        0x13 => CONNACK,
        0x15 => CONNECT | CONNACK | AUTH,
        0x16 => CONNECT | CONNACK | AUTH,
        0x17 => CONNECT,
        0x18 => WILL,
        0x19 => CONNECT,
        0x1A => CONNACK,
        0x1C => CONNACK | DISCONNECT,
        0x1F => CONNACK | ACKS | SUBACKS | DISCONNECT | AUTH,
        0x21 => CONNECT | CONNACK,
        0x22 => CONNECT | CONNACK,
        0x23 => PUBLISH,
        0x24 => CONNACK,
        0x25 => CONNACK,
        0x26 => EVERYWHERE,
        0x27 => CONNECT | CONNACK,
        0x28 => CONNACK,
        0x29 => CONNACK,
        0x2A => CONNACK,
        _ => return None,
    })
}

impl Property {
    pub fn id(&self) -> u8 {
        match self {
            Property::PayloadFormatIndicator(_) => 0x01,
            Property::MessageExpiryInterval(_) => 0x02,
            Property::ContentType(_) => 0x03,
            Property::ResponseTopic(_) => 0x08,
            Property::CorrelationData(_) => 0x09,
            Property::SubscriptionIdentifier(_) => 0x0B,
            Property::SessionExpiryInterval(_) => 0x11,
            Property::AssignedClientIdentifier(_) => 0x12,
            Property::ServerKeepAlive(_) => 0x13,
            Property::AuthenticationMethod(_) => 0x15,
            Property::AuthenticationData(_) => 0x16,
            Property::RequestProblemInformation(_) => 0x17,
            Property::WillDelayInterval(_) => 0x18,
            Property::RequestResponseInformation(_) => 0x19,
            Property::ResponseInformation(_) => 0x1A,
            Property::ServerReference(_) => 0x1C,
            Property::ReasonString(_) => 0x1F,
            Property::ReceiveMaximum(_) => 0x21,
            Property::TopicAliasMaximum(_) => 0x22,
            Property::TopicAlias(_) => 0x23,
            Property::MaximumQoS(_) => 0x24,
            Property::RetainAvailable(_) => 0x25,
            Property::UserProperty(..) => 0x26,
            Property::MaximumPacketSize(_) => 0x27,
            Property::WildcardSubscriptionAvailable(_) => 0x28,
            Property::SubscriptionIdentifierAvailable(_) => 0x29,
            Property::SharedSubscriptionAvailable(_) => 0x2A,
        }
    }

    fn read(id: u8, buf: &mut Bytes) -> Result<Property, DecodeError> {
        let invalid = DecodeError::InvalidProperty(id);
        let b = |buf: &mut Bytes| match read_u8(buf)? {
            v @ (0 | 1) => Ok(v),
            _ => Err(DecodeError::InvalidProperty(id)),
        };
        let u32_ = |buf: &mut Bytes| {
            if buf.remaining() < 4 { Err(DecodeError::UnexpectedEof) } else { Ok(buf.get_u32()) }
        };
        let s = |buf: &mut Bytes| MqttStr::read(buf);
        Ok(match id {
            0x01 => Property::PayloadFormatIndicator(b(buf)?),
            0x02 => Property::MessageExpiryInterval(u32_(buf)?),
            0x03 => Property::ContentType(s(buf)?),
            0x08 => Property::ResponseTopic(s(buf)?),
            0x09 => Property::CorrelationData(read_binary(buf)?),
            0x0B => match read_varint(buf)? {
                0 => return Err(invalid),
                v => Property::SubscriptionIdentifier(v),
            },
            0x11 => Property::SessionExpiryInterval(u32_(buf)?),
            0x12 => Property::AssignedClientIdentifier(s(buf)?),
            0x13 => Property::ServerKeepAlive(read_u16(buf)?),
            0x15 => Property::AuthenticationMethod(s(buf)?),
            0x16 => Property::AuthenticationData(read_binary(buf)?),
            0x17 => Property::RequestProblemInformation(b(buf)?),
            0x18 => Property::WillDelayInterval(u32_(buf)?),
            0x19 => Property::RequestResponseInformation(b(buf)?),
            0x1A => Property::ResponseInformation(s(buf)?),
            0x1C => Property::ServerReference(s(buf)?),
            0x1F => Property::ReasonString(s(buf)?),
            0x21 => match read_u16(buf)? {
                0 => return Err(invalid),
                v => Property::ReceiveMaximum(v),
            },
            0x22 => Property::TopicAliasMaximum(read_u16(buf)?),
            0x23 => match read_u16(buf)? {
                0 => return Err(invalid),
                v => Property::TopicAlias(v),
            },
            0x24 => Property::MaximumQoS(b(buf)?),
            0x25 => Property::RetainAvailable(b(buf)?),
            0x26 => Property::UserProperty(s(buf)?, s(buf)?),
            0x27 => match u32_(buf)? {
                0 => return Err(invalid),
                v => Property::MaximumPacketSize(v),
            },
            0x28 => Property::WildcardSubscriptionAvailable(b(buf)?),
            0x29 => Property::SubscriptionIdentifierAvailable(b(buf)?),
            0x2A => Property::SharedSubscriptionAvailable(b(buf)?),
            _ => return Err(invalid),
        })
    }

    /// The property's value, by how it is written.
    fn value(&self) -> Value<'_> {
        match self {
            Property::PayloadFormatIndicator(v)
            | Property::RequestProblemInformation(v)
            | Property::RequestResponseInformation(v)
            | Property::MaximumQoS(v)
            | Property::RetainAvailable(v)
            | Property::WildcardSubscriptionAvailable(v)
            | Property::SubscriptionIdentifierAvailable(v)
            | Property::SharedSubscriptionAvailable(v) => Value::Byte(*v),
            Property::ServerKeepAlive(v)
            | Property::ReceiveMaximum(v)
            | Property::TopicAliasMaximum(v)
            | Property::TopicAlias(v) => Value::U16(*v),
            Property::MessageExpiryInterval(v)
            | Property::SessionExpiryInterval(v)
            | Property::WillDelayInterval(v)
            | Property::MaximumPacketSize(v) => Value::U32(*v),
            Property::SubscriptionIdentifier(v) => Value::VarInt(*v),
            Property::ContentType(s)
            | Property::ResponseTopic(s)
            | Property::AssignedClientIdentifier(s)
            | Property::AuthenticationMethod(s)
            | Property::ResponseInformation(s)
            | Property::ServerReference(s)
            | Property::ReasonString(s) => Value::Str(s),
            Property::CorrelationData(b) | Property::AuthenticationData(b) => Value::Binary(b),
            Property::UserProperty(k, v) => Value::Pair(k, v),
        }
    }

    fn wire_len(&self) -> usize {
        1 + match self.value() {
            Value::Byte(_) => 1,
            Value::U16(_) => 2,
            Value::U32(_) => 4,
            Value::VarInt(v) => varint_len(v as usize),
            Value::Str(s) => s.wire_len(),
            Value::Binary(b) => 2 + b.len(),
            Value::Pair(k, v) => k.wire_len() + v.wire_len(),
        }
    }

    fn write(&self, out: &mut BytesMut) {
        out.put_u8(self.id());
        match self.value() {
            Value::Byte(v) => out.put_u8(v),
            Value::U16(v) => out.put_u16(v),
            Value::U32(v) => out.put_u32(v),
            Value::VarInt(v) => write_varint(out, v as usize),
            Value::Str(s) => s.write(out),
            Value::Binary(b) => write_binary(out, b),
            Value::Pair(k, v) => {
                k.write(out);
                v.write(out);
            }
        }
    }
}

/// How a property's value is written (MQTT 5.0 §2.2.2.2).
enum Value<'a> {
    Byte(u8),
    U16(u16),
    U32(u32),
    VarInt(u32),
    Str(&'a MqttStr),
    Binary(&'a Bytes),
    Pair(&'a MqttStr, &'a MqttStr),
}

/// A packet's property list, in the order received (or to be sent).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Properties(pub Vec<Property>);

impl Properties {
    pub fn new() -> Properties {
        Properties(Vec::new())
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Property> {
        self.0.iter()
    }

    pub fn push(&mut self, p: Property) -> &mut Self {
        self.0.push(p);
        self
    }

    /// The first property with this identifier.
    pub fn get(&self, id: u8) -> Option<&Property> {
        self.0.iter().find(|p| p.id() == id)
    }

    /// The user properties, as (name, value) pairs.
    pub fn user(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().filter_map(|p| match p {
            Property::UserProperty(k, v) => Some((k.as_str(), v.as_str())),
            _ => None,
        })
    }

    /// Reads a property list (its length, then the properties) for a packet at `place`.
    pub(crate) fn read(buf: &mut Bytes, place: Place) -> Result<Properties, DecodeError> {
        let len = read_varint(buf)? as usize;
        if buf.remaining() < len {
            return Err(DecodeError::UnexpectedEof);
        }
        let mut list = buf.split_to(len);
        let mut props = Vec::new();
        let mut seen = 0u64;
        while list.has_remaining() {
            let id = read_u8(&mut list)?;
            let Some(allowed) = allowed_in(id) else {
                return Err(DecodeError::InvalidProperty(id));
            };
            if allowed & place.bit() == 0 {
                return Err(DecodeError::InvalidProperty(id));
            }
            // User properties may repeat, and so may subscription identifiers on a PUBLISH.
            let repeatable = id == 0x26 || (id == 0x0B && place == Place::Publish);
            if !repeatable && seen & (1 << id) != 0 {
                return Err(DecodeError::InvalidProperty(id));
            }
            seen |= 1 << id;
            props.push(Property::read(id, &mut list)?);
        }
        Ok(Properties(props))
    }

    /// Bytes of the list without its length prefix.
    pub(crate) fn body_len(&self) -> usize {
        self.0.iter().map(Property::wire_len).sum()
    }

    /// Bytes on the wire: the length prefix and the list.
    pub(crate) fn wire_len(&self) -> usize {
        let body = self.body_len();
        varint_len(body) + body
    }

    pub(crate) fn write(&self, out: &mut BytesMut) {
        write_varint(out, self.body_len());
        for p in &self.0 {
            p.write(out);
        }
    }
}

/// Reads a variable byte integer (at most four bytes, MQTT 5.0 §1.5.5).
pub(crate) fn read_varint(buf: &mut Bytes) -> Result<u32, DecodeError> {
    let mut value = 0u32;
    for i in 0..4 {
        let byte = read_u8(buf)?;
        value |= u32::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err(DecodeError::MalformedRemainingLength)
}

pub(crate) fn varint_len(v: usize) -> usize {
    match v {
        0..=127 => 1,
        128..=16_383 => 2,
        16_384..=2_097_151 => 3,
        _ => 4,
    }
}

/// Writes a variable byte integer (the fixed header's remaining length is one too).
pub(crate) fn write_varint(out: &mut BytesMut, mut v: usize) {
    loop {
        let mut byte = (v % 128) as u8;
        v /= 128;
        if v > 0 {
            byte |= 0x80;
        }
        out.put_u8(byte);
        if v == 0 {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(bytes: &'static [u8], place: Place) -> Result<Properties, DecodeError> {
        Properties::read(&mut Bytes::from_static(bytes), place)
    }

    #[test]
    fn reads_connect_properties() {
        let p = read(b"\x08\x11\x00\x00\x0e\x10\x21\x00\x0a", Place::Connect).unwrap();
        assert_eq!(p.0, vec![Property::SessionExpiryInterval(3600), Property::ReceiveMaximum(10)]);
    }

    #[test]
    fn refuses_what_the_specification_forbids() {
        // Receive Maximum 0.
        assert_eq!(read(b"\x03\x21\x00\x00", Place::Connect), Err(DecodeError::InvalidProperty(0x21)));
        // Given twice.
        assert_eq!(read(b"\x06\x21\x00\x01\x21\x00\x02", Place::Connect), Err(DecodeError::InvalidProperty(0x21)));
        // Topic Alias in a CONNECT.
        assert_eq!(read(b"\x03\x23\x00\x01", Place::Connect), Err(DecodeError::InvalidProperty(0x23)));
        // Unknown identifier.
        assert_eq!(read(b"\x02\x7f\x00", Place::Connect), Err(DecodeError::InvalidProperty(0x7f)));
        // A boolean of 2.
        assert_eq!(read(b"\x02\x17\x02", Place::Connect), Err(DecodeError::InvalidProperty(0x17)));
        // The list is longer than the packet.
        assert_eq!(read(b"\x05\x17\x01", Place::Connect), Err(DecodeError::UnexpectedEof));
        // A value cut by the list's end.
        assert_eq!(read(b"\x02\x21\x00\x01", Place::Connect), Err(DecodeError::UnexpectedEof));
    }

    #[test]
    fn user_properties_repeat() {
        let p = read(b"\x0e\x26\x00\x01a\x00\x01b\x26\x00\x01a\x00\x01c", Place::PubAckFamily).unwrap();
        assert_eq!(p.user().collect::<Vec<_>>(), vec![("a", "b"), ("a", "c")]);
    }

    #[test]
    fn varint_boundaries() {
        for v in [0usize, 127, 128, 16_383, 16_384, 2_097_151, 2_097_152, 268_435_455] {
            let mut out = BytesMut::new();
            write_varint(&mut out, v);
            assert_eq!(out.len(), varint_len(v));
            assert_eq!(read_varint(&mut out.freeze()).unwrap() as usize, v);
        }
    }
}
