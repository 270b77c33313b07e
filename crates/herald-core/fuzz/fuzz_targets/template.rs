//! Feeds arbitrary text to the template renderer: the first line is the text, the rest a
//! JSON object of values. It must never panic, and given a value for every placeholder that
//! `variables` finds, rendering succeeds.
#![no_main]

use herald_core::template::{render, variables};
use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let (template, values) = text.split_once('\n').unwrap_or((text, "{}"));
    if let Ok(Value::Object(kv)) = serde_json::from_str::<Value>(values) {
        let _ = render(template, &kv);
    }
    let names = variables([template]);
    let all: Map<String, Value> = names.iter().map(|n| (n.clone(), Value::String("v".into()))).collect();
    render(template, &all).expect("every placeholder has a value");
});
