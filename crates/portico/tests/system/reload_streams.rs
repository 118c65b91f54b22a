//! Reload of the real `portico` binary and `[[streams]]`: an instance started without streams
//! gets its first ones by a reload (`portico reload` and SIGHUP), serves them at once, and a
//! reload that removes every stream closes their listeners while the sites keep serving.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::time::Duration;

use crate::support::net::{free_port, is_listening, local, wait_closed};
use crate::support::process::{
    ChildGuard, portico, run_bounded, start_portico, start_portico_echo,
};
use crate::support::{TempDir, eventually, http};

const T10: Duration = Duration::from_secs(10);

/// A site on `site` answering `hi`, upstream `app` on `backend`, and one stream per entry
/// of `streams` to `app`.
fn text(site: SocketAddr, backend: SocketAddr, streams: &[SocketAddr]) -> String {
    let mut s = format!(
        "[server]\nstate_dir = \"state\"\naccess_log = \"access.log\"\nshutdown_grace = \"1s\"\nthreads = 2\n\n\
         [admin]\nlisten = \"off\"\n\n\
         [upstreams.app]\nservers = [\"{backend}\"]\n\n\
         [[sites]]\nlisten = [\"{site}\"]\nroutes = [{{ path = \"/\", respond = \"hi\" }}]\n"
    );
    for l in streams {
        s.push_str(&format!(
            "\n[[streams]]\nlisten = [\"{l}\"]\nupstream = \"app\"\n"
        ));
    }
    s
}

/// One HTTP request through a stream listener to `portico echo`: the backend's name.
fn echo_through(stream: SocketAddr) -> String {
    let mut s = TcpStream::connect(stream).expect("connect to the stream listener");
    s.set_read_timeout(Some(T10)).expect("timeout");
    s.write_all(b"GET /through HTTP/1.1\r\nHost: s\r\nConnection: close\r\n\r\n")
        .expect("send");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read the response");
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    let body = out.split("\r\n\r\n").nth(1).unwrap_or("");
    body.lines().next().unwrap_or("").to_string()
}

struct Instance {
    dir: TempDir,
    config: PathBuf,
    proxy: ChildGuard,
    _echo: ChildGuard,
}

impl Instance {
    /// `portico reload -c FILE` after writing `text`: (exit code, stdout + stderr).
    fn reload_cli(&self, text: &str) -> (i32, String) {
        std::fs::write(&self.config, text).expect("write config");
        let c = self.config.to_str().expect("utf-8");
        let out = run_bounded(
            "portico-reload",
            portico(self.dir.path(), &["reload", "-c", c]),
            self.dir.path(),
            Duration::from_secs(20),
            Duration::ZERO,
        );
        (out.code(), format!("{}{}", out.stdout, out.stderr))
    }
}

#[test]
fn reload_starts_the_stream_plane_and_removes_every_stream() {
    let dir = TempDir::new("reload-streams");
    let backend = local(free_port());
    let mut echo = start_portico_echo(backend, "B", dir.path());
    echo.wait_for_port(backend, T10);
    let site = local(free_port());
    let config = dir.write("portico.toml", text(site, backend, &[]));
    let mut proxy = start_portico(&config, dir.path());
    proxy.wait_for_port(site, T10);
    let mut inst = Instance {
        dir,
        config,
        proxy,
        _echo: echo,
    };

    // The first stream, by `portico reload`: applied (exit 0), listening at once.
    let s1 = local(free_port());
    let (code, out) = inst.reload_cli(&text(site, backend, &[s1]));
    assert_eq!(code, 0, "{out}\n{}", inst.proxy.logs());
    assert!(
        out.contains(&format!("stream listener {s1} added")),
        "{out}"
    );
    assert!(!out.contains("needs restart"), "{out}");
    assert_eq!(echo_through(s1), "B");
    assert_eq!(http::get(site, "/").expect("GET").status, 200);

    // A second one by SIGHUP.
    let s2 = local(free_port());
    std::fs::write(&inst.config, text(site, backend, &[s1, s2])).expect("write config");
    inst.proxy.signal("HUP");
    eventually(T10, "the SIGHUP-added stream listening", || {
        is_listening(s2).then_some(())
    });
    assert_eq!(echo_through(s2), "B");
    assert_eq!(echo_through(s1), "B");

    // Every stream removed: their listeners close, the site serves on.
    let (code, out) = inst.reload_cli(&text(site, backend, &[]));
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(&format!("stream listener {s1} removed")),
        "{out}"
    );
    assert!(
        out.contains(&format!("stream listener {s2} removed")),
        "{out}"
    );
    wait_closed(s1, T10);
    wait_closed(s2, T10);
    assert_eq!(http::get(site, "/").expect("GET").status, 200);

    // And back again: the (idle) stream plane takes new streams.
    let (code, out) = inst.reload_cli(&text(site, backend, &[s1]));
    assert_eq!(code, 0, "{out}");
    assert_eq!(echo_through(s1), "B");

    // The stream connections were logged beside the site's requests.
    let log = inst.dir.path().join("access.log");
    eventually(T10, "stream lines in the access log", || {
        let t = std::fs::read_to_string(&log).unwrap_or_default();
        (t.lines().filter(|l| l.contains("] stream#0 ")).count() >= 3).then_some(())
    });

    // A graceful stop still ends the process (the runtime the reload started included).
    inst.proxy.signal("TERM");
    let status = inst.proxy.wait_timeout(T10);
    assert!(
        status.is_some_and(|s| s.success()),
        "{status:?}\n{}",
        inst.proxy.logs()
    );
}
