//! A slow upload holding an early response (issue 15 item 6): the echo backend streams a
//! POST body back as it reads it, so its response head comes while the client still
//! uploads (chunked, no declared length, the route has `max_body`). Portico holds that
//! response until the upload ends (an over-limit upload must get 413) — but not for ever:
//! a client trickling one byte every 100 ms (progress each time, so `send_timeout` never
//! fires) gets 408 within the route's `read_timeout` of the response head, and the server
//! is not marked down for it (`max_fails = 1`: the next request is served).
#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::time::{Duration, Instant};

use crate::common::*;
use portico_testkit::proxy::TestProxy;

#[test]
fn a_trickled_upload_holding_an_early_response_gets_408_within_read_timeout() {
    let backend = echo("b1");
    let proxy = TestProxy::start(&proxy_config(
        &[backend.addr],
        "max_fails = 1\nfail_timeout = \"60s\"",
        ", max_body = \"1m\", read_timeout = \"2s\"",
    ))
    .unwrap();
    let mut conn = Conn::open(proxy.addr());
    conn.send(b"POST /upload HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n");
    let mut writer = conn.stream().try_clone().unwrap();
    let started = Instant::now();
    let up = std::thread::spawn(move || {
        // At most 12 s of one-byte chunks; stops once Portico answers and closes.
        for _ in 0..120 {
            if writer.write_all(b"1\r\nz\r\n").is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = writer.write_all(b"0\r\n\r\n");
    });
    let (status, _) = conn.read_head();
    let took = started.elapsed();
    drop(conn);
    let _ = up.join();
    assert_eq!(status, 408, "after {took:?}");
    assert!(
        took >= Duration::from_millis(1500) && took < Duration::from_secs(6),
        "408 after {took:?} (read_timeout 2s)"
    );
    // The client's slowness is no failure of the server.
    for _ in 0..3 {
        assert_eq!(get(proxy.addr(), "h", "/").status, 200);
    }
}
