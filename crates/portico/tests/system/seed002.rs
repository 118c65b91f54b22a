//! Seed 002, end to end: `examples/seed-002-websocket-lb.toml` UNCHANGED (proxy on
//! 127.0.0.1:8080, ip_hash over node `ws` echo servers on 127.0.0.1:8010 and :8011), driven
//! by the seed's own tools: `wscat`, the node `ws` client, and Python `websockets`.
//!
//! Checks (the scenario's header): wscat echoes through the proxy; text + binary echo and a
//! clean close; one client IP always reaches the same backend; killing that backend moves
//! new connections to the other one.

use std::time::Duration;

use crate::support::net::{FixedPortsLock, local, wait_closed};
use crate::support::peers::{Node, Python};
use crate::support::process::{ChildGuard, run_bounded, start_portico};
use crate::support::{TempDir, example, report};
use portico_testkit::require;

const TEST: &str = "system_seed002";
const PROXY: u16 = 8080;
const BACKENDS: [u16; 2] = [8010, 8011];
/// The admin API's default listener (the seed config does not set `[admin]`).
const ADMIN_DEFAULT: u16 = 9900;
const T15: Duration = Duration::from_secs(15);

/// `node ws-check.mjs whoami URL N`: the backend port each of N sequential connections
/// reached.
fn whoami(node: &Node, dir: &TempDir, url: &str, n: usize) -> Vec<u16> {
    let out = run_bounded(
        "whoami",
        node.script("ws-check.mjs", &["whoami", url, &n.to_string()]),
        dir.path(),
        Duration::from_secs(30),
        Duration::ZERO,
    );
    assert!(out.success(), "ws whoami x{n} via {url} failed: {out:?}");
    let ports: Vec<u16> = out
        .stdout
        .lines()
        .filter_map(|l| l.strip_prefix("port:").and_then(|p| p.trim().parse().ok()))
        .collect();
    assert_eq!(ports.len(), n, "expected {n} answers: {:?}", out.stdout);
    ports
}

#[test]
fn seed_002_websocket_lb() {
    let Some(node) = require(Node::find()) else {
        return;
    };
    let Some(wscat) = require(node.wscat()) else {
        return;
    };
    let Some(python) = require(Python::find()) else {
        return;
    };

    let _lock = FixedPortsLock::acquire(&[PROXY, BACKENDS[0], BACKENDS[1], ADMIN_DEFAULT]);
    let dir = TempDir::new("seed002");
    let src = example("seed-002-websocket-lb.toml");
    let cfg = dir.copy_in(&src);
    assert_eq!(
        std::fs::read(&cfg).expect("read copy"),
        std::fs::read(&src).expect("read example"),
        "the scenario must run unchanged"
    );

    let mut servers: Vec<ChildGuard> = BACKENDS
        .iter()
        .map(|&p| node.start_echo(p, false, dir.path()))
        .collect();
    // Control: each backend identifies itself directly.
    for &p in &BACKENDS {
        let got = whoami(&node, &dir, &format!("ws://127.0.0.1:{p}/"), 1);
        assert_eq!(got, vec![p], "backend {p} must answer whoami with its port");
    }

    let mut proxy = start_portico(&cfg, dir.path());
    proxy.wait_for_port(local(PROXY), T15);
    let url = format!("ws://127.0.0.1:{PROXY}");

    // 1. wscat, as the scenario says (`sleep 3 | wscat -c URL -x msg -w 1`: without a TTY
    //    wscat quits at stdin EOF, so stdin is held open for 3 s).
    let mut cmd = std::process::Command::new(&wscat);
    cmd.args(["-c", &url, "-x", "hello-through-portico", "-w", "1"]);
    let out = run_bounded("wscat", cmd, dir.path(), T15, Duration::from_secs(3));
    assert!(
        out.success() && out.stdout.trim() == "hello-through-portico",
        "wscat echo through portico failed: {out:?}\n{}",
        proxy.logs()
    );
    report(&format!("{TEST}: wscat echo OK"));

    // 2. node ws client: text, 1 MiB binary, ping/pong, close 1000.
    let out = run_bounded(
        "ws-check",
        node.script("ws-check.mjs", &["echo", &url]),
        dir.path(),
        T15,
        Duration::ZERO,
    );
    assert!(
        out.success(),
        "node ws client check through portico failed: {out:?}\n{}",
        proxy.logs()
    );

    // 3. Python websockets: text + binary echo, clean close.
    let out = run_bounded(
        "py-client",
        python.script("ws_client.py", &[&url]),
        dir.path(),
        T15,
        Duration::ZERO,
    );
    assert!(
        out.success() && out.stdout.contains("ws_client OK"),
        "python websockets client through portico failed: {out:?}\n{}",
        proxy.logs()
    );
    report(&format!("{TEST}: node ws + python websockets echo OK"));

    // 4. ip_hash: one client IP, 10 connections, one backend.
    let ports = whoami(&node, &dir, &url, 10);
    let pinned = ports[0];
    assert!(
        ports.iter().all(|&p| p == pinned),
        "ip_hash: 10 connections from 127.0.0.1 reached {ports:?}"
    );
    report(&format!("{TEST}: 10/10 connections pinned to :{pinned}"));

    // 5. Kill the pinned backend (by PID): new connections reach the other one.
    let idx = BACKENDS
        .iter()
        .position(|&p| p == pinned)
        .expect("pinned port is one of the backends");
    let other = BACKENDS[1 - idx];
    servers[idx].kill();
    wait_closed(local(pinned), T15);
    let ports = whoami(&node, &dir, &url, 5);
    assert!(
        ports.iter().all(|&p| p == other),
        "after killing :{pinned}, new connections must reach :{other}, got {ports:?}\n{}",
        proxy.logs()
    );
    report(&format!(
        "{TEST}: backend :{pinned} killed -> 5/5 new connections on :{other}"
    ));
    proxy.assert_running();
}
