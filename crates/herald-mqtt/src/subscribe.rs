//! SUBSCRIBE (MQTT 3.1.1 §3.8, MQTT 5.0 §3.8).

use bytes::{BufMut, Bytes, BytesMut};

use crate::header::{PacketType, write_header};
use crate::properties::{Place, Properties};
use crate::{DecodeError, MqttStr, Protocol, QoS, read_packet_id, read_u8};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscribeFilter {
    pub filter: MqttStr,
    pub qos: QoS,
    /// MQTT 5's other subscription options, as on the wire (bit 2 No Local, bit 3 Retain
    /// As Published, bits 4–5 Retain Handling); 0 in MQTT 3.1.1.
    pub options: u8,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscribe {
    pub packet_id: u16,
    pub filters: Vec<SubscribeFilter>,
    /// MQTT 5 only.
    pub properties: Properties,
}

impl Subscribe {
    pub(crate) fn decode(mut buf: Bytes, protocol: Protocol) -> Result<Self, DecodeError> {
        let packet_id = read_packet_id(&mut buf)?;
        let v5 = protocol.is_v5();
        let properties = if v5 { Properties::read(&mut buf, Place::Subscribe)? } else { Properties::new() };
        let mut filters = Vec::new();
        while !buf.is_empty() {
            let filter = MqttStr::read(&mut buf)?;
            if filter.is_empty() {
                return Err(DecodeError::EmptySubscription);
            }
            let byte = read_u8(&mut buf)?;
            let options = byte & 0xfc;
            if !v5 && options != 0 {
                return Err(DecodeError::InvalidQoS);
            }
            // Reserved bits, or Retain Handling 3.
            if options & 0xc0 != 0 || options & 0x30 == 0x30 {
                return Err(DecodeError::InvalidSubscriptionOptions);
            }
            filters.push(SubscribeFilter { filter, qos: QoS::from_u8(byte & 0x03)?, options });
        }
        if filters.is_empty() {
            return Err(DecodeError::EmptySubscription);
        }
        Ok(Subscribe { packet_id, filters, properties })
    }

    pub(crate) fn encode(&self, out: &mut BytesMut, protocol: Protocol) {
        let v5 = protocol.is_v5();
        let props = if v5 { self.properties.wire_len() } else { 0 };
        let len = 2 + props + self.filters.iter().map(|f| f.filter.wire_len() + 1).sum::<usize>();
        write_header(out, PacketType::Subscribe, 0b0010, len);
        out.put_u16(self.packet_id);
        if v5 {
            self.properties.write(out);
        }
        for f in &self.filters {
            f.filter.write(out);
            out.put_u8(f.qos as u8 | if v5 { f.options } else { 0 });
        }
    }
}
