//! Feeds arbitrary bytes to the decoder: it must never panic, and every packet it accepts
//! must encode back to bytes that decode to the same packet.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut buf = BytesMut::from(data);
    while let Ok(Some(packet)) = herald_mqtt::decode(&mut buf, 1 << 20) {
        let mut wire = BytesMut::new();
        packet.encode(&mut wire);
        let again = herald_mqtt::decode(&mut wire, usize::MAX).expect("re-decode").expect("complete");
        assert_eq!(again, packet);
    }
});
