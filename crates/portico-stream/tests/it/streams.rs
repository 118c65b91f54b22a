//! Streams over real sockets: echo through every balancer, persistence within and after the
//! timeout from two client addresses, a dead server skipped on connect, the access log,
//! idle timeout and graceful shutdown.

use std::collections::HashMap;
use std::io::Read;
use std::time::{Duration, Instant};

use crate::support::*;

fn stream_config(backends: &[&Backend], balance: &str, extra: &str) -> String {
    format!(
        "[upstreams.pool]\nservers = {}\nbalance = \"{balance}\"\n\
         [[streams]]\nlisten = [\"127.0.0.1:0\"]\nupstream = \"pool\"\n{extra}",
        servers(backends)
    )
}

/// Backends tagged `a`, `b` and `c`.
fn three_backends() -> (Backend, Backend, Backend) {
    (
        Backend::spawn("a"),
        Backend::spawn("b"),
        Backend::spawn("c"),
    )
}

fn counts(tags: &[String]) -> HashMap<String, usize> {
    let mut m = HashMap::new();
    for t in tags {
        *m.entry(t.clone()).or_insert(0) += 1;
    }
    m
}

#[test]
fn echo_through_every_balancer() {
    let (a, b, c) = three_backends();
    for balance in ["round_robin", "least_conn", "random_two", "ip_hash", "hash"] {
        let p = Portico::start(&stream_config(&[&a, &b, &c], balance, ""));
        let tags: Vec<String> = (0..30).map(|_| tag_from("127.0.0.1", p.addr(0))).collect();
        let n = counts(&tags);
        match balance {
            "round_robin" => assert_eq!(
                n.values().copied().collect::<Vec<_>>(),
                vec![10; 3],
                "{balance}: {n:?}"
            ),
            "ip_hash" | "hash" => {
                assert_eq!(n.len(), 1, "{balance}: one client, one server: {n:?}")
            }
            _ => assert_eq!(n.len(), 3, "{balance}: every server used: {n:?}"),
        }
        // A bulk transfer both ways through the same stream.
        let mut s = connect_from("127.0.0.1".parse().unwrap(), p.addr(0));
        let _ = exchange(&mut s);
        let data: Vec<u8> = (0..4 * 1024 * 1024).map(|i: u32| (i % 251) as u8).collect();
        let mut writer = s.try_clone().unwrap();
        let sent = data.clone();
        let t = std::thread::spawn(move || std::io::Write::write_all(&mut writer, &sent).unwrap());
        let mut back = vec![0u8; data.len()];
        s.read_exact(&mut back).unwrap();
        t.join().unwrap();
        assert!(back == data, "{balance}: 4 MiB echoed intact");
    }
}

/// Seed 003's LVS virtual server: `lb_algo rr; persistence_timeout 50` from two client
/// addresses: each keeps its server for all its connections, and the two differ (round
/// robin); without persistence the same client rotates.
#[test]
fn seed_003_round_robin_with_50s_persistence_from_two_clients() {
    let (a, b, c) = three_backends();
    let p = Portico::start(&stream_config(
        &[&a, &b, &c],
        "round_robin",
        "persistence = \"50s\"\n",
    ));
    let first2 = tag_from("127.0.0.2", p.addr(0));
    let first3 = tag_from("127.0.0.3", p.addr(0));
    assert_ne!(
        first2, first3,
        "round robin gives the second client the next server"
    );
    for _ in 0..10 {
        assert_eq!(tag_from("127.0.0.2", p.addr(0)), first2);
        assert_eq!(tag_from("127.0.0.3", p.addr(0)), first3);
    }
    let lines = p.log_lines(22);
    assert_eq!(lines.len(), 22, "{lines:?}");
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("127.0.0.2:") && l.contains("end=client_closed"))
    );
    assert!(lines.iter().any(|l| l.starts_with("127.0.0.3:")));

    let q = Portico::start(&stream_config(&[&a, &b, &c], "round_robin", ""));
    let tags: Vec<String> = (0..6).map(|_| tag_from("127.0.0.2", q.addr(0))).collect();
    assert_eq!(counts(&tags).len(), 3, "no persistence: rotates {tags:?}");
}

#[test]
fn persistence_lasts_while_open_and_expires_after_the_last_close() {
    let (a, b, c) = three_backends();
    let p = Portico::start(&stream_config(
        &[&a, &b, &c],
        "round_robin",
        "persistence = \"1s\"\n",
    ));
    let addr = p.addr(0);
    // Hold a connection open for longer than the timeout: the pin stays.
    let mut held = connect_from("127.0.0.2".parse().unwrap(), addr);
    let pinned = exchange(&mut held);
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        tag_from("127.0.0.2", addr),
        pinned,
        "pinned while a connection is open"
    );
    drop(held);
    // Within the timeout after the last close: same server.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(tag_from("127.0.0.2", addr), pinned);
    // After it: a fresh round-robin pick (the next server in turn, not the pinned one).
    std::thread::sleep(Duration::from_millis(1400));
    let after = tag_from("127.0.0.2", addr);
    assert_ne!(after, pinned, "the pin expired");
}

#[test]
fn dead_server_is_skipped_on_connect() {
    let (a, b) = (Backend::spawn("a"), Backend::spawn("b"));
    let dead = dead_port();
    let toml = format!(
        "[upstreams.pool]\nservers = [\"{dead}\", \"{}\", \"{}\"]\nretries = 2\nconnect_timeout = \"1s\"\n\
         [[streams]]\nlisten = [\"127.0.0.1:0\"]\nupstream = \"pool\"\npersistence = \"10s\"\n",
        a.addr, b.addr
    );
    let p = Portico::start(&toml);
    // Every connection succeeds, including a client whose first pick is the dead server.
    for from in ["127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"] {
        let t = tag_from(from, p.addr(0));
        assert!(t == "a" || t == "b", "{t}");
        // Persistence pinned the live server that answered.
        assert_eq!(tag_from(from, p.addr(0)), t);
    }
    // With every server dead: connect_failed, logged.
    let toml = format!(
        "[upstreams.pool]\nservers = [\"{dead}\"]\n[[streams]]\nlisten = [\"127.0.0.1:0\"]\nupstream = \"pool\"\n"
    );
    let q = Portico::start(&toml);
    let mut s = connect_from("127.0.0.1".parse().unwrap(), q.addr(0));
    let mut buf = [0u8; 1];
    assert_eq!(s.read(&mut buf).unwrap_or(0), 0, "closed");
    let lines = q.log_lines(1);
    assert!(
        lines[0].contains("end=connect_failed") && lines[0].contains(&format!("-> pool {dead}")),
        "{lines:?}"
    );
}

#[test]
fn idle_timeout_closes_and_is_logged() {
    let a = Backend::spawn("a");
    let p = Portico::start(&stream_config(
        &[&a],
        "round_robin",
        "idle_timeout = \"300ms\"\n",
    ));
    let mut s = connect_from("127.0.0.1".parse().unwrap(), p.addr(0));
    let _ = exchange(&mut s);
    let start = Instant::now();
    let mut buf = [0u8; 1];
    assert_eq!(s.read(&mut buf).unwrap(), 0);
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_millis(250) && waited < Duration::from_secs(3),
        "{waited:?}"
    );
    let lines = p.log_lines(1);
    assert!(
        lines[0].contains("end=idle_timeout") && lines[0].contains("sent=4 received=6"),
        "{lines:?}"
    );
}

#[test]
fn graceful_shutdown_lets_connections_finish_then_closes() {
    let a = Backend::spawn("a");
    let p = Portico::start(&stream_config(&[&a], "round_robin", ""));
    let mut s = connect_from("127.0.0.1".parse().unwrap(), p.addr(0));
    let _ = exchange(&mut s);
    p.running.shutdown();
    // New connections are refused (the listener is closed) ...
    crate::support::wait_until(Duration::from_secs(5), || {
        std::net::TcpStream::connect_timeout(&p.addr(0), Duration::from_millis(200)).is_err()
    });
    // ... the open one still works ...
    assert_eq!(exchange_again(&mut s), "ping");
    // ... until the grace period (2s) ends.
    let mut buf = [0u8; 1];
    let start = Instant::now();
    assert_eq!(s.read(&mut buf).unwrap_or(0), 0);
    assert!(start.elapsed() < Duration::from_secs(5));
    // (Probes of the wait above may have been accepted just before the listener closed.)
    crate::support::wait_until(Duration::from_secs(5), || p.log().contains("sent=8 "));
    let log = p.log();
    let ours = log.lines().find(|l| l.contains("sent=8 ")).unwrap();
    assert!(
        ours.contains("received=10 ") && ours.contains("end=shutdown"),
        "{log}"
    );
}

fn exchange_again(s: &mut std::net::TcpStream) -> String {
    std::io::Write::write_all(s, b"ping").unwrap();
    let mut back = [0u8; 4];
    s.read_exact(&mut back).unwrap();
    String::from_utf8_lossy(&back).to_string()
}

#[test]
fn no_streams_gives_an_idle_handle() {
    let config = portico_config::parse(
        "[admin]\nlisten = \"off\"\n",
        std::path::Path::new("p.toml"),
    )
    .unwrap();
    let r = portico_stream::StreamServer::start(
        std::sync::Arc::new(config),
        portico_balance::Registry::new(),
    )
    .unwrap();
    assert!(r.bound_addrs().is_empty());
    r.shutdown();
    r.wait();
}

/// A server's `max_conns` holds for streams: with both servers at their limit a new
/// connection has no server (logged `no_server`); when one closes, the next one gets it.
#[test]
fn max_conns_limits_open_streams_per_server() {
    let (a, b) = (Backend::spawn("a"), Backend::spawn("b"));
    let toml = format!(
        "[upstreams.pool]\nservers = [{{ addr = \"{}\", max_conns = 1 }}, {{ addr = \"{}\", max_conns = 1 }}]\n\
         [[streams]]\nlisten = [\"127.0.0.1:0\"]\nupstream = \"pool\"\n",
        a.addr, b.addr
    );
    let p = Portico::start(&toml);
    let mut first = connect_from("127.0.0.1".parse().unwrap(), p.addr(0));
    let mut second = connect_from("127.0.0.1".parse().unwrap(), p.addr(0));
    let (t1, t2) = (exchange(&mut first), exchange(&mut second));
    assert_ne!(t1, t2, "one stream per server");
    let mut third = connect_from("127.0.0.1".parse().unwrap(), p.addr(0));
    let mut buf = [0u8; 1];
    assert_eq!(
        third.read(&mut buf).unwrap_or(0),
        0,
        "no server left: closed"
    );
    drop(first);
    crate::support::wait_until(Duration::from_secs(5), || {
        p.log().contains("end=client_closed")
    });
    let mut fourth = connect_from("127.0.0.1".parse().unwrap(), p.addr(0));
    assert_eq!(
        exchange(&mut fourth),
        t1,
        "the freed server takes the next stream"
    );
    let log = p.log();
    assert!(
        log.contains("-> pool - sent=0 received=0") && log.contains("end=no_server"),
        "{log}"
    );
}

/// Half-close: the client's EOF reaches the server, whose answer still comes back, then the
/// server's close ends the stream. Also over an IPv6 listener.
#[test]
fn half_close_is_passed_on_both_ways() {
    let a = Backend::spawn("a");
    let toml = format!(
        "[upstreams.pool]\nservers = [\"{}\"]\n[[streams]]\nlisten = [\"127.0.0.1:0\", \"[::1]:0\"]\nupstream = \"pool\"\n",
        a.addr
    );
    let p = Portico::start(&toml);
    for i in 0..2 {
        let mut s = std::net::TcpStream::connect(p.addr(i)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        std::io::Write::write_all(&mut s, b"last words").unwrap();
        s.shutdown(std::net::Shutdown::Write).unwrap();
        let mut all = String::new();
        s.read_to_string(&mut all).unwrap();
        assert_eq!(all, "a\nlast words", "listener {}", p.addr(i));
    }
    let lines = p.log_lines(2);
    assert!(
        lines
            .iter()
            .all(|l| l.contains("sent=10 received=12 ") && l.contains("end=client_closed")),
        "{lines:#?}"
    );
}
