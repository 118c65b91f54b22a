//! `auth_basic` with an htpasswd file written by Apache's own `htpasswd -B` (Debian
//! `apache2-utils`): 401 with `WWW-Authenticate` without or with wrong credentials
//! (WebSocket upgrades included), the request passes with the right ones and its
//! `Authorization` is not forwarded unless `forward_auth`; a reload re-reads the file.

#![allow(clippy::unwrap_used)]

use crate::common;

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use base64::Engine as _;
use common::*;
use portico_testkit::proxy::TestProxy;

/// `htpasswd -nbB USER PASSWORD`: the line Apache's tool writes, or `None` (a failure
/// under `CI=true`) when it is not installed.
fn htpasswd_line(user: &str, password: &str) -> Option<String> {
    let found = [
        "/usr/bin/htpasswd",
        "/usr/sbin/htpasswd",
        "/usr/local/bin/htpasswd",
    ]
    .into_iter()
    .find(|p| Path::new(p).is_file());
    let Some(bin) = found else {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!(
                "htpasswd (apache2-utils) is required under CI=true (scripts/test.sh installs it)"
            );
        }
        eprintln!("SKIP: htpasswd (apache2-utils) not installed");
        return None;
    };
    let out = Command::new(bin)
        .args(["-nbB", user, password])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let line = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert!(line.starts_with(&format!("{user}:$2y$")), "{line}");
    Some(line)
}

fn config(backend: std::net::SocketAddr) -> String {
    format!(
        r#"
[upstreams.app]
servers = ["{backend}"]

[[sites]]
listen = ["127.0.0.1:0"]
auth_basic = {{ realm = "staff", users_file = "htpasswd" }}
routes = [
  {{ path = "/", proxy = "app" }},
  {{ path = "/fwd", proxy = "app", strip_prefix = true, auth_basic = {{ realm = "fwd", users_file = "htpasswd", forward_auth = true }} }},
]
"#
    )
}

fn basic(user: &str, password: &str) -> String {
    let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    format!("Authorization: Basic {token}\r\n")
}

fn send(addr: std::net::SocketAddr, path: &str, extra: &str) -> Resp {
    let mut c = Conn::open(addr);
    c.send(format!("GET {path} HTTP/1.1\r\nHost: example.com\r\n{extra}\r\n").as_bytes());
    c.read_response(false)
}

#[test]
fn basic_auth_with_an_htpasswd_b_file() {
    let (Some(alice), Some(bob)) = (
        htpasswd_line("alice", "s3cret"),
        htpasswd_line("bob", "hunter2"),
    ) else {
        return;
    };
    let backend = echo("b1");
    let proxy = TestProxy::builder(&config(backend.addr))
        .file("htpasswd", format!("{alice}\n"))
        .start()
        .unwrap();
    let addr = proxy.addr();

    let r = send(addr, "/_echo/headers", "");
    assert_eq!(r.status, 401);
    assert_eq!(
        r.header("www-authenticate"),
        Some("Basic realm=\"staff\", charset=\"UTF-8\"")
    );
    assert_eq!(send(addr, "/x", &basic("alice", "wrong")).status, 401);
    assert_eq!(
        send(addr, "/x", &basic("bob", "hunter2")).status,
        401,
        "not in the file yet"
    );

    let r = send(addr, "/_echo/headers", &basic("alice", "s3cret"));
    assert_eq!(r.status, 200);
    assert!(
        !r.text().contains("authorization"),
        "not forwarded: {}",
        r.text()
    );
    let r = send(addr, "/fwd/_echo/headers", &basic("alice", "s3cret"));
    assert_eq!(r.status, 200);
    assert!(r.text().contains("authorization: Basic "), "{}", r.text());

    // A WebSocket upgrade needs the credentials too.
    let upgrade = "Upgrade: websocket\r\nConnection: Upgrade\r\n\
                   Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n";
    assert_eq!(send(addr, "/ws", upgrade).status, 401);
    let with = format!("{upgrade}{}", basic("alice", "s3cret"));
    assert_eq!(send(addr, "/ws", &with).status, 101);

    // A reload reads the file again: bob is in, alice is out.
    std::fs::write(proxy.dir().join("htpasswd"), format!("{bob}\n")).unwrap();
    let path = proxy.dir().join("portico.toml");
    let toml = std::fs::read_to_string(&path).unwrap();
    let cfg = portico_config::parse(&toml, &path).unwrap();
    proxy
        .server()
        .reload(Arc::new(cfg), proxy.registry())
        .unwrap();
    assert_eq!(send(addr, "/x", &basic("bob", "hunter2")).status, 200);
    assert_eq!(send(addr, "/x", &basic("alice", "s3cret")).status, 401);
}

#[test]
fn other_hash_schemes_are_a_config_error_naming_the_line() {
    let Some(alice) = htpasswd_line("alice", "s3cret") else {
        return;
    };
    let backend = echo("b1");
    let err = TestProxy::builder(&config(backend.addr))
        .file(
            "htpasswd",
            format!("{alice}\ncarol:$apr1$abcdefgh$0123456789abcdefghijkl\n"),
        )
        .start()
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(
            "htpasswd:2: user `carol` has a MD5 ($apr1$) hash; only bcrypt ($2y$) is supported"
        ),
        "{err}"
    );
    assert!(
        err.contains("portico.toml:7:46: "),
        "names the key's position: {err}"
    );
}
