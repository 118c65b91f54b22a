//! Binary upgrade of the real `portico` binary (`portico upgrade`, SIGUSR2): the binary runs
//! from a copy in a temp dir, the copy is replaced (written beside it, renamed over it), and
//! the running process starts the new file on the same listening sockets, sites and
//! streams. Under HTTP load (keep-alive and new connections, through a site and a stream)
//! with 200 WebSockets open: no connection refused, no request failed, every WebSocket
//! still echoing on the old process or closed 1001; the pid file and systemd's main PID
//! (`MAINPID=` on a test `NOTIFY_SOCKET`) name the new process. A broken binary (exits 1, or
//! not executable) and a broken config leave the old process serving and say why.

use crate::support;
use crate::support::raw_ws::RawWs;

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::http;
use support::net::{free_port, local};
use support::process::{ChildGuard, RunOutput, portico, run_bounded, start_portico_echo};
use support::{TempDir, eventually, report};

const T10: Duration = Duration::from_secs(10);

/// A site (WebSockets on `/ws`, the rest proxied) and a stream, both to `backend`.
fn config(site: SocketAddr, stream: SocketAddr, backend: SocketAddr) -> String {
    format!(
        "[server]\nstate_dir = \"state\"\naccess_log = \"off\"\nshutdown_grace = \"5s\"\nthreads = 2\n\n\
         [admin]\nlisten = \"off\"\n\n\
         [upstreams.app]\nservers = [\"{backend}\"]\n\n\
         [[sites]]\nlisten = [\"{site}\"]\nroutes = [\n\
         {{ path = \"/ws\", proxy = \"app\", websocket = true }},\n\
         {{ path = \"/\", proxy = \"app\" }},\n]\n\n\
         [[streams]]\nlisten = [\"{stream}\"]\nupstream = \"app\"\n"
    )
}

/// The binary under test copied to `DIR/bin/portico` (what the instance runs).
fn install(dir: &Path) -> PathBuf {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).expect("bin dir");
    let path = bin.join("portico");
    std::fs::copy(support::portico_bin(), &path).expect("copy the binary");
    path
}

/// Replace the file at `path` as a package manager does: write beside it, rename over it.
fn replace(path: &Path, contents: &[u8], mode: u32) {
    let tmp = path.with_extension("new");
    std::fs::write(&tmp, contents).expect("write the new binary");
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode)).expect("chmod");
    std::fs::rename(&tmp, path).expect("rename over the binary");
}

/// The pid in `DIR/state/portico.pid`.
fn pid_file(dir: &Path) -> Option<u32> {
    std::fs::read_to_string(dir.join("state/portico.pid"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

fn alive(pid: u32) -> bool {
    // A zombie (exited, not reaped yet) is not alive.
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        !s.rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z')
    })
}

/// Kills (by PID) the processes the upgrades started, which the test does not own.
struct Started(Vec<u32>);

impl Drop for Started {
    fn drop(&mut self) {
        for pid in &self.0 {
            if alive(*pid) {
                let _ = std::process::Command::new("kill")
                    .args(["-KILL", &pid.to_string()])
                    .status();
            }
        }
    }
}

/// `portico upgrade -c CONFIG` (the test's binary as the command line tool).
fn upgrade_cli(dir: &Path, config: &Path) -> RunOutput {
    let c = config.to_str().expect("utf-8");
    run_bounded(
        "portico-upgrade",
        portico(dir, &["upgrade", "-c", c]),
        dir,
        Duration::from_secs(90),
        Duration::ZERO,
    )
}

/// What a WebSocket does when probed after the upgrade.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Probe {
    Echoes,
    Closed(u16),
    Broken(String),
}

/// Send a message; the answer is its echo, or the close frame the drain sent before it.
fn probe(ws: &mut RawWs, text: &str) -> Probe {
    let sent = ws.send(text);
    match ws.recv() {
        Ok((1, p)) if p == text.as_bytes() => Probe::Echoes,
        Ok((8, p)) if p.len() >= 2 => Probe::Closed(u16::from_be_bytes([p[0], p[1]])),
        Ok((op, p)) => Probe::Broken(format!("frame {op} {p:?} (send: {sent:?})")),
        Err(e) => Probe::Broken(format!("{e} (send: {sent:?})")),
    }
}

/// Outcomes of the HTTP load.
#[derive(Default)]
struct Counts {
    ok: AtomicU64,
    failed: AtomicU64,
    refused: AtomicU64,
    /// Requests re-sent on a new connection because a reused keep-alive connection closed
    /// before any byte of the answer (RFC 9112 9.3.1: what browsers, curl and hyper do).
    retried: AtomicU64,
    errors: Mutex<Vec<String>>,
}

impl Counts {
    fn fail(&self, what: String) {
        self.failed.fetch_add(1, Ordering::Relaxed);
        let mut e = self.errors.lock().unwrap_or_else(|e| e.into_inner());
        if e.len() < 10 {
            e.push(what);
        }
    }
}

/// GET / until `stop` (bounded at 60 s): on keep-alive connections or a new one each.
fn load(addr: SocketAddr, keep_alive: bool, stop: &AtomicBool, counts: &Counts) {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut conn: Option<(http::Conn, bool)> = None; // (connection, reused)
    while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
        if conn.is_none() {
            match http::Conn::connect(addr) {
                Ok(c) => conn = Some((c, false)),
                Err(e) => {
                    counts.refused.fetch_add(1, Ordering::Relaxed);
                    counts.fail(format!("connect {addr}: {e}"));
                    continue;
                }
            }
        }
        let Some((c, reused)) = conn.as_mut() else {
            continue;
        };
        match c.get("/") {
            Ok(r) if r.status == 200 => {
                counts.ok.fetch_add(1, Ordering::Relaxed);
                *reused = true;
                if !keep_alive || c.is_closed() {
                    conn = None;
                }
            }
            Ok(r) => {
                counts.fail(format!("status {} from {addr}", r.status));
                conn = None;
            }
            Err(_) if *reused => {
                // The server closed this idle keep-alive connection as we sent: re-send.
                counts.retried.fetch_add(1, Ordering::Relaxed);
                conn = None;
            }
            Err(e) => {
                counts.fail(format!("GET on a new connection to {addr}: {e}"));
                conn = None;
            }
        }
    }
}

/// Datagrams received on a test `NOTIFY_SOCKET`.
fn notify_listener(path: &Path) -> Arc<Mutex<Vec<String>>> {
    let socket = UnixDatagram::bind(path).expect("bind the notify socket");
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let got = Arc::new(Mutex::new(Vec::new()));
    let sink = got.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        let end = Instant::now() + Duration::from_secs(120);
        while Instant::now() < end {
            if let Ok(n) = socket.recv(&mut buf) {
                let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
                sink.lock().unwrap_or_else(|e| e.into_inner()).push(msg);
            }
        }
    });
    got
}

#[test]
fn upgrade_under_load_drops_nothing() {
    let dir = TempDir::new("upgrade");
    let backend = local(free_port());
    let mut echo = start_portico_echo(backend, "A", dir.path());
    echo.wait_for_port(backend, T10);
    let (site, stream) = (local(free_port()), local(free_port()));
    let config = dir.write("portico.toml", config(site, stream, backend));
    let bin = install(dir.path());
    let notify_path = dir.path().join("notify.sock");
    let notes = notify_listener(&notify_path);
    let mut cmd = std::process::Command::new(&bin);
    cmd.args(["run", "-c", config.to_str().expect("utf-8")])
        .current_dir(dir.path())
        .env("NOTIFY_SOCKET", &notify_path);
    let mut old = ChildGuard::spawn("portico-old", cmd, dir.path());
    old.wait_for_port(site, T10);
    old.wait_for_port(stream, T10);
    let old_pid = old.pid();
    eventually(T10, "the pid file", || {
        (pid_file(dir.path()) == Some(old_pid)).then_some(())
    });

    // 200 WebSockets through the old process, and a TCP stream connection kept open.
    let mut sockets: Vec<RawWs> = (0..200)
        .map(|k| {
            let mut ws = RawWs::open(site).unwrap_or_else(|e| panic!("WebSocket {k}: {e}"));
            assert_eq!(probe(&mut ws, &format!("hello {k}")), Probe::Echoes);
            ws
        })
        .collect();
    let mut kept = http::Conn::connect(stream).expect("stream connection");
    assert_eq!(kept.get("/").expect("GET through the stream").status, 200);

    // HTTP load: keep-alive and new connections, through the site and the stream.
    let stop = Arc::new(AtomicBool::new(false));
    let counts = Arc::new(Counts::default());
    let clients: Vec<_> = [
        (site, true),
        (site, true),
        (site, false),
        (stream, false),
        (stream, true),
    ]
    .into_iter()
    .map(|(addr, keep_alive)| {
        let (stop, counts) = (stop.clone(), counts.clone());
        std::thread::spawn(move || load(addr, keep_alive, &stop, &counts))
    })
    .collect();
    std::thread::sleep(Duration::from_millis(1500));

    // The new binary replaces the file; `portico upgrade` starts it.
    let fresh = std::fs::read(support::portico_bin()).expect("read the binary");
    replace(&bin, &fresh, 0o755);
    let began = Instant::now();
    let out = upgrade_cli(dir.path(), &config);
    let took = began.elapsed();
    assert!(
        out.success(),
        "portico upgrade: {}\n{}\n{}",
        out.stdout,
        out.stderr,
        old.logs()
    );
    let new_pid = pid_file(dir.path()).expect("the pid file names a process");
    let _started = Started(vec![new_pid]);
    assert_ne!(new_pid, old_pid, "the pid file names the new process");
    assert!(
        out.stdout.contains(&format!("process {new_pid} serves")),
        "{}",
        out.stdout
    );
    let exe = std::fs::read_link(format!("/proc/{new_pid}/exe")).expect("new exe");
    assert_eq!(
        exe, bin,
        "the new process runs the file now at the old one's path"
    );

    // Every WebSocket: still echoing on the old process, or closed 1001 by its drain.
    let mut echoed = 0;
    let mut closed = 0;
    for (k, ws) in sockets.iter_mut().enumerate() {
        match probe(ws, &format!("after {k}")) {
            Probe::Echoes => echoed += 1,
            Probe::Closed(1001) => closed += 1,
            other => panic!("WebSocket {k} after the upgrade: {other:?}"),
        }
    }
    // The kept stream connection still works on the old process within shutdown_grace.
    assert_eq!(
        kept.get("/")
            .expect("GET on the kept stream connection")
            .status,
        200
    );
    // New WebSockets open on the new process.
    for k in 0..20 {
        let mut ws = RawWs::open(site).unwrap_or_else(|e| panic!("new WebSocket {k}: {e}"));
        assert_eq!(probe(&mut ws, "new"), Probe::Echoes);
    }
    std::thread::sleep(Duration::from_millis(2500));
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().expect("load thread");
    }
    let status = old
        .wait_timeout(Duration::from_secs(15))
        .expect("the old process exits after its drain");
    assert!(status.success(), "old process: {status:?}\n{}", old.logs());
    assert!(alive(new_pid), "the new process serves on");
    assert_eq!(
        http::get(site, "/")
            .expect("GET after the old exited")
            .status,
        200
    );

    let (ok, failed, refused, retried) = (
        counts.ok.load(Ordering::Relaxed),
        counts.failed.load(Ordering::Relaxed),
        counts.refused.load(Ordering::Relaxed),
        counts.retried.load(Ordering::Relaxed),
    );
    report(&format!(
        "upgrade: `portico upgrade` took {took:?}; {ok} requests served, {failed} failed, {refused} refused, \
         {retried} re-sent after a keep-alive close; WebSockets: {echoed} echoing on the old process, {closed} closed 1001"
    ));
    let errors = counts
        .errors
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    assert_eq!(
        (failed, refused),
        (0, 0),
        "errors: {errors:?}\n{}",
        old.logs()
    );
    assert!(ok > 1000, "the load ran: {ok} requests");
    // Only a keep-alive connection to the old process that it closed idle, as the request
    // went out, is re-sent: at most once per keep-alive client (3), since the next
    // connection goes to the new process.
    assert!(retried <= 3, "{retried} re-sent requests");
    assert_eq!(echoed + closed, 200);

    // systemd: the old process named the new one main; the new one is ready.
    let notes = notes.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let index = |needle: &str| notes.iter().position(|n| n.contains(needle));
    let first_ready = index(&format!("MAINPID={old_pid}")).expect("the old process's READY=1");
    let handed =
        index(&format!("MAINPID={new_pid}\nSTATUS=upgraded")).expect("MAINPID= of the new process");
    assert!(first_ready < handed, "{notes:?}");
    assert!(
        notes[handed..]
            .iter()
            .any(|n| n.starts_with("READY=1") && n.contains(&format!("MAINPID={new_pid}"))),
        "the new process says READY=1 once main: {notes:?}"
    );
    assert!(
        !notes.iter().any(|n| n.contains("STOPPING=1")),
        "the service never said it stops: {notes:?}"
    );
}

#[test]
fn a_failed_upgrade_keeps_the_old_process_serving() {
    let dir = TempDir::new("upgrade-fail");
    let backend = local(free_port());
    let mut echo = start_portico_echo(backend, "A", dir.path());
    echo.wait_for_port(backend, T10);
    let (site, stream) = (local(free_port()), local(free_port()));
    let text = config(site, stream, backend);
    let config = dir.write("portico.toml", &text);
    let bin = install(dir.path());
    let mut cmd = std::process::Command::new(&bin);
    cmd.args(["run", "-c", config.to_str().expect("utf-8")])
        .current_dir(dir.path());
    let mut old = ChildGuard::spawn("portico-old", cmd, dir.path());
    old.wait_for_port(site, T10);
    let old_pid = old.pid();
    eventually(T10, "the pid file", || {
        (pid_file(dir.path()) == Some(old_pid)).then_some(())
    });
    let mut ws = RawWs::open(site).expect("WebSocket");
    let serving = |ws: &mut RawWs, what: &str| {
        assert_eq!(
            http::get(site, "/").map(|r| r.status).ok(),
            Some(200),
            "{what}: site"
        );
        assert_eq!(
            http::get(stream, "/").map(|r| r.status).ok(),
            Some(200),
            "{what}: stream"
        );
        assert_eq!(probe(ws, what), Probe::Echoes, "{what}: the WebSocket");
        assert_eq!(pid_file(dir.path()), Some(old_pid), "{what}: the pid file");
    };
    serving(&mut ws, "before");

    // A binary that exits 1 at once.
    replace(&bin, b"#!/bin/sh\necho 'broken build' >&2\nexit 1\n", 0o755);
    let out = upgrade_cli(dir.path(), &config);
    assert_eq!(out.code(), 2, "{}\n{}", out.stdout, out.stderr);
    assert!(
        out.stderr.contains("exited") && out.stderr.contains("still serving"),
        "{}",
        out.stderr
    );
    serving(&mut ws, "after a binary that exits 1");

    // A file that is not executable.
    let fresh = std::fs::read(support::portico_bin()).expect("read the binary");
    replace(&bin, &fresh, 0o644);
    let out = upgrade_cli(dir.path(), &config);
    assert_eq!(out.code(), 2, "{}\n{}", out.stdout, out.stderr);
    assert!(out.stderr.contains("cannot start"), "{}", out.stderr);
    serving(&mut ws, "after a binary that is not executable");

    // A good binary with a config it refuses: `portico upgrade` says so first (exit 1)...
    replace(&bin, &fresh, 0o755);
    std::fs::write(&config, text.replace("threads = 2", "threads = \"two\"")).expect("write");
    let out = upgrade_cli(dir.path(), &config);
    assert_eq!(out.code(), 1, "{}\n{}", out.stdout, out.stderr);
    assert!(
        out.stderr.contains("portico.toml:"),
        "FILE:LINE:COL: {}",
        out.stderr
    );
    // ...and SIGUSR2 alone: the new process refuses it, the old one logs why and serves on.
    old.signal("USR2");
    let state = dir.path().join("state/upgrade.status");
    let published = eventually(Duration::from_secs(30), "the upgrade outcome", || {
        std::fs::read_to_string(&state)
            .ok()
            .filter(|s| s.contains("outcome invalid"))
    });
    assert!(published.contains("portico.toml:"), "{published}");
    eventually(T10, "the old process logs why", || {
        old.logs()
            .contains("upgrade failed, still serving")
            .then_some(())
    });
    serving(&mut ws, "after a config the new process refuses");

    // Fixed: the same instance upgrades.
    std::fs::write(&config, &text).expect("write");
    let out = upgrade_cli(dir.path(), &config);
    assert!(
        out.success(),
        "{}\n{}\n{}",
        out.stdout,
        out.stderr,
        old.logs()
    );
    let new_pid = pid_file(dir.path()).expect("pid");
    let _started = Started(vec![new_pid]);
    assert_ne!(new_pid, old_pid);
    assert_eq!(probe(&mut ws, "drained"), Probe::Closed(1001));
    assert!(
        old.wait_timeout(Duration::from_secs(15)).is_some(),
        "the old process exits"
    );
    assert_eq!(http::get(site, "/").map(|r| r.status).ok(), Some(200));
    assert_eq!(http::get(stream, "/").map(|r| r.status).ok(), Some(200));
}
