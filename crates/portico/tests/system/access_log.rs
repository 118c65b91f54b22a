//! The access log of the real `portico` binary with sites and `[[streams]]` sharing one
//! file: HTTP and stream lines land in the same file, whole, and after a log rotation
//! (`mv access.log access.log.1`, then SIGUSR1) both kinds go to the new file.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::Duration;

use crate::support::net::{free_port, local};
use crate::support::process::{start_portico, start_portico_echo};
use crate::support::{TempDir, eventually, http};

const T10: Duration = Duration::from_secs(10);

/// One connection through the stream listener to the echo backend: an HTTP request, the
/// whole response (the backend closes: `Connection: close`).
fn through_stream(stream: SocketAddr, path: &str) -> String {
    let mut s = TcpStream::connect(stream).expect("connect to the stream listener");
    s.set_read_timeout(Some(T10)).expect("timeout");
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: stream\r\nConnection: close\r\n\r\n"
    )
    .expect("send");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read the response");
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    out
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// Lines of `text` that are stream records (`CLIENT [TIME] stream#N ...`) of connections
/// that sent something (not the readiness probes of `wait_for_port`).
fn stream_lines(text: &str) -> Vec<&str> {
    text.lines()
        .filter(|l| l.contains("] stream#") && !l.contains(" sent=0 "))
        .collect()
}

/// Every line is one whole record: HTTP `combined` or a stream line, never a mix.
fn assert_whole_lines(text: &str, stream_listen: SocketAddr, backend: SocketAddr) {
    for l in text.lines() {
        // `combined`, then the request ID (a quoted field after the user agent).
        let http =
            l.starts_with("127.0.0.1 - - [") && l.contains(" \"-\" \"-\" \"") && l.ends_with('"');
        let stream = l.starts_with("127.0.0.1:")
            && l.contains(&format!(
                "] stream#0 {stream_listen} -> app {backend} sent="
            ))
            && l.contains(" end=");
        assert!(http ^ stream, "not one whole record: {l:?}\n{text}");
    }
}

#[test]
fn http_and_stream_lines_share_the_file_and_follow_a_reopen() {
    let dir = TempDir::new("access-log-shared");
    let backend = local(free_port());
    let mut echo = start_portico_echo(backend, "B", dir.path());
    echo.wait_for_port(backend, T10);
    let site = local(free_port());
    let stream = local(free_port());
    let text = format!(
        "[server]\nstate_dir = \"state\"\naccess_log = \"access.log\"\nshutdown_grace = \"1s\"\nthreads = 2\n\n\
         [admin]\nlisten = \"off\"\n\n\
         [upstreams.app]\nservers = [\"{backend}\"]\n\n\
         [[sites]]\nlisten = [\"{site}\"]\nroutes = [{{ path = \"/\", respond = \"hi\" }}]\n\n\
         [[streams]]\nlisten = [\"{stream}\"]\nupstream = \"app\"\n"
    );
    let config = dir.write("portico.toml", &text);
    let mut proxy = start_portico(&config, dir.path());
    proxy.wait_for_port(site, T10);
    proxy.wait_for_port(stream, T10);
    let log = dir.path().join("access.log");
    let rotated = dir.path().join("access.log.1");

    // Before rotation: one HTTP and one stream line, in the one file.
    assert_eq!(http::get(site, "/before").expect("GET").status, 200);
    through_stream(stream, "/s-before");
    let before = eventually(T10, "an HTTP and a stream line in access.log", || {
        let t = read(&log);
        (t.contains("\"GET /before HTTP/1.1\" 200") && stream_lines(&t).len() == 1).then_some(t)
    });
    assert_whole_lines(&before, stream, backend);

    // Rotate: until SIGUSR1 both kinds still go to the moved file; after it, to a new one.
    std::fs::rename(&log, &rotated).expect("rotate");
    proxy.signal("USR1");
    eventually(T10, "access.log reopened after SIGUSR1", || {
        assert_eq!(http::get(site, "/probe").expect("GET").status, 200);
        read(&log).contains("\"GET /probe HTTP/1.1\"").then_some(())
    });
    assert_eq!(http::get(site, "/after").expect("GET").status, 200);
    through_stream(stream, "/s-after");
    let after = eventually(T10, "the HTTP and stream lines after the reopen", || {
        let t = read(&log);
        (t.contains("\"GET /after HTTP/1.1\" 200") && stream_lines(&t).len() == 1).then_some(t)
    });
    assert_whole_lines(&after, stream, backend);
    let old = read(&rotated);
    assert_eq!(stream_lines(&old).len(), 1, "{old}");
    assert!(!old.contains("/after"), "{old}");
    assert_whole_lines(&old, stream, backend);
    proxy.assert_running();
}

/// Every file under `dir` (recursively) whose content mentions `needle`.
fn files_mentioning(dir: &Path, needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return found;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            found.extend(files_mentioning(&p, needle));
        } else if String::from_utf8_lossy(&std::fs::read(&p).unwrap_or_default()).contains(needle) {
            found.push(p.display().to_string());
        }
    }
    found
}

/// `access_log = "off"`: an HTTP request and a stream connection leave no access line
/// anywhere (stdout, stderr, any file in the instance's folder), through a graceful stop that
/// flushes logs. The same run with `access_log = "stdout"` finds both lines in stdout, so
/// the check can fail.
#[test]
fn off_writes_no_line() {
    let dir = TempDir::new("access-log-off");
    let backend = local(free_port());
    let mut echo = start_portico_echo(backend, "B", dir.path());
    echo.wait_for_port(backend, T10);
    for target in ["stdout", "off"] {
        let run = TempDir::new(&format!("access-log-{target}"));
        let (site, stream) = (local(free_port()), local(free_port()));
        let text = format!(
            "[server]\nstate_dir = \"state\"\naccess_log = \"{target}\"\nshutdown_grace = \"1s\"\n\n\
             [admin]\nlisten = \"off\"\n\n\
             [upstreams.app]\nservers = [\"{backend}\"]\n\n\
             [[sites]]\nlisten = [\"{site}\"]\nroutes = [{{ path = \"/\", respond = \"hi\" }}]\n\n\
             [[streams]]\nlisten = [\"{stream}\"]\nupstream = \"app\"\n"
        );
        let config = run.write("portico.toml", &text);
        let mut proxy = start_portico(&config, run.path());
        proxy.wait_for_port(site, T10);
        proxy.wait_for_port(stream, T10);
        assert_eq!(http::get(site, "/off-probe").expect("GET").status, 200);
        through_stream(stream, "/off-stream-probe");
        // SIGTERM: a graceful stop writes out whatever the log had queued.
        let st = proxy.stop(T10).expect("stops after SIGTERM");
        assert!(st.success(), "{st}\n{}", proxy.logs());
        let out = proxy.stdout();
        let http_line = out.contains("\"GET /off-probe HTTP/1.1\" 200");
        let stream_line = !stream_lines(&out).is_empty();
        if target == "stdout" {
            assert!(
                http_line && stream_line,
                "control run: both lines in stdout\n{out}"
            );
            continue;
        }
        assert!(!http_line && !stream_line, "off wrote to stdout:\n{out}");
        let err = proxy.stderr();
        assert!(
            !err.contains("/off-probe") && stream_lines(&err).is_empty(),
            "off wrote to stderr:\n{err}"
        );
        // The request path is in no file either (the config, state, logs of the run).
        let files = files_mentioning(run.path(), "/off-probe");
        assert!(files.is_empty(), "off wrote the request to {files:?}");
    }
}
