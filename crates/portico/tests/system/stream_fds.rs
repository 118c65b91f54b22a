//! Out of file descriptors on the stream plane (issue 15): `portico run` under
//! `prlimit --nofile=64:64` with a `[[streams]]` listener to a `portico echo` backend
//! (`max_fails = 1`, `fail_timeout = "60s"`, `retries = 0`) and a site answering by itself.
//! Idle stream clients (two descriptors each in Portico: client and server) and, to land on
//! exactly one free descriptor, at most one idle site client (one descriptor) are added
//! while `/proc/PID/fd` is watched. The next stream connection is then accepted with the
//! last descriptor and its connect to the server fails with `EMFILE`: the access log must
//! say `end=local_resources`, and once the idle clients are gone every stream connection is
//! served at once — the server was not marked down for Portico's own shortage (before, it
//! was: `connect_failed`, then `no_server` for `fail_timeout`). Bounded: at most 60 idle
//! clients, each probe 3 s.

use crate::support;

use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use support::http::probe_status as probe;
use support::net::{free_port, is_listening, local};
use support::process::{ChildGuard, start_portico_echo};
use support::{TempDir, eventually};

const LIMIT: usize = 64;

/// Descriptors of `pid` below the limit: the limit bounds descriptor numbers, and one
/// inherited with a higher number takes no slot.
fn fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| {
        d.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<usize>().ok())
            .filter(|fd| *fd < LIMIT)
            .count()
    })
}

/// Open descriptors of `pid` once the count held still for 300 ms (connections accepted
/// or closed meanwhile have settled); at most 5 s.
fn steady_fds(pid: u32) -> usize {
    let (mut last, mut same) = (fds(pid), 0);
    for _ in 0..50 {
        std::thread::sleep(Duration::from_millis(100));
        let now = fds(pid);
        same = if now == last { same + 1 } else { 0 };
        last = now;
        if same >= 3 {
            break;
        }
    }
    last
}

#[test]
fn stream_out_of_descriptors_is_local_and_marks_no_server_down() {
    let dir = TempDir::new("stream-fds");
    let backend = local(free_port());
    let _echo = start_portico_echo(backend, "b", dir.path());
    eventually(Duration::from_secs(10), "echo backend", || {
        is_listening(backend).then_some(())
    });
    let (stream_addr, site_addr) = (local(free_port()), local(free_port()));
    let config = dir.write(
        "portico.toml",
        format!(
            "[server]\nthreads = 1\naccess_log = \"access.log\"\n\n[admin]\nlisten = \"off\"\n\n\
             [upstreams.app]\nservers = [\"{backend}\"]\nmax_fails = 1\n\
             fail_timeout = \"60s\"\nretries = 0\n\n\
             [[streams]]\nlisten = [\"{stream_addr}\"]\nupstream = \"app\"\n\n\
             [[sites]]\nlisten = [\"{site_addr}\"]\n\
             routes = [{{ path = \"/\", respond = \"here\" }}]\n"
        ),
    );
    let mut cmd = Command::new("prlimit");
    cmd.arg(format!("--nofile={LIMIT}:{LIMIT}"))
        .arg(support::portico_bin())
        .args(["run", "-c"])
        .arg(&config)
        .current_dir(dir.path());
    let portico = ChildGuard::spawn("portico-run", cmd, dir.path());
    eventually(Duration::from_secs(10), "portico listening", || {
        (is_listening(stream_addr) && is_listening(site_addr)).then_some(())
    });
    assert_eq!(probe(stream_addr), Some(200), "{}", portico.logs());
    // prlimit executes portico in its own process.
    let pid = portico.pid();
    // Fill up to exactly one free descriptor.
    let mut idle = Vec::new();
    for _ in 0..60 {
        let open = steady_fds(pid);
        match LIMIT.saturating_sub(open) {
            0 => panic!("no descriptor left before the last step ({open} open)"),
            1 => break,
            2 => {
                idle.push(TcpStream::connect(site_addr).expect("idle site client"));
            }
            _ => {
                idle.push(TcpStream::connect(stream_addr).expect("idle stream client"));
            }
        }
    }
    assert_eq!(steady_fds(pid), LIMIT - 1, "one descriptor left");
    // Accepted with the last descriptor; connecting to the server fails with EMFILE.
    assert_eq!(probe(stream_addr), None, "no server socket to be had");
    let log_path = dir.path().join("access.log");
    eventually(Duration::from_secs(5), "the stream's log line", || {
        let log = std::fs::read_to_string(&log_path).unwrap_or_default();
        log.contains("end=local_resources").then_some(())
    });
    drop(idle);
    eventually(Duration::from_secs(10), "a stream served again", || {
        (probe(stream_addr) == Some(200)).then_some(())
    });
    for i in 0..20 {
        assert_eq!(
            probe(stream_addr),
            Some(200),
            "connection {i}: server marked down?"
        );
    }
    let log = std::fs::read_to_string(&log_path).unwrap_or_default();
    assert!(
        !log.contains("end=connect_failed") && !log.contains("end=no_server"),
        "{log}"
    );
}
