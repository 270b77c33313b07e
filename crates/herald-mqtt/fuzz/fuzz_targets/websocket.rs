//! Feeds arbitrary bytes, as a client's side of MQTT over WebSocket, to tungstenite with
//! the limits Herald's `/mqtt` sets (gateway/websocket.rs: 256-byte read buffer, messages and
//! frames at most the largest MQTT packet plus 16 bytes), and the binary messages' bytes,
//! in whatever cut they come, to the MQTT decoder: nothing may panic, no message over the
//! limit may get through, and a stream cut into messages decodes to the same packets as the
//! same bytes in one piece.
#![no_main]

use std::io::Cursor;

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use tungstenite::protocol::{Role, WebSocket, WebSocketConfig};
use tungstenite::Message;

/// Herald's default `mqtt.max_packet_bytes`.
const MAX_PACKET: usize = 64 * 1024;

/// A stream that hands out the fuzz input and swallows what the server writes (pongs,
/// close frames).
struct Input(Cursor<Vec<u8>>);

impl std::io::Read for Input {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.0.read(buf)
    }
}

impl std::io::Write for Input {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fuzz_target!(|data: &[u8]| {
    let config = WebSocketConfig::default()
        .read_buffer_size(256)
        .write_buffer_size(0)
        .max_message_size(Some(MAX_PACKET + 16))
        .max_frame_size(Some(MAX_PACKET + 16));
    let mut ws = WebSocket::from_raw_socket(Input(Cursor::new(data.to_vec())), Role::Server, Some(config));
    let (mut cut, mut whole) = (BytesMut::new(), Vec::new());
    let mut packets = Vec::new();
    // The gateway closes the connection at the first malformed packet: nothing after counts.
    let mut refused = false;
    loop {
        match ws.read() {
            Ok(Message::Binary(bytes)) => {
                assert!(bytes.len() <= MAX_PACKET + 16, "a message over the limit got through");
                cut.extend_from_slice(&bytes);
                whole.extend_from_slice(&bytes);
                while !refused {
                    match herald_mqtt::decode(&mut cut, MAX_PACKET) {
                        Ok(Some(packet)) => packets.push(packet),
                        Ok(None) => break,
                        Err(_) => refused = true,
                    }
                }
            }
            Ok(_) => {}
            // The input ran out, or a frame broke the protocol or a limit: the connection ends.
            Err(_) => break,
        }
    }
    // The same bytes in one piece decode to the same packets (up to the first refusal).
    let mut one = BytesMut::from(&whole[..]);
    let mut again = Vec::new();
    while let Ok(Some(packet)) = herald_mqtt::decode(&mut one, MAX_PACKET) {
        again.push(packet);
    }
    assert_eq!(again, packets);
});
