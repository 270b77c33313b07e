//! SUBSCRIBE (MQTT 3.1.1 §3.8).

use bytes::{BufMut, Bytes, BytesMut};

use crate::header::{PacketType, write_header};
use crate::{DecodeError, MqttStr, QoS, read_packet_id, read_u8};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscribeFilter {
    pub filter: MqttStr,
    pub qos: QoS,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscribe {
    pub packet_id: u16,
    pub filters: Vec<SubscribeFilter>,
}

impl Subscribe {
    pub(crate) fn decode(mut buf: Bytes) -> Result<Self, DecodeError> {
        let packet_id = read_packet_id(&mut buf)?;
        let mut filters = Vec::new();
        while !buf.is_empty() {
            let filter = MqttStr::read(&mut buf)?;
            if filter.is_empty() {
                return Err(DecodeError::EmptySubscription);
            }
            let options = read_u8(&mut buf)?;
            if options & 0xfc != 0 {
                return Err(DecodeError::InvalidQoS);
            }
            filters.push(SubscribeFilter { filter, qos: QoS::from_u8(options)? });
        }
        if filters.is_empty() {
            return Err(DecodeError::EmptySubscription);
        }
        Ok(Subscribe { packet_id, filters })
    }

    pub(crate) fn encode(&self, out: &mut BytesMut) {
        let len = 2 + self.filters.iter().map(|f| f.filter.wire_len() + 1).sum::<usize>();
        write_header(out, PacketType::Subscribe, 0b0010, len);
        out.put_u16(self.packet_id);
        for f in &self.filters {
            f.filter.write(out);
            out.put_u8(f.qos as u8);
        }
    }
}
