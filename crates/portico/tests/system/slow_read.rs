//! Slow read against the real binary, on a plain and a TLS listener at once: two Debian
//! `slowhttptest -X` runs (100 connections each, 50 a second) ask for a 4 MB response three
//! times per connection (`-k 3`), advertise a receive window of 512-1024 bytes and read
//! 32 bytes every 5 s, for 30 s. `portico run` has `send_timeout = "3s"` and the default
//! `send_min_rate`; a normal client (a fresh connection every 200 ms) is served meanwhile.
//!
//! Checks, from the server side (`/proc/net/tcp`: Portico's sockets on each listening port,
//! whatever their state): the attack connections are there (at least 50 per port at the
//! peak), and from 20 s on at most a handful remain — the slow readers are closed *and
//! gone*: Portico resets them (RST), because a FIN would wait in the kernel behind the
//! megabytes the client does not take, keeping each connection and its buffer (the socket
//! in FIN-WAIT-1) for as long as the client keeps reading a few bytes. (slowhttptest itself
//! keeps counting them connected: it still has a few KiB buffered to read at 32 bytes per
//! 5 s.) Every normal GET is 200 within 2 s, and Portico's open descriptors come back to
//! where they were. Bounded: each slowhttptest runs 30 s and is killed at 45 s.
//! Under `CI=true` a missing `slowhttptest` fails the test (scripts/test.sh installs it).

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::slowloris::{normal_client, plain};
use crate::support::net::{free_port, local};
use crate::support::process::{ChildGuard, run_bounded, start_portico, start_portico_echo};
use crate::support::procfs::{fds, sockets_on};
use crate::support::{TempDir, report};

const TEST: &str = "system_slow_read";
const CONNECTIONS: usize = 100;
const LENGTH_S: u64 = 30;

fn slowhttptest(dir: &std::path::Path, url: &str, name: &str) -> std::thread::JoinHandle<String> {
    let mut cmd = Command::new("slowhttptest");
    cmd.current_dir(dir).args([
        "-X",
        "-c",
        &CONNECTIONS.to_string(),
        "-r",
        "50",
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
        &LENGTH_S.to_string(),
        "-p",
        "3",
        "-u",
        url,
    ]);
    let (dir, name) = (dir.to_path_buf(), name.to_string());
    std::thread::spawn(move || {
        let run = run_bounded(&name, cmd, &dir, Duration::from_secs(45), Duration::ZERO);
        let out = plain(&run.stdout);
        assert!(
            out.contains("Hit test time limit"),
            "{name} did not run its course ({:?}):\n{out}\n{}",
            run.status,
            run.stderr
        );
        out
    })
}

#[test]
fn slow_readers_are_reset_on_plain_and_tls_while_others_are_served() {
    if portico_testkit::require_peer("slowhttptest").is_none() {
        return;
    }
    let dir = TempDir::new(TEST);
    let (plain_port, tls_port, echo_port) = (free_port(), free_port(), free_port());
    let mut echo: ChildGuard = start_portico_echo(local(echo_port), "b1", dir.path());
    echo.wait_for_port(local(echo_port), Duration::from_secs(15));
    dir.write_localhost_cert("slow read CA");
    let config = dir.write(
        "portico.toml",
        format!(
            "[server]\nsend_timeout = \"3s\"\naccess_log = \"off\"\n[admin]\nlisten = \"off\"\n\
             [upstreams.app]\nservers = [\"127.0.0.1:{echo_port}\"]\n\
             [[sites]]\nlisten = [\"127.0.0.1:{plain_port}\"]\n\
             routes = [{{ path = \"/\", proxy = \"app\" }}]\n\
             [[sites]]\nlisten = [\"127.0.0.1:{tls_port}\"]\n\
             tls = {{ cert = \"site.pem\", key = \"site.key\" }}\nhttp_redirect = false\n\
             routes = [{{ path = \"/\", proxy = \"app\" }}]\n"
        ),
    );
    let mut proxy = start_portico(&config, dir.path());
    let addr = local(plain_port);
    proxy.wait_for_port(addr, Duration::from_secs(15));
    proxy.wait_for_port(local(tls_port), Duration::from_secs(15));
    let warm = crate::support::http::get(addr, "/warm").map(|r| r.status);
    assert_eq!(warm.ok(), Some(200));
    let fds_before = fds(proxy.pid());

    let stop = Arc::new(AtomicBool::new(false));
    let client = {
        let stop = stop.clone();
        std::thread::spawn(move || normal_client(addr, &stop))
    };
    let path = "/_echo/bytes?n=4000000";
    let started = Instant::now();
    let attacks = [
        slowhttptest(
            dir.path(),
            &format!("http://127.0.0.1:{plain_port}{path}"),
            "slow-read-plain",
        ),
        slowhttptest(
            dir.path(),
            &format!("https://127.0.0.1:{tls_port}{path}"),
            "slow-read-tls",
        ),
    ];
    // (seconds since the start, sockets on the plain port, on the TLS port)
    let mut samples = Vec::new();
    while started.elapsed() < Duration::from_secs(LENGTH_S) {
        samples.push((
            started.elapsed().as_secs_f64(),
            sockets_on(plain_port),
            sockets_on(tls_port),
        ));
        std::thread::sleep(Duration::from_millis(500));
    }
    let outputs: Vec<String> = attacks
        .into_iter()
        .map(|a| a.join().expect("slowhttptest thread"))
        .collect();
    stop.store(true, Ordering::Relaxed);
    let (ok, failures, slowest) = client.join().expect("normal client thread");
    proxy.assert_running();
    let fds_after = fds(proxy.pid());

    let peak = |f: fn(&(f64, usize, usize)) -> usize| samples.iter().map(f).max().unwrap_or(0);
    let (peak_plain, peak_tls) = (peak(|s| s.1), peak(|s| s.2));
    let late: Vec<_> = samples.iter().filter(|s| s.0 >= 20.0).collect();
    let late_max = late
        .iter()
        .map(|s| s.1.max(s.2))
        .max()
        .unwrap_or(usize::MAX);
    let gone_at = |f: fn(&(f64, usize, usize)) -> usize| {
        samples
            .iter()
            .skip_while(|s| f(s) < 50)
            .find(|s| f(s) <= 5)
            .map(|s| s.0)
    };
    report(&format!(
        "{TEST}: peak {peak_plain} plain / {peak_tls} TLS slow-read sockets, down to <=5 at \
         {:?} / {:?} s, at most {late_max} from 20 s on; normal client {ok} OK, {} failed, \
         slowest {slowest:?}; Portico fds {fds_before} before, {fds_after} after",
        gone_at(|s| s.1),
        gone_at(|s| s.2),
        failures.len()
    ));
    assert!(
        failures.is_empty(),
        "normal client failed during the attack: {failures:?}\n{}",
        proxy.logs()
    );
    assert!(ok >= 50, "normal client made only {ok} requests");
    assert!(
        peak_plain >= 50 && peak_tls >= 50,
        "the attack did not get its connections in: {samples:?}\n{outputs:?}"
    );
    assert!(
        !late.is_empty() && late_max <= 5,
        "slow readers still hold sockets after 20 s: {samples:?}"
    );
    assert!(
        fds_after <= fds_before + 10,
        "Portico's descriptors grew from {fds_before} to {fds_after}"
    );
}
