//! Errors, limits and retries: 413, 502, 503, 504, retries, passive health.
#![allow(clippy::unwrap_used)]

use std::net::{SocketAddr, TcpListener};
use std::time::Duration;

use crate::common::*;
use portico_testkit::proxy::TestProxy;

/// An address nothing listens on (bound, then closed).
fn dead_addr() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

#[test]
fn body_over_max_body_by_content_length_is_413() {
    let backend = echo("b1");
    let proxy =
        TestProxy::start(&proxy_config(&[backend.addr], "", ", max_body = \"1k\"")).unwrap();
    let mut conn = Conn::open(proxy.addr());
    conn.send(
        b"POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 2000\r\nExpect: 100-continue\r\n\r\n",
    );
    let r = conn.read_response(false);
    assert_eq!(r.status, 413);
    assert_eq!(backend.connections_accepted(), 0, "nothing sent upstream");
    // Within the limit passes.
    let mut conn = Conn::open(proxy.addr());
    conn.send(b"POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc");
    assert_eq!(conn.read_response(false).text(), "abc");
}

#[test]
fn chunked_body_over_max_body_is_413() {
    let backend = echo("b1");
    let proxy =
        TestProxy::start(&proxy_config(&[backend.addr], "", ", max_body = \"1k\"")).unwrap();
    let mut conn = Conn::open(proxy.addr());
    conn.send(
        b"POST /_echo/sleep?ms=2000 HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n",
    );
    let chunk = format!("400\r\n{}\r\n", "y".repeat(1024));
    conn.send(chunk.as_bytes());
    conn.send(chunk.as_bytes());
    conn.send(b"0\r\n\r\n");
    let r = conn.read_response(false);
    assert_eq!(r.status, 413);
}

#[test]
fn chunked_body_over_max_body_is_413_even_when_the_server_answers_early() {
    use std::io::{Read, Write};
    // The echo backend streams a POST body back as it reads it: its response head comes
    // long before the upload ends. The client must still get 413, never a cut 200.
    let backend = echo("b1");
    let proxy =
        TestProxy::start(&proxy_config(&[backend.addr], "", ", max_body = \"1m\"")).unwrap();
    let mut conn = Conn::open(proxy.addr());
    conn.send(b"POST /upload HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n");
    let mut writer = conn.stream().try_clone().unwrap();
    let up = std::thread::spawn(move || {
        let chunk = format!("4000\r\n{}\r\n", "z".repeat(0x4000));
        for _ in 0..128 {
            // 2 MiB in 16 KiB chunks; the proxy may cut us off after the limit.
            if writer.write_all(chunk.as_bytes()).is_err() {
                return;
            }
        }
        let _ = writer.write_all(b"0\r\n\r\n");
    });
    let (status, _) = conn.read_head();
    assert_eq!(status, 413);
    let _ = up.join();
    // Within the limit the echo comes back whole.
    let mut conn = Conn::open(proxy.addr());
    let body = "w".repeat(300_000);
    conn.send(format!("POST /upload HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{body}\r\n0\r\n\r\n", body.len()).as_bytes());
    let r = conn.read_response(false);
    assert_eq!(r.status, 200);
    assert_eq!(r.body.len(), body.len());
    let mut rest = Vec::new();
    let _ = conn
        .stream()
        .set_read_timeout(Some(std::time::Duration::from_millis(50)));
    let _ = conn.reader.read_to_end(&mut rest);
}

#[test]
fn refused_connection_is_502_and_no_server_is_503() {
    let proxy = TestProxy::start(&proxy_config(
        &[dead_addr()],
        "retries = 0\nmax_fails = 1\nfail_timeout = \"30s\"",
        "",
    ))
    .unwrap();
    let r = get(proxy.addr(), "h", "/");
    assert_eq!(r.status, 502);
    assert_eq!(r.text(), "502 Bad Gateway\n");
    // All servers down for good (down = true): 503.
    let toml = format!(
        "[upstreams.app]\nservers = [{{ addr = \"{}\", down = true }}]\n[[sites]]\nlisten = [\"127.0.0.1:0\"]\nroutes = [{{ path = \"/\", proxy = \"app\" }}]\n",
        dead_addr()
    );
    let proxy = TestProxy::start(&toml).unwrap();
    let r = get(proxy.addr(), "h", "/");
    assert_eq!(r.status, 503);
}

#[test]
fn a_single_dead_server_with_retries_is_still_502() {
    let proxy = TestProxy::start(&proxy_config(&[dead_addr()], "retries = 2", "")).unwrap();
    assert_eq!(get(proxy.addr(), "h", "/").status, 502);
}

#[test]
fn slow_server_is_504_after_read_timeout() {
    let backend = echo("b1");
    let proxy = TestProxy::start(&proxy_config(
        &[backend.addr],
        "read_timeout = \"200ms\"\nretries = 0",
        "",
    ))
    .unwrap();
    let start = std::time::Instant::now();
    let r = get(proxy.addr(), "h", "/_echo/sleep?ms=3000");
    assert_eq!(r.status, 504);
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
    // A route's read_timeout overrides the upstream's.
    let proxy = TestProxy::start(&proxy_config(
        &[backend.addr],
        "read_timeout = \"200ms\"",
        ", read_timeout = \"5s\"",
    ))
    .unwrap();
    assert_eq!(get(proxy.addr(), "h", "/_echo/sleep?ms=500").status, 200);
}

#[test]
fn dead_server_is_skipped_by_retries() {
    let live = echo("live");
    let proxy = TestProxy::start(&proxy_config(
        &[dead_addr(), live.addr],
        "retries = 1\nmax_fails = 0",
        "",
    ))
    .unwrap();
    for _ in 0..6 {
        let r = get(proxy.addr(), "h", "/");
        assert_eq!(r.status, 200);
        assert!(r.text().starts_with("live\n"));
    }
}

#[test]
fn idempotent_request_is_retried_but_post_is_not() {
    // A server that reads the request head and closes without answering: the request was
    // sent and fails before any response byte.
    let closer = TcpListener::bind("127.0.0.1:0").unwrap();
    let closer_addr = closer.local_addr().unwrap();
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = accepted.clone();
    std::thread::spawn(move || {
        for s in closer.incoming() {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let Ok(mut s) = s else { continue };
            let mut head = Vec::new();
            let mut b = [0u8; 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                match std::io::Read::read(&mut s, &mut b) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => head.extend_from_slice(&b[..n]),
                }
            }
            drop(s);
        }
    });
    let live = echo("live");
    // round_robin starts with the first server; max_fails = 0 keeps both in rotation.
    let proxy = TestProxy::start(&proxy_config(
        &[closer_addr, live.addr],
        "retries = 1\nmax_fails = 0",
        "",
    ))
    .unwrap();
    let mut get_ok = 0;
    let mut post_502 = 0;
    for _ in 0..4 {
        if get(proxy.addr(), "h", "/").status == 200 {
            get_ok += 1;
        }
        let mut c = Conn::open(proxy.addr());
        c.send(b"POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\nhi");
        let r = c.read_response(false);
        if r.status == 502 {
            post_502 += 1;
        } else {
            assert_eq!(r.text(), "hi");
        }
    }
    assert_eq!(get_ok, 4, "GETs are retried on the other server");
    assert!(
        post_502 > 0,
        "a POST that reached the closing server is not retried"
    );
}

#[test]
fn passive_health_takes_a_failing_server_out() {
    let live = echo("live");
    let dead = dead_addr();
    let proxy = TestProxy::start(&proxy_config(
        &[dead, live.addr],
        "retries = 0\nmax_fails = 1\nfail_timeout = \"30s\"",
        "",
    ))
    .unwrap();
    let mut statuses = Vec::new();
    for _ in 0..10 {
        statuses.push(get(proxy.addr(), "h", "/").status);
    }
    let failures = statuses.iter().filter(|&&s| s == 502).count();
    assert_eq!(
        failures, 1,
        "only the first request hits the dead server: {statuses:?}"
    );
}

#[test]
fn stale_pooled_connection_is_retried_transparently() {
    // The backend closes keep-alive connections after each response (Connection: close
    // from the client side makes the echo close); simulate by stopping and restarting.
    let backend = echo("b1");
    let addr = backend.addr;
    let proxy = TestProxy::start(&proxy_config(&[addr], "retries = 0\nmax_fails = 1", "")).unwrap();
    assert_eq!(get(proxy.addr(), "h", "/").status, 200);
    backend.stop();
    let again = portico_testkit::echo::EchoServer::start(addr, "b2").unwrap();
    // The pooled connection to the old backend is dead; the request must still succeed.
    let r = get(proxy.addr(), "h", "/");
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.text().starts_with("b2\n"));
    drop(again);
}
