//! Traffic policy with the real `portico` binary.
//!
//! `sticky_cookie`: two Portico processes with the same config (only their `listen`
//! differs) and the same `[server] secret_file` in front of three `portico echo` backends:
//! the cookie set by the first pins requests and WebSocket upgrades sent to the second; a
//! tampered cookie is ignored (balanced as usual and re-set); a cookie naming a server that
//! died is re-picked and re-set.

use crate::support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::Duration;

use support::TempDir;
use support::http::{Conn, Resp as Response};
use support::net::{free_port, local};
use support::process::{ChildGuard, start_portico, start_portico_echo};

const T10: Duration = Duration::from_secs(10);

fn sticky_config(listen: SocketAddr, backends: &[SocketAddr]) -> String {
    let servers = backends
        .iter()
        .map(|b| format!("\"{b}\""))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        r#"[server]
access_log = "off"
secret_file = "secret"

[admin]
listen = "off"

[upstreams.app]
servers = [{servers}]
sticky_cookie = "srv"
retries = 2

[[sites]]
listen = ["{listen}"]
routes = [{{ path = "/", proxy = "app", websocket = true }}]
"#
    )
}

fn start(dir: &Path, name: &str, listen: SocketAddr, backends: &[SocketAddr]) -> ChildGuard {
    let cfg = dir.join(name);
    std::fs::write(&cfg, sticky_config(listen, backends)).expect("write config");
    let mut p = start_portico(&cfg, dir);
    p.wait_for_port(listen, T10);
    p
}

/// GET / with an optional `Cookie` header, on a fresh connection.
fn get(addr: SocketAddr, cookie: Option<&str>) -> Response {
    let mut head = String::from("GET / HTTP/1.1\r\nHost: app.test\r\n");
    if let Some(c) = cookie {
        head.push_str(&format!("Cookie: other=1; {c}\r\n"));
    }
    head.push_str("\r\n");
    let mut conn = Conn::connect(addr).expect("connect to portico");
    let resp = conn.request_raw(&head, b"").expect("response");
    assert_eq!(resp.status, 200, "{}", resp.text());
    resp
}

fn served_by(resp: &Response) -> String {
    resp.header("x-echo-name").expect("x-echo-name").to_string()
}

/// `srv=VALUE` out of a `Set-Cookie`, and checks its attributes.
fn cookie_of(resp: &Response) -> Option<String> {
    let set = resp.header("set-cookie")?;
    assert!(
        set.ends_with("; Path=/; HttpOnly; SameSite=Lax"),
        "attributes of {set}"
    );
    Some(set.split(';').next().unwrap_or_default().to_string())
}

/// A WebSocket upgrade with `cookie`: the 101 head's lines.
fn upgrade(addr: SocketAddr, cookie: &str) -> Vec<String> {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(T10)).expect("timeout");
    write!(
        s,
        "GET /ws HTTP/1.1\r\nHost: app.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
         Cookie: {cookie}\r\n\r\n"
    )
    .expect("send upgrade");
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = s.read(&mut byte).expect("read 101 head");
        assert_eq!(n, 1, "closed inside the head: {head:?}");
        head.push(byte[0]);
    }
    let lines: Vec<String> = String::from_utf8_lossy(&head)
        .lines()
        .map(str::to_string)
        .collect();
    assert!(lines[0].starts_with("HTTP/1.1 101"), "{lines:?}");
    lines
}

fn header_in(lines: &[String], name: &str) -> Option<String> {
    lines.iter().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
    })
}

#[test]
fn sticky_cookie_set_by_one_process_is_honoured_by_another() {
    let dir = TempDir::new("policy-sticky");
    dir.write(
        "secret",
        b"0123456789abcdef0123456789abcdef-same-on-every-node",
    );
    let backends: Vec<SocketAddr> = (0..3).map(|_| local(free_port())).collect();
    let mut echoes: Vec<Option<ChildGuard>> = backends
        .iter()
        .enumerate()
        .map(|(i, b)| Some(start_portico_echo(*b, &format!("b{i}"), dir.path())))
        .collect();
    for (echo, b) in echoes.iter_mut().zip(&backends) {
        echo.as_mut().expect("started").wait_for_port(*b, T10);
    }
    let (l1, l2) = (local(free_port()), local(free_port()));
    let mut p1 = start(dir.path(), "p1.toml", l1, &backends);
    let mut p2 = start(dir.path(), "p2.toml", l2, &backends);

    // A first request without a cookie: balanced, and pinned by a signed cookie.
    let first = get(l1, None);
    let pinned = served_by(&first);
    let cookie = cookie_of(&first).expect("first response sets the sticky cookie");
    assert!(
        cookie.starts_with("srv=") && cookie.contains('.'),
        "signed ID.TAG: {cookie}"
    );

    // Round robin would spread these over three servers; the cookie keeps them on one, on
    // both processes, and an honoured cookie is not set again.
    for addr in [l2, l1, l2, l2, l1, l2] {
        let resp = get(addr, Some(&cookie));
        assert_eq!(served_by(&resp), pinned, "via {addr}");
        assert_eq!(resp.header("set-cookie"), None, "honoured, not re-set");
    }

    // A WebSocket upgrade through the second process goes to the same server.
    let lines = upgrade(l2, &cookie);
    assert_eq!(header_in(&lines, "x-echo-name").as_deref(), Some(&*pinned));
    assert_eq!(header_in(&lines, "set-cookie"), None, "{lines:?}");

    // Tampered: the tag of another id, or a flipped character. Ignored: the request is
    // balanced as usual (round robin reaches other servers) and a cookie is set again.
    let flipped = {
        let mut c = cookie.clone().into_bytes();
        let last = c.len() - 1;
        c[last] = if c[last] == b'A' { b'B' } else { b'A' };
        String::from_utf8(c).expect("ascii")
    };
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..6 {
        let resp = get(l2, Some(&flipped));
        let reset = cookie_of(&resp).expect("a tampered cookie is replaced");
        assert!(
            reset == cookie || served_by(&resp) != pinned,
            "a re-set cookie names the server that answered"
        );
        seen.insert(served_by(&resp));
    }
    assert!(seen.len() > 1, "a tampered cookie must not pin: {seen:?}");
    let unsigned = cookie.split('.').next().expect("id").to_string();
    assert!(
        cookie_of(&get(l2, Some(&unsigned))).is_some(),
        "unsigned id"
    );

    // The pinned server dies: the request is re-picked (connect fails, another server
    // answers) and the client is pinned to the new server.
    let dead = pinned
        .strip_prefix('b')
        .and_then(|i| i.parse::<usize>().ok())
        .expect("echo name bN");
    echoes[dead].take().expect("running").kill();
    let resp = get(l2, Some(&cookie));
    let moved_to = served_by(&resp);
    assert_ne!(moved_to, pinned);
    let new_cookie = cookie_of(&resp).expect("re-pinned");
    assert_ne!(new_cookie, cookie);
    for addr in [l1, l2] {
        let resp = get(addr, Some(&new_cookie));
        assert_eq!(served_by(&resp), moved_to, "new pin honoured via {addr}");
    }
    p1.assert_running();
    p2.assert_running();
}
