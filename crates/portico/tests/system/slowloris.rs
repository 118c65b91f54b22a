//! Slowloris against the real binary: Debian's `slowhttptest -H` opens 800 connections (50 a
//! second) to `portico run` on 127.0.0.1 and trickles a header line into each every second,
//! never finishing a head, for at most 15 s. With `header_timeout = "3s"` Portico closes each
//! of them 3 s after it started, so they never pile up, while a normal client (a fresh
//! connection every 200 ms, proxied to a `portico echo` backend) keeps getting answers fast.
//!
//! Checks: every normal GET is 200 within 2 s; slowhttptest's own probe reports the service
//! available all along; its CSV shows Portico closing the slow connections, and never more of
//! them open at once than arrive within about one `header_timeout` (without the timeout all
//! would stay open). Bounded: slowhttptest runs at most 15 s and is killed by PID at 40 s.
//! Under `CI=true` a missing `slowhttptest` fails the test (scripts/test.sh installs it).

use std::net::SocketAddr;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::support::net::{free_port, local};
use crate::support::process::{ChildGuard, run_bounded, start_portico, start_portico_echo};
use crate::support::{TempDir, report};

const TEST: &str = "system_slowloris";
const CONNECTIONS: usize = 800;
const RATE: usize = 50;
const HEADER_TIMEOUT_S: usize = 3;

/// Remove ANSI colour sequences from slowhttptest's output.
pub(crate) fn plain(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// CSV rows of slowhttptest: (second, closed, pending, connected).
fn csv_rows(csv: &str) -> Vec<(u64, u64, u64, u64)> {
    csv.lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<u64> = l.split(',').filter_map(|v| v.trim().parse().ok()).collect();
            (f.len() >= 4).then(|| (f[0], f[1], f[2], f[3]))
        })
        .collect()
}

/// GET / on a fresh connection every 200 ms until `stop`: (answers, failures, slowest).
pub(crate) fn normal_client(addr: SocketAddr, stop: &AtomicBool) -> (usize, Vec<String>, Duration) {
    let (mut ok, mut failures, mut slowest) = (0, Vec::new(), Duration::ZERO);
    let deadline = Instant::now() + Duration::from_secs(60);
    while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
        let t0 = Instant::now();
        match crate::support::http::get(addr, "/normal") {
            Ok(r) if r.status == 200 => ok += 1,
            Ok(r) => failures.push(format!("status {}", r.status)),
            Err(e) => failures.push(format!("io: {e}")),
        }
        let took = t0.elapsed();
        slowest = slowest.max(took);
        if took > Duration::from_secs(2) {
            failures.push(format!("GET took {took:?}"));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    (ok, failures, slowest)
}

#[test]
fn slowloris_is_cut_by_header_timeout_while_others_are_served() {
    if portico_testkit::require_peer("slowhttptest").is_none() {
        return;
    }
    let dir = TempDir::new(TEST);
    let (proxy_port, echo_port) = (free_port(), free_port());
    let mut echo: ChildGuard = start_portico_echo(local(echo_port), "b1", dir.path());
    echo.wait_for_port(local(echo_port), Duration::from_secs(15));
    let config = dir.write(
        "portico.toml",
        format!(
            "[server]\nheader_timeout = \"{HEADER_TIMEOUT_S}s\"\naccess_log = \"off\"\n\
             [admin]\nlisten = \"off\"\n\
             [upstreams.app]\nservers = [\"127.0.0.1:{echo_port}\"]\n\
             [[sites]]\nlisten = [\"127.0.0.1:{proxy_port}\"]\n\
             routes = [{{ path = \"/\", proxy = \"app\" }}]\n"
        ),
    );
    let mut proxy = start_portico(&config, dir.path());
    let addr = local(proxy_port);
    proxy.wait_for_port(addr, Duration::from_secs(15));
    assert_eq!(
        crate::support::http::get(addr, "/warm")
            .map(|r| r.status)
            .ok(),
        Some(200)
    );

    let stop = Arc::new(AtomicBool::new(false));
    let client = {
        let stop = stop.clone();
        std::thread::spawn(move || normal_client(addr, &stop))
    };
    let mut cmd = Command::new("slowhttptest");
    cmd.current_dir(dir.path()).args([
        "-H",
        "-c",
        &CONNECTIONS.to_string(),
        "-r",
        &RATE.to_string(),
        "-i",
        "1",
        "-x",
        "16",
        "-l",
        "15",
        "-p",
        "2",
        "-g",
        "-o",
        "slowloris",
        "-u",
        &format!("http://127.0.0.1:{proxy_port}/"),
    ]);
    let started = Instant::now();
    let run = run_bounded(
        "slowhttptest",
        cmd,
        dir.path(),
        Duration::from_secs(40),
        Duration::ZERO,
    );
    let attack = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let (ok, failures, slowest) = client.join().expect("normal client thread");
    proxy.assert_running();

    let out = plain(&run.stdout);
    assert!(
        run.success(),
        "slowhttptest failed ({:?}) after {attack:?}:\n{out}\n{}",
        run.status,
        run.stderr
    );
    let csv = std::fs::read_to_string(dir.path().join("slowloris.csv")).expect("slowhttptest CSV");
    let rows = csv_rows(&csv);
    assert!(rows.len() >= 5, "CSV too short:\n{csv}");
    let peak_connected = rows.iter().map(|r| r.3).max().unwrap_or(0);
    let closed = rows.last().map_or(0, |r| r.1);
    let availability: Vec<&str> = out
        .lines()
        .filter_map(|l| l.trim().strip_prefix("service available:"))
        .map(str::trim)
        .collect();
    report(&format!(
        "{TEST}: attack {attack:?}, {} seconds logged, peak {peak_connected} slow connections \
         open, {closed} closed by Portico; normal client {ok} OK, {} failed, slowest {slowest:?}; \
         probe availability {availability:?}",
        rows.len(),
        failures.len()
    ));
    assert!(
        failures.is_empty(),
        "normal client failed during the attack: {failures:?}\n{}",
        proxy.logs()
    );
    assert!(ok >= 20, "normal client made only {ok} requests");
    assert!(
        !availability.is_empty() && availability.iter().all(|a| *a == "YES"),
        "slowhttptest's probe: {availability:?}\n{out}"
    );
    // Connections arrive at RATE/s and each lives about HEADER_TIMEOUT_S: far below the
    // CONNECTIONS that would stay open without the timeout.
    let bound = (RATE * (HEADER_TIMEOUT_S + 2)) as u64;
    assert!(
        peak_connected <= bound,
        "{peak_connected} slow connections open at once (bound {bound}):\n{csv}"
    );
    assert!(
        closed >= (CONNECTIONS / 2) as u64,
        "only {closed} slow connections closed by Portico:\n{csv}"
    );
}
