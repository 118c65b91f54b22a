//! Reload of the real `portico` binary: SIGHUP and `portico reload` (exit 0 applied, 1
//! invalid config with FILE:LINE:COL, 2 not applied), listeners added and removed, and
//! reloads under HTTP load with WebSockets open (zero failed requests, WebSockets untouched).
//! `hundred_reloads_under_load_fail_no_request_and_spare_websockets` also prints the figures
//! for docs/benchmarks.md: `cargo test --release -p portico --test system reload::hundred --
//! --nocapture`.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::support::http;
use crate::support::net::{free_port, local};
use crate::support::process::{
    ChildGuard, portico, run_bounded, start_portico, start_portico_echo,
};
use crate::support::raw_ws::RawWs;
use crate::support::{TempDir, eventually, report};

const T10: Duration = Duration::from_secs(10);

/// `[upstreams.app]` (WebSocket route `/ws` and `/`) and `[upstreams.other]` (`/other`) on
/// `listen`; `extra` appended.
fn config(listen: &[SocketAddr], app: &[SocketAddr], other: SocketAddr, extra: &str) -> String {
    let q = |v: &[SocketAddr]| {
        v.iter()
            .map(|a| format!("\"{a}\""))
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!(
        "[server]\nstate_dir = \"state\"\naccess_log = \"off\"\nshutdown_grace = \"2s\"\nthreads = 2\n\n\
         [admin]\nlisten = \"off\"\n\n\
         [upstreams.app]\nservers = [{}]\n\n[upstreams.other]\nservers = [\"{other}\"]\n\n\
         [[sites]]\nlisten = [{}]\nroutes = [\n\
         {{ path = \"/ws\", proxy = \"app\", websocket = true }},\n\
         {{ path = \"/other\", proxy = \"other\" }},\n\
         {{ path = \"/\", proxy = \"app\" }},\n]\n{extra}",
        q(app),
        q(listen)
    )
}

/// A running instance with its config file and echo backends.
struct Instance {
    dir: TempDir,
    config: PathBuf,
    proxy: ChildGuard,
    _backends: Vec<ChildGuard>,
}

impl Instance {
    fn start(text: &str, backends: Vec<ChildGuard>, dir: TempDir, listen: SocketAddr) -> Instance {
        let config = dir.write("portico.toml", text);
        let mut proxy = start_portico(&config, dir.path());
        proxy.wait_for_port(listen, T10);
        Instance {
            dir,
            config,
            proxy,
            _backends: backends,
        }
    }

    /// `portico reload -c FILE` after writing `text` to FILE.
    fn reload_cli(&self, text: &str) -> crate::support::process::RunOutput {
        std::fs::write(&self.config, text).expect("write config");
        let c = self.config.to_str().expect("utf-8");
        run_bounded(
            "portico-reload",
            portico(self.dir.path(), &["reload", "-c", c]),
            self.dir.path(),
            Duration::from_secs(20),
            Duration::ZERO,
        )
    }

    fn generation(&self) -> u64 {
        status(&self.dir.path().join("state")).0
    }

    /// SIGHUP after writing `text`; wait for the instance's answer; true when applied.
    fn reload_hup(&mut self, text: &str) -> bool {
        std::fs::write(&self.config, text).expect("write config");
        let before = self.generation();
        self.proxy.signal("HUP");
        let state = self.dir.path().join("state");
        eventually(T10, "the reload outcome", || {
            let (g, outcome) = status(&state);
            (g > before).then_some(outcome == "applied")
        })
    }
}

/// (generation, outcome) from `state_dir/reload.status`; (0, "") when absent.
fn status(state_dir: &Path) -> (u64, String) {
    let text = std::fs::read_to_string(state_dir.join("reload.status")).unwrap_or_default();
    let mut lines = text.lines();
    let g = lines
        .next()
        .and_then(|l| l.strip_prefix("generation "))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    let o = lines
        .next()
        .and_then(|l| l.strip_prefix("outcome "))
        .unwrap_or("")
        .to_string();
    (g, o)
}

fn backends(names: &[&str], dir: &Path) -> (Vec<SocketAddr>, Vec<ChildGuard>) {
    let mut addrs = Vec::new();
    let mut guards = Vec::new();
    for name in names {
        let addr = local(free_port());
        let mut g = start_portico_echo(addr, name, dir);
        g.wait_for_port(addr, T10);
        addrs.push(addr);
        guards.push(g);
    }
    (addrs, guards)
}

fn echo_name(addr: SocketAddr, path: &str) -> String {
    let r = http::get(addr, path).expect("request");
    assert_eq!(r.status, 200, "{}", r.text());
    r.text().lines().next().unwrap_or("").to_string()
}

#[test]
fn reload_applies_changes_and_refuses_bad_configs_with_file_line_col() {
    let dir = TempDir::new("reload-cli");
    let (b, guards) = backends(&["A", "B", "O"], dir.path());
    let listen = local(free_port());
    let v1 = config(&[listen], &[b[0]], b[2], "");
    let mut inst = Instance::start(&v1, guards, dir, listen);
    assert_eq!(echo_name(listen, "/"), "A");

    // A change applied by `portico reload`: exit 0.
    let v2 = config(&[listen], &[b[1]], b[2], "");
    let out = inst.reload_cli(&v2);
    assert_eq!(out.code(), 0, "{out:?}");
    assert!(out.stdout.contains("reloaded"), "{out:?}");
    assert_eq!(echo_name(listen, "/"), "B");

    // An invalid config: exit 1 with FILE:LINE:COL; the instance keeps serving.
    let bad = format!(
        "{v2}\n[[sites]]\nlisten = [\"{listen}\"]\nroutes = [{{ path = \"/\", proxy = \"nope\" }}]\n"
    );
    let out = inst.reload_cli(&bad);
    assert_eq!(out.code(), 1, "{out:?}");
    let line = bad.lines().count();
    assert!(
        out.stderr.contains(&format!("portico.toml:{line}:")),
        "FILE:LINE:COL in {:?}",
        out.stderr
    );
    assert_eq!(echo_name(listen, "/"), "B");
    // The same file by SIGHUP alone: refused, logged with FILE:LINE:COL, still serving.
    assert!(!inst.reload_hup(&bad));
    let logs = inst.proxy.stderr();
    assert!(
        logs.contains("reload refused") && logs.contains(&format!("portico.toml:{line}:")),
        "{logs}"
    );
    assert_eq!(echo_name(listen, "/"), "B");

    // A valid config the instance cannot apply (a new listener on a taken port): exit 2.
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
    let t = taken.local_addr().expect("addr");
    let out = inst.reload_cli(&config(&[listen, t], &[b[1]], b[2], ""));
    assert_eq!(out.code(), 2, "{out:?}");
    assert!(
        out.stderr.contains(&format!("cannot listen on {t}")),
        "{out:?}"
    );
    assert_eq!(echo_name(listen, "/"), "B");
    drop(taken);

    // A listener added serves at once; the old one removed stops accepting.
    let second = local(free_port());
    let out = inst.reload_cli(&config(&[listen, second], &[b[1]], b[2], ""));
    assert_eq!(out.code(), 0, "{out:?}");
    assert_eq!(echo_name(second, "/"), "B");
    let out = inst.reload_cli(&config(&[second], &[b[0]], b[2], ""));
    assert_eq!(out.code(), 0, "{out:?}");
    assert_eq!(echo_name(second, "/"), "A");
    crate::support::net::wait_closed(listen, T10);

    inst.proxy.assert_running();
    inst.proxy.signal("TERM");
    let st = inst.proxy.wait_timeout(T10).expect("stops after SIGTERM");
    assert!(st.success(), "{st}");
}

#[test]
fn portico_reload_without_a_running_instance_exits_2() {
    let dir = TempDir::new("reload-none");
    let cfg = dir.write(
        "portico.toml",
        config(
            &[local(free_port())],
            &[local(free_port())],
            local(free_port()),
            "",
        ),
    );
    let c = cfg.to_str().expect("utf-8");
    let out = run_bounded(
        "reload-none",
        portico(dir.path(), &["reload", "-c", c]),
        dir.path(),
        T10,
        Duration::ZERO,
    );
    assert_eq!(out.code(), 2, "{out:?}");
    assert!(out.stderr.contains("no running instance"), "{out:?}");
}

#[test]
fn streams_reload_too() {
    let dir = TempDir::new("reload-streams");
    let (b, guards) = backends(&["A", "B", "O"], dir.path());
    let listen = local(free_port());
    let s1 = local(free_port());
    let s2 = local(free_port());
    let stream = |servers: &str, ports: &[SocketAddr]| {
        let mut t = format!("[upstreams.tcp]\nservers = [{servers}]\n");
        for p in ports {
            t.push_str(&format!(
                "[[streams]]\nlisten = [\"{p}\"]\nupstream = \"tcp\"\n"
            ));
        }
        t
    };
    let text = |servers: &str, ports: &[SocketAddr]| {
        config(&[listen], &[b[0]], b[2], &stream(servers, ports))
    };
    let a_only = format!("\"{}\"", b[0]);
    let b_only = format!("\"{}\"", b[1]);
    let mut inst = Instance::start(&text(&a_only, &[s1]), guards, dir, listen);
    inst.proxy.wait_for_port(s1, T10);
    assert_eq!(echo_name(s1, "/"), "A");
    // The stream's upstream changes and a second stream listener is added.
    assert!(inst.reload_hup(&text(&b_only, &[s1, s2])));
    assert_eq!(
        echo_name(s1, "/"),
        "B",
        "new stream connections use the new server"
    );
    assert_eq!(
        echo_name(s2, "/"),
        "B",
        "the added stream listener accepts at once"
    );
    // The first stream listener is removed.
    assert!(inst.reload_hup(&text(&b_only, &[s2])));
    crate::support::net::wait_closed(s1, T10);
    assert_eq!(echo_name(s2, "/"), "B");
    assert_eq!(echo_name(listen, "/"), "A", "the site was never touched");
}

/// HTTP requests until `stop`: keep-alive or a new connection each; counts outcomes.
fn load(addr: SocketAddr, keep_alive: bool, stop: &AtomicBool, ok: &AtomicU64, failed: &AtomicU64) {
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut conn: Option<http::Conn> = None;
    while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
        if conn.is_none() {
            conn = http::Conn::connect(addr).ok();
        }
        let good = conn
            .as_mut()
            .and_then(|c| c.get("/").ok())
            .is_some_and(|r| r.status == 200);
        if good {
            ok.fetch_add(1, Ordering::Relaxed);
        } else {
            failed.fetch_add(1, Ordering::Relaxed);
            conn = None;
        }
        // `Connection: close` (keepalive_requests reached): reconnect, as a client must.
        if !keep_alive || conn.as_ref().is_some_and(http::Conn::is_closed) {
            conn = None;
        }
    }
}

/// Figures of one run of [`reloads_under_load`].
struct Figures {
    reloads: usize,
    elapsed: Duration,
    served: u64,
    failed: u64,
    websockets: usize,
    websockets_alive: usize,
}

/// `reloads` SIGHUP reloads (other upstream, header rules and an extra listener changing)
/// under 4 HTTP load threads (2 keep-alive, 2 new connection per request), with
/// `websockets` open WebSockets echoing after every reload, `pause` between reloads.
fn reloads_under_load(tag: &str, reloads: usize, websockets: usize, pause: Duration) -> Figures {
    let dir = TempDir::new(tag);
    let (b, guards) = backends(&["A", "O1", "O2"], dir.path());
    let listen = local(free_port());
    let extra_port = local(free_port());
    let mut inst = Instance::start(&config(&[listen], &[b[0]], b[1], ""), guards, dir, listen);
    let mut sockets: Vec<RawWs> = (0..websockets)
        .map(|_| RawWs::open(listen).expect("websocket"))
        .collect();
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let threads: Vec<_> = [true, true, false, false]
        .into_iter()
        .map(|keep| {
            let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
            std::thread::spawn(move || load(listen, keep, &stop, &ok, &failed))
        })
        .collect();
    let started = Instant::now();
    for i in 0..reloads {
        let other = b[1 + i % 2];
        let mut extra = format!(
            "[[sites]]\nlisten = [\"{listen}\"]\nhosts = [\"gen{i}.example\"]\nroutes = [{{ path = \"/\", respond = \"{i}\" }}]\n"
        );
        if i % 4 == 1 {
            extra.push_str(&format!(
                "[[sites]]\nlisten = [\"{extra_port}\"]\nroutes = [{{ path = \"/\", respond = \"extra\" }}]\n"
            ));
        }
        assert!(
            inst.reload_hup(&config(&[listen], &[b[0]], other, &extra)),
            "reload {i} applied"
        );
        for (k, ws) in sockets.iter_mut().enumerate() {
            assert!(
                ws.echo(&format!("{i}-{k}")),
                "websocket {k} echoes after reload {i}"
            );
        }
        std::thread::sleep(pause);
    }
    let elapsed = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().expect("load thread");
    }
    let alive = sockets
        .iter_mut()
        .map(|ws| ws.echo("end"))
        .filter(|ok| *ok)
        .count();
    inst.proxy.assert_running();
    Figures {
        reloads,
        elapsed,
        served: ok.load(Ordering::Relaxed),
        failed: failed.load(Ordering::Relaxed),
        websockets,
        websockets_alive: alive,
    }
}

/// 100 SIGHUP reloads under HTTP load with 200 WebSockets open: no request fails, every
/// WebSocket still echoes after every reload. Also the figures of docs/benchmarks.md
/// ("Reload"; those were taken in release with a 100 ms pause between reloads, 10 ms here).
#[test]
fn hundred_reloads_under_load_fail_no_request_and_spare_websockets() {
    let f = reloads_under_load("reload-load", 100, 200, Duration::from_millis(10));
    report(&format!(
        "reload: {} reloads in {:.1} s under 4 HTTP load threads: {} requests served, {} failed; {}/{} WebSockets alive",
        f.reloads,
        f.elapsed.as_secs_f64(),
        f.served,
        f.failed,
        f.websockets_alive,
        f.websockets
    ));
    assert!(f.served > 100, "the load ran: {}", f.served);
    assert_eq!(f.failed, 0, "no request failed");
    assert_eq!(
        f.websockets_alive, f.websockets,
        "every WebSocket still echoes"
    );
}

#[test]
fn removing_a_server_drains_its_websockets_with_1001_and_spares_the_others() {
    let dir = TempDir::new("reload-drain");
    let (b, guards) = backends(&["A", "B", "O"], dir.path());
    let listen = local(free_port());
    let mut inst = Instance::start(
        &config(&[listen], &[b[0], b[1]], b[2], ""),
        guards,
        dir,
        listen,
    );
    // Round robin over A and B: 10 WebSockets, 5 on each.
    let mut sockets: Vec<RawWs> = (0..10)
        .map(|_| RawWs::open(listen).expect("websocket"))
        .collect();
    for (k, ws) in sockets.iter_mut().enumerate() {
        assert!(ws.echo(&format!("x{k}")));
    }
    assert!(inst.reload_hup(&config(&[listen], &[b[0]], b[2], "")));
    // Within the 1 s window (half of shutdown_grace = 2 s) B's WebSockets get close 1001;
    // A's get nothing. Each socket waits for a frame on its own thread, at most 2.5 s.
    let waits: Vec<_> = sockets
        .into_iter()
        .map(|mut ws| {
            std::thread::spawn(move || {
                ws.set_read_timeout(Duration::from_millis(2500))
                    .expect("timeout");
                let got = match ws.recv() {
                    Ok((8, p)) if p.len() >= 2 => Some(u16::from_be_bytes([p[0], p[1]])),
                    Ok(other) => panic!("unexpected frame {other:?}"),
                    Err(_) => None,
                };
                ws.set_read_timeout(T10).expect("timeout");
                (got, ws)
            })
        })
        .collect();
    let mut drained = Vec::new();
    let mut alive = Vec::new();
    for w in waits {
        match w.join().expect("reader") {
            (Some(code), _) => drained.push(code),
            (None, ws) => alive.push(ws),
        }
    }
    assert_eq!(drained, vec![1001; 5], "B's five WebSockets got close 1001");
    assert_eq!(alive.len(), 5);
    for (k, ws) in alive.iter_mut().enumerate() {
        assert!(
            ws.echo(&format!("still {k}")),
            "A's WebSocket {k} untouched"
        );
    }
}
