//! CONNECT (MQTT 3.1.1 §3.1, MQTT 5.0 §3.1): the first packet of every connection. It
//! names the protocol version, which the codec then uses for every other packet.

use bytes::{BufMut, Bytes, BytesMut};

use crate::header::{PacketType, write_header};
use crate::properties::{Place, Properties};
use crate::{DecodeError, MqttStr, QoS, read_binary, read_u8, read_u16, write_binary};

/// The protocol the client asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// "MQIsdp", level 3.
    V31,
    /// "MQTT", level 4.
    V311,
    /// "MQTT", level 5.
    V5,
}

impl Protocol {
    pub fn is_v5(self) -> bool {
        self == Protocol::V5
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastWill {
    pub topic: MqttStr,
    pub message: Bytes,
    pub qos: QoS,
    pub retain: bool,
    /// MQTT 5 only.
    pub properties: Properties,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connect {
    pub protocol: Protocol,
    /// "Clean Start" in MQTT 5.
    pub clean_session: bool,
    /// Seconds; 0 turns the keepalive off.
    pub keep_alive: u16,
    pub client_id: MqttStr,
    pub will: Option<LastWill>,
    pub username: Option<MqttStr>,
    pub password: Option<Bytes>,
    /// MQTT 5 only.
    pub properties: Properties,
}

const FLAG_USERNAME: u8 = 0x80;
const FLAG_PASSWORD: u8 = 0x40;
const FLAG_WILL_RETAIN: u8 = 0x20;
const FLAG_WILL: u8 = 0x04;
const FLAG_CLEAN: u8 = 0x02;

impl Connect {
    pub(crate) fn decode(mut buf: Bytes) -> Result<Self, DecodeError> {
        let name = MqttStr::read(&mut buf).map_err(|_| DecodeError::InvalidProtocolName)?;
        let level = read_u8(&mut buf)?;
        let protocol = match (name.as_str(), level) {
            ("MQTT", 4) => Protocol::V311,
            ("MQTT", 5) => Protocol::V5,
            ("MQIsdp", 3) => Protocol::V31,
            ("MQTT", other) | ("MQIsdp", other) => {
                return Err(DecodeError::UnsupportedProtocolLevel(other));
            }
            _ => return Err(DecodeError::InvalidProtocolName),
        };
        let flags = read_u8(&mut buf)?;
        if flags & 0x01 != 0 {
            return Err(DecodeError::InvalidConnectFlags);
        }
        let will_flag = flags & FLAG_WILL != 0;
        let will_qos = (flags >> 3) & 0x03;
        let will_retain = flags & FLAG_WILL_RETAIN != 0;
        if !will_flag && (will_qos != 0 || will_retain) {
            return Err(DecodeError::InvalidConnectFlags);
        }
        if protocol == Protocol::V311 && flags & FLAG_USERNAME == 0 && flags & FLAG_PASSWORD != 0 {
            return Err(DecodeError::InvalidConnectFlags);
        }
        let keep_alive = read_u16(&mut buf)?;
        let v5 = protocol.is_v5();
        let properties = if v5 { Properties::read(&mut buf, Place::Connect)? } else { Properties::new() };
        let client_id = MqttStr::read(&mut buf)?;
        let will = if will_flag {
            let qos = QoS::from_u8(will_qos)?;
            let properties = if v5 { Properties::read(&mut buf, Place::Will)? } else { Properties::new() };
            let topic = MqttStr::read(&mut buf)?;
            let message = read_binary(&mut buf)?;
            Some(LastWill { topic, message, qos, retain: will_retain, properties })
        } else {
            None
        };
        let username = if flags & FLAG_USERNAME != 0 { Some(MqttStr::read(&mut buf)?) } else { None };
        let password = if flags & FLAG_PASSWORD != 0 { Some(read_binary(&mut buf)?) } else { None };
        if !buf.is_empty() {
            return Err(DecodeError::TrailingBytes);
        }
        Ok(Connect {
            protocol,
            clean_session: flags & FLAG_CLEAN != 0,
            keep_alive,
            client_id,
            will,
            username,
            password,
            properties,
        })
    }

    pub(crate) fn encode(&self, out: &mut BytesMut) {
        let (name, level): (&[u8], u8) = match self.protocol {
            Protocol::V311 => (b"MQTT", 4),
            Protocol::V31 => (b"MQIsdp", 3),
            Protocol::V5 => (b"MQTT", 5),
        };
        let v5 = self.protocol.is_v5();
        let mut flags = 0u8;
        let mut len = 2 + name.len() + 1 + 1 + 2 + self.client_id.wire_len();
        if v5 {
            len += self.properties.wire_len();
        }
        if self.clean_session {
            flags |= FLAG_CLEAN;
        }
        if let Some(will) = &self.will {
            flags |= FLAG_WILL | ((will.qos as u8) << 3);
            if will.retain {
                flags |= FLAG_WILL_RETAIN;
            }
            len += will.topic.wire_len() + 2 + will.message.len();
            if v5 {
                len += will.properties.wire_len();
            }
        }
        if let Some(username) = &self.username {
            flags |= FLAG_USERNAME;
            len += username.wire_len();
        }
        if let Some(password) = &self.password {
            flags |= FLAG_PASSWORD;
            len += 2 + password.len();
        }
        write_header(out, PacketType::Connect, 0, len);
        write_binary(out, name);
        out.put_u8(level);
        out.put_u8(flags);
        out.put_u16(self.keep_alive);
        if v5 {
            self.properties.write(out);
        }
        self.client_id.write(out);
        if let Some(will) = &self.will {
            if v5 {
                will.properties.write(out);
            }
            will.topic.write(out);
            write_binary(out, &will.message);
        }
        if let Some(username) = &self.username {
            username.write(out);
        }
        if let Some(password) = &self.password {
            write_binary(out, password);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Packet, decode};

    #[test]
    fn decodes_a_mosquitto_style_connect() {
        // CONNECT, clean session, keepalive 60, client id "dev1", username "app", password "tok".
        let mut bytes = BytesMut::from(&b"\x10\x1e\x00\x04MQTT\x04\xc2\x00\x3c\x00\x04dev1\x00\x03app\x00\x03tok"[..]);
        bytes[1] = (bytes.len() - 2) as u8;
        let packet = decode(&mut bytes, 1024).unwrap().unwrap();
        let Packet::Connect(c) = packet else { panic!("not a connect: {packet:?}") };
        assert_eq!(c.client_id.as_str(), "dev1");
        assert_eq!(c.username.unwrap().as_str(), "app");
        assert_eq!(&c.password.unwrap()[..], b"tok");
        assert_eq!(c.keep_alive, 60);
        assert!(c.clean_session);
        assert!(bytes.is_empty());
    }

    #[test]
    fn decodes_a_mqtt5_connect_with_properties() {
        // Level 5, clean start, keepalive 60, Session Expiry 3600 and Receive Maximum 10,
        // client id "d", password without username (allowed in MQTT 5).
        let mut bytes = BytesMut::from(
            &b"\x10\x19\x00\x04MQTT\x05\x42\x00\x3c\x08\x11\x00\x00\x0e\x10\x21\x00\x0a\x00\x01d\x00\x01p"[..],
        );
        let Packet::Connect(c) = decode(&mut bytes, 1024).unwrap().unwrap() else { panic!() };
        assert_eq!(c.protocol, Protocol::V5);
        assert_eq!(c.client_id.as_str(), "d");
        assert_eq!(c.username, None);
        assert_eq!(&c.password.unwrap()[..], b"p");
        assert_eq!(c.properties.get(0x21), Some(&crate::Property::ReceiveMaximum(10)));
    }

    #[test]
    fn other_levels_are_reported() {
        let mut bytes = BytesMut::from(&b"\x10\x0c\x00\x04MQTT\x06\x02\x00\x3c\x00\x00"[..]);
        assert_eq!(decode(&mut bytes, 1024), Err(DecodeError::UnsupportedProtocolLevel(6)));
    }

    #[test]
    fn password_without_username_is_refused() {
        let mut bytes = BytesMut::from(&b"\x10\x11\x00\x04MQTT\x04\x42\x00\x3c\x00\x00\x00\x03tok"[..]);
        assert_eq!(decode(&mut bytes, 1024), Err(DecodeError::InvalidConnectFlags));
    }
}
