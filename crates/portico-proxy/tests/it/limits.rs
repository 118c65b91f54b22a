//! Protective limits on raw sockets: request heads past 32 KiB or 100 header fields get 431
//! and a close (a giant request line too), heads within the limits are served, and past
//! `max_connections` accepting pauses without failing anyone: more clients than slots are
//! all served, never more than `max_connections` at once.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::common::*;
use portico_testkit::proxy::TestProxy;

/// [`crate::common::exchange`] without the text: the first status and whether the proxy closed.
fn status_close(addr: SocketAddr, raw: &[u8]) -> (Option<u16>, bool) {
    let (status, closed, _) = crate::common::exchange(addr, raw);
    (status, closed)
}

fn respond_site(server: &str) -> TestProxy {
    TestProxy::start(&format!(
        "[server]\n{server}\n[[sites]]\nlisten = [\"127.0.0.1:0\"]\nroutes = [{{ path = \"/\", respond = \"ok\" }}]\n"
    ))
    .unwrap()
}

/// A request whose head carries `fields` extra headers of `value_len` bytes each.
fn request(fields: usize, value_len: usize, close: bool) -> Vec<u8> {
    let mut r = b"GET / HTTP/1.1\r\nHost: h\r\n".to_vec();
    for i in 0..fields {
        r.extend_from_slice(format!("X-F{i}: ").as_bytes());
        r.extend(std::iter::repeat_n(b'v', value_len));
        r.extend_from_slice(b"\r\n");
    }
    if close {
        r.extend_from_slice(b"Connection: close\r\n");
    }
    r.extend_from_slice(b"\r\n");
    r
}

#[test]
fn heads_past_the_limits_get_431_and_a_close() {
    let proxy = respond_site("");
    // Within: 99 extra fields (100 with Host), and a 30 KiB head.
    assert_eq!(
        status_close(proxy.addr(), &request(98, 10, true)),
        (Some(200), true)
    );
    assert_eq!(
        status_close(proxy.addr(), &request(10, 3000, true)),
        (Some(200), true)
    );
    // Past: 101 fields, a 40 KiB head in one field, a 40 KiB head in many.
    for (what, raw) in [
        ("101 fields", request(100, 10, false)),
        ("one 40 KiB field", request(1, 40 * 1024, false)),
        ("40 KiB in 20 fields", request(20, 2048, false)),
    ] {
        assert_eq!(
            status_close(proxy.addr(), &raw),
            (Some(431), true),
            "{what}"
        );
    }
    // A 40 KiB request line (URI) is refused the same way.
    let mut line = b"GET /".to_vec();
    line.extend(std::iter::repeat_n(b'a', 40 * 1024));
    line.extend_from_slice(b" HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_eq!(
        status_close(proxy.addr(), &line),
        (Some(431), true),
        "40 KiB URI"
    );
    // A head that never ends is cut at the limit, not buffered: 1 MiB without a blank line.
    let mut endless = b"GET / HTTP/1.1\r\nHost: h\r\nX-Big: ".to_vec();
    endless.extend(std::iter::repeat_n(b'v', 1 << 20));
    let (status, closed) = status_close(proxy.addr(), &endless);
    assert_eq!((status, closed), (Some(431), true));
    // Others are served meanwhile.
    assert_eq!(get(proxy.addr(), "h", "/").text(), "ok");
}

#[test]
fn more_clients_than_max_connections_are_all_served() {
    const SLOTS: usize = 3;
    const CLIENTS: usize = 12;
    let backend = echo("b");
    let proxy = TestProxy::start(&format!(
        "[server]\nmax_connections = {SLOTS}\n{}",
        proxy_config(&[backend.addr], "", "")
    ))
    .unwrap();
    let addr = proxy.addr();
    // Watch the number of client connections the proxy holds while the clients run.
    let peak = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    std::thread::scope(|scope| {
        let watcher = {
            let (peak, done) = (peak.clone(), done.clone());
            let proxy = &proxy;
            scope.spawn(move || {
                while !done.load(Ordering::Relaxed) && start.elapsed() < Duration::from_secs(30) {
                    peak.fetch_max(proxy.server().connections() as usize, Ordering::Relaxed);
                    std::thread::sleep(Duration::from_millis(2));
                }
            })
        };
        let clients: Vec<_> = (0..CLIENTS)
            .map(|i| {
                scope.spawn(move || {
                    let mut c = Conn::open(addr);
                    // Each holds its slot for 200 ms (slow backend answer).
                    c.send(
                        format!(
                            "GET /_echo/sleep?ms=200&c={i} HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"
                        )
                        .as_bytes(),
                    );
                    c.read_response(false).status
                })
            })
            .collect();
        let statuses: Vec<u16> = clients.into_iter().map(|c| c.join().unwrap()).collect();
        done.store(true, Ordering::Relaxed);
        watcher.join().unwrap();
        assert_eq!(statuses, vec![200; CLIENTS], "every client served");
    });
    let elapsed = start.elapsed();
    let peak = peak.load(Ordering::Relaxed);
    assert!(peak <= SLOTS, "at most {SLOTS} at once, saw {peak}");
    assert_eq!(peak, SLOTS, "the slots were all used");
    // 12 clients through 3 slots at 200 ms each: at least 4 rounds.
    assert!(elapsed >= Duration::from_millis(780), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(20), "{elapsed:?}");
}
