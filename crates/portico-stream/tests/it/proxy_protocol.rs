//! PROXY protocol with real peers: headers Portico sends are understood by nginx
//! (`listen ... proxy_protocol`, answering `$proxy_protocol_addr`) and HAProxy
//! (`accept-proxy`, answering `%[src]`); headers HAProxy sends (`send-proxy-v2`,
//! `send-proxy`) are accepted by Portico and their address used for persistence and the
//! log. Bad headers close only their own connection. Under `CI=true` a missing nginx or
//! haproxy fails these tests.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::support::*;

/// nginx answering every request with the PROXY header's client address.
fn nginx_proxy_protocol_echo(dir: &Path) -> Option<(Proc, SocketAddr)> {
    let nginx = peer("nginx")?;
    let port = free_port();
    let p = spawn_nginx(
        &nginx,
        dir,
        &format!(
            "  server {{\n    listen 127.0.0.1:{port} proxy_protocol;\n    location / {{ return 200 \"$proxy_protocol_addr:$proxy_protocol_port\"; }}\n  }}\n"
        ),
    );
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    wait_listening(addr);
    Some((p, addr))
}

/// HAProxy with the given config body (after global/defaults).
fn haproxy(dir: &Path, name: &str, body: &str) -> Option<Proc> {
    let haproxy = peer("haproxy")?;
    let conf = format!(
        "global\n  maxconn 200\ndefaults\n  timeout connect 2s\n  timeout client 10s\n  timeout server 10s\n{body}"
    );
    let path = dir.join(format!("{name}.cfg"));
    std::fs::write(&path, conf).unwrap();
    Some(spawn(&haproxy, &["-f", path.to_str().unwrap(), "-db"]))
}

fn portico_to(server: SocketAddr, extra: &str) -> Portico {
    Portico::start(&format!(
        "[upstreams.peer]\nservers = [\"{server}\"]\n[[streams]]\nlisten = [\"127.0.0.1:0\"]\nupstream = \"peer\"\n{extra}"
    ))
}

/// Through a Portico sending each PROXY header version to `addr` (an HTTP server answering
/// the client address it was told), clients from 127.0.0.2 and .3 are seen as themselves.
fn assert_peer_sees_the_clients(addr: SocketAddr, peer: &str) {
    for version in ["v1", "v2"] {
        let p = portico_to(addr, &format!("proxy_protocol = \"{version}\"\n"));
        for from in ["127.0.0.2", "127.0.0.3"] {
            let body = http_get_from(from, p.addr(0));
            assert!(
                body.starts_with(&format!("{from}:")),
                "{version} from {from}: {peer} saw {body:?}"
            );
        }
    }
}

#[test]
fn nginx_understands_the_headers_portico_sends() {
    let dir = tempfile::tempdir().unwrap();
    let Some((_nginx, addr)) = nginx_proxy_protocol_echo(dir.path()) else {
        return;
    };
    assert_peer_sees_the_clients(addr, "nginx");
}

#[test]
fn haproxy_understands_the_headers_portico_sends() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let Some(_h) = haproxy(
        dir.path(),
        "accept",
        &format!(
            "frontend fe\n  mode http\n  bind 127.0.0.1:{port} accept-proxy\n  http-request return status 200 content-type text/plain lf-string \"%[src]:%[src_port]\"\n"
        ),
    ) else {
        return;
    };
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    wait_listening(addr);
    assert_peer_sees_the_clients(addr, "haproxy");
}

/// client (127.0.0.x) -> HAProxy mode tcp, send-proxy-v2 / send-proxy -> Portico
/// (accept_proxy_protocol, sends v1) -> nginx (proxy_protocol): nginx sees the client.
#[test]
fn portico_accepts_haproxy_send_proxy_v2_and_v1() {
    let dir = tempfile::tempdir().unwrap();
    let Some((_nginx, nginx)) = nginx_proxy_protocol_echo(dir.path()) else {
        return;
    };
    let p = portico_to(
        nginx,
        "accept_proxy_protocol = true\nproxy_protocol = \"v1\"\n",
    );
    let (v2_port, v1_port) = (free_port(), free_port());
    let Some(_h) = haproxy(
        dir.path(),
        "send",
        &format!(
            "listen v2\n  mode tcp\n  bind 127.0.0.1:{v2_port}\n  server portico {} send-proxy-v2\n\
             listen v1\n  mode tcp\n  bind 127.0.0.1:{v1_port}\n  server portico {} send-proxy\n",
            p.addr(0),
            p.addr(0)
        ),
    ) else {
        return;
    };
    for port in [v2_port, v1_port] {
        let front: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        wait_listening(front);
        for from in ["127.0.0.2", "127.0.0.3"] {
            let body = http_get_from(from, front);
            assert!(
                body.starts_with(&format!("{from}:")),
                "port {port} from {from}: nginx saw {body:?}"
            );
        }
    }
    // Portico's log names the real clients, not HAProxy's address (lines are written when
    // HAProxy closes its connections, and by the log's writer thread: poll).
    let named = |lines: &str, ip: &str| lines.lines().any(|l| l.starts_with(&format!("{ip}:")));
    let lines = p.log_until(|l| named(l, "127.0.0.2") && named(l, "127.0.0.3"));
    assert!(named(&lines, "127.0.0.2"), "{lines}");
    assert!(named(&lines, "127.0.0.3"), "{lines}");
}

/// Behind HAProxy every connection comes from 127.0.0.1; persistence must still tell the
/// two real clients apart (round robin gives them different servers and each keeps its own).
#[test]
fn persistence_uses_the_address_from_the_proxy_header() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b, c) = (
        Backend::spawn("a"),
        Backend::spawn("b"),
        Backend::spawn("c"),
    );
    let p = Portico::start(&format!(
        "[upstreams.pool]\nservers = {}\n[[streams]]\nlisten = [\"127.0.0.1:0\"]\nupstream = \"pool\"\naccept_proxy_protocol = true\npersistence = \"50s\"\n",
        servers(&[&a, &b, &c])
    ));
    let port = free_port();
    let Some(_h) = haproxy(
        dir.path(),
        "persist",
        &format!(
            "listen v2\n  mode tcp\n  bind 127.0.0.1:{port}\n  server portico {} send-proxy-v2\n",
            p.addr(0)
        ),
    ) else {
        return;
    };
    let front: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    wait_listening(front);
    // wait_listening's probe may have reached Portico without a header: it is closed.
    let t2 = tag_from("127.0.0.2", front);
    let t3 = tag_from("127.0.0.3", front);
    assert_ne!(t2, t3);
    for _ in 0..5 {
        assert_eq!(tag_from("127.0.0.2", front), t2);
        assert_eq!(tag_from("127.0.0.3", front), t3);
    }
}

#[test]
fn bad_headers_are_closed_without_affecting_others() {
    let a = Backend::spawn("a");
    let p = portico_to(a.addr, "accept_proxy_protocol = true\n");
    // A good connection (v1 header written by hand), kept open throughout.
    let mut good = connect_from("127.0.0.1".parse().unwrap(), p.addr(0));
    good.write_all(b"PROXY TCP4 192.0.2.7 127.0.0.1 4000 6201\r\n")
        .unwrap();
    assert_eq!(exchange(&mut good), "a");
    let bad: &[&[u8]] = &[
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        b"PROXY TCP4 192.0.2.7 127.0.0.1 04000 6201\r\n",
        b"PROXY TCP4 192.0.2.7 127.0.0.1 4000 6201\n",
        b"\r\n\r\n\x00\r\nQUIT\n\x31\x11\x00\x0c",
        b"\r\n\r\n\x00\r\nQUIT\n\x21\x11\xff\xff",
        b"PROXY TCP4 192.0.2.7", // then silence: closed at header_timeout (1s)
    ];
    let start = Instant::now();
    let clients: Vec<std::net::TcpStream> = bad
        .iter()
        .map(|h| {
            let mut s = connect_from("127.0.0.1".parse().unwrap(), p.addr(0));
            s.write_all(h).unwrap();
            s
        })
        .collect();
    for (mut s, h) in clients.into_iter().zip(bad) {
        let mut buf = [0u8; 64];
        let n = s.read(&mut buf).unwrap_or(0);
        assert_eq!(n, 0, "{:?} got an answer", String::from_utf8_lossy(h));
    }
    assert!(start.elapsed() < Duration::from_secs(4));
    // The good one is unaffected; no bad one reached the backend.
    assert_eq!(exchange_raw(&mut good), b"more");
    assert_eq!(a.accepted.load(std::sync::atomic::Ordering::SeqCst), 1);
    drop(good);
    let lines = p.log_lines(bad.len() + 1);
    assert_eq!(
        lines
            .iter()
            .filter(|l| l.contains("end=bad_proxy_header"))
            .count(),
        bad.len(),
        "{lines:#?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("192.0.2.7:4000 ") && l.contains("end=client_closed")),
        "{lines:#?}"
    );
}

fn exchange_raw(s: &mut std::net::TcpStream) -> Vec<u8> {
    s.write_all(b"more").unwrap();
    let mut back = [0u8; 4];
    s.read_exact(&mut back).unwrap();
    back.to_vec()
}

/// With `[server] trusted_proxies` set, a PROXY header is believed only from a listed peer:
/// from 127.0.0.2 (listed) the header's client is used; from 127.0.0.3 the same header is
/// refused, the connection closed before anything reaches the server
/// (`end=untrusted_proxy`).
#[test]
fn proxy_headers_only_from_trusted_proxies() {
    let a = Backend::spawn("a");
    let p = Portico::start_server(
        "trusted_proxies = [\"127.0.0.2/32\"]",
        &format!(
            "[upstreams.peer]\nservers = [\"{}\"]\n[[streams]]\nlisten = [\"127.0.0.1:0\"]\nupstream = \"peer\"\naccept_proxy_protocol = true\n",
            a.addr
        ),
    );
    let header = b"PROXY TCP4 192.0.2.9 127.0.0.1 4100 6201\r\n";
    let mut trusted = connect_from("127.0.0.2".parse().unwrap(), p.addr(0));
    trusted.write_all(header).unwrap();
    assert_eq!(exchange(&mut trusted), "a");
    let mut untrusted = connect_from("127.0.0.3".parse().unwrap(), p.addr(0));
    // Closed unread: the writes may already meet the closed socket.
    let _ = untrusted.write_all(header);
    let _ = untrusted.write_all(b"more");
    let mut buf = [0u8; 16];
    assert_eq!(
        untrusted.read(&mut buf).unwrap_or(0),
        0,
        "untrusted got an answer"
    );
    drop(trusted);
    let lines = p.log_lines(2);
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("127.0.0.3:") && l.contains("end=untrusted_proxy")),
        "{lines:#?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("192.0.2.9:4100 ") && l.contains("end=client_closed")),
        "{lines:#?}"
    );
    assert_eq!(a.accepted.load(std::sync::atomic::Ordering::SeqCst), 1);
}
