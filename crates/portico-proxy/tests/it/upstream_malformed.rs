//! An upstream that answers with a malformed response: the client gets 502 when nothing was
//! sent yet, a cut body (connection closed, never a complete-looking response) when the head
//! already went out, and the proxy keeps serving everyone else. Each backend is a raw socket
//! that reads the request head and writes exactly the scripted bytes.
#![allow(clippy::unwrap_used)]

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::common::*;
use portico_testkit::proxy::TestProxy;

/// A backend on 127.0.0.1:0 answering every connection with `answer`, then closing it.
struct RawBackend {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RawBackend {
    fn start(answer: Vec<u8>) -> RawBackend {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((mut s, _)) => {
                        s.set_nonblocking(false).unwrap();
                        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                        read_head(&mut s);
                        let _ = s.write_all(&answer);
                        let _ = s.shutdown(std::net::Shutdown::Write);
                        // Let the proxy read everything before the socket goes away.
                        let mut sink = [0u8; 1024];
                        while matches!(s.read(&mut sink), Ok(n) if n > 0) {}
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    Err(_) => return,
                }
            }
        });
        RawBackend {
            addr,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for RawBackend {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn read_head(s: &mut TcpStream) {
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match s.read(&mut b) {
            Ok(1) => head.push(b[0]),
            _ => return,
        }
    }
}

/// One GET through the proxy: the raw bytes until the proxy closes (or 10 s).
fn fetch_raw(addr: SocketAddr) -> (Vec<u8>, bool) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"GET /x HTTP/1.1\r\nHost: h\r\n\r\n").unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 8192];
    let closed = loop {
        match s.read(&mut buf) {
            Ok(0) => break true,
            Ok(n) => {
                got.extend_from_slice(&buf[..n]);
                // A complete 502 (it has a Content-Length) is enough; keep-alive may follow.
                if got.starts_with(b"HTTP/1.1 502") && complete_with_length(&got) {
                    break false;
                }
            }
            Err(e) if e.kind() == ErrorKind::ConnectionReset => break true,
            Err(_) => break false,
        }
    };
    (got, closed)
}

fn complete_with_length(got: &[u8]) -> bool {
    let text = String::from_utf8_lossy(got);
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        return false;
    };
    head.lines()
        .find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse::<usize>().ok())?
        })
        .is_some_and(|len| body.len() >= len)
}

fn proxy_to(backend: SocketAddr, healthy: SocketAddr) -> TestProxy {
    TestProxy::start(&format!(
        "[upstreams.bad]\nservers = [\"{backend}\"]\nretries = 0\nread_timeout = \"5s\"\n\
         [upstreams.good]\nservers = [\"{healthy}\"]\n\
         [[sites]]\nlisten = [\"127.0.0.1:0\"]\n\
         routes = [{{ path = \"/ok\", proxy = \"good\" }}, {{ path = \"/\", proxy = \"bad\" }}]\n"
    ))
    .unwrap()
}

#[test]
fn malformed_heads_get_502() {
    let huge_header = {
        let mut r = b"HTTP/1.1 200 OK\r\nX-Huge: ".to_vec();
        r.extend(std::iter::repeat_n(b'v', 1 << 20));
        r.extend_from_slice(b"\r\nContent-Length: 2\r\n\r\nok");
        r
    };
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("garbage status line", b"FOO BAR BAZ\r\n\r\n".to_vec()),
        ("not HTTP at all", b"\x00\x01\x02\x03garbage".to_vec()),
        ("an empty answer (close)", Vec::new()),
        (
            "a head cut short",
            b"HTTP/1.1 200 OK\r\nContent-Le".to_vec(),
        ),
        (
            "a bad header line",
            b"HTTP/1.1 200 OK\r\nBroken header\r\nContent-Length: 2\r\n\r\nok".to_vec(),
        ),
        (
            "an invalid content-length",
            b"HTTP/1.1 200 OK\r\nContent-Length: 2x\r\n\r\nok".to_vec(),
        ),
        (
            "two differing content-lengths",
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok!".to_vec(),
        ),
        (
            "a status code out of range",
            b"HTTP/1.1 1000 X\r\n\r\n".to_vec(),
        ),
        ("a 1 MiB header", huge_header),
    ];
    let healthy = echo("good");
    let mut wrong = Vec::new();
    for (name, answer) in cases {
        let backend = RawBackend::start(answer);
        let proxy = proxy_to(backend.addr, healthy.addr);
        let (got, _) = fetch_raw(proxy.addr());
        let text = String::from_utf8_lossy(&got);
        if !text.starts_with("HTTP/1.1 502") {
            wrong.push(format!("{name}: {:?}", &text[..text.len().min(200)]));
        }
        // The proxy is alive and serves other requests.
        assert_eq!(get(proxy.addr(), "h", "/ok").status, 200, "{name}");
    }
    assert!(wrong.is_empty(), "not 502:\n{}", wrong.join("\n"));
}

#[test]
fn malformed_bodies_are_cut_not_completed() {
    let cases: Vec<(&str, &[u8])> = vec![
        (
            "bad chunk size",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nzz\r\nmore\r\n0\r\n\r\n",
        ),
        (
            "chunked cut before the last chunk",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
        ),
        (
            "content-length longer than the body",
            b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly this",
        ),
    ];
    let healthy = echo("good");
    for (name, answer) in cases {
        let backend = RawBackend::start(answer.to_vec());
        let proxy = proxy_to(backend.addr, healthy.addr);
        let (got, closed) = fetch_raw(proxy.addr());
        let text = String::from_utf8_lossy(&got).into_owned();
        assert!(
            closed,
            "{name}: the client connection must be closed: {text:?}"
        );
        let Some((head, body)) = text.split_once("\r\n\r\n") else {
            panic!("{name}: {text:?}");
        };
        if head.starts_with("HTTP/1.1 502") {
            continue; // Nothing was sent before the error was seen: fine too.
        }
        assert!(head.starts_with("HTTP/1.1 200"), "{name}: {head}");
        let chunked = head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked");
        if chunked {
            assert!(
                !body.ends_with("0\r\n\r\n"),
                "{name}: a cut body must not end like a complete one: {body:?}"
            );
        } else {
            let len: usize = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse().unwrap())
                })
                .expect("content-length");
            assert!(body.len() < len, "{name}: {body:?}");
        }
        assert_eq!(get(proxy.addr(), "h", "/ok").status, 200, "{name}");
    }
}
