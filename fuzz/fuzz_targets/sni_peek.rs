//! Fuzz the SNI peek (`portico_stream::sni::server_name`), which runs on the bytes a TLS
//! passthrough client sent so far, again after every read. Never a panic; a name found is
//! lower-case ASCII without a trailing dot; once an answer is final (a name, no name, or an
//! error) more bytes do not change it; a prefix of an input with a final answer that is
//! itself final gives the same answer (never another name).
#![no_main]

use libfuzzer_sys::fuzz_target;
use portico_stream::sni::{Peek, server_name};

fuzz_target!(|data: &[u8]| {
    let got = server_name(data);
    if let Ok(Peek::Done(Some(name))) = &got {
        assert!(!name.ends_with('.'), "{name:?}");
        assert!(
            name.bytes()
                .all(|b| b.is_ascii() && !b.is_ascii_uppercase()),
            "{name:?}"
        );
    }
    if matches!(got, Ok(Peek::Done(_))) {
        let mut more = data.to_vec();
        more.extend_from_slice(&[0x17, 3, 3, 0, 2, 0, 0]);
        assert_eq!(
            server_name(&more),
            got,
            "bytes after the ClientHello changed the answer"
        );
        for cut in [data.len() / 2, data.len().saturating_sub(1)] {
            let part = server_name(&data[..cut]);
            if matches!(part, Ok(Peek::Done(_))) {
                assert_eq!(part, got, "prefix {cut} done with another answer");
            }
        }
    }
});
