//! UNSUBSCRIBE and UNSUBACK (MQTT 3.1.1 §3.10–3.11, MQTT 5.0 §3.10–3.11).

use bytes::{BufMut, Bytes, BytesMut};

use crate::header::{PacketType, write_header};
use crate::properties::{Place, Properties};
use crate::reason::{ReasonCode, allowed, read_reason};
use crate::{DecodeError, MqttStr, Protocol, read_packet_id};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsubscribe {
    pub packet_id: u16,
    pub filters: Vec<MqttStr>,
    /// MQTT 5 only.
    pub properties: Properties,
}

impl Unsubscribe {
    pub(crate) fn decode(mut buf: Bytes, protocol: Protocol) -> Result<Self, DecodeError> {
        let packet_id = read_packet_id(&mut buf)?;
        let properties =
            if protocol.is_v5() { Properties::read(&mut buf, Place::Unsubscribe)? } else { Properties::new() };
        let mut filters = Vec::new();
        while !buf.is_empty() {
            let filter = MqttStr::read(&mut buf)?;
            if filter.is_empty() {
                return Err(DecodeError::EmptySubscription);
            }
            filters.push(filter);
        }
        if filters.is_empty() {
            return Err(DecodeError::EmptySubscription);
        }
        Ok(Unsubscribe { packet_id, filters, properties })
    }

    pub(crate) fn encode(&self, out: &mut BytesMut, protocol: Protocol) {
        let v5 = protocol.is_v5();
        let props = if v5 { self.properties.wire_len() } else { 0 };
        let len = 2 + props + self.filters.iter().map(MqttStr::wire_len).sum::<usize>();
        write_header(out, PacketType::Unsubscribe, 0b0010, len);
        out.put_u16(self.packet_id);
        if v5 {
            self.properties.write(out);
        }
        for f in &self.filters {
            f.write(out);
        }
    }
}

/// UNSUBACK. MQTT 5 gives one reason per filter; MQTT 3.1.1 none (`reasons` is empty).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnsubAck {
    pub packet_id: u16,
    pub reasons: Vec<ReasonCode>,
    pub properties: Properties,
}

impl UnsubAck {
    pub(crate) fn decode(mut buf: Bytes, protocol: Protocol) -> Result<Self, DecodeError> {
        let packet_id = read_packet_id(&mut buf)?;
        let mut ack = UnsubAck { packet_id, reasons: Vec::new(), properties: Properties::new() };
        if protocol.is_v5() {
            ack.properties = Properties::read(&mut buf, Place::SubAckFamily)?;
            while !buf.is_empty() {
                ack.reasons.push(read_reason(&mut buf, allowed::UNSUBACK)?);
            }
            if ack.reasons.is_empty() {
                return Err(DecodeError::UnexpectedEof);
            }
        }
        if !buf.is_empty() {
            return Err(DecodeError::TrailingBytes);
        }
        Ok(ack)
    }

    pub(crate) fn encode(&self, out: &mut BytesMut, protocol: Protocol) {
        if protocol.is_v5() {
            write_header(out, PacketType::UnsubAck, 0, 2 + self.properties.wire_len() + self.reasons.len());
            out.put_u16(self.packet_id);
            self.properties.write(out);
            for r in &self.reasons {
                out.put_u8(r.0);
            }
        } else {
            write_header(out, PacketType::UnsubAck, 0, 2);
            out.put_u16(self.packet_id);
        }
    }
}
