//! Fuzz Portico's own HTTP/1.1 client's response-head parser and chunk-size reader
//! (`portico_proxy::fuzzing::{response_head, chunk_size}`). They must never panic; a head
//! parsed whole must parse the same when more bytes follow it (the body, the next
//! response); every strict prefix of it is incomplete or an error, never a different head;
//! a response framed by a transfer coding never keeps its `Content-Length` (issue 15: a
//! kept length truncated the body); a chunk size is at most 15 hex digits.
//!
//! Input: the first byte's bit 0 = HEAD request; the rest is the response bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portico_proxy::fuzzing::{chunk_size, response_head};

fuzz_target!(|data: &[u8]| {
    let Some((&flags, bytes)) = data.split_first() else {
        return;
    };
    let head_request = flags & 1 != 0;
    let whole = response_head(bytes, head_request);
    if let Ok(Some((_, framing, _, keeps_length, used))) = &whole {
        assert!(*used <= bytes.len());
        if framing == "chunked" {
            assert!(!keeps_length, "chunked response kept its Content-Length");
        }
        let mut longer = bytes.to_vec();
        longer.extend_from_slice(b"HTTP/1.1 200 OK\r\n\r\nmore");
        assert_eq!(
            response_head(&longer, head_request),
            whole,
            "trailing bytes"
        );
        for cut in [0, used / 2, used.saturating_sub(1)] {
            if cut < *used {
                let part = response_head(&bytes[..cut], head_request);
                assert!(
                    !matches!(part, Ok(Some(_))),
                    "prefix {cut} parsed as a head"
                );
            }
        }
    }
    for line in bytes.split(|&b| b == b'\n') {
        if let Some(n) = chunk_size(line) {
            assert!(n < 1 << 60);
        }
    }
});
