//! Traffic policy through the in-process proxy with real sockets: `access` rules by source
//! address (clients bound to 127.0.0.2 and 127.0.0.3), on a site and on its routes.

#![allow(clippy::unwrap_used)]

use crate::common;

use std::io::BufReader;
use std::net::{IpAddr, SocketAddr, TcpStream};

use common::*;
use portico_testkit::proxy::TestProxy;
use socket2::{Domain, Socket, Type};

/// A client connection to `to` from the address `from` (any port).
fn conn_from(from: &str, to: SocketAddr) -> Conn {
    let ip: IpAddr = from.parse().unwrap();
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    socket.bind(&SocketAddr::new(ip, 0).into()).unwrap();
    socket.connect(&to.into()).unwrap();
    let s: TcpStream = socket.into();
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    s.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    Conn {
        reader: BufReader::new(s),
    }
}

fn status_from(from: &str, to: SocketAddr, path: &str) -> (u16, String) {
    let r = conn_from(from, to).get("example.com", path);
    (r.status, r.text())
}

#[test]
fn access_rules_allow_and_deny_by_source_address_first_match_wins() {
    let backend = echo("b1");
    let proxy = TestProxy::start(&format!(
        r#"
[upstreams.app]
servers = ["{}"]

[[sites]]
listen = ["127.0.0.1:0"]
access = ["deny 127.0.0.3", "allow 127.0.0.0/8", "deny all"]
routes = [
  {{ path = "/", proxy = "app" }},
  {{ path = "/open", respond = "open\n", access = [] }},
  {{ path = "/only2", respond = "two\n", access = ["allow 127.0.0.2", "deny all"] }},
  {{ path = "/static", root = "www", access = ["deny 127.0.0.2/32"] }},
]
"#,
        backend.addr
    ))
    .unwrap();
    let addr = proxy.addr();
    // The site's list: 127.0.0.3 matches its first rule (deny) before the /8 allow.
    let (s, body) = status_from("127.0.0.2", addr, "/x");
    assert_eq!((s, body.as_str()), (200, "b1\nGET /x HTTP/1.1\n"));
    assert_eq!(
        status_from("127.0.0.3", addr, "/x"),
        (403, "403 Forbidden\n".into())
    );
    assert_eq!(status_from("127.0.0.1", addr, "/x").0, 200);
    // A route's empty list replaces the site's: everyone passes.
    assert_eq!(status_from("127.0.0.3", addr, "/open").0, 200);
    // A route's own list.
    assert_eq!(status_from("127.0.0.2", addr, "/only2").0, 200);
    assert_eq!(status_from("127.0.0.1", addr, "/only2").0, 403);
    assert_eq!(status_from("127.0.0.3", addr, "/only2").0, 403);
    // On a static route, checked before the file system is looked at.
    assert_eq!(status_from("127.0.0.2", addr, "/static/none").0, 403);
    assert_eq!(status_from("127.0.0.3", addr, "/static/none").0, 404);
    // A refused request keeps the connection usable (403 is an answer, not a close).
    let mut c = conn_from("127.0.0.3", addr);
    assert_eq!(c.get("example.com", "/x").status, 403);
    assert_eq!(c.get("example.com", "/open").status, 200);
    // The backend saw only the allowed proxied requests.
    assert_eq!(backend.connections_accepted(), 1);
}

fn upgrade_from(from: &str, to: SocketAddr, path: &str) -> (Conn, u16, Resp) {
    let mut c = conn_from(from, to);
    c.send(
        format!(
            "GET {path} HTTP/1.1\r\nHost: example.com\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
             Sec-WebSocket-Version: 13\r\n\r\n"
        )
        .as_bytes(),
    );
    let r = c.read_response(false);
    (c, r.status, r)
}

#[test]
fn limit_rate_refuses_past_rate_and_burst_with_429_and_passes_again_after_the_window() {
    let backend = echo("b1");
    let proxy = TestProxy::start(&format!(
        r#"
[upstreams.app]
servers = ["{}"]

[[sites]]
listen = ["127.0.0.1:0"]
limit_rate = {{ rate = "5r/s", burst = 4 }}
routes = [
  {{ path = "/", proxy = "app" }},
  {{ path = "/free", respond = "free\n", limit_rate = {{ rate = "1000r/s", burst = 1000 }} }},
]
"#,
        backend.addr
    ))
    .unwrap();
    let addr = proxy.addr();
    // 20 requests at once from 127.0.0.2 on one connection: burst + 1 = 5 pass at once, plus
    // one per 200 ms that the loop takes (it takes far less on loopback; allow two).
    let mut c = conn_from("127.0.0.2", addr);
    let mut ok = 0;
    let mut refused = Vec::new();
    let started = std::time::Instant::now();
    for i in 0..20 {
        let r = c.get("example.com", &format!("/r{i}"));
        match r.status {
            200 => ok += 1,
            429 => refused.push(r),
            s => panic!("unexpected {s}"),
        }
    }
    let took = started.elapsed();
    let extra = (took.as_millis() / 200) as usize;
    assert!(
        (5..=5 + extra).contains(&ok),
        "{ok} passed in {took:?}: burst 4 + 1, then 5 r/s"
    );
    assert_eq!(ok + refused.len(), 20);
    for r in &refused {
        assert_eq!(r.header("retry-after"), Some("1"), "{:?}", r.headers);
        assert_eq!(r.text(), "429 Too Many Requests\n");
    }
    // Another client has its own count; a route with its own (high) limit is not counted
    // in the site's.
    assert_eq!(status_from("127.0.0.3", addr, "/x").0, 200);
    assert_eq!(c.get("example.com", "/free").status, 200);
    // A WebSocket upgrade counts as a request: refused too.
    let (_ws, status, r) = upgrade_from("127.0.0.2", addr, "/ws");
    assert_eq!(status, 429, "{:?}", r.headers);
    // After the window (Retry-After), the client passes again: the full burst drains in
    // (burst + 1) / rate = 1 s.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let mut again = 0;
    for _ in 0..5 {
        if c.get("example.com", "/later").status == 200 {
            again += 1;
        }
    }
    assert_eq!(again, 5, "the burst is back after the window");
    let (_ws, status, _) = upgrade_from("127.0.0.4", addr, "/ws");
    assert_eq!(status, 101, "a WebSocket of a fresh client passes");
}

#[test]
fn limit_conn_refuses_the_n_plus_first_websocket_of_a_client() {
    let backend = echo("b1");
    let proxy = TestProxy::start(&format!(
        r#"
[upstreams.app]
servers = ["{}"]

[[sites]]
listen = ["127.0.0.1:0"]
routes = [{{ path = "/", proxy = "app", limit_conn = 2 }}]
"#,
        backend.addr
    ))
    .unwrap();
    let addr = proxy.addr();
    let (ws1, s1, _) = upgrade_from("127.0.0.2", addr, "/ws");
    let (_ws2, s2, _) = upgrade_from("127.0.0.2", addr, "/ws");
    assert_eq!((s1, s2), (101, 101));
    let (_ws3, s3, r3) = upgrade_from("127.0.0.2", addr, "/ws");
    assert_eq!(s3, 429, "the third WebSocket of 127.0.0.2");
    assert_eq!(r3.header("retry-after"), Some("1"));
    // Plain requests of that client count too while its two WebSockets are open.
    assert_eq!(status_from("127.0.0.2", addr, "/x").0, 429);
    // Another client is not affected.
    let (_other, s, _) = upgrade_from("127.0.0.3", addr, "/ws");
    assert_eq!(s, 101);
    // One WebSocket closes: its slot comes back.
    drop(ws1);
    portico_testkit::eventually::assert_eventually(
        std::time::Duration::from_secs(5),
        "a slot freed by a closed WebSocket",
        || status_from("127.0.0.2", addr, "/x").0 == 200,
    );
    // Finished plain requests do not hold a slot: many in a row on one connection pass.
    let mut c = conn_from("127.0.0.3", addr);
    for _ in 0..10 {
        assert_eq!(c.get("example.com", "/x").status, 200);
    }
}
