//! The two data planes as one process (the real `portico` binary): HTTP sites and TCP
//! streams share one `max_connections` count ("over all listeners") and one pool of
//! `threads` worker threads.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use support::net::{free_port, local};
use support::process::start_portico;
use support::{TempDir, eventually};

const T10: Duration = Duration::from_secs(10);

/// A TCP backend that holds every connection open until its client side closes, counting
/// the connections open now.
struct HoldingBackend {
    addr: SocketAddr,
    open: Arc<AtomicUsize>,
}

impl HoldingBackend {
    fn spawn() -> HoldingBackend {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the backend");
        let addr = listener.local_addr().expect("backend address");
        let open = Arc::new(AtomicUsize::new(0));
        let count = open.clone();
        std::thread::spawn(move || {
            for mut conn in listener.incoming().flatten() {
                let count = count.clone();
                count.fetch_add(1, Ordering::SeqCst);
                std::thread::spawn(move || {
                    let mut buf = [0u8; 512];
                    while matches!(conn.read(&mut buf), Ok(n) if n > 0) {}
                    count.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
        HoldingBackend { addr, open }
    }

    fn open(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }
}

/// `[server]` keys, a site on `site` answering `hi`, and (when given) a stream on `stream` to
/// `backend`.
fn config(server: &str, site: SocketAddr, stream: Option<(SocketAddr, SocketAddr)>) -> String {
    let mut s = format!(
        "[server]\nstate_dir = \"state\"\naccess_log = \"off\"\n{server}\n\n\
         [admin]\nlisten = \"off\"\n\n\
         [[sites]]\nlisten = [\"{site}\"]\nroutes = [{{ path = \"/\", respond = \"hi\" }}]\n"
    );
    if let Some((listen, backend)) = stream {
        s.push_str(&format!(
            "\n[upstreams.held]\nservers = [\"{backend}\"]\n\n\
             [[streams]]\nlisten = [\"{listen}\"]\nupstream = \"held\"\n"
        ));
    }
    s
}

/// One HTTP/1.0 GET on `site`, reading the answer for at most `wait`: `Some(text)` if an
/// answer came.
fn get(site: SocketAddr, wait: Duration) -> Option<String> {
    let mut s = TcpStream::connect(site).expect("connect to the site");
    s.set_read_timeout(Some(wait)).expect("timeout");
    s.write_all(b"GET / HTTP/1.0\r\nHost: t\r\n\r\n")
        .expect("send");
    let mut out = Vec::new();
    match s.read_to_end(&mut out) {
        Ok(_) if !out.is_empty() => Some(String::from_utf8_lossy(&out).into_owned()),
        _ => None,
    }
}

/// Two stream connections held open fill `max_connections = 2`: an HTTP request waits
/// (unserved) until one of them closes. Each plane counted only its own connections before,
/// so the process held twice what the limit promises.
#[test]
fn max_connections_counts_sites_and_streams_together() {
    let dir = TempDir::new("planes-max");
    let backend = HoldingBackend::spawn();
    let (site, stream) = (local(free_port()), local(free_port()));
    let cfg = dir.write(
        "portico.toml",
        config(
            "max_connections = 2\nthreads = 2",
            site,
            Some((stream, backend.addr)),
        ),
    );
    let mut portico = start_portico(&cfg, dir.path());
    portico.wait_for_port(site, T10);
    portico.wait_for_port(stream, T10);
    // The probes' connections are gone once a request is answered and the backend saw its
    // stream connection close.
    eventually(T10, "the site answers", || get(site, T10));
    eventually(T10, "the probe's stream connection closes", || {
        (backend.open() == 0).then_some(())
    });

    let first = TcpStream::connect(stream).expect("stream connection 1");
    let second = TcpStream::connect(stream).expect("stream connection 2");
    eventually(T10, "both stream connections reach the backend", || {
        (backend.open() == 2).then_some(())
    });
    // Both slots are taken by streams: the site's request is not served.
    assert_eq!(
        get(site, Duration::from_secs(1)),
        None,
        "a site request was served past max_connections = 2 (two stream connections open)"
    );
    drop(first);
    let answer = eventually(T10, "the site answers once a stream closed", || {
        get(site, T10)
    });
    assert!(answer.ends_with("hi"), "{answer}");
    drop(second);
    portico.assert_running();
}

/// The threads of process `pid`: (total, named `portico-worker-*`).
fn threads(pid: u32) -> (usize, usize) {
    let mut total = 0;
    let mut workers = 0;
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).expect("/proc/PID/task") {
        let task = task.expect("task entry");
        total += 1;
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if comm.starts_with("portico-worker") {
            workers += 1;
        }
    }
    (total, workers)
}

/// `threads = 3` with sites and streams runs three worker threads in all, and no more threads
/// than the same config without its streams (each plane started its own three before, plus
/// a stream runtime thread).
#[test]
fn one_pool_of_threads_workers_for_sites_and_streams() {
    let backend = HoldingBackend::spawn();
    let mut counts = Vec::new();
    for with_streams in [false, true] {
        let dir = TempDir::new("planes-threads");
        let site = local(free_port());
        let stream = with_streams.then(|| (local(free_port()), backend.addr));
        let cfg = dir.write("portico.toml", config("threads = 3", site, stream));
        let mut portico = start_portico(&cfg, dir.path());
        portico.wait_for_port(site, T10);
        if let Some((listen, _)) = stream {
            portico.wait_for_port(listen, T10);
        }
        eventually(T10, "the site answers", || get(site, T10));
        counts.push(threads(portico.pid()));
    }
    let (without, with) = (counts[0], counts[1]);
    assert_eq!(with.1, 3, "worker threads with sites and streams: {with:?}");
    assert_eq!(without.1, 3, "worker threads with sites only: {without:?}");
    assert_eq!(
        with.0, without.0,
        "streams must not add threads (with streams {with:?}, without {without:?})"
    );
}
