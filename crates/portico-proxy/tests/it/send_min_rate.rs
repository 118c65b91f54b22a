//! `[server] send_min_rate` against real sockets: a client with a small receive buffer
//! (`SO_RCVBUF` set before connecting, so its TCP window stays small and the response waits
//! on Portico's side) asks the echo backend for tens of MiB and reads them at a paced rate.
//! Portico's writes to it wait most of the time, so each window of `send_timeout` (2 s here)
//! is judged:
//!
//! - a reader at a third of `send_min_rate` is reset within about three windows, although
//!   it keeps taking bytes (so `send_timeout` alone does not end it: see the last test);
//! - a reader at three times the limit gets the whole response;
//! - without `send_min_rate` the same slow reader keeps its connection for as long as the
//!   test watches it (four windows).
//!
//! Why the rates are MB/s and not "a few bytes now and then": on loopback the kernel grows
//! Portico's send buffer to `tcp_wmem`'s maximum (4 MiB by default) and wakes a blocked
//! writer only once a third of it is free. A reader that takes less than ~1.4 MB per
//! `send_timeout` therefore never lets a write through in time, and `send_timeout` closes
//! it before `send_min_rate` is judged (`hardening.rs` shows that case). The readers here
//! take well more than that, so only `send_min_rate` can tell the slow one from the fast.
#![allow(clippy::unwrap_used)]

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use crate::common::*;
use portico_testkit::proxy::TestProxy;

/// The limit: 8 MiB a second.
const MIN_RATE: u64 = 8 << 20;
/// More than the slow readers take while the tests watch them.
const BIG: u64 = 128 << 20;
/// The fast reader's response: read in under 3 s.
const FAST_SIZE: u64 = 64 << 20;
/// The slow reader: 2.5 MB a second, a third of the limit; still ~3.5 times what it takes
/// to free a third of a 4 MiB send buffer within `send_timeout`.
const SLOW: Pace = Pace {
    rate: 2_500_000,
    chunk: 64 * 1024,
};
/// The fast reader: 25 MB a second, three times the limit.
const FAST: Pace = Pace {
    rate: 25_000_000,
    chunk: 64 * 1024,
};

#[derive(Clone, Copy)]
struct Pace {
    /// Bytes a second the reader keeps to (on average since its start).
    rate: u64,
    /// The most one read takes.
    chunk: usize,
}

/// How a paced read went.
#[derive(Debug)]
struct Outcome {
    /// Body bytes read.
    body: u64,
    /// When the connection was reset (or closed) by the proxy, since the request was sent.
    cut: Option<(Duration, &'static str)>,
    /// How long the reader watched.
    watched: Duration,
}

fn proxy(backend: &portico_testkit::echo::EchoServer, min_rate: u64) -> TestProxy {
    TestProxy::start(&format!(
        "[server]\nsend_timeout = \"2s\"\nsend_min_rate = \"{min_rate}\"\naccess_log = \"off\"\n{}",
        proxy_config(
            &[backend.url().trim_start_matches("http://").parse().unwrap()],
            "",
            ""
        )
    ))
    .unwrap()
}

/// A client socket whose receive buffer is set before the connect (the window it
/// advertises follows it).
fn small_window_client(addr: SocketAddr) -> TcpStream {
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    sock.connect(&addr.into()).unwrap();
    let s: TcpStream = sock.into();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

/// Ask for `size` bytes and read them at `pace` until the body is complete, the proxy
/// cuts the connection, or `watch` has passed.
fn paced_read(addr: SocketAddr, size: u64, pace: Pace, watch: Duration) -> Outcome {
    let mut s = small_window_client(addr);
    s.write_all(format!("GET /_echo/bytes?n={size} HTTP/1.1\r\nHost: h\r\n\r\n").as_bytes())
        .unwrap();
    let started = Instant::now();
    let mut head = Vec::new();
    let mut body = 0u64;
    let mut total = 0u64;
    let mut buf = vec![0u8; pace.chunk];
    let cut = loop {
        let elapsed = started.elapsed();
        if body >= size || elapsed >= watch {
            break None;
        }
        // A reset leaves the error on the socket even while bytes the client has not read
        // yet are still in its buffer.
        if let Some(e) = s.take_error().unwrap() {
            assert_eq!(e.kind(), ErrorKind::ConnectionReset, "{e}");
            break Some((elapsed, "reset"));
        }
        if total as f64 > pace.rate as f64 * elapsed.as_secs_f64() {
            std::thread::sleep(Duration::from_millis(5));
            continue;
        }
        match s.read(&mut buf) {
            Ok(0) => break Some((started.elapsed(), "closed")),
            Ok(n) => {
                total += n as u64;
                if head.ends_with(b"\r\n\r\n") {
                    body += n as u64;
                } else {
                    // Byte by byte through the head, whose end may fall inside this read.
                    for (i, b) in buf[..n].iter().enumerate() {
                        head.push(*b);
                        if head.ends_with(b"\r\n\r\n") {
                            body += (n - i - 1) as u64;
                            break;
                        }
                    }
                    assert!(head.starts_with(b"HTTP/1.1 200"), "{head:?}");
                }
            }
            Err(e) if e.kind() == ErrorKind::ConnectionReset => {
                break Some((started.elapsed(), "reset"));
            }
            Err(e) => panic!("read failed after {:?}: {e}", started.elapsed()),
        }
    };
    let out = Outcome {
        body,
        cut,
        watched: started.elapsed(),
    };
    eprintln!("send_min_rate: reader at {} B/s: {out:?}", pace.rate);
    out
}

#[test]
fn a_reader_below_send_min_rate_is_reset_within_a_few_windows() {
    let backend = echo("b1");
    let proxy = proxy(&backend, MIN_RATE);
    let out = paced_read(proxy.addr(), BIG, SLOW, Duration::from_secs(20));
    let (after, how) = out.cut.unwrap_or_else(|| panic!("not cut: {out:?}"));
    assert_eq!(how, "reset", "{out:?}");
    // A window opens at the first check that finds a write waiting (2 s after the
    // connection opened) and is judged 2 s later: ~4 s; the margin is for a busy machine.
    assert!(
        after >= Duration::from_millis(1900) && after < Duration::from_secs(10),
        "reset after {after:?} (windows of 2 s): {out:?}"
    );
    // It took bytes all along, at its pace (more than Portico's send buffer holds).
    assert!(
        out.body as f64 >= 0.5 * SLOW.rate as f64 * after.as_secs_f64(),
        "{out:?}"
    );
}

#[test]
fn a_reader_above_send_min_rate_gets_the_whole_response() {
    let backend = echo("b1");
    let proxy = proxy(&backend, MIN_RATE);
    let out = paced_read(proxy.addr(), FAST_SIZE, FAST, Duration::from_secs(30));
    assert_eq!(out.cut, None, "{out:?}");
    assert_eq!(out.body, FAST_SIZE, "{out:?}");
    // Paced: it took at least one whole window, judged.
    assert!(out.watched >= Duration::from_secs(2), "{out:?}");
}

#[test]
fn without_send_min_rate_the_slow_reader_stays_connected() {
    let backend = echo("b1");
    let proxy = proxy(&backend, 0);
    let out = paced_read(proxy.addr(), BIG, SLOW, Duration::from_secs(8));
    assert_eq!(out.cut, None, "{out:?}");
    assert!(out.watched >= Duration::from_secs(8), "{out:?}");
    // It read all along at its pace, far from the end of the response.
    assert!(
        out.body as f64 >= 0.5 * SLOW.rate as f64 * 8.0 && out.body < BIG,
        "{out:?}"
    );
}
