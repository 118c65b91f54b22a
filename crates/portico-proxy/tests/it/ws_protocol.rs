//! A WebSocket peer breaking the framing rules (RFC 6455 §5.2): a frame whose 64-bit
//! payload length has its most significant bit set is not forwarded, and both sides get
//! close 1002 (Protocol Error): the raw client that sent it, and the server (a real
//! tungstenite peer recording what it received).
#![allow(clippy::unwrap_used)]

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use crate::ws_ping::{read_head, recording_backend, ws_closed_by, ws_proxy};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

const T: Duration = Duration::from_secs(10);

/// A masked client frame: FIN + `opcode`, `payload`.
fn masked(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [7, 1, 9, 3];
    let mut f = vec![0x80 | opcode, 0x80 | payload.len() as u8];
    f.extend_from_slice(&mask);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    f
}

async fn top_bit_length_is_closed_with_1002(route: &str) {
    let (backend, seen) = recording_backend().await;
    let proxy = ws_proxy(backend, route);
    let addr = proxy.addr();
    let client = tokio::task::spawn_blocking(move || {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.write_all(
            b"GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
              Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        )
        .unwrap();
        let head = read_head(&mut s);
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        // A good text frame, then (same write) a binary frame announcing 2^63 bytes, then
        // bytes that would be its payload.
        let mut out = masked(0x1, b"hi");
        out.extend_from_slice(&[0x82, 0x80 | 127]);
        out.extend_from_slice(&(1u64 << 63).to_be_bytes());
        out.extend_from_slice(&[0, 0, 0, 0]);
        out.extend_from_slice(b"payload of the bad frame");
        s.write_all(&out).unwrap();
        let start = Instant::now();
        let mut rest = Vec::new();
        let _ = s.read_to_end(&mut rest);
        (rest, start.elapsed())
    });
    let (rest, took) = client.await.unwrap();
    // Portico's close 1002 (unmasked), then the end; the echo of the good frame may come
    // first if the server answered before Portico's close went out.
    let close = [0x88, 0x02, 0x03, 0xea];
    let echo_then_close = [&[0x81, 0x02, b'h', b'i'][..], &close[..]].concat();
    assert!(
        rest == close || rest == echo_then_close,
        "close 1002 at a frame boundary: {rest:?}"
    );
    assert!(took < Duration::from_secs(5), "{took:?}");
    // The server got the good frame and a close 1002, never the bad frame.
    let closed = portico_testkit::eventually::eventually(T, || {
        seen.lock()
            .unwrap()
            .iter()
            .any(|m| matches!(m, Message::Close(Some(f)) if f.code == CloseCode::Protocol))
    });
    let got = seen.lock().unwrap().clone();
    assert!(closed, "server got close 1002: {got:?}");
    assert_eq!(got[0], Message::text("hi"), "{got:?}");
    assert_eq!(ws_closed_by(&proxy), "client_error");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_64_bit_length_with_the_top_bit_set_gets_close_1002_both_ways() {
    top_bit_length_is_closed_with_1002(", read_timeout = \"30s\"").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_with_ws_ping_filtering_frames() {
    top_bit_length_is_closed_with_1002(", read_timeout = \"30s\", ws_ping = \"30s\"").await;
}
