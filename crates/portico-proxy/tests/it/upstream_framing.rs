//! Response framing through Portico's own upstream client, against a scripted keep-alive
//! backend on a raw socket: chunk extensions and trailers, interim 1xx responses, HEAD / 204
//! / 304 without a body, a body delimited by the server closing, bytes after a complete
//! response, a server that closes idle connections, and a request with a body on a
//! connection first used by body-less requests. Each case also checks whether the upstream
//! connection was reused (it must be exactly when the response allowed it).
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use crate::common::*;
use portico_testkit::proxy::TestProxy;

/// What the backend answers to a path, and whether it closes the connection afterwards.
fn script(method: &str, path: &str, body: &[u8]) -> (Vec<u8>, bool) {
    let answer: &[u8] = match path {
        "/chunked" => b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n",
        "/interim" => b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </s>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
        "/head" => b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n",
        "/204" => b"HTTP/1.1 204 No Content\r\nX-A: 1\r\n\r\n",
        "/304" => b"HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\n\r\n",
        "/until-close" => return (b"HTTP/1.0 200 OK\r\n\r\nuntil close".to_vec(), true),
        "/extra" => b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokGARBAGE",
        "/then-close" => return (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok".to_vec(), true),
        "/post" if method == "POST" => {
            let mut out = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len())
                .into_bytes();
            out.extend_from_slice(body);
            return (out, false);
        }
        _ => b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
    };
    (answer.to_vec(), false)
}

/// A keep-alive backend on 127.0.0.1:0 answering by [`script`]; counts connections.
struct ScriptBackend {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl ScriptBackend {
    fn start() -> ScriptBackend {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (count, flag) = (accepted.clone(), stop.clone());
        std::thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((s, _)) => {
                        count.fetch_add(1, Ordering::SeqCst);
                        std::thread::spawn(move || serve(s));
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(2));
                    }
                    Err(_) => return,
                }
            }
        });
        ScriptBackend {
            addr,
            accepted,
            stop,
        }
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for ScriptBackend {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn serve(s: TcpStream) {
    s.set_nonblocking(false).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut reader = BufReader::new(s);
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut words = line.split_whitespace();
        let method = words.next().unwrap_or_default().to_string();
        let path = words.next().unwrap_or_default().to_string();
        let mut length = 0usize;
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header).unwrap_or(0) == 0 {
                return;
            }
            if header == "\r\n" {
                break;
            }
            if let Some((n, v)) = header.split_once(':')
                && n.eq_ignore_ascii_case("content-length")
            {
                length = v.trim().parse().unwrap();
            }
        }
        let mut body = vec![0u8; length];
        reader.read_exact(&mut body).unwrap();
        // `/dribble/..`: the answer of `..`, one byte per write (every parser state sees
        // its input cut at every possible point).
        let (dribble, path) = match path.strip_prefix("/dribble") {
            Some(rest) => (true, rest.to_string()),
            None => (false, path),
        };
        let (answer, close) = script(&method, &path, &body);
        let s = reader.get_mut();
        let written = if dribble {
            s.set_nodelay(true).unwrap();
            answer.iter().try_for_each(|b| {
                s.write_all(std::slice::from_ref(b))?;
                std::thread::sleep(Duration::from_micros(300));
                Ok::<_, std::io::Error>(())
            })
        } else {
            s.write_all(&answer)
        };
        if written.is_err() || close {
            return;
        }
    }
}

fn proxy_to(backend: SocketAddr) -> TestProxy {
    TestProxy::start(&format!(
        "[upstreams.app]\nservers = [\"{backend}\"]\nretries = 0\nread_timeout = \"5s\"\n\
         [[sites]]\nlisten = [\"127.0.0.1:0\"]\nroutes = [{{ path = \"/\", proxy = \"app\" }}]\n"
    ))
    .unwrap()
}

/// `n` GETs of `path` on one client connection; every answer must be `status` + `body`.
fn gets(proxy: &TestProxy, path: &str, n: usize, status: u16, body: &[u8]) -> Vec<Resp> {
    let mut conn = Conn::open(proxy.addr());
    (0..n)
        .map(|_| {
            let r = conn.get("h", path);
            assert_eq!(r.status, status, "{path}");
            assert_eq!(r.body, body, "{path}");
            r
        })
        .collect()
}

#[test]
fn chunked_with_extensions_and_trailers_is_decoded_and_the_connection_reused() {
    let backend = ScriptBackend::start();
    let proxy = proxy_to(backend.addr);
    gets(&proxy, "/chunked", 3, 200, b"hello world");
    assert_eq!(backend.accepted(), 1);
}

#[test]
fn answers_cut_at_every_byte_are_parsed_the_same() {
    let backend = ScriptBackend::start();
    let proxy = proxy_to(backend.addr);
    gets(&proxy, "/dribble/chunked", 2, 200, b"hello world");
    gets(&proxy, "/dribble/interim", 2, 200, b"ok");
    gets(&proxy, "/dribble/", 2, 200, b"ok");
    // Every answer ended exactly where it should: one connection carried all six.
    assert_eq!(backend.accepted(), 1);
}

#[test]
fn interim_responses_are_skipped() {
    let backend = ScriptBackend::start();
    let proxy = proxy_to(backend.addr);
    gets(&proxy, "/interim", 3, 200, b"ok");
    assert_eq!(backend.accepted(), 1);
}

#[test]
fn bodiless_answers_end_at_the_head_and_keep_the_connection() {
    let backend = ScriptBackend::start();
    let proxy = proxy_to(backend.addr);
    let mut conn = Conn::open(proxy.addr());
    for _ in 0..2 {
        conn.send(b"HEAD /head HTTP/1.1\r\nHost: h\r\n\r\n");
        let r = conn.read_response(true);
        assert_eq!(r.status, 200);
        assert_eq!(r.header("content-length"), Some("100"));
        let r = conn.get("h", "/204");
        assert_eq!((r.status, r.header("x-a")), (204, Some("1")));
        let r = conn.get("h", "/304");
        assert_eq!((r.status, r.header("etag")), (304, Some("\"x\"")));
    }
    assert_eq!(conn.get("h", "/").body, b"ok");
    assert_eq!(backend.accepted(), 1);
}

#[test]
fn a_body_ended_by_close_is_complete_and_the_connection_not_reused() {
    let backend = ScriptBackend::start();
    let proxy = proxy_to(backend.addr);
    gets(&proxy, "/until-close", 3, 200, b"until close");
    assert_eq!(backend.accepted(), 3);
}

#[test]
fn bytes_after_a_complete_response_retire_the_connection() {
    let backend = ScriptBackend::start();
    let proxy = proxy_to(backend.addr);
    gets(&proxy, "/extra", 3, 200, b"ok");
    // The stray bytes are never read as the next response: a fresh connection each time.
    assert_eq!(backend.accepted(), 3);
}

#[test]
fn a_server_closing_idle_connections_costs_no_failed_request() {
    let backend = ScriptBackend::start();
    let proxy = proxy_to(backend.addr);
    let mut conn = Conn::open(proxy.addr());
    for _ in 0..10 {
        let r = conn.get("h", "/then-close");
        assert_eq!((r.status, r.body.as_slice()), (200, &b"ok"[..]));
        // Let the server's close arrive before the next request (then it is seen before
        // reuse; without this pause the stale retry covers the same case).
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(backend.accepted(), 10);
    for _ in 0..10 {
        assert_eq!(conn.get("h", "/then-close").status, 200);
    }
}

/// Requests with a body go through hyper's client, body-less ones through Portico's own:
/// the first request with a body takes over an own connection, after that each kind keeps
/// its connection (two in all, however long the mix goes on).
#[test]
fn mixed_bodyless_and_body_requests_keep_one_connection_of_each_kind() {
    let backend = ScriptBackend::start();
    let proxy = proxy_to(backend.addr);
    let mut conn = Conn::open(proxy.addr());
    for i in 0..6 {
        assert_eq!(conn.get("h", "/").body, b"ok");
        let body = format!("payload {i}");
        conn.send(
            format!(
                "POST /post HTTP/1.1\r\nHost: h\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .as_bytes(),
        );
        let r = conn.read_response(false);
        assert_eq!((r.status, r.body), (200, body.into_bytes()));
    }
    assert_eq!(backend.accepted(), 2);
}
