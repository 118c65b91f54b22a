//! Hardening (issue 15): request shapes that must not get past a route or reach an
//! upstream as sent. Each case runs against a real proxy and an echo backend that answers
//! with the request line it received, so the tests see what the server behind would see.
#![allow(clippy::unwrap_used)]

use crate::common;

use common::*;
use portico_testkit::proxy::TestProxy;

/// `/admin` is blocked (403), everything else proxied to `backend`.
fn blocking_admin(backend: &portico_testkit::echo::EchoServer) -> TestProxy {
    TestProxy::start(&format!(
        "[upstreams.app]\nservers = [\"{}\"]\n\n[[sites]]\nlisten = [\"127.0.0.1:0\"]\n\
         routes = [\n  {{ path = \"/admin\", respond = \"blocked\", status = 403 }},\n  \
         {{ path = \"/\", proxy = \"app\" }},\n]\n",
        backend.url().trim_start_matches("http://")
    ))
    .unwrap()
}

/// A raw request line (clients would normalise these paths themselves).
fn raw_get(proxy: &TestProxy, target: &str) -> Resp {
    let mut conn = Conn::open(proxy.addr());
    conn.send(format!("GET {target} HTTP/1.1\r\nHost: h\r\n\r\n").as_bytes());
    conn.read_response(false)
}

/// The request line the echo backend saw, from its answer (`NAME\nGET /p HTTP/1.1\n`).
fn seen(resp: &Resp) -> String {
    let body = String::from_utf8_lossy(&resp.body);
    body.lines().nth(1).unwrap_or_default().to_string()
}

#[test]
fn spellings_of_a_blocked_path_do_not_pass_the_route() {
    let backend = echo("b");
    let proxy = blocking_admin(&backend);
    for target in [
        "/admin",
        "/public/../admin",
        "//admin",
        "/%61dmin",
        "/%61%64%6D%69%6E/x",
        "/admin;x",
        "/admin;x/secret",
        "/public/..;/admin",
        "/public%2F..%2Fadmin",
        "/./admin/.",
    ] {
        let r = raw_get(&proxy, target);
        assert_eq!(r.status, 403, "{target}: {}", seen(&r));
        assert_eq!(r.body, b"blocked", "{target}");
    }
    assert_eq!(
        backend.connections_accepted(),
        0,
        "nothing reached the backend"
    );
}

#[test]
fn the_normalised_path_is_forwarded() {
    let backend = echo("b");
    let proxy = blocking_admin(&backend);
    for (target, want) in [
        ("/public/./a//b?q=1", "GET /public/a/b?q=1 HTTP/1.1"),
        ("/x/../%7euser/%41", "GET /~user/A HTTP/1.1"),
        ("/a%2fb", "GET /a%2Fb HTTP/1.1"),
        ("/page;jsessionid=1", "GET /page;jsessionid=1 HTTP/1.1"),
        ("/adminx/..", "GET / HTTP/1.1"),
    ] {
        let r = raw_get(&proxy, target);
        assert_eq!(r.status, 200, "{target}");
        assert_eq!(seen(&r), want, "{target}");
    }
}

#[test]
fn a_path_above_the_root_or_with_a_bad_escape_is_400() {
    let backend = echo("b");
    let proxy = blocking_admin(&backend);
    for target in [
        "/..",
        "/../etc/passwd",
        "/a/../../b",
        "/%2e%2e/x",
        "/a%zz",
        "/a%",
    ] {
        let r = raw_get(&proxy, target);
        assert_eq!(r.status, 400, "{target}");
    }
    assert_eq!(backend.connections_accepted(), 0);
}

/// Two sites (`b.example` first, so it answers unknown hosts) answering their name, and a
/// redirect route built from `{host}`.
fn two_sites(backend: &portico_testkit::echo::EchoServer) -> TestProxy {
    TestProxy::start(&format!(
        "[upstreams.app]\nservers = [\"{}\"]\n\n\
         [[sites]]\nlisten = [\"127.0.0.1:0\"]\nhosts = [\"b.example\"]\n\
         routes = [{{ path = \"/\", respond = \"site-b\" }}]\n\n\
         [[sites]]\nlisten = [\"127.0.0.1:0\"]\nhosts = [\"a.example\"]\n\
         routes = [\n  {{ path = \"/go\", redirect = \"https://{{host}}{{uri}}\" }},\n  \
         {{ path = \"/\", proxy = \"app\" }},\n]\n",
        backend.url().trim_start_matches("http://")
    ))
    .unwrap()
}

#[test]
fn duplicate_missing_or_invalid_host_is_400_and_reaches_nothing() {
    let backend = echo("b");
    let proxy = two_sites(&backend);
    let addr = proxy.addr();
    let cases: &[&[u8]] = &[
        b"GET / HTTP/1.1\r\nHost: a.example\r\nHost: b.example\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a.example\r\nhost: a.example\r\n\r\n",
        b"GET / HTTP/1.1\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a.example/x\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: user@a.example\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a.example x\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a..example\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: \r\n\r\n",
        b"GET /go HTTP/1.1\r\nHost: evil.test/a\r\n\r\n",
        b"GET /go HTTP/1.1\r\nHost: evil.test\\a.example\r\n\r\n",
        b"GET http://user@a.example/go HTTP/1.1\r\nHost: a.example\r\n\r\n",
    ];
    for raw in cases {
        let mut conn = Conn::open(addr);
        conn.send(raw);
        let r = conn.read_response(false);
        let shown = String::from_utf8_lossy(raw);
        assert_eq!(r.status, 400, "{shown}");
        assert_eq!(r.header("location"), None, "{shown}");
    }
    assert_eq!(
        backend.connections_accepted(),
        0,
        "nothing reached the backend"
    );
}

#[test]
fn a_trailing_dot_matches_the_name_and_http10_may_omit_host() {
    let backend = echo("b");
    let proxy = two_sites(&backend);
    let mut conn = Conn::open(proxy.addr());
    let r = conn.get("a.example.", "/go");
    assert_eq!(r.status, 301);
    assert_eq!(r.header("location"), Some("https://a.example./go"));
    let r = conn.get("A.EXAMPLE.:8080", "/x");
    assert_eq!(r.status, 200);
    assert_eq!(seen(&r), "GET /x HTTP/1.1");
    let r = conn.get("b.example.", "/");
    assert_eq!(r.body, b"site-b");
    let mut conn = Conn::open(proxy.addr());
    conn.send(b"GET / HTTP/1.0\r\n\r\n");
    let r = conn.read_response(false);
    assert_eq!(r.status, 200);
    assert_eq!(r.body, b"site-b");
}

/// A backend answering every connection's first request with `answer`, then closing.
fn one_answer_backend(answer: &'static [u8]) -> std::net::SocketAddr {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in listener.incoming() {
            let Ok(s) = s else { return };
            std::thread::spawn(move || {
                s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
                let mut reader = BufReader::new(s);
                let mut length = 0usize;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    if line == "\r\n" {
                        break;
                    }
                    if let Some((n, v)) = line.split_once(':')
                        && n.eq_ignore_ascii_case("content-length")
                    {
                        length = v.trim().parse().unwrap_or(0);
                    }
                }
                let mut body = vec![0; length];
                let _ = reader.read_exact(&mut body);
                let _ = reader.get_mut().write_all(answer);
            });
        }
    });
    addr
}

#[test]
fn an_upstream_answer_with_both_framings_is_never_truncated() {
    // Content-Length says 3, the chunked body is 11 bytes: RFC 9112 §6.3 says the length
    // is ignored, so the client must get all 11 (or a 502), never 3 bytes as if complete.
    let backend = one_answer_backend(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n\
          5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
    );
    let proxy = TestProxy::start(&proxy_config(&[backend], "retries = 0", "")).unwrap();
    // GET: Portico's own HTTP/1.1 client; POST with a body: hyper's client.
    let requests: [&[u8]; 2] = [
        b"GET /own HTTP/1.1\r\nHost: h\r\n\r\n",
        b"POST /hyper HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\nhi",
    ];
    for raw in requests {
        let mut conn = Conn::open(proxy.addr());
        conn.send(raw);
        let r = conn.read_response(false);
        let shown = String::from_utf8_lossy(raw);
        if r.status == 502 {
            continue;
        }
        assert_eq!(r.status, 200, "{shown}");
        assert_ne!(r.header("content-length"), Some("3"), "{shown}");
        assert_eq!(r.body, b"hello world", "{shown}");
    }
}

/// A static root `www` (a `cdn` folder, dotfiles) on `/`, and the same root with
/// `dotfiles = true` on `/open/` (`strip_prefix` is proxy-only, so a folder `open` inside).
fn static_site() -> TestProxy {
    TestProxy::builder(
        "[[sites]]\nlisten = [\"127.0.0.1:0\"]\nroutes = [\n  \
         { path = \"/open/\", root = \"www2\", dotfiles = true },\n  \
         { path = \"/\", root = \"www\" },\n]\n",
    )
    .file("www/cdn/index.html", "cdn")
    .file("www/.env", "SECRET=1")
    .file("www/.git/config", "[core]")
    .file("www/app/.htpasswd", "u:p")
    .file("www/.well-known/security.txt", "Contact: x")
    .file("www2/open/.env", "visible")
    .start()
    .unwrap()
}

#[test]
fn a_static_directory_redirect_stays_on_site() {
    let proxy = static_site();
    for target in ["//cdn", "///cdn", "/cdn"] {
        let r = raw_get(&proxy, target);
        assert_eq!(r.status, 301, "{target}");
        assert_eq!(r.header("location"), Some("/cdn/"), "{target}");
    }
}

#[test]
fn dotfiles_under_a_static_root_are_404_unless_allowed() {
    let proxy = static_site();
    for target in [
        "/.env",
        "/.git/config",
        "/app/.htpasswd",
        "/%2eenv",
        "/x/../.env",
    ] {
        assert_eq!(raw_get(&proxy, target).status, 404, "{target}");
    }
    let r = raw_get(&proxy, "/.well-known/security.txt");
    assert_eq!((r.status, r.body.as_slice()), (200, &b"Contact: x"[..]));
    let r = raw_get(&proxy, "/open/.env");
    assert_eq!((r.status, r.body.as_slice()), (200, &b"visible"[..]));
}

#[test]
fn a_client_that_never_reads_is_closed_after_send_timeout() {
    use std::io::{Read, Write};
    use std::time::{Duration, Instant};
    let backend = echo("b");
    let proxy = TestProxy::start(&format!(
        "[server]\nsend_timeout = \"1s\"\n{}",
        proxy_config(
            &[backend.url().trim_start_matches("http://").parse().unwrap()],
            "",
            ""
        )
    ))
    .unwrap();
    // 64 MiB: far more than the socket buffers on both sides of the client connection.
    const SIZE: usize = 64 << 20;
    let mut s = std::net::TcpStream::connect(proxy.addr()).unwrap();
    s.write_all(format!("GET /_echo/bytes?n={SIZE} HTTP/1.1\r\nHost: h\r\n\r\n").as_bytes())
        .unwrap();
    // Read nothing for a while: the proxy's writes stall.
    std::thread::sleep(Duration::from_secs(4));
    // Then drain: the connection must end (EOF or reset) well short of the whole body.
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let started = Instant::now();
    let mut got = 0usize;
    let mut buf = vec![0u8; 1 << 16];
    let ended = loop {
        match s.read(&mut buf) {
            Ok(0) => break true,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break true,
            Err(_) => break false,
        }
        if started.elapsed() > Duration::from_secs(20) {
            break false;
        }
    };
    assert!(ended, "the connection did not end ({got} bytes read)");
    assert!(
        got < SIZE,
        "the whole body arrived: the stalled write was not cut"
    );
}

#[test]
fn keepalive_requests_closes_the_connection_after_that_many() {
    let backend = echo("b");
    let proxy = TestProxy::start(&format!(
        "[server]\nkeepalive_requests = 3\n{}",
        proxy_config(
            &[backend.url().trim_start_matches("http://").parse().unwrap()],
            "",
            ""
        )
    ))
    .unwrap();
    let mut conn = Conn::open(proxy.addr());
    for i in 0..3 {
        assert_eq!(conn.get("h", "/").status, 200, "request {i}");
    }
    assert!(
        conn.closed_within(std::time::Duration::from_secs(5)),
        "open after keepalive_requests"
    );
    // Below the limit a connection stays open.
    let mut conn = Conn::open(proxy.addr());
    conn.get("h", "/");
    conn.get("h", "/");
    assert!(!conn.closed_within(std::time::Duration::from_millis(300)));
}
