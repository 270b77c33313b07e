//! Feeds arbitrary bytes to the push request parser as each push type's body: it must never
//! panic; a request it reads must read again the same from the JSON it stores for a
//! schedule; a Simple push it accepts must make messages whose payloads are JSON objects.
#![no_main]

use herald_core::ids::AppId;
use herald_core::limits::Limits;
use herald_core::push::SimplePush;
use herald_core::push::request::PushRequest;
use herald_core::state::PushType;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limits = Limits::default();
    for push_type in PushType::ALL {
        let Ok(request) = PushRequest::from_json(*push_type, data) else { continue };
        let stored = request.to_json();
        let again = PushRequest::from_json(*push_type, stored.as_bytes()).expect("a stored request reads again");
        assert_eq!(again.to_json(), stored);
        if let PushRequest::Simple(r) = &request
            && let Ok(push) = SimplePush::parse(r, &limits)
            && let Ok(new) = push.into_new_push(AppId::new("a"), 1_764_339_000_000, &limits)
        {
            for m in &new.messages {
                let payload: serde_json::Value = serde_json::from_slice(&m.payload).expect("payload is JSON");
                assert!(payload.is_object());
                assert!(m.payload.len() <= limits.max_payload_bytes, "payload over the limit");
            }
        }
    }
});
