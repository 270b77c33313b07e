//! UNSUBSCRIBE (MQTT 3.1.1 §3.10).

use bytes::{BufMut, Bytes, BytesMut};

use crate::header::{PacketType, write_header};
use crate::{DecodeError, MqttStr, read_packet_id};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsubscribe {
    pub packet_id: u16,
    pub filters: Vec<MqttStr>,
}

impl Unsubscribe {
    pub(crate) fn decode(mut buf: Bytes) -> Result<Self, DecodeError> {
        let packet_id = read_packet_id(&mut buf)?;
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
        Ok(Unsubscribe { packet_id, filters })
    }

    pub(crate) fn encode(&self, out: &mut BytesMut) {
        let len = 2 + self.filters.iter().map(MqttStr::wire_len).sum::<usize>();
        write_header(out, PacketType::Unsubscribe, 0b0010, len);
        out.put_u16(self.packet_id);
        for f in &self.filters {
            f.write(out);
        }
    }
}
