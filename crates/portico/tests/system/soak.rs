//! A soak with faults (issue 15), bounded in time: `SOAK_SECONDS` (default 75; the
//! 10-minute run is `scripts/soak.sh`). Against one `portico run`:
//! - HTTP load: 2 threads of keep-alive GETs (20 per connection) through a plain site to
//!   upstream `app` = echo backends A and B (`retries = 1`: an idempotent GET whose server
//!   refuses is retried on the other);
//! - 200 WebSockets through route `/ws` to upstream `ws` = A only, each echoing a message
//!   every round (about every 2 s);
//! - TCP streams: a `[[streams]]` listener to `app`, a thread opening one stream
//!   connection after the other and making 5 GETs on each;
//! - faults: backend B killed (SIGKILL, by PID) every 8 s and restarted 1 s later; the
//!   config reloaded (`portico reload`) every 3 s; the TLS site's certificate swapped for a
//!   new one (files rewritten, then reload) every 15 s, checked with `curl -k`; a slow-read
//!   attacker (`slowhttptest -X`, 50 connections) on the plain site the whole time.
//!
//! Checks and report: GETs sent and failed (only a request whose server died under it may
//! fail: at most 2 per kill), stream rounds likewise (at most 3 per kill), every WebSocket
//! alive at the end (their server, A, lived), every reload and swap applied, and Portico's
//! RSS and descriptors at start (after warm-up, WebSockets open) and end (no growth beyond
//! 30 MiB and 20 descriptors).

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::support::net::{free_port, local};
use crate::support::process::{
    ChildGuard, portico, run_bounded, start_portico, start_portico_echo,
};
use crate::support::procfs::{fds, rss_kib};
use crate::support::raw_ws::RawWs;
use crate::support::{TempDir, report};
use portico_testkit::require_peers;

#[test]
fn soak_with_faults() {
    let Some(peers) = require_peers(&["slowhttptest", "curl"]) else {
        return;
    };
    let seconds: u64 = std::env::var("SOAK_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(75);
    let dir = TempDir::new("soak");
    let (a, b) = (local(free_port()), local(free_port()));
    let (site, tls_port, stream) = (local(free_port()), free_port(), local(free_port()));
    let _echo_a = start_portico_echo(a, "A", dir.path());
    let mut echo_b = Some(start_portico_echo(b, "B", dir.path()));
    for addr in [a, b] {
        crate::support::eventually(Duration::from_secs(10), "echo backend", || {
            crate::support::net::is_listening(addr).then_some(())
        });
    }
    dir.write_localhost_cert("soak CA 0");
    let config = dir.write(
        "portico.toml",
        format!(
            "[server]\nsend_timeout = \"5s\"\naccess_log = \"off\"\n[admin]\nlisten = \"off\"\n\
             [upstreams.app]\nservers = [\"{a}\", \"{b}\"]\nretries = 1\nmax_fails = 1\n\
             fail_timeout = \"2s\"\n\
             [upstreams.ws]\nservers = [\"{a}\"]\n\
             [[sites]]\nlisten = [\"{site}\"]\n\
             routes = [{{ path = \"/ws\", proxy = \"ws\" }}, {{ path = \"/\", proxy = \"app\" }}]\n\
             [[sites]]\nlisten = [\"127.0.0.1:{tls_port}\"]\n\
             tls = {{ cert = \"site.pem\", key = \"site.key\" }}\nhttp_redirect = false\n\
             routes = [{{ path = \"/\", proxy = \"app\" }}]\n\
             [[streams]]\nlisten = [\"{stream}\"]\nupstream = \"app\"\n"
        ),
    );
    let mut proxy = start_portico(&config, dir.path());
    proxy.wait_for_port(site, Duration::from_secs(15));
    let pid = proxy.pid();
    let mut sockets: Vec<RawWs> = (0..200)
        .map(|_| RawWs::open(site).unwrap_or_else(|e| panic!("WebSocket: {e}")))
        .collect();
    for (i, ws) in sockets.iter_mut().enumerate() {
        assert!(
            ws.echo(&format!("hello {i}")),
            "WebSocket {i} echo at start"
        );
    }
    let (rss_start, fds_start) = (rss_kib(pid), fds(pid));

    let stop = Arc::new(AtomicBool::new(false));
    let (sent, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let load: Vec<_> = (0..2)
        .map(|_| {
            let (stop, sent, failed) = (stop.clone(), sent.clone(), failed.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let Ok(mut c) = crate::support::http::Conn::connect(site) else {
                        failed.fetch_add(1, Ordering::Relaxed);
                        sent.fetch_add(1, Ordering::Relaxed);
                        continue;
                    };
                    for _ in 0..20 {
                        sent.fetch_add(1, Ordering::Relaxed);
                        match c.get("/load") {
                            Ok(r) if r.status == 200 => {}
                            _ => {
                                failed.fetch_add(1, Ordering::Relaxed);
                                break;
                            }
                        }
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
            })
        })
        .collect();
    let (stream_ok, stream_failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let streams = {
        let (stop, ok, bad) = (stop.clone(), stream_ok.clone(), stream_failed.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let good = crate::support::http::Conn::connect(stream).is_ok_and(|mut c| {
                    (0..5).all(|_| c.get("/stream").is_ok_and(|r| r.status == 200))
                });
                if good { &ok } else { &bad }.fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(50));
            }
        })
    };
    let mut slow = Command::new(&peers[0]);
    slow.current_dir(dir.path()).args([
        "-X",
        "-c",
        "50",
        "-r",
        "25",
        "-n",
        "5",
        "-z",
        "32",
        "-w",
        "512",
        "-y",
        "1024",
        "-k",
        "3",
        "-l",
        &seconds.to_string(),
        "-u",
        &format!("http://{site}/_echo/bytes?n=4000000"),
    ]);
    let mut attacker = ChildGuard::spawn("slowhttptest", slow, dir.path());

    let reload = |what: &str| {
        let c = config.to_str().unwrap_or_default();
        let out = run_bounded(
            what,
            portico(dir.path(), &["reload", "-c", c]),
            dir.path(),
            Duration::from_secs(20),
            Duration::ZERO,
        );
        out.success()
    };
    let started = Instant::now();
    let (mut kills, mut reloads, mut swaps) = (0u32, 0u32, 0u32);
    let (mut reloads_failed, mut swaps_failed) = (0u32, 0u32);
    let (mut ws_rounds, mut next_kill, mut next_reload, mut next_swap) = (0, 8, 3, 15);
    let mut b_down_since: Option<Instant> = None;
    while started.elapsed() < Duration::from_secs(seconds) {
        let t = started.elapsed().as_secs();
        if let Some(since) = b_down_since
            && since.elapsed() >= Duration::from_secs(1)
        {
            echo_b = Some(start_portico_echo(b, &format!("B{kills}"), dir.path()));
            b_down_since = None;
        }
        if t >= next_kill && b_down_since.is_none() {
            if let Some(mut e) = echo_b.take() {
                e.kill();
            }
            kills += 1;
            b_down_since = Some(Instant::now());
            next_kill += 8;
        }
        if t >= next_reload {
            reloads += 1;
            reloads_failed += u32::from(!reload("reload"));
            next_reload += 3;
        }
        if t >= next_swap {
            swaps += 1;
            dir.write_localhost_cert(&format!("soak CA {swaps}"));
            let ok = reload("swap") && {
                let out = run_bounded(
                    "curl",
                    {
                        let mut c = Command::new(&peers[1]);
                        c.args([
                            "-sk",
                            "-o",
                            "/dev/null",
                            "-w",
                            "%{http_code}",
                            "--max-time",
                            "10",
                        ])
                        .arg(format!("https://localhost:{tls_port}/tls"))
                        .args(["--resolve", &format!("localhost:{tls_port}:127.0.0.1")]);
                        c
                    },
                    dir.path(),
                    Duration::from_secs(15),
                    Duration::ZERO,
                );
                out.stdout.trim() == "200"
            };
            swaps_failed += u32::from(!ok);
            next_swap += 15;
        }
        ws_rounds += 1;
        for (i, ws) in sockets.iter_mut().enumerate() {
            assert!(
                ws.echo(&format!("r{ws_rounds} {i}")),
                "WebSocket {i} died in round {ws_rounds}"
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    stop.store(true, Ordering::Relaxed);
    for t in load {
        t.join().expect("load thread");
    }
    streams.join().expect("stream thread");
    attacker.kill();
    if echo_b.is_none() {
        echo_b = Some(start_portico_echo(b, "B-end", dir.path()));
    }
    let mut alive = 0;
    for (i, ws) in sockets.iter_mut().enumerate() {
        alive += usize::from(ws.echo(&format!("end {i}")));
    }
    // Let the attacker's and load's connections close before counting descriptors.
    std::thread::sleep(Duration::from_secs(6));
    let (rss_end, fds_end) = (rss_kib(pid), fds(pid));
    proxy.assert_running();
    drop(echo_b);
    let (sent, failed) = (sent.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    let (s_ok, s_bad) = (
        stream_ok.load(Ordering::Relaxed),
        stream_failed.load(Ordering::Relaxed),
    );
    report(&format!(
        "soak {seconds}s: GETs {sent} sent, {failed} failed; stream rounds {s_ok} ok, {s_bad} \
         failed; WebSockets {alive}/200 alive after {ws_rounds} echo rounds; B killed {kills}x; \
         reloads {reloads} ({reloads_failed} failed); certificate swaps {swaps} \
         ({swaps_failed} failed); Portico RSS {rss_start} -> {rss_end} KiB, fds {fds_start} -> \
         {fds_end}"
    ));
    assert_eq!(
        alive, 200,
        "WebSockets whose server lived must all be alive"
    );
    assert!(sent > 1000, "only {sent} GETs");
    assert!(
        failed <= 2 * u64::from(kills),
        "{failed} GETs failed with {kills} kills"
    );
    assert!(
        s_bad <= 3 * u64::from(kills),
        "{s_bad} stream rounds failed with {kills} kills"
    );
    assert_eq!((reloads_failed, swaps_failed), (0, 0));
    assert!(
        rss_end < rss_start + 30 * 1024,
        "RSS {rss_start} -> {rss_end} KiB"
    );
    assert!(fds_end <= fds_start + 20, "fds {fds_start} -> {fds_end}");
}
