//! Fuzz `Host` validation (`portico_proxy::fuzzing::valid_host`): never a panic, and a valid
//! value has none of the bytes that must never reach routing or a `Location` header
//! (`/`, `\`, `@`, whitespace, controls, `?`, `#`, non-ASCII), no `..`, and at most 253 + 1
//! + 6 bytes plus brackets.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portico_proxy::fuzzing::valid_host;

fuzz_target!(|data: &[u8]| {
    if !valid_host(data) {
        return;
    }
    assert!(!data.is_empty());
    for &b in data {
        assert!(
            b.is_ascii_alphanumeric() || b".-_:[]".contains(&b),
            "byte {b:#x} in a valid host {data:?}"
        );
    }
    if data[0] != b'[' {
        assert!(!data.windows(2).any(|w| w == b".."), "{data:?}");
        assert!(data.len() <= 253 + 1 + 6, "{}", data.len());
    }
});
