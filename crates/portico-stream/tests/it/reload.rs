//! Stream reloads over real sockets: an unchanged stream is not touched, a changed one serves
//! new connections with its new servers while open ones stay where they are, listeners are
//! added and removed (a removed one's connections are closed at `shutdown_grace`), a
//! refused reload changes nothing, and `[server] header_timeout` / `shutdown_grace` of the
//! reloaded config apply to the streams (as to the sites).

use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::support::*;
use portico_balance::Registry;
use portico_stream::{RunningStreams, StreamServer};

struct Live {
    running: RunningStreams,
    registry: Registry,
    dir: tempfile::TempDir,
}

impl Live {
    fn start(toml: &str) -> Live {
        let dir = tempfile::tempdir().unwrap();
        let registry = Registry::new();
        let config = parse(&dir, toml);
        let running = StreamServer::start(Arc::new(config), registry.clone()).unwrap();
        Live {
            running,
            registry,
            dir,
        }
    }

    fn reload(
        &self,
        toml: &str,
    ) -> Result<portico_stream::StreamReload, portico_stream::StreamError> {
        self.running.reload(&parse(&self.dir, toml), &self.registry)
    }

    fn start_server(server: &str, toml: &str) -> Live {
        let dir = tempfile::tempdir().unwrap();
        let registry = Registry::new();
        let config = parse_server(&dir, server, toml);
        let running = StreamServer::start(Arc::new(config), registry.clone()).unwrap();
        Live {
            running,
            registry,
            dir,
        }
    }

    fn reload_server(
        &self,
        server: &str,
        toml: &str,
    ) -> Result<portico_stream::StreamReload, portico_stream::StreamError> {
        self.running
            .reload(&parse_server(&self.dir, server, toml), &self.registry)
    }

    fn addr(&self, i: usize) -> SocketAddr {
        self.running.bound_addrs()[i].1
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        self.running.stop_now();
    }
}

fn parse(dir: &tempfile::TempDir, toml: &str) -> portico_config::Config {
    parse_server(dir, "shutdown_grace = \"2s\"", toml)
}

/// [`parse`] with `server` as the `[server]` keys after `access_log = "off"`.
fn parse_server(dir: &tempfile::TempDir, server: &str, toml: &str) -> portico_config::Config {
    let text =
        format!("[admin]\nlisten = \"off\"\n[server]\naccess_log = \"off\"\n{server}\n{toml}");
    let path = dir.path().join("portico.toml");
    std::fs::write(&path, &text).unwrap();
    portico_config::parse(&text, &path).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

/// Upstream `pool` with `servers`, one stream per `listen` entry; `extra` appended.
fn config(servers: &[&Backend], listen: &[&str], extra: &str) -> String {
    let mut s = format!(
        "[upstreams.pool]\nservers = {}\n",
        crate::support::servers(servers)
    );
    for l in listen {
        s.push_str(&format!(
            "[[streams]]\nlisten = [\"{l}\"]\nupstream = \"pool\"\n"
        ));
    }
    s.push_str(extra);
    s
}

fn tag(addr: SocketAddr) -> String {
    tag_from("127.0.0.1", addr)
}

#[test]
fn an_unchanged_stream_is_untouched_and_a_changed_one_serves_new_connections_anew() {
    let (a, b) = (Backend::spawn("a"), Backend::spawn("b"));
    let live = Live::start(&config(&[&a], &["127.0.0.1:0"], ""));
    let addr = live.addr(0);
    let mut open = connect_from("127.0.0.1".parse().unwrap(), addr);
    assert_eq!(exchange(&mut open), "a");
    // An unrelated change (another upstream): nothing to do for the stream.
    let out = live
        .reload(&config(
            &[&a],
            &["127.0.0.1:0"],
            "[upstreams.other]\nservers = [\"127.0.0.1:9\"]\n",
        ))
        .unwrap();
    assert!(
        out.listeners_updated.is_empty() && out.listeners_added.is_empty(),
        "{out:?}"
    );
    // Its upstream's servers change: new connections go to b, the open one stays on a.
    let out = live.reload(&config(&[&b], &["127.0.0.1:0"], "")).unwrap();
    assert_eq!(out.listeners_updated, vec!["127.0.0.1:0".parse().unwrap()]);
    assert_eq!(live.addr(0), addr, "the listener was kept");
    for _ in 0..3 {
        assert_eq!(tag(addr), "b");
    }
    use std::io::{Read, Write};
    open.write_all(b"still").unwrap();
    let mut back = [0u8; 5];
    open.read_exact(&mut back).unwrap();
    assert_eq!(&back, b"still", "the open connection kept its server");
}

#[test]
fn listeners_are_added_and_removed() {
    let a = Backend::spawn("a");
    let live = Live::start(&config(&[&a], &["127.0.0.1:0"], ""));
    let first = live.addr(0);
    let out = live
        .reload(&config(&[&a], &["127.0.0.1:0", "127.0.0.2:0"], ""))
        .unwrap();
    assert_eq!(out.listeners_added.len(), 1);
    let second = out.listeners_added[0].1;
    assert_eq!(tag(second), "a", "the new listener accepts at once");
    let mut open = connect_from("127.0.0.1".parse().unwrap(), first);
    assert_eq!(exchange(&mut open), "a");
    let reloaded = std::time::Instant::now();
    let out = live.reload(&config(&[&a], &["127.0.0.2:0"], "")).unwrap();
    assert_eq!(out.listeners_removed, vec!["127.0.0.1:0".parse().unwrap()]);
    wait_until(Duration::from_secs(5), || {
        TcpStream::connect(first).is_err()
    });
    // The removed listener's open connection runs on.
    use std::io::{Read, Write};
    open.write_all(b"on").unwrap();
    let mut back = [0u8; 2];
    open.read_exact(&mut back).unwrap();
    assert_eq!(&back, b"on");
    assert_eq!(tag(second), "a");
    // ... until shutdown_grace (2 s): then it is closed.
    open.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut rest = [0u8; 8];
    let n = open.read(&mut rest).unwrap_or(0);
    assert_eq!(n, 0, "closed, not data");
    let at = reloaded.elapsed();
    assert!(
        at >= Duration::from_millis(1800) && at < Duration::from_secs(4),
        "closed at the 2 s cap: {at:?}"
    );
    assert_eq!(
        live.running.bound_addrs(),
        vec![("127.0.0.2:0".parse().unwrap(), second)]
    );
}

#[test]
fn a_refused_reload_changes_nothing() {
    let (a, b) = (Backend::spawn("a"), Backend::spawn("b"));
    let live = Live::start(&config(&[&a], &["127.0.0.1:0"], ""));
    let addr = live.addr(0);
    let taken = TcpListener::bind("127.0.0.3:0").unwrap();
    let t = taken.local_addr().unwrap().to_string();
    let err = live
        .reload(&config(&[&b], &["127.0.0.1:0", &t], ""))
        .unwrap_err();
    assert!(err.to_string().contains(&t), "{err}");
    assert_eq!(tag(addr), "a", "the stream still goes to its old server");
    assert_eq!(live.running.bound_addrs().len(), 1);
}

/// Started without streams (the idle handle), a reload adds the first ones: the stream
/// runtime starts then and serves at once; removing every stream closes the listeners (the
/// runtime stays, idle) and adding some again works; a graceful stop ends the started runtime.
#[test]
fn the_first_streams_come_with_a_reload_and_all_can_go() {
    let a = Backend::spawn("a");
    let live = Live::start(&config(&[&a], &[], ""));
    assert!(live.running.bound_addrs().is_empty());
    // A refused first reload (the address is taken) leaves the handle idle.
    let taken = TcpListener::bind("127.0.0.3:0").unwrap();
    let t = taken.local_addr().unwrap().to_string();
    let err = live.reload(&config(&[&a], &[&t], "")).unwrap_err();
    assert!(err.to_string().contains(&t), "{err}");
    assert!(live.running.bound_addrs().is_empty());

    let out = live.reload(&config(&[&a], &["127.0.0.1:0"], "")).unwrap();
    assert_eq!(out.listeners_added.len(), 1, "{out:?}");
    assert!(out.needs_restart.is_empty(), "{out:?}");
    let first = live.addr(0);
    assert_eq!(out.listeners_added[0].1, first);
    assert_eq!(tag(first), "a", "the new stream accepts at once");
    let mut open = connect_from("127.0.0.1".parse().unwrap(), first);
    assert_eq!(exchange(&mut open), "a");
    assert_eq!(live.running.connections(), 1);

    let out = live.reload(&config(&[&a], &[], "")).unwrap();
    assert_eq!(out.listeners_removed, vec!["127.0.0.1:0".parse().unwrap()]);
    assert!(live.running.bound_addrs().is_empty());
    wait_until(Duration::from_secs(5), || {
        TcpStream::connect(first).is_err()
    });
    assert!(TcpStream::connect(first).is_err(), "the listener is closed");

    let out = live.reload(&config(&[&a], &["127.0.0.2:0"], "")).unwrap();
    assert_eq!(out.listeners_added.len(), 1, "{out:?}");
    assert_eq!(tag(live.addr(0)), "a");

    // Graceful stop: the open connection may finish; the runtime ends within the grace.
    drop(open);
    let stopped = std::time::Instant::now();
    live.running.shutdown();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(5), live.running.closed())
            .await
            .expect("the started runtime stops")
    });
    assert!(stopped.elapsed() < Duration::from_secs(4));
}

/// A client that sends nothing on a stream expecting a PROXY header is closed at
/// `header_timeout`: the reloaded one, not the start-up one.
#[test]
fn a_reload_applies_header_timeout_to_new_stream_connections() {
    let backend = Backend::spawn("b");
    let body = format!(
        "{}accept_proxy_protocol = true\n",
        config(&[&backend], &["127.0.0.1:0"], "")
    );
    let live = Live::start_server("header_timeout = \"60s\"", &body);
    live.reload_server("header_timeout = \"200ms\"", &body)
        .unwrap();
    let mut s = TcpStream::connect(live.addr(0)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    let started = Instant::now();
    let mut b = [0u8; 1];
    let r = s.read(&mut b);
    let took = started.elapsed();
    assert!(matches!(r, Ok(0)) || r.is_err(), "{r:?}");
    assert!(
        took < Duration::from_secs(10),
        "closed after {took:?}: the start-up header_timeout (60 s) still applied"
    );
}

/// A graceful stop after a reload that shortened `shutdown_grace` closes the streams still
/// open at the new grace.
#[test]
fn a_reload_applies_shutdown_grace_to_the_next_stop() {
    let backend = Backend::spawn("b");
    let body = config(&[&backend], &["127.0.0.1:0"], "");
    let live = Live::start_server("shutdown_grace = \"60s\"", &body);
    live.reload_server("shutdown_grace = \"200ms\"", &body)
        .unwrap();
    let mut s = connect_from("127.0.0.1".parse().unwrap(), live.addr(0));
    assert_eq!(exchange(&mut s), "b");
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    let started = Instant::now();
    live.running.shutdown();
    let mut b = [0u8; 1];
    let r = s.read(&mut b);
    let took = started.elapsed();
    assert!(matches!(r, Ok(0)) || r.is_err(), "{r:?}");
    assert!(
        took < Duration::from_secs(10),
        "closed after {took:?}: the start-up shutdown_grace (60 s) still applied"
    );
}
