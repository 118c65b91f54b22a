//! `max_connections` with several accept loops (here two listeners on one worker; the same
//! holds for the `SO_REUSEPORT` sockets of several workers): each loop checks for a free
//! slot before it accepts, so two loops can both see the last one. The limit must still
//! never be passed: the second connection waits, unserved, until a slot frees.
#![allow(clippy::unwrap_used)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use crate::reload_support::Live;

const T: Duration = Duration::from_secs(10);

/// A keep-alive connection that has sent `GET /`.
fn request(addr: SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n").unwrap();
    s
}

/// Whether the proxy answered `s` within `wait` (its first response bytes arrived).
fn answered_within(s: &mut TcpStream, wait: Duration) -> bool {
    s.set_read_timeout(Some(wait)).unwrap();
    let mut buf = [0u8; 512];
    match s.read(&mut buf) {
        Ok(n) if n > 0 => {
            assert!(buf.starts_with(b"HTTP/1.1 200"), "{:?}", &buf[..n]);
            true
        }
        Ok(_) => panic!("the proxy closed the connection unanswered"),
        Err(_) => false,
    }
}

/// Poll until the proxy counts `n` client connections.
fn wait_connections(live: &Live, n: usize) {
    let end = Instant::now() + T;
    while live.server.connections() != n {
        assert!(
            Instant::now() < end,
            "{} connections, not {n}",
            live.server.connections()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn two_accept_loops_racing_for_the_last_slot_never_pass_max_connections() {
    let live = Live::start(
        "[server]\nthreads = 1\nmax_connections = 4\naccess_log = \"off\"\n\n\
         [[sites]]\nlisten = [\"127.0.0.1:0\", \"127.0.0.2:0\"]\n\
         routes = [{ path = \"/\", respond = \"ok\" }]\n",
    )
    .unwrap();
    let bound = live.server.bound_addrs();
    let (a, b) = (bound[0].1, bound[1].1);
    // Three of four slots in use (kept alive); both accept loops now wait in accept,
    // each having seen a free slot.
    let mut held: Vec<TcpStream> = (0..3).map(|_| request(a)).collect();
    for s in &mut held {
        assert!(answered_within(s, T));
    }
    wait_connections(&live, 3);
    // One connection for each loop: only one may be served.
    let mut last = [request(a), request(b)];
    let end = Instant::now() + T;
    let first = loop {
        if let Some(i) = (0..2).find(|&i| answered_within(&mut last[i], Duration::from_millis(20)))
        {
            break i;
        }
        assert!(
            Instant::now() < end,
            "neither of the two last connections was served"
        );
    };
    let other = 1 - first;
    assert!(
        !answered_within(&mut last[other], Duration::from_millis(500)),
        "both served: {} connections with max_connections = 4",
        live.server.connections()
    );
    assert_eq!(live.server.connections(), 4, "never past the limit");
    // A slot frees: the waiting connection is served now.
    drop(held.pop());
    assert!(
        answered_within(&mut last[other], T),
        "the waiting connection is served once a slot frees"
    );
    wait_connections(&live, 4);
}
