//! Request smuggling is refused: every ambiguous or malformed framing of a request body gets
//! 400 and the connection is closed, before anything reaches the backend (or, for a bad chunk
//! inside a body already on its way, without anything after it being read as a request).
//! Raw sockets: exact bytes in, status and close observed.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::time::Duration;

use crate::common::*;
use portico_testkit::proxy::TestProxy;

fn proxy_to(backend: SocketAddr) -> TestProxy {
    TestProxy::start(&proxy_config(&[backend], "", "")).unwrap()
}

/// Each case: a name and the request bytes. A smuggled `GET /smuggled` follows where the
/// framing could hide one.
const REFUSED: &[(&str, &str)] = &[
    (
        "content-length and transfer-encoding",
        "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: h\r\n\r\n",
    ),
    (
        "content-length and transfer-encoding after empty lines",
        "\r\n\r\nPOST / HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: h\r\n\r\n",
    ),
    (
        "transfer-encoding then content-length",
        "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nContent-Length: 30\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: h\r\n\r\n",
    ),
    (
        "two differing content-lengths",
        "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
    ),
    (
        "a content-length list that differs",
        "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5, 6\r\n\r\nhello!",
    ),
    (
        "a content-length list, even of equal values",
        "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5, 5\r\n\r\nhello",
    ),
    (
        "a signed content-length",
        "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: +5\r\n\r\nhello",
    ),
    (
        "a content-length with junk",
        "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5x\r\n\r\nhello",
    ),
    (
        "obs-fold in a header",
        "GET / HTTP/1.1\r\nHost: h\r\nX-Folded: a\r\n b\r\n\r\n",
    ),
    (
        "obs-fold in transfer-encoding",
        "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n",
    ),
    (
        "transfer-encoding not ending in chunked",
        "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n",
    ),
    (
        "transfer-encoding without chunked",
        "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\n\r\nhello",
    ),
    (
        "transfer-encoding identity",
        "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: identity\r\nContent-Length: 5\r\n\r\nhello",
    ),
    (
        "a second transfer-encoding header after chunked",
        "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n\r\n0\r\n\r\n",
    ),
    (
        "an obfuscated chunked",
        "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n",
    ),
    (
        "a space before the colon",
        "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n",
    ),
    (
        "transfer-encoding on HTTP/1.0",
        "POST / HTTP/1.0\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    ),
    (
        "a chunk size that is not hex",
        "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
    ),
    (
        "a negative chunk size",
        "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n-5\r\nhello\r\n0\r\n\r\n",
    ),
    (
        "a chunk size that overflows",
        "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n10000000000000005\r\nhello\r\n0\r\n\r\n",
    ),
    (
        "a 0x chunk size",
        "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n0x5\r\nhello\r\n0\r\n\r\n",
    ),
    (
        "a chunk longer than its size",
        "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nhello\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: h\r\n\r\n",
    ),
];

#[test]
fn ambiguous_or_malformed_framing_gets_400_and_a_close() {
    let backend = echo("b");
    let proxy = proxy_to(backend.addr);
    let mut wrong = Vec::new();
    for (name, raw) in REFUSED {
        let (status, closed, text) = exchange(proxy.addr(), raw.as_bytes());
        if status != Some(400) || !closed || text.contains("/smuggled") {
            wrong.push(format!(
                "{name}: status {status:?}, closed {closed}, got {text:?}"
            ));
        }
    }
    assert!(wrong.is_empty(), "not refused:\n{}", wrong.join("\n"));
    // The double framing is seen however the head is cut into packets.
    let mut c = Conn::open(proxy.addr());
    for part in [
        &b"POST / HTTP/1.1\r\nHost: h\r\nContent-Le"[..],
        b"ngth: 4\r\nTransfer-Enc",
        b"oding: chunked\r\n\r\n0\r\n\r\n",
    ] {
        c.send(part);
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(c.read_response(false).status, 400);
    assert!(c.closed_within(Duration::from_secs(5)));
    // Ordinary framings still work, on one keep-alive connection.
    let mut c = Conn::open(proxy.addr());
    c.send(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello");
    assert_eq!(c.read_response(false).text(), "hello");
    c.send(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello");
    assert_eq!(c.read_response(false).text(), "hello");
    c.send(b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n1\r\n!\r\n0\r\n\r\n");
    assert_eq!(c.read_response(false).text(), "hello!");
    c.send(b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: Chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n");
    assert_eq!(c.read_response(false).text(), "ok");
    let r = c.get("h", "/after");
    assert_eq!(r.status, 200);
    assert!(r.text().contains("GET /after"), "{}", r.text());
}

#[test]
fn nothing_smuggled_reaches_the_backend() {
    // The backend sees every request line it gets; none of the refused cases may deliver
    // a second request (`/smuggled`) to it.
    let backend = echo("b");
    let proxy = proxy_to(backend.addr);
    for (name, raw) in REFUSED.iter().filter(|(_, r)| r.contains("/smuggled")) {
        let (_, _, text) = exchange(proxy.addr(), raw.as_bytes());
        assert!(!text.contains("smuggled"), "{name}: {text}");
    }
    // The backend is still fine for others.
    assert_eq!(get(proxy.addr(), "h", "/ok").status, 200);
}
