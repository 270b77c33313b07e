//! Feeds arbitrary bytes to the decoder of either protocol version (the first byte picks
//! it): it must never panic, and every packet it accepts must encode back to bytes that
//! decode to the same packet.
#![no_main]

use bytes::BytesMut;
use herald_mqtt::Protocol;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else { return };
    let protocol = if first & 1 == 1 { Protocol::V5 } else { Protocol::V311 };
    let mut buf = BytesMut::from(rest);
    while let Ok(Some(packet)) = herald_mqtt::decode_with(&mut buf, 1 << 20, protocol) {
        let mut wire = BytesMut::new();
        packet.encode_with(&mut wire, protocol);
        let again = herald_mqtt::decode_with(&mut wire, usize::MAX, protocol).expect("re-decode").expect("complete");
        assert_eq!(again, packet);
    }
});
