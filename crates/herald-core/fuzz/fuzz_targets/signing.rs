//! Feeds arbitrary query strings and request parts to the signing canonical string: it must
//! never panic; the canonical query does not depend on the parameters' order and is its own
//! canonical form; client input shown in a log line holds no control character and is short.
#![no_main]

use herald_core::signing::{canonical_query, canonical_string};
use herald_core::untrusted::{SHOWN_CHARS, Untrusted};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let query = text.as_ref();
    let canonical = canonical_query(Some(query));
    let reversed: Vec<&str> = query.split('&').rev().collect();
    assert_eq!(canonical_query(Some(&reversed.join("&"))), canonical, "order matters");
    assert_eq!(canonical_query(Some(&canonical)), canonical, "not its own canonical form");
    let parts: Vec<&str> = query.splitn(4, '\n').collect();
    let part = |i: usize| parts.get(i).copied().unwrap_or("");
    let _ = canonical_string(part(0), part(1), Some(part(2)), part(3), "nonce-0123456789", data);

    let shown = Untrusted(query).to_string();
    assert!(!shown.chars().any(char::is_control), "{shown:?}");
    assert!(shown.chars().count() <= SHOWN_CHARS * 10 + 32, "{} characters", shown.chars().count());
});
