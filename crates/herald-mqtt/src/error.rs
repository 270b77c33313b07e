use crate::header::PacketType;

/// Why a byte sequence is not a valid MQTT packet. Any of these ends the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// The remaining-length field runs past four bytes.
    MalformedRemainingLength,
    /// The frame is larger than the configured limit.
    PacketTooLarge { size: usize, max: usize },
    /// Packet type 0 or 15: reserved.
    InvalidPacketType(u8),
    /// Flags in the fixed header that the packet type does not allow.
    InvalidHeaderFlags(PacketType),
    /// The frame ends before a field it announces.
    UnexpectedEof,
    /// Bytes left over after the last field.
    TrailingBytes,
    /// CONNECT with a protocol name other than "MQTT" (or "MQIsdp" for 3.1).
    InvalidProtocolName,
    /// CONNECT with a protocol level this codec does not speak (5 = MQTT 5.0).
    UnsupportedProtocolLevel(u8),
    /// CONNECT flags that contradict each other or set the reserved bit.
    InvalidConnectFlags,
    /// A string that is not UTF-8 or holds U+0000.
    InvalidUtf8,
    /// QoS 3.
    InvalidQoS,
    /// A packet identifier of 0 where one is required.
    ZeroPacketId,
    /// A PUBLISH topic name with a wildcard, or an empty one.
    InvalidTopicName,
    /// A SUBSCRIBE or UNSUBSCRIBE without any topic filter, or an empty filter.
    EmptySubscription,
    /// A return or reason code the packet may not carry.
    InvalidReturnCode(u8),
    /// An MQTT 5 property that is unknown, not allowed in the packet, repeated, or out of
    /// range.
    InvalidProperty(u8),
    /// MQTT 5 subscription options with reserved bits set or Retain Handling 3.
    InvalidSubscriptionOptions,
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DecodeError::MalformedRemainingLength => f.write_str("malformed remaining length"),
            DecodeError::PacketTooLarge { size, max } => {
                write!(f, "packet of {size} bytes exceeds the limit of {max}")
            }
            DecodeError::InvalidPacketType(t) => write!(f, "reserved packet type {t}"),
            DecodeError::InvalidHeaderFlags(t) => write!(f, "invalid fixed-header flags for {t:?}"),
            DecodeError::UnexpectedEof => f.write_str("packet shorter than its fields"),
            DecodeError::TrailingBytes => f.write_str("bytes after the last field"),
            DecodeError::InvalidProtocolName => f.write_str("protocol name is not MQTT"),
            DecodeError::UnsupportedProtocolLevel(l) => write!(f, "unsupported protocol level {l}"),
            DecodeError::InvalidConnectFlags => f.write_str("invalid CONNECT flags"),
            DecodeError::InvalidUtf8 => f.write_str("string is not valid MQTT UTF-8"),
            DecodeError::InvalidQoS => f.write_str("QoS 3 is not allowed"),
            DecodeError::ZeroPacketId => f.write_str("packet identifier 0"),
            DecodeError::InvalidTopicName => f.write_str("topic name empty or with a wildcard"),
            DecodeError::EmptySubscription => f.write_str("no topic filter, or an empty one"),
            DecodeError::InvalidReturnCode(c) => write!(f, "reason code {c:#04x} not allowed in this packet"),
            DecodeError::InvalidProperty(id) => write!(f, "property {id:#04x} invalid in this packet"),
            DecodeError::InvalidSubscriptionOptions => f.write_str("invalid subscription options"),
        }
    }
}

impl std::error::Error for DecodeError {}
