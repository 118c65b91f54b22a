//! `accept_proxy_protocol` on site listeners, with the real binary behind real proxies:
//! HAProxy (`mode tcp`, `send-proxy` and `send-proxy-v2`) and nginx
//! (`stream { proxy_protocol on; }`) in front of Portico, both connecting from 127.0.0.5,
//! the only address in `[server] trusted_proxies`. Clients bind to 127.0.0.2 and 127.0.0.3:
//! the client the PROXY header names drives the access rule (127.0.0.3 is denied: 403),
//! the `X-Real-IP` / `X-Forwarded-For` the backend receives and the access log. A TLS site
//! gets its header before the ClientHello (HAProxy v2, curl through it). A PROXY header sent
//! straight from 127.0.0.1 (not a trusted proxy) is refused: the connection is closed and
//! nothing reaches the backend.
//!
//! Under `CI=true` a missing haproxy, nginx (with its stream module) or curl fails the test.

use crate::support;

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use portico_testkit::require_peer;
use support::TempDir;
use support::http::Conn;
use support::net::{free_port, local};
use support::pebble_clients::curl;
use support::process::{ChildGuard, start_portico, start_portico_echo};

const T10: Duration = Duration::from_secs(10);
/// Debian's `libnginx-mod-stream` (scripts/test.sh installs it).
const NGINX_STREAM_MODULE: &str = "/usr/lib/nginx/modules/ngx_stream_module.so";

fn ip(s: &str) -> IpAddr {
    s.parse().expect("ip")
}

/// `GET /_echo/headers` from `from` to `front`: (status, the header lines the echo backend
/// received, lower-cased names).
fn headers_from(from: &str, front: SocketAddr) -> (u16, Vec<String>) {
    let mut c = Conn::connect_from(ip(from), front).expect("connect");
    let r = c
        .request_raw(
            "GET /_echo/headers HTTP/1.1\r\nHost: app.test\r\nX-Forwarded-For: 6.6.6.6\r\n\r\n",
            b"",
        )
        .expect("answer");
    (r.status, r.text().lines().map(str::to_string).collect())
}

fn has(lines: &[String], line: &str) -> bool {
    lines.iter().any(|l| l == line)
}

fn config(plain: SocketAddr, tls: SocketAddr, echo: SocketAddr) -> String {
    format!(
        r#"[server]
access_log = "access.log"
trusted_proxies = ["127.0.0.5/32"]

[admin]
listen = "off"

[upstreams.app]
servers = ["{echo}"]

[[sites]]
listen = ["{plain}"]
accept_proxy_protocol = true
access = ["deny 127.0.0.3", "allow all"]
routes = [{{ path = "/", proxy = "app" }}]

[[sites]]
listen = ["{tls}"]
hosts = ["a.test"]
tls = {{ cert = "a.pem", key = "a.key" }}
http_redirect = false
accept_proxy_protocol = true
routes = [{{ path = "/", proxy = "app" }}]
"#
    )
}

fn start_haproxy(haproxy: &Path, dir: &TempDir, body: &str) -> ChildGuard {
    let conf = format!(
        "global\n  maxconn 100\ndefaults\n  mode tcp\n  timeout connect 2s\n  timeout client 10s\n  timeout server 10s\n{body}"
    );
    let path = dir.write("haproxy.cfg", conf);
    let mut cmd = Command::new(haproxy);
    cmd.args(["-f", path.to_str().expect("utf-8"), "-db"]);
    ChildGuard::spawn("haproxy", cmd, dir.path())
}

fn start_nginx(nginx: &Path, dir: &TempDir, listen: SocketAddr, portico: SocketAddr) -> ChildGuard {
    let d = dir.path().display();
    let conf = format!(
        "load_module {NGINX_STREAM_MODULE};\nevents {{ worker_connections 64; }}\n\
         stream {{\n  server {{\n    listen {listen};\n    proxy_pass {portico};\n\
         proxy_protocol on;\n    proxy_bind 127.0.0.5;\n  }}\n}}\n"
    );
    let path = dir.write("nginx.conf", conf);
    let mut cmd = Command::new(nginx);
    cmd.arg("-p")
        .arg(dir.path())
        .arg("-c")
        .arg(&path)
        .arg("-e")
        .arg(format!("{d}/nginx-error.log"))
        .arg("-g")
        .arg(format!(
            "daemon off; master_process off; pid {d}/nginx.pid;"
        ));
    ChildGuard::spawn("nginx", cmd, dir.path())
}

#[test]
fn site_listeners_take_the_client_from_haproxy_and_nginx_proxy_headers() {
    let (Some(haproxy), Some(nginx), Some(_curl)) = (
        require_peer("haproxy"),
        require_peer("nginx"),
        require_peer("curl"),
    ) else {
        return;
    };
    if !Path::new(NGINX_STREAM_MODULE).exists() {
        portico_testkit::peers::skip_or_fail(&format!(
            "nginx's stream module ({NGINX_STREAM_MODULE}, Debian libnginx-mod-stream) is not installed"
        ));
        return;
    }
    let dir = TempDir::new("pp-sites");
    let leaf = portico_testkit::certs::TestCa::new("pp CA").leaf(&["a.test"]);
    dir.write("a.pem", &leaf.chain_pem);
    dir.write("a.key", &leaf.key_pem);
    let echo = local(free_port());
    let mut _echo = start_portico_echo(echo, "b1", dir.path());
    _echo.wait_for_port(echo, T10);
    let (plain, tls) = (local(free_port()), local(free_port()));
    let cfg = dir.write("portico.toml", config(plain, tls, echo));
    let mut portico = start_portico(&cfg, dir.path());
    portico.wait_for_port(plain, T10);
    portico.wait_for_port(tls, T10);

    let (h1, h2, h3, n) = (
        local(free_port()),
        local(free_port()),
        local(free_port()),
        local(free_port()),
    );
    let mut ha = start_haproxy(
        &haproxy,
        &dir,
        &format!(
            "listen v1\n  bind {h1}\n  server portico {plain} send-proxy source 127.0.0.5\n\
             listen v2\n  bind {h2}\n  server portico {plain} send-proxy-v2 source 127.0.0.5\n\
             listen tls\n  bind {h3}\n  server portico {tls} send-proxy-v2 source 127.0.0.5\n"
        ),
    );
    let mut ng = start_nginx(&nginx, &dir, n, plain);
    for front in [h1, h2, h3] {
        ha.wait_for_port(front, T10);
    }
    ng.wait_for_port(n, T10);

    for (what, front) in [
        ("haproxy send-proxy", h1),
        ("haproxy send-proxy-v2", h2),
        ("nginx proxy_protocol", n),
    ] {
        let (status, lines) = headers_from("127.0.0.2", front);
        assert_eq!(status, 200, "{what}: {lines:#?}");
        assert!(has(&lines, "x-real-ip: 127.0.0.2"), "{what}: {lines:#?}");
        // The client's own X-Forwarded-For is not believed (127.0.0.2 is no trusted
        // proxy): the chain sent on starts at the PROXY header's client.
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with("x-forwarded-for: ") && l.ends_with("127.0.0.2")),
            "{what}: {lines:#?}"
        );
        // The access rule sees the real client, not the proxy's 127.0.0.5.
        let (status, _) = headers_from("127.0.0.3", front);
        assert_eq!(status, 403, "{what}: 127.0.0.3 is denied");
    }

    // TLS: the header comes before the ClientHello.
    let out = curl(
        &[("a.test", h3.port())],
        &[
            "-k",
            "--interface",
            "127.0.0.2",
            &format!("https://a.test:{}/_echo/headers", h3.port()),
        ],
        dir.path(),
    );
    assert!(out.success(), "curl through haproxy to TLS: {out:?}");
    assert!(
        out.stdout.lines().any(|l| l == "x-real-ip: 127.0.0.2"),
        "{}",
        out.stdout
    );

    // A PROXY header straight from 127.0.0.1, not a trusted proxy: closed, unanswered.
    let mut direct = TcpStream::connect(plain).expect("connect");
    direct.set_read_timeout(Some(T10)).expect("read timeout");
    let _ = direct.write_all(
        b"PROXY TCP4 192.0.2.1 127.0.0.1 4000 80\r\nGET /_echo/headers HTTP/1.1\r\nHost: a\r\n\r\n",
    );
    let mut buf = [0u8; 64];
    assert_eq!(
        direct.read(&mut buf).unwrap_or(0),
        0,
        "untrusted PROXY header answered"
    );

    // The access log names the real clients, never the proxies' 127.0.0.5 nor the claimed
    // 192.0.2.1.
    let log_path = dir.path().join("access.log");
    let log = support::eventually(T10, "access log lines", || {
        let text = std::fs::read_to_string(&log_path).ok()?;
        (text.lines().filter(|l| l.starts_with("127.0.0.2 ")).count() >= 4
            && text.lines().filter(|l| l.starts_with("127.0.0.3 ")).count() >= 3)
            .then_some(text)
    });
    assert!(
        !log.lines()
            .any(|l| l.starts_with("127.0.0.5 ") || l.starts_with("192.0.2.1 ")),
        "{log}"
    );
    assert!(
        log.lines()
            .filter(|l| l.starts_with("127.0.0.3 "))
            .all(|l| l.contains("\" 403 ")),
        "{log}"
    );
}
