//! Server limits: header_timeout, keepalive_timeout, max_connections, malformed requests.
#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::time::{Duration, Instant};

use crate::common::*;
use portico_testkit::proxy::TestProxy;

fn respond_site(server: &str) -> String {
    format!(
        "[server]\n{server}\n[[sites]]\nlisten = [\"127.0.0.1:0\"]\nroutes = [{{ path = \"/\", respond = \"ok\" }}]\n"
    )
}

#[test]
fn header_timeout_closes_a_slow_client() {
    let proxy = TestProxy::start(&respond_site(
        "header_timeout = \"300ms\"\nkeepalive_timeout = \"30s\"",
    ))
    .unwrap();
    let mut conn = Conn::open(proxy.addr());
    conn.send(b"GET / HTTP/1.1\r\nHost: h\r\n");
    let start = Instant::now();
    assert!(
        conn.closed_within(Duration::from_secs(5)),
        "slow client must be closed"
    );
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_millis(200) && waited < Duration::from_secs(3),
        "{waited:?}"
    );
    // Other clients are served.
    assert_eq!(get(proxy.addr(), "h", "/").text(), "ok");
}

#[test]
fn header_timeout_also_bounds_later_heads_on_a_keepalive_connection() {
    let proxy = TestProxy::start(&respond_site(
        "header_timeout = \"300ms\"\nkeepalive_timeout = \"30s\"",
    ))
    .unwrap();
    let mut conn = Conn::open(proxy.addr());
    assert_eq!(conn.get("h", "/").text(), "ok");
    // Idle within keepalive_timeout: still open after more than header_timeout.
    std::thread::sleep(Duration::from_millis(700));
    assert_eq!(conn.get("h", "/").text(), "ok");
    // A second head that never ends is cut after about header_timeout, not keepalive_timeout.
    conn.send(b"GET / HTTP/1.1\r\nHost: h\r\n");
    let start = Instant::now();
    assert!(conn.eof_within(Duration::from_secs(5)));
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
}

#[test]
fn keepalive_timeout_closes_idle_connections() {
    let proxy = TestProxy::start(&respond_site(
        "header_timeout = \"30s\"\nkeepalive_timeout = \"300ms\"",
    ))
    .unwrap();
    let mut conn = Conn::open(proxy.addr());
    assert_eq!(conn.get("h", "/").text(), "ok");
    let start = Instant::now();
    assert!(conn.closed_within(Duration::from_secs(5)));
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_millis(200) && waited < Duration::from_secs(3),
        "{waited:?}"
    );
}

#[test]
fn keepalive_connection_in_use_is_not_closed() {
    let proxy = TestProxy::start(&respond_site("keepalive_timeout = \"300ms\"")).unwrap();
    let mut conn = Conn::open(proxy.addr());
    for _ in 0..8 {
        assert_eq!(conn.get("h", "/").text(), "ok");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn max_connections_pauses_accepting_then_serves() {
    let proxy = TestProxy::start(&respond_site(
        "max_connections = 2\nkeepalive_timeout = \"30s\"",
    ))
    .unwrap();
    let mut a = Conn::open(proxy.addr());
    let mut b = Conn::open(proxy.addr());
    assert_eq!(a.get("h", "/").text(), "ok");
    assert_eq!(b.get("h", "/").text(), "ok");
    // The third connection completes the TCP handshake (kernel backlog) but is not served.
    let mut c = Conn::open(proxy.addr());
    c.send(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n");
    c.stream()
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut byte = [0u8; 1];
    let early = std::io::Read::read(&mut c.reader, &mut byte);
    assert!(early.is_err(), "third connection must wait, got {early:?}");
    c.stream().set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    assert_eq!(proxy.server().connections(), 2);
    // Closing one lets the waiting one in.
    drop(a);
    let r = c.read_response(false);
    assert_eq!(r.status, 200);
    assert_eq!(b.get("h", "/").text(), "ok");
}

#[test]
fn malformed_request_gets_400_and_others_are_unaffected() {
    let proxy = TestProxy::start(&respond_site("")).unwrap();
    let mut good = Conn::open(proxy.addr());
    assert_eq!(good.get("h", "/").text(), "ok");
    let mut bad = Conn::open(proxy.addr());
    bad.send(b"GET / HTTP/1.1\r\nHost h\r\nBroken header\r\n\r\n");
    let r = bad.read_response(false);
    assert_eq!(r.status, 400);
    assert!(bad.closed_within(Duration::from_secs(5)));
    let mut garbage = Conn::open(proxy.addr());
    garbage
        .stream()
        .write_all(b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03garbage\r\n\r\n")
        .unwrap();
    assert!(
        garbage.eof_within(Duration::from_secs(5)),
        "garbage gets an answer and a close"
    );
    assert_eq!(good.get("h", "/").text(), "ok");
}

#[test]
fn graceful_shutdown_closes_idle_keepalive_connections_at_once() {
    let proxy = TestProxy::start(&respond_site(
        "keepalive_timeout = \"60s\"\nshutdown_grace = \"20s\"",
    ))
    .unwrap();
    let mut idle = Conn::open(proxy.addr());
    assert_eq!(idle.get("h", "/").text(), "ok");
    let start = Instant::now();
    proxy.server().shutdown();
    assert!(idle.closed_within(Duration::from_secs(5)));
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "{:?}",
        start.elapsed()
    );
    proxy.shutdown_and_wait();
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "no wait for the grace period"
    );
}

#[test]
fn a_taken_port_is_a_start_error_naming_the_address() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let toml = format!(
        "[[sites]]\nlisten = [\"{addr}\"]\nroutes = [{{ path = \"/\", respond = \"ok\" }}]\n"
    );
    let err = TestProxy::start(&toml).unwrap_err();
    let text = format!("{err:#}");
    assert!(text.contains(&addr.to_string()), "{text}");
}
