//! Reload of a running server (in-process, real sockets): listeners kept, added and removed;
//! routes swapped; a refused reload changes nothing; health and counters survive; requests
//! under load never fail.
#![allow(clippy::unwrap_used)]

use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::common::*;
use crate::reload_support::{Live, eventually};
use portico_balance::ServerId;

#[test]
fn routes_change_in_place_and_the_listener_is_never_rebound() {
    let a = echo("A");
    let b = echo("B");
    let live = Live::start(&site("127.0.0.1:0", &[a.addr], "")).unwrap();
    let addr = live.addr();
    let mut kept = Conn::open(addr);
    assert_eq!(kept.get("h", "/").header("x-echo-name"), Some("A"));
    let out = live.reload(&site("127.0.0.1:0", &[b.addr], "")).unwrap();
    assert!(out.listeners_added.is_empty() && out.listeners_removed.is_empty());
    assert_eq!(live.addr(), addr, "same bound port: the listener was kept");
    // New connections and the kept keep-alive connection both see the new route.
    assert_eq!(get(addr, "h", "/").header("x-echo-name"), Some("B"));
    assert_eq!(kept.get("h", "/").header("x-echo-name"), Some("B"));
}

#[test]
fn a_request_in_flight_finishes_on_its_snapshot() {
    let a = echo("A");
    let b = echo("B");
    let live = Live::start(&site("127.0.0.1:0", &[a.addr], "")).unwrap();
    let addr = live.addr();
    let slow = std::thread::spawn(move || get(addr, "h", "/_echo/sleep?ms=400"));
    std::thread::sleep(Duration::from_millis(100));
    live.reload(&site("127.0.0.1:0", &[b.addr], "")).unwrap();
    let r = slow.join().unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("x-echo-name"),
        Some("A"),
        "started on the old snapshot"
    );
    assert_eq!(get(addr, "h", "/").header("x-echo-name"), Some("B"));
}

#[test]
fn an_added_listener_serves_at_once_and_a_removed_one_stops_accepting() {
    let a = echo("A");
    let one = site("127.0.0.1:0", &[a.addr], "");
    let live = Live::start(&one).unwrap();
    let first = live.addr();
    // A second site on another loopback address (port 0: a new port is picked).
    let two = format!(
        "{one}\n[[sites]]\nlisten = [\"127.0.0.2:0\"]\nroutes = [{{ path = \"/\", respond = \"second\" }}]\n"
    );
    let out = live.reload(&two).unwrap();
    assert_eq!(out.listeners_added.len(), 1);
    let second = out.listeners_added[0].1;
    assert_eq!(get(second, "h", "/").text(), "second");
    assert_eq!(live.server.bound_addrs().len(), 2);
    // A keep-alive connection on the listener about to go, and a slow request on it.
    let mut idle = Conn::open(second);
    assert_eq!(idle.get("h", "/").status, 200);
    let slow = std::thread::spawn(move || get(first, "h", "/_echo/sleep?ms=400"));
    std::thread::sleep(Duration::from_millis(100));
    // Remove the first listener: keep only the second site.
    let only_second = format!(
        "[server]\nthreads = 2\naccess_log = \"off\"\nshutdown_grace = \"5s\"\n[upstreams.app]\nservers = [\"{}\"]\n[[sites]]\nlisten = [\"127.0.0.2:0\"]\nroutes = [{{ path = \"/\", respond = \"second\" }}]\n",
        a.addr
    );
    let out = live.reload(&only_second).unwrap();
    assert_eq!(out.listeners_removed, vec!["127.0.0.1:0".parse().unwrap()]);
    let r = slow.join().unwrap();
    assert_eq!(
        r.status, 200,
        "the request in flight on the removed listener finished"
    );
    assert_eq!(r.header("x-echo-name"), Some("A"));
    eventually(
        Duration::from_secs(5),
        "the removed listener refuses",
        || TcpStream::connect(first).is_err(),
    );
    // The kept listener's keep-alive connection was never touched.
    assert_eq!(idle.get("h", "/").text(), "second");
    assert_eq!(
        live.server.bound_addrs(),
        vec![("127.0.0.2:0".parse().unwrap(), second)]
    );
}

#[test]
fn a_refused_reload_changes_nothing() {
    let a = echo("A");
    let b = echo("B");
    let live = Live::start(&site("127.0.0.1:0", &[a.addr], "")).unwrap();
    let addr = live.addr();
    // A server name that does not resolve.
    let bad = site("127.0.0.1:0", &[b.addr], "")
        .replace(&format!("\"{}\"", b.addr), "\"no-such-host.invalid:80\"");
    assert!(live.reload(&bad).is_err());
    assert_eq!(get(addr, "h", "/").header("x-echo-name"), Some("A"));
    // A new listener on an address another socket already listens on.
    let taken = std::net::TcpListener::bind("127.0.0.3:0").unwrap();
    let t = taken.local_addr().unwrap();
    let two = format!(
        "{}\n[[sites]]\nlisten = [\"{t}\"]\nroutes = [{{ path = \"/\", respond = \"x\" }}]\n",
        site("127.0.0.1:0", &[b.addr], "")
    );
    let err = live.reload(&two).unwrap_err();
    assert!(err.to_string().contains(&t.to_string()), "{err}");
    assert_eq!(get(addr, "h", "/").header("x-echo-name"), Some("A"));
    assert_eq!(live.server.bound_addrs().len(), 1);
}

#[test]
fn health_and_counters_survive_a_reload() {
    let a = echo("A");
    let b = echo("B");
    let live = Live::start(&site("127.0.0.1:0", &[a.addr, b.addr], "")).unwrap();
    let addr = live.addr();
    for _ in 0..10 {
        assert_eq!(get(addr, "h", "/").status, 200);
    }
    let id = |s: &SocketAddr| ServerId {
        upstream: Arc::from("app"),
        addr: Arc::from(s.to_string()),
    };
    let picks_before = live.registry.get(&id(&a.addr)).unwrap().picks();
    assert!(picks_before > 0);
    live.registry.get(&id(&b.addr)).unwrap().set_healthy(false);
    // An unrelated change: a response header on the route.
    live.reload(&site(
        "127.0.0.1:0",
        &[a.addr, b.addr],
        ", response_headers = { set = { x-gen = \"2\" } }",
    ))
    .unwrap();
    let r = get(addr, "h", "/");
    assert_eq!(r.header("x-gen"), Some("2"));
    let state_b = live.registry.get(&id(&b.addr)).unwrap();
    assert!(!state_b.is_healthy(), "health verdict kept");
    for _ in 0..6 {
        assert_eq!(get(addr, "h", "/").header("x-echo-name"), Some("A"));
    }
    assert!(live.registry.get(&id(&a.addr)).unwrap().picks() > picks_before);
}

#[test]
fn fifty_reloads_under_load_fail_no_request() {
    let a = echo("A");
    let b = echo("B");
    let live = Live::start(&site("127.0.0.1:0", &[a.addr], "")).unwrap();
    let addr = live.addr();
    let stop = Arc::new(AtomicBool::new(false));
    let served = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut clients = Vec::new();
    for keep_alive in [true, true, false, false] {
        let (stop, served, failed) = (stop.clone(), served.clone(), failed.clone());
        clients.push(std::thread::spawn(move || {
            load_loop(addr, keep_alive, &stop, &served, &failed, deadline)
        }));
    }
    let started = Instant::now();
    for i in 0..50 {
        let servers = if i % 2 == 0 { [b.addr] } else { [a.addr] };
        let extra = format!(", request_headers = {{ set = {{ x-gen = \"{i}\" }} }}");
        live.reload(&site("127.0.0.1:0", &servers, &extra)).unwrap();
        std::thread::sleep(Duration::from_millis(20));
    }
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().unwrap();
    }
    let (ok, bad) = (
        served.load(Ordering::Relaxed),
        failed.load(Ordering::Relaxed),
    );
    println!(
        "50 reloads in {:?}: {ok} requests served, {bad} failed",
        started.elapsed()
    );
    assert!(ok > 200, "the load ran ({ok} requests)");
    assert_eq!(bad, 0, "no request failed during reloads");
}

/// Requests until `stop` (or `deadline`): on one keep-alive connection, or a new
/// connection per request.
pub fn load_loop(
    addr: SocketAddr,
    keep_alive: bool,
    stop: &AtomicBool,
    served: &AtomicU64,
    failed: &AtomicU64,
    deadline: Instant,
) {
    let mut conn: Option<Conn> = None;
    while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
        let c = conn.get_or_insert_with(|| Conn::open(addr));
        let resp = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| c.get("h", "/")));
        // `Connection: close` (keepalive_requests reached): a new connection next time.
        let (ok, close) = resp.map_or((false, true), |r| {
            let close = r
                .header("connection")
                .is_some_and(|v| v.eq_ignore_ascii_case("close"));
            (r.status == 200, close)
        });
        if ok {
            served.fetch_add(1, Ordering::Relaxed);
            if close {
                conn = None;
            }
        } else {
            failed.fetch_add(1, Ordering::Relaxed);
            conn = None;
        }
        if !keep_alive {
            conn = None;
        }
    }
}

/// One site on `listen` proxying to `servers` (upstream `app`), extra route keys.
fn site(listen: &str, servers: &[SocketAddr], route_extra: &str) -> String {
    let list: Vec<String> = servers.iter().map(|a| format!("\"{a}\"")).collect();
    format!(
        "[server]\nthreads = 2\naccess_log = \"off\"\nshutdown_grace = \"5s\"\n\n[upstreams.app]\nservers = [{}]\n\n[[sites]]\nlisten = [\"{listen}\"]\nroutes = [{{ path = \"/\", proxy = \"app\"{route_extra} }}]\n",
        list.join(", ")
    )
}

#[test]
fn a_request_outliving_shutdown_grace_on_a_removed_listener_is_cut_at_the_cap() {
    let a = echo("A");
    let two = format!(
        "{}\n[[sites]]\nlisten = [\"127.0.0.2:0\"]\nroutes = [{{ path = \"/\", proxy = \"app\" }}]\n",
        site("127.0.0.1:0", &[a.addr], "")
    );
    let live = Live::start(&two).unwrap();
    let second = live.server.bound_addrs()[1].1;
    // 8 s of work against a 5 s shutdown_grace.
    let mut slow = Conn::open(second);
    // A first answer proves the connection was accepted and is served (not still in the
    // backlog of the listener the reload removes), however loaded the machine is.
    assert_eq!(slow.get("h", "/").status, 200);
    slow.send(b"GET /_echo/sleep?ms=8000 HTTP/1.1\r\nHost: h\r\n\r\n");
    // Time for the proxy to read that head: a connection with no request in service would
    // rightly be closed at once by the drain.
    std::thread::sleep(Duration::from_millis(1000));
    let reloaded = Instant::now();
    live.reload(&site("127.0.0.1:0", &[a.addr], "")).unwrap();
    assert!(slow.eof_within(Duration::from_secs(8)), "closed");
    let at = reloaded.elapsed();
    assert!(
        at >= Duration::from_millis(4500) && at < Duration::from_millis(7000),
        "cut at the 5 s cap: {at:?}"
    );
}
