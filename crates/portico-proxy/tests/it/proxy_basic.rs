//! Basic HTTP/1.1 proxying: keep-alive on both sides, headers, hop-by-hop, routing.

#![allow(clippy::unwrap_used)]

use crate::common::*;
use portico_testkit::proxy::TestProxy;

#[test]
fn get_is_proxied_and_both_sides_keep_alive() {
    let backend = echo("b1");
    let proxy = TestProxy::start(&proxy_config(&[backend.addr], "", "")).unwrap();
    let mut conn = Conn::open(proxy.addr());
    for i in 0..20 {
        let r = conn.get("example.com", &format!("/hello/{i}?x=1"));
        assert_eq!(r.status, 200);
        assert_eq!(r.text(), format!("b1\nGET /hello/{i}?x=1 HTTP/1.1\n"));
    }
    // A second client connection reuses the pooled upstream connection too.
    let r = get(proxy.addr(), "example.com", "/again");
    assert_eq!(r.status, 200);
    assert_eq!(
        backend.connections_accepted(),
        1,
        "one upstream connection for all requests"
    );
}

#[test]
fn forwarding_headers_added_and_host_preserved() {
    let backend = echo("b1");
    let proxy = TestProxy::start(&proxy_config(&[backend.addr], "", "")).unwrap();
    let mut conn = Conn::open(proxy.addr());
    conn.send(
        b"GET /_echo/headers HTTP/1.1\r\nHost: Example.com:8080\r\nX-Forwarded-For: 10.1.2.3\r\nUser-Agent: t\r\n\r\n",
    );
    let r = conn.read_response(false);
    assert_eq!(r.status, 200);
    let text = r.text();
    assert!(text.contains("host: Example.com:8080\n"), "{text}");
    assert!(
        text.contains("x-forwarded-for: 10.1.2.3, 127.0.0.1\n"),
        "{text}"
    );
    assert!(text.contains("x-real-ip: 127.0.0.1\n"), "{text}");
    assert!(text.contains("x-forwarded-proto: http\n"), "{text}");
    assert!(
        text.contains("x-forwarded-host: Example.com:8080\n"),
        "{text}"
    );
    assert!(text.contains("user-agent: t\n"), "{text}");
}

#[test]
fn hop_by_hop_headers_are_not_forwarded() {
    let backend = echo("b1");
    let proxy = TestProxy::start(&proxy_config(&[backend.addr], "", "")).unwrap();
    let mut conn = Conn::open(proxy.addr());
    conn.send(
        b"GET /_echo/headers HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, X-Private\r\nX-Private: secret\r\nKeep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\nTE: trailers\r\nUpgrade: h2c\r\nX-Kept: yes\r\n\r\n",
    );
    let r = conn.read_response(false);
    let text = r.text().to_ascii_lowercase();
    for gone in [
        "x-private",
        "keep-alive:",
        "proxy-connection",
        "\nte:",
        "upgrade",
        "connection: keep-alive, x-private",
    ] {
        assert!(!text.contains(gone), "{gone} forwarded: {text}");
    }
    assert!(text.contains("x-kept: yes"), "{text}");
    // The connection still works afterwards.
    assert_eq!(conn.get("h", "/x").status, 200);
}

#[test]
fn request_and_response_header_rules() {
    let backend = echo("b1");
    let route = r#", request_headers = { set = { "x-added" = "on" }, remove = ["x-secret"] }, response_headers = { set = { "x-served-by" = "portico" }, remove = ["x-echo-name"] }"#;
    let proxy = TestProxy::start(&proxy_config(&[backend.addr], "", route)).unwrap();
    let mut conn = Conn::open(proxy.addr());
    conn.send(b"GET /_echo/headers HTTP/1.1\r\nHost: h\r\nX-Secret: s\r\n\r\n");
    let r = conn.read_response(false);
    let text = r.text();
    assert!(text.contains("x-added: on\n"), "{text}");
    assert!(!text.contains("x-secret"), "{text}");
    assert_eq!(r.header("x-served-by"), Some("portico"));
    assert_eq!(r.header("x-echo-name"), None);
}

#[test]
fn strip_prefix_rewrites_the_path() {
    let backend = echo("b1");
    let toml = format!(
        "[upstreams.app]\nservers = [\"{}\"]\n[[sites]]\nlisten = [\"127.0.0.1:0\"]\nroutes = [{{ path = \"/api/\", proxy = \"app\", strip_prefix = true }}]\n",
        backend.addr
    );
    let proxy = TestProxy::start(&toml).unwrap();
    let r = get(proxy.addr(), "h", "/api/users?id=1");
    assert_eq!(r.text(), "b1\nGET /users?id=1 HTTP/1.1\n");
}

#[test]
fn chunked_response_and_chunked_request_stream_through() {
    let backend = echo("b1");
    let proxy = TestProxy::start(&proxy_config(&[backend.addr], "", "")).unwrap();
    let mut conn = Conn::open(proxy.addr());
    let r = conn.get("h", "/_echo/drip?chunks=3&ms=10");
    assert_eq!(r.header("transfer-encoding"), Some("chunked"));
    assert_eq!(r.text(), "chunk 0\nchunk 1\nchunk 2\n");
    conn.send(b"POST /echo HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n");
    let r = conn.read_response(false);
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "hello world");
}

#[test]
fn expect_100_continue_is_answered_when_the_body_is_read() {
    let backend = echo("b1");
    let proxy = TestProxy::start(&proxy_config(&[backend.addr], "", "")).unwrap();
    let mut conn = Conn::open(proxy.addr());
    conn.send(b"POST /e HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n");
    let (status, _) = conn.read_head();
    assert_eq!(status, 100);
    conn.send(b"data");
    let r = conn.read_response(false);
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "data");
}

#[test]
fn large_bodies_stream_both_ways() {
    use std::io::{Read, Write};
    let backend = echo("b1");
    let proxy =
        TestProxy::start(&proxy_config(&[backend.addr], "", ", max_body = \"100m\"")).unwrap();
    let mut conn = Conn::open(proxy.addr());
    let total: usize = 50 << 20;
    conn.send(
        format!("POST /big HTTP/1.1\r\nHost: h\r\nContent-Length: {total}\r\n\r\n").as_bytes(),
    );
    // Write on one thread, read the echo on this one: the proxy must stream (a buffering
    // proxy would deadlock here only if it buffered both ways; we also check the echo
    // starts before the upload ends).
    let mut writer = conn.stream().try_clone().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let up = std::thread::spawn(move || {
        let chunk = vec![b'x'; 64 * 1024];
        let mut sent = 0;
        while sent < total {
            writer.write_all(&chunk).unwrap();
            sent += chunk.len();
            if sent == 8 << 20 {
                // Tell the reader how far the upload is when it sees the first bytes.
                let _ = tx.send(());
            }
        }
    });
    let (status, headers) = conn.read_head();
    assert_eq!(status, 200);
    assert!(
        headers
            .iter()
            .any(|(n, v)| n.eq_ignore_ascii_case("content-length") && v == &total.to_string())
    );
    let mut got = 0usize;
    let mut buf = vec![0u8; 256 * 1024];
    let mut first_read_during_upload = None;
    while got < total {
        let n = conn.reader.read(&mut buf).unwrap();
        assert!(n > 0, "eof after {got} bytes");
        assert!(buf[..n].iter().all(|&b| b == b'x'));
        if first_read_during_upload.is_none() {
            first_read_during_upload = Some(!up.is_finished());
        }
        got += n;
    }
    up.join().unwrap();
    drop(rx);
    assert_eq!(got, total);
    assert_eq!(
        first_read_during_upload,
        Some(true),
        "the echo must start before the upload ends"
    );
}

#[test]
fn routing_order_exact_regex_longest_prefix() {
    let a = echo("a");
    let b = echo("b");
    let c = echo("c");
    let d = echo("d");
    let toml = format!(
        r#"
[upstreams.a]
servers = ["{}"]
[upstreams.b]
servers = ["{}"]
[upstreams.c]
servers = ["{}"]
[upstreams.d]
servers = ["{}"]
[[sites]]
listen = ["127.0.0.1:0"]
routes = [
  {{ path = "/", proxy = "a" }},
  {{ path = "/static/", proxy = "b" }},
  {{ regex = "\\.png$", proxy = "c" }},
  {{ exact = "/static/logo.png", proxy = "d" }},
  {{ exact = "/hello", respond = "hi" }},
]
"#,
        a.addr, b.addr, c.addr, d.addr
    );
    let proxy = TestProxy::start(&toml).unwrap();
    let who = |path: &str| {
        get(proxy.addr(), "h", path)
            .text()
            .lines()
            .next()
            .unwrap_or("")
            .to_string()
    };
    assert_eq!(who("/static/logo.png"), "d");
    assert_eq!(who("/static/other.png"), "c");
    assert_eq!(who("/static/app.js"), "b");
    assert_eq!(who("/index.html"), "a");
    assert_eq!(get(proxy.addr(), "h", "/hello").text(), "hi");
}

#[test]
fn sites_are_chosen_by_host_with_wildcards_and_a_default() {
    let toml = r#"
[[sites]]
listen = ["127.0.0.1:0"]
hosts = ["first.test"]
routes = [{ path = "/", respond = "first" }]
[[sites]]
listen = ["127.0.0.1:0"]
hosts = ["*.example.test"]
routes = [{ path = "/", respond = "wild" }]
[[sites]]
listen = ["127.0.0.1:0"]
hosts = ["api.example.test"]
routes = [{ path = "/", respond = "api" }]
"#;
    let proxy = TestProxy::start(toml).unwrap();
    assert_eq!(
        proxy.addrs().len(),
        1,
        "same listen address -> one listener"
    );
    let body = |host: &str| get(proxy.addr(), host, "/").text();
    assert_eq!(body("api.example.test"), "api");
    assert_eq!(body("API.Example.Test:80"), "api");
    assert_eq!(body("www.example.test"), "wild");
    assert_eq!(body("first.test"), "first");
    assert_eq!(body("unknown.org"), "first");
}

#[test]
fn server_names_like_localhost_are_resolved() {
    let backend = echo("named");
    let toml = format!(
        "[upstreams.app]\nservers = [\"localhost:{}\"]\n[[sites]]\nlisten = [\"127.0.0.1:0\"]\nroutes = [{{ path = \"/\", proxy = \"app\" }}]\n",
        backend.addr.port()
    );
    let proxy = TestProxy::start(&toml).unwrap();
    let r = get(proxy.addr(), "h", "/");
    assert_eq!(r.status, 200);
    assert!(r.text().starts_with("named\n"));
}

#[test]
fn upstream_keepalive_caps_idle_connections() {
    let backend = echo("b1");
    let proxy = TestProxy::start(&proxy_config(&[backend.addr], "keepalive = 1", "")).unwrap();
    // Three slow requests at once need three upstream connections...
    let addr = proxy.addr();
    let slow: Vec<_> = (0..3)
        .map(|_| std::thread::spawn(move || get(addr, "h", "/_echo/sleep?ms=300").status))
        .collect();
    for t in slow {
        assert_eq!(t.join().unwrap(), 200);
    }
    assert_eq!(backend.connections_accepted(), 3);
    // ...but only one stays idle: the next three sequential requests reuse it.
    for _ in 0..3 {
        assert_eq!(get(proxy.addr(), "h", "/").status, 200);
    }
    assert_eq!(backend.connections_accepted(), 3);
}

#[test]
fn http10_request_without_host_gets_the_upstream_name_as_host() {
    let backend = echo("b1");
    let proxy = TestProxy::start(&proxy_config(&[backend.addr], "", "")).unwrap();
    let (_, _, text) = exchange(proxy.addr(), b"GET /_echo/headers HTTP/1.0\r\n\r\n");
    assert!(text.starts_with("HTTP/1.0 200"), "{text}");
    assert!(text.to_ascii_lowercase().contains("host: app"), "{text}");
    // A request with Host keeps it.
    let (_, _, text) = exchange(
        proxy.addr(),
        b"GET /_echo/headers HTTP/1.0\r\nHost: mine.test\r\n\r\n",
    );
    assert!(
        text.to_ascii_lowercase().contains("host: mine.test"),
        "{text}"
    );
}
