//! RFC 3339 parsing: never panics, and whatever parses formats back to the same instant.
#![no_main]
use kubernetes_agent::time::{format_rfc3339, parse_rfc3339};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Some(t) = parse_rfc3339(text) {
        assert_eq!(parse_rfc3339(&format_rfc3339(t)), Some(t), "{text}");
    }
});
