//! MQTT UTF-8 strings (MQTT 3.1.1 §1.5.3) held as zero-copy slices of the frame.

use bytes::{Buf, Bytes, BytesMut};

use crate::{DecodeError, read_u16};

/// A string field of a packet: valid UTF-8 without U+0000, at most 65,535 bytes.
///
/// It shares the frame's memory; validation happens once, at decode or construction.
#[derive(Clone, PartialEq, Eq, Hash, Default)]
pub struct MqttStr(Bytes);

impl MqttStr {
    /// Validates `bytes` as an MQTT string.
    pub fn from_bytes(bytes: Bytes) -> Result<Self, DecodeError> {
        let s = std::str::from_utf8(&bytes).map_err(|_| DecodeError::InvalidUtf8)?;
        if s.contains('\0') || bytes.len() > u16::MAX as usize {
            return Err(DecodeError::InvalidUtf8);
        }
        Ok(MqttStr(bytes))
    }

    /// Copies a static or owned string into a new `MqttStr`.
    ///
    /// # Panics
    /// When `s` holds U+0000 or is longer than 65,535 bytes; callers pass their own
    /// constants or values they validated.
    pub fn new(s: impl Into<String>) -> Self {
        let s: String = s.into();
        Self::from_bytes(Bytes::from(s)).expect("valid MQTT string")
    }

    pub fn as_str(&self) -> &str {
        // The constructors checked that the bytes are UTF-8, and the bytes are immutable.
        match std::str::from_utf8(&self.0) {
            Ok(s) => s,
            Err(_) => unreachable!("MqttStr holds validated UTF-8"),
        }
    }

    pub fn as_bytes(&self) -> &Bytes {
        &self.0
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub(crate) fn read(buf: &mut Bytes) -> Result<Self, DecodeError> {
        let len = read_u16(buf)? as usize;
        if buf.remaining() < len {
            return Err(DecodeError::UnexpectedEof);
        }
        Self::from_bytes(buf.split_to(len))
    }

    pub(crate) fn write(&self, out: &mut BytesMut) {
        crate::write_binary(out, &self.0);
    }

    /// Bytes taken on the wire: the two-byte length and the string.
    pub(crate) fn wire_len(&self) -> usize {
        2 + self.0.len()
    }
}

impl std::fmt::Debug for MqttStr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self.as_str(), f)
    }
}

impl std::fmt::Display for MqttStr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq<str> for MqttStr {
    fn eq(&self, other: &str) -> bool {
        self.0 == other.as_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_nul_and_bad_utf8() {
        assert_eq!(MqttStr::from_bytes(Bytes::from_static(b"a\0b")), Err(DecodeError::InvalidUtf8));
        assert_eq!(MqttStr::from_bytes(Bytes::from_static(&[0xff, 0xfe])), Err(DecodeError::InvalidUtf8));
        assert_eq!(MqttStr::from_bytes(Bytes::from_static("héllo".as_bytes())).unwrap().as_str(), "héllo");
    }
}
