//! Attacks and resource exhaustion against the real binary (issue 15).
//!
//! `out_of_file_descriptors_is_503_and_marks_no_server_down`: `portico run` under
//! `prlimit --nofile=64:64` (hard limit too, so the start-up raise cannot help), a
//! `portico echo` backend with `keepalive = 0` (every request connects), `max_fails = 1`
//! and `fail_timeout = "60s"`. Idle clients are added one by one, with a GET after each,
//! until the process runs out of descriptors: the GET that gets a client socket but no
//! upstream socket must be 503 (never 502), and once the idle clients are gone every GET is
//! 200 at once: the server was not marked down for Portico's own shortage. The start-up
//! log names the limit and warns that it is below what `max_connections` needs.
//! Bounded: at most 200 idle clients, each probe 3 s.

use crate::support;

use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use support::http::probe_status as probe;
use support::net::{free_port, is_listening, local};
use support::process::{ChildGuard, start_portico_echo};
use support::{TempDir, eventually};

#[test]
fn out_of_file_descriptors_is_503_and_marks_no_server_down() {
    let dir = TempDir::new("attacks-fd");
    let backend = local(free_port());
    let _echo = start_portico_echo(backend, "b", dir.path());
    eventually(Duration::from_secs(10), "echo backend", || {
        is_listening(backend).then_some(())
    });
    let addr = local(free_port());
    let config = dir.write(
        "portico.toml",
        format!(
            "[server]\nthreads = 1\naccess_log = \"off\"\n\n[admin]\nlisten = \"off\"\n\n\
             [upstreams.app]\nservers = [\"{backend}\"]\nkeepalive = 0\nmax_fails = 1\n\
             fail_timeout = \"60s\"\nretries = 0\n\n\
             [[sites]]\nlisten = [\"{addr}\"]\nroutes = [{{ path = \"/\", proxy = \"app\" }}]\n"
        ),
    );
    let mut cmd = Command::new("prlimit");
    cmd.arg("--nofile=64:64")
        .arg(support::portico_bin())
        .args(["run", "-c"])
        .arg(&config)
        .current_dir(dir.path());
    let portico = ChildGuard::spawn("portico-run", cmd, dir.path());
    eventually(Duration::from_secs(10), "portico listening", || {
        is_listening(addr).then_some(())
    });
    assert_eq!(probe(addr), Some(200), "{}", portico.logs());

    let mut idle = Vec::new();
    let mut statuses = Vec::new();
    for _ in 0..200 {
        idle.push(TcpStream::connect(addr).expect("idle client"));
        let status = probe(addr);
        statuses.push(status);
        if status != Some(200) {
            break;
        }
    }
    let last = statuses.last().copied().flatten();
    assert!(
        last.is_none() || last == Some(503),
        "out of descriptors, a request got {last:?} (statuses {statuses:?})\n{}",
        portico.logs()
    );
    assert!(
        statuses.len() < 200,
        "200 idle clients never exhausted 64 descriptors"
    );
    drop(idle);
    // Accepting resumes within its pause; then the server must serve at once.
    eventually(Duration::from_secs(10), "a request served again", || {
        (probe(addr) == Some(200)).then_some(())
    });
    for i in 0..20 {
        assert_eq!(probe(addr), Some(200), "request {i}: server marked down?");
    }
    let log = portico.stderr();
    assert!(
        log.contains("open-files limit") && log.contains("below what max_connections needs"),
        "{log}"
    );
    eprintln!(
        "fd test: {} idle clients until exhaustion, last probe {last:?}",
        statuses.len()
    );
}
