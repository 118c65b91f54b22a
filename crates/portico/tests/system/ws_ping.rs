//! `ws_ping` end to end with third-party WebSocket peers: `portico run` between the Python
//! `websockets` client (its own keep-alive pings turned off) and the node `ws` echo server,
//! both of which answer pings by themselves, as browsers and most libraries do.
//!
//! The route has `read_timeout = "1s"` and `ws_ping = "300ms"`: the client sends a message,
//! stays silent for 3.5 s (three and a half idle timeouts), then sends another. Portico's
//! pings keep the WebSocket open (the pongs they cause stay hidden: see the proxy's
//! `tests/ws_ping.rs` for that, with frame-level checks). Without
//! `ws_ping` (second run, same peers) the same silence ends the WebSocket, so the first run
//! shows the pings at work. Bounded: the client script has timeouts everywhere and is killed
//! by PID at 30 s. Under `CI=true` missing node/`ws` or the Python venv fail the test.

use std::time::Duration;

use crate::support::net::{free_port, local};
use crate::support::peers::{Node, Python};
use crate::support::process::{run_bounded, start_portico};
use crate::support::{TempDir, report};
use portico_testkit::require;

const TEST: &str = "system_ws_ping";

/// The client: echo before and after a silence. Prints `OK`, or `CLOSED <code>` if the
/// WebSocket ended during the silence.
const CLIENT: &str = r#"
import sys, time
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect
url, silence = sys.argv[1], float(sys.argv[2])
with connect(url, open_timeout=5, close_timeout=2, ping_interval=None) as ws:
    ws.send("before")
    assert ws.recv(timeout=5) == "before"
    time.sleep(silence)
    try:
        ws.send("after")
        got = ws.recv(timeout=5)
    except ConnectionClosed as e:
        print(f"CLOSED {e.rcvd.code if e.rcvd else None}")
        sys.exit(0)
    assert got == "after", got
    print("OK")
"#;

fn run_case(node: &Node, py: &Python, ws_ping: Option<&str>) -> String {
    let dir = TempDir::new(TEST);
    let (proxy_port, echo_port) = (free_port(), free_port());
    let _echo = node.start_echo(echo_port, true, dir.path());
    let ping = ws_ping.map_or(String::new(), |p| format!(", ws_ping = \"{p}\""));
    let config = dir.write(
        "portico.toml",
        format!(
            "[server]\naccess_log = \"access.log\"\naccess_log_format = \"json\"\n\
             [admin]\nlisten = \"off\"\n\
             [upstreams.app]\nservers = [\"127.0.0.1:{echo_port}\"]\n\
             [[sites]]\nlisten = [\"127.0.0.1:{proxy_port}\"]\n\
             routes = [{{ path = \"/\", proxy = \"app\", read_timeout = \"1s\"{ping} }}]\n"
        ),
    );
    let mut proxy = start_portico(&config, dir.path());
    proxy.wait_for_port(local(proxy_port), Duration::from_secs(15));
    let mut cmd = std::process::Command::new(py.python());
    cmd.args([
        "-c",
        CLIENT,
        &format!("ws://127.0.0.1:{proxy_port}/"),
        "3.5",
    ]);
    let out = run_bounded(
        "ws-client",
        cmd,
        dir.path(),
        Duration::from_secs(30),
        Duration::ZERO,
    );
    proxy.assert_running();
    assert!(
        out.success(),
        "client failed ({:?}):\n{}\n{}\n{}",
        out.status,
        out.stdout,
        out.stderr,
        proxy.logs()
    );
    let log = std::fs::read_to_string(dir.path().join("access.log")).unwrap_or_default();
    report(&format!(
        "{TEST}: ws_ping {ws_ping:?}: client says {:?}; access log {:?}",
        out.stdout.trim(),
        log.lines().last().unwrap_or_default()
    ));
    out.stdout.trim().to_string()
}

#[test]
fn ws_ping_keeps_an_idle_websocket_alive_between_real_peers() {
    let Some(node) = require(Node::find()) else {
        return;
    };
    let Some(py) = require(Python::find()) else {
        return;
    };
    assert_eq!(run_case(&node, &py, Some("300ms")), "OK");
    let without = run_case(&node, &py, None);
    assert!(
        without.starts_with("CLOSED"),
        "without ws_ping the silence must end the WebSocket: {without}"
    );
}
