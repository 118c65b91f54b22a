//! Shared helpers of the active health-check tests: configs, real backends, timing.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use portico_balance::{Pool, Registry, ServerId, ServerState};
use portico_config::{Config, HealthCheck, HealthKind};
use portico_testkit::echo::EchoServer;

pub const INTERVAL: Duration = Duration::from_millis(100);
pub const TIMEOUT: Duration = Duration::from_millis(500);
pub const RISE: u32 = 2;
pub const FALL: u32 = 3;
/// Allowance for a loaded 2-core machine (other builds, other tests of this binary) on top
/// of the theoretical bounds: probe windows are a few hundred ms, so a bound still tells a
/// probe-driven ejection from a missing one.
pub const SLACK: Duration = Duration::from_millis(2000);
/// Deadline of every eventually-style wait.
pub const WAIT: Duration = Duration::from_secs(8);

pub fn localhost() -> SocketAddr {
    "127.0.0.1:0".parse().expect("addr")
}

pub fn echo(name: &str) -> EchoServer {
    EchoServer::start(localhost(), name).expect("echo server")
}

/// Start an echo server on `addr` again (the port of a stopped one), retrying while the
/// port is still being released.
pub fn echo_again(addr: SocketAddr, name: &str) -> EchoServer {
    let deadline = Instant::now() + WAIT;
    loop {
        match EchoServer::start(addr, name) {
            Ok(server) => return server,
            Err(e) if Instant::now() < deadline => {
                eprintln!("rebinding {addr}: {e}; retrying");
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("cannot rebind {addr}: {e}"),
        }
    }
}

/// A config with one upstream `app` over `servers` (TOML server entries) and `extra` keys.
pub fn config(servers: &[String], extra: &str) -> Config {
    let list = servers.join(", ");
    let text = format!(
        "[upstreams.app]\nservers = [{list}]\n{extra}\n\n\
         [[sites]]\nlisten = [\"127.0.0.1:1\"]\nroutes = [{{ path = \"/\", proxy = \"app\" }}]\n"
    );
    portico_config::parse(&text, Path::new("health-test.toml"))
        .unwrap_or_else(|e| panic!("config:\n{text}\n{e}"))
}

pub fn plain(addr: SocketAddr) -> String {
    format!("\"{addr}\"")
}

/// The test check: 100 ms interval, 500 ms timeout, rise 2, fall 3, status 200-399.
pub fn check(kind: HealthKind, path: &str) -> HealthCheck {
    HealthCheck {
        kind,
        path: path.into(),
        host: None,
        interval: INTERVAL,
        timeout: TIMEOUT,
        rise: RISE,
        fall: FALL,
        expect_status: vec![(200, 399)],
        expect_body: None,
    }
}

pub fn with_check(mut config: Config, check: HealthCheck) -> Config {
    config
        .upstreams
        .get_mut("app")
        .expect("upstream app")
        .health = Some(check);
    config
}

pub fn state(registry: &Registry, addr: &str) -> Arc<ServerState> {
    registry.state(&ServerId {
        upstream: "app".into(),
        addr: addr.into(),
    })
}

/// How long until `cond` holds (polled every 5 ms), or `None` after `limit`.
pub fn time_until(limit: Duration, mut cond: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    loop {
        if cond() {
            return Some(start.elapsed());
        }
        if start.elapsed() >= limit {
            return None;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Wait until `server` has been probed at least `n` more times than `before`.
pub fn wait_probes(server: &EchoServer, before: u64, n: u64) {
    let got = time_until(WAIT, || server.connections_accepted() >= before + n);
    assert!(
        got.is_some(),
        "{} probed {} times, wanted {n}",
        server.name(),
        server.connections_accepted() - before
    );
}

/// Counts of each member index over `n` picks (guards dropped at once).
pub fn pick_counts(pool: &Pool, n: usize) -> Vec<usize> {
    let key = portico_balance::PickKey {
        client_ip: "10.0.0.1".parse().expect("ip"),
        hash: None,
    };
    let mut counts = vec![0; pool.member_count()];
    for _ in 0..n {
        let picked = pool.pick(&key, &[]).expect("pick");
        counts[picked.index] += 1;
    }
    counts
}

/// A raw TCP responder that is not an echo server: it reads a request and writes `answer`
/// then closes, or (with `None`) holds the connection open without answering.
pub struct Raw {
    pub addr: SocketAddr,
    pub accepted: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Raw {
    pub fn start(answer: Option<&'static [u8]>) -> Raw {
        let listener = TcpListener::bind(localhost()).expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("addr");
        let stop = Arc::new(AtomicBool::new(false));
        let accepted = Arc::new(AtomicU64::new(0));
        let (stop2, accepted2) = (stop.clone(), accepted.clone());
        let thread = std::thread::spawn(move || {
            let mut held: Vec<TcpStream> = Vec::new();
            while !stop2.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((mut conn, _)) => {
                        accepted2.fetch_add(1, Ordering::Relaxed);
                        let _ = conn.set_nonblocking(false);
                        let _ = conn.set_read_timeout(Some(Duration::from_millis(200)));
                        let mut buf = [0u8; 4096];
                        let _ = conn.read(&mut buf);
                        match answer {
                            Some(bytes) => {
                                let _ = conn.write_all(bytes);
                            }
                            None => held.push(conn),
                        }
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Raw {
            addr,
            accepted,
            stop,
            thread: Some(thread),
        }
    }

    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }
}

impl Drop for Raw {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
