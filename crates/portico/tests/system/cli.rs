//! The `portico` command line as a user meets it: `version`, `run` with a taken port
//! (exit 2, one-line reason), SIGTERM (exit 0), and `portico demo` whose printed URLs answer.

use std::net::{SocketAddr, TcpListener};
use std::time::{Duration, Instant};

use crate::support::http;
use crate::support::net::{FixedPortsLock, free_port, local};
use crate::support::peers::Node;
use crate::support::process::{
    ChildGuard, portico, run_bounded, start_portico, start_portico_echo,
};
use crate::support::{TempDir, report};

const T10: Duration = Duration::from_secs(10);

/// A small valid config: one site on `listen` proxying to `backend`, admin off.
fn proxy_config(listen: SocketAddr, backend: SocketAddr) -> String {
    format!(
        "[server]\naccess_log = \"off\"\nshutdown_grace = \"5s\"\n\n\
         [admin]\nlisten = \"off\"\n\n\
         [upstreams.app]\nservers = [\"{backend}\"]\n\n\
         [[sites]]\nlisten = [\"{listen}\"]\n\n\
         [[sites.routes]]\npath = \"/\"\nproxy = \"app\"\n"
    )
}

#[test]
fn version_prints_the_crate_version() {
    let dir = TempDir::new("cli-version");
    let out = run_bounded(
        "version",
        portico(dir.path(), &["version"]),
        dir.path(),
        T10,
        Duration::ZERO,
    );
    assert!(out.success(), "portico version failed: {out:?}");
    let want = env!("CARGO_PKG_VERSION");
    assert!(
        out.stdout.contains(want),
        "`portico version` should print {want}, got {:?}",
        out.stdout
    );
}

#[test]
fn run_with_a_taken_port_exits_2_with_a_one_line_reason() {
    let dir = TempDir::new("cli-taken");
    // Hold the port for the whole test.
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr");
    let cfg = dir.write(
        "portico.toml",
        proxy_config(addr, local(free_port())).as_bytes(),
    );
    let c = cfg.to_str().expect("utf-8");
    let out = run_bounded(
        "run-taken",
        portico(dir.path(), &["run", "-c", c]),
        dir.path(),
        T10,
        Duration::ZERO,
    );
    assert_eq!(
        out.code(),
        2,
        "a port that cannot be bound is a runtime failure: exit 2\n{out:?}"
    );
    let port = addr.port().to_string();
    let reason: Vec<&str> = out.stderr.lines().filter(|l| l.contains(&port)).collect();
    assert!(
        !reason.is_empty(),
        "stderr should name the address {addr}:\n{}",
        out.stderr
    );
    assert!(!out.stderr.contains("panicked"), "panic:\n{}", out.stderr);
    let last = out.stderr.lines().rev().find(|l| !l.trim().is_empty());
    assert!(
        last.is_some_and(|l| l.contains(&port)),
        "the last stderr line should be the one-line reason naming {addr}:\n{}",
        out.stderr
    );
    drop(taken);
}

#[test]
fn sigterm_stops_a_running_instance_with_exit_0() {
    let dir = TempDir::new("cli-sigterm");
    let backend = local(free_port());
    let mut echo = start_portico_echo(backend, "b1", dir.path());
    echo.wait_for_port(backend, T10);
    let listen = local(free_port());
    let cfg = dir.write("portico.toml", proxy_config(listen, backend).as_bytes());
    let mut run = start_portico(&cfg, dir.path());
    run.wait_for_port(listen, T10);

    // It serves: one request through it, so we stop a server that did real work.
    let resp = http::get(listen, "/before-term").expect("GET through portico");
    assert_eq!(resp.status, 200, "GET through portico: {resp:?}");
    assert_eq!(resp.first_line(), "b1", "body: {:?}", resp.text());

    let t0 = Instant::now();
    run.signal("TERM");
    let status = run.wait_timeout(T10);
    let status = status
        .unwrap_or_else(|| panic!("portico still running 10 s after SIGTERM\n{}", run.logs()));
    report(&format!(
        "system_cli: SIGTERM -> exit {:?} in {} ms",
        status.code(),
        t0.elapsed().as_millis()
    ));
    assert_eq!(
        status.code(),
        Some(0),
        "SIGTERM must stop cleanly\n{}",
        run.logs()
    );
    assert!(
        !crate::support::net::is_listening(listen),
        "listener still open after exit"
    );
}

/// `http://HOST:PORT/...` and `ws://...` tokens in the demo's text, loopback only.
fn printed_urls(text: &str) -> Vec<String> {
    let mut urls = Vec::new();
    for token in text.split_whitespace() {
        let t = token.trim_matches(|c: char| "\"'`()<>,;".contains(c));
        if (t.starts_with("http://127.0.0.1:") || t.starts_with("ws://127.0.0.1:"))
            && !urls.iter().any(|u| u == t)
        {
            urls.push(t.to_string());
        }
    }
    urls
}

/// `http://127.0.0.1:PORT/path` -> (addr, "/path").
fn split_url(url: &str) -> (SocketAddr, String) {
    let rest = url
        .split_once("://")
        .map(|(_, r)| r)
        .expect("url with a scheme");
    let (hostport, path) = match rest.find('/') {
        Some(i) => (&rest[..i], rest[i..].to_string()),
        None => (rest, "/".to_string()),
    };
    (
        hostport.parse().expect("loopback host:port in demo URL"),
        path,
    )
}

#[test]
fn demo_prints_urls_that_answer_and_stops_on_sigterm() {
    // The demo uses fixed ports (proxy 8080, echo backends 18081/18082).
    // and the admin API on its default 9900.
    let _lock = FixedPortsLock::acquire(&[8080, 18081, 18082, 9900]);
    let dir = TempDir::new("cli-demo");
    let mut demo = ChildGuard::spawn("demo", portico(dir.path(), &["demo"]), dir.path());
    let urls = crate::support::eventually(T10, "portico demo to print its URLs", || {
        demo.assert_running();
        let u = printed_urls(&demo.stdout());
        // Wait for the whole tour, not the first line of it.
        (u.len() >= 2 && demo.stdout().contains("ws://")).then_some(u)
    });
    report(&format!("system_cli: demo printed {} URLs", urls.len()));

    let mut answered = 0;
    for url in &urls {
        let (addr, path) = split_url(url);
        if url.starts_with("ws://") {
            // node is a peer: a failure under CI, a visible skip of this URL elsewhere.
            if let Some(node) = portico_testkit::require(Node::find()) {
                let out = run_bounded(
                    "demo-ws",
                    node.script("ws-check.mjs", &["echo", url]),
                    dir.path(),
                    T10,
                    Duration::ZERO,
                );
                assert!(
                    out.success(),
                    "demo URL {url}: ws echo check failed\n{out:?}\n{}",
                    demo.logs()
                );
                answered += 1;
            }
            continue;
        }
        let resp = http::get(addr, &path)
            .unwrap_or_else(|e| panic!("demo URL {url} does not answer: {e}\n{}", demo.logs()));
        assert!(
            resp.status < 500,
            "demo URL {url} answered {}: {}\n{}",
            resp.status,
            resp.text(),
            demo.logs()
        );
        answered += 1;
    }
    assert!(answered >= 2, "too few demo URLs answered ({answered})");
    // The admin API is on: the dashboard's address is printed and serves the page.
    let out = demo.stdout();
    let dashboard = out
        .lines()
        .find_map(|l| l.trim_start().strip_prefix("dashboard:"))
        .and_then(|rest| printed_urls(rest).into_iter().next())
        .unwrap_or_else(|| panic!("no dashboard address printed\n{out}"));
    let (addr, path) = split_url(&dashboard);
    let page = http::get(addr, &path).unwrap_or_else(|e| panic!("dashboard {dashboard}: {e}"));
    assert_eq!(page.status, 200, "dashboard {dashboard}");
    assert!(
        page.text().contains("<title>Portico</title>"),
        "dashboard {dashboard} is not the dashboard page"
    );

    demo.signal("TERM");
    let status = demo
        .wait_timeout(T10)
        .unwrap_or_else(|| panic!("demo still running 10 s after SIGTERM\n{}", demo.logs()));
    assert_eq!(status.code(), Some(0), "demo SIGTERM exit\n{}", demo.logs());
}

/// Starting Portico twice with the same config is the common way a port is "taken". The
/// second instance must fail (exit 2) instead of silently sharing the port with the first
/// through SO_REUSEPORT and splitting traffic between two configs.
#[test]
fn second_instance_on_the_same_port_exits_2() {
    let dir = TempDir::new("cli-twice");
    let backend = local(free_port());
    let listen = local(free_port());
    let cfg = dir.write("portico.toml", proxy_config(listen, backend).as_bytes());
    let mut first = start_portico(&cfg, dir.path());
    first.wait_for_port(listen, T10);
    let c = cfg.to_str().expect("utf-8");
    let out = run_bounded(
        "run-twice",
        portico(dir.path(), &["run", "-c", c]),
        dir.path(),
        Duration::from_secs(5),
        Duration::ZERO,
    );
    assert_eq!(
        out.code(),
        2,
        "a second instance on {listen} must exit 2 (got {:?}: -1 = still running after 5 s)\n{}",
        out.status,
        out.stderr
    );
    first.assert_running();
}
