//! 2,000 idle clients against a 1,024 descriptor limit (issue 15): `portico run` under
//! `prlimit --nofile=1024:1024` (hard limit too, so the start-up raise cannot help), a
//! `portico echo` backend with `keepalive = 0` (every request connects), `max_fails = 1`,
//! `fail_timeout = "60s"`. 2,000 clients connect and send nothing (those the kernel cannot
//! queue time out after 2 s; that is fine). While they are there, a GET may be refused or
//! answered 503 (no descriptor for the server), never 502; once they are gone every GET is
//! 200 at once: no server was marked down. Portico keeps running and its descriptors come
//! back down. Bounded: 2,000 connects of at most 2 s each (in 8 threads), each probe 3 s.

use crate::support;
use crate::support::procfs::fds;

use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use support::http::probe_status as probe;
use support::net::{free_port, is_listening, local};
use support::process::{ChildGuard, start_portico_echo};
use support::{TempDir, eventually};

const IDLE: usize = 2000;

#[test]
fn two_thousand_idle_clients_against_1024_descriptors_mark_no_server_down() {
    let dir = TempDir::new("idle-flood");
    let backend = local(free_port());
    let _echo = start_portico_echo(backend, "b", dir.path());
    eventually(Duration::from_secs(10), "echo backend", || {
        is_listening(backend).then_some(())
    });
    let addr = local(free_port());
    let config = dir.write(
        "portico.toml",
        format!(
            "[server]\naccess_log = \"off\"\n\n[admin]\nlisten = \"off\"\n\n\
             [upstreams.app]\nservers = [\"{backend}\"]\nkeepalive = 0\nmax_fails = 1\n\
             fail_timeout = \"60s\"\nretries = 0\n\n\
             [[sites]]\nlisten = [\"{addr}\"]\nroutes = [{{ path = \"/\", proxy = \"app\" }}]\n"
        ),
    );
    let mut cmd = Command::new("prlimit");
    cmd.arg("--nofile=1024:1024")
        .arg(support::portico_bin())
        .args(["run", "-c"])
        .arg(&config)
        .current_dir(dir.path());
    let mut portico = ChildGuard::spawn("portico-run", cmd, dir.path());
    eventually(Duration::from_secs(10), "portico listening", || {
        is_listening(addr).then_some(())
    });
    assert_eq!(probe(addr), Some(200), "{}", portico.logs());
    let fds_before = fds(portico.pid());

    let started = Instant::now();
    let threads: Vec<_> = (0..8)
        .map(|_| {
            std::thread::spawn(move || {
                let mut held = Vec::new();
                for _ in 0..IDLE / 8 {
                    if let Ok(s) = TcpStream::connect_timeout(&addr, Duration::from_secs(2)) {
                        held.push(s);
                    }
                }
                held
            })
        })
        .collect();
    let idle: Vec<TcpStream> = threads
        .into_iter()
        .flat_map(|t| t.join().expect("connect thread"))
        .collect();
    let connected = idle.len();
    // Portico accepts from its backlog at its own pace (slower on a busy machine): the peak
    // is the most descriptors seen while the clients are held, waiting up to 10 s for it.
    let mut fds_peak = fds(portico.pid());
    let deadline = Instant::now() + Duration::from_secs(10);
    while fds_peak < 1000 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        fds_peak = fds_peak.max(fds(portico.pid()));
    }
    let during: Vec<Option<u16>> = (0..5).map(|_| probe(addr)).collect();
    drop(idle);
    let flood = started.elapsed();
    eventually(Duration::from_secs(15), "a request served again", || {
        (probe(addr) == Some(200)).then_some(())
    });
    for i in 0..20 {
        assert_eq!(probe(addr), Some(200), "request {i}: server marked down?");
    }
    portico.assert_running();
    let fds_after = eventually(Duration::from_secs(15), "descriptors back down", || {
        let n = fds(portico.pid());
        (n <= fds_before + 10).then_some(n)
    });
    support::report(&format!(
        "idle flood: {connected} of {IDLE} idle clients connected in {flood:?}; Portico fds \
         {fds_before} before, {fds_peak} at the peak, {fds_after} after; GETs meanwhile \
         {during:?}"
    ));
    assert!(
        during
            .iter()
            .all(|s| matches!(s, None | Some(200) | Some(503))),
        "a GET during the flood got {during:?} (502 would blame the server)"
    );
    assert!(
        fds_peak >= 900,
        "the flood did not reach the limit ({fds_peak} descriptors)"
    );
}
