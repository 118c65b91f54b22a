//! `portico import`, end to end with the real binaries: nginx (the one `scripts/test.sh`
//! installs) serves an nginx configuration from `crates/portico-import/tests/data`, then
//! Portico serves what `portico import nginx` made of it, on the same ports, in front of the
//! same `portico echo`-style backends; every request gets the same answer from both (status,
//! chosen backend, the request line the backend saw, body, `Location`).
//!
//! How a configuration is made runnable on a test machine and both servers are run:
//! [`crate::import_harness`].
use std::collections::BTreeMap;
use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use crate::import_harness::{data, prepare, run_both};
use crate::support::http::Conn;
use crate::support::net::local;
use crate::support::process::{portico, run_bounded};
use crate::support::{TempDir, report};

const TEST: &str = "import";
const T20: Duration = Duration::from_secs(20);

/// How a request's answers are compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Everything must be equal.
    Same,
    /// The same except the backend: each proxy keeps sending this group to one backend
    /// (nginx's and Portico's hashes pick different ones).
    Sticky,
    /// A WebSocket upgrade, then one echoed message.
    WebSocket,
}

#[derive(Debug, Clone, Copy)]
struct Req {
    host: &'static str,
    path: &'static str,
    mode: Mode,
}

const fn get(host: &'static str, path: &'static str) -> Req {
    Req {
        host,
        path,
        mode: Mode::Same,
    }
}

const fn sticky(host: &'static str, path: &'static str) -> Req {
    Req {
        host,
        path,
        mode: Mode::Sticky,
    }
}

const fn ws(host: &'static str, path: &'static str) -> Req {
    Req {
        host,
        path,
        mode: Mode::WebSocket,
    }
}

/// One answer, as compared.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Answer {
    status: u16,
    backend: Option<String>,
    location: Option<String>,
    body: Option<String>,
}

/// One plain HTTP request on a new connection.
fn http_answer(addr: SocketAddr, req: &Req) -> Answer {
    let mut conn = Conn::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    let head = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
        req.path, req.host
    );
    let resp = conn
        .request_raw(&head, b"")
        .unwrap_or_else(|e| panic!("GET {} {}: {e}", req.host, req.path));
    let text = resp.text();
    // nginx's own error and redirect pages are HTML that Portico does not copy.
    let own_page = text.contains("<center>nginx") || (300..400).contains(&resp.status);
    let body = (!own_page)
        .then(|| {
            text.replace(" HTTP/1.1\n", "\n")
                .replace(" HTTP/1.0\n", "\n")
        })
        .filter(|b| !b.is_empty() || resp.status < 400);
    Answer {
        status: resp.status,
        backend: resp.header("x-echo-name").map(String::from),
        location: resp.header("location").map(String::from),
        body,
    }
}

/// A WebSocket upgrade, then one masked text frame and its echo.
fn ws_answer(addr: SocketAddr, req: &Req) -> Answer {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let head = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        req.path, req.host
    );
    s.write_all(head.as_bytes()).expect("write");
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        if s.read(&mut byte).expect("read head") == 0 {
            break;
        }
        buf.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&buf).to_string();
    let status: u16 = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let backend = head
        .lines()
        .find_map(|l| {
            l.strip_prefix("x-echo-name: ")
                .or(l.strip_prefix("X-Echo-Name: "))
        })
        .map(|v| v.trim().to_string());
    let mut body = None;
    if status == 101 {
        let msg = b"hello through the proxy";
        let mask = [1u8, 2, 3, 4];
        let mut frame = vec![0x81, 0x80 | msg.len() as u8];
        frame.extend_from_slice(&mask);
        frame.extend(msg.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        s.write_all(&frame).expect("write frame");
        let mut hdr = [0u8; 2];
        s.read_exact(&mut hdr).expect("frame head");
        let mut payload = vec![0u8; usize::from(hdr[1] & 0x7f)];
        s.read_exact(&mut payload).expect("frame payload");
        body = Some(String::from_utf8_lossy(&payload).to_string());
    }
    Answer {
        status,
        backend,
        location: None,
        body,
    }
}

/// Ask every request, each on its own connection to its (rewritten) port.
fn answers(reqs: &[(u16, Req)]) -> Vec<Answer> {
    reqs.iter()
        .map(|(port, r)| {
            let addr = local(*port);
            match r.mode {
                Mode::WebSocket => ws_answer(addr, r),
                _ => http_answer(addr, r),
            }
        })
        .collect()
}

/// Run `file` under nginx, then its conversion under Portico, and compare the answers.
/// `requests` name the original listen port of each request.
fn side_by_side(file: &str, extra_files: &[(&str, &str)], requests: &[(&str, Req)]) {
    let Some(nginx) = portico_testkit::require_peer("nginx") else {
        return;
    };
    let p = prepare(file, extra_files);
    let reqs: Vec<(u16, Req)> = requests
        .iter()
        .map(|(port, r)| (p.port(port), *r))
        .collect();
    let (from_nginx, from_portico, converted) = run_both(&nginx, &p, |_| answers(&reqs));
    compare(file, &reqs, &from_nginx, &from_portico, &converted);
    report(&format!(
        "{TEST}: {file}: {} requests, same answers from nginx and Portico",
        reqs.len()
    ));
}

fn compare(file: &str, reqs: &[(u16, Req)], nginx: &[Answer], portico: &[Answer], toml: &str) {
    // Path -> the backends nginx and Portico chose for it.
    type Picks = (Vec<Option<String>>, Vec<Option<String>>);
    let mut sticky: BTreeMap<&str, Picks> = BTreeMap::new();
    for (((_, r), a), b) in reqs.iter().zip(nginx).zip(portico) {
        // nginx's own error pages are not compared (Portico answers with short text).
        let mut b = b.clone();
        if a.body.is_none() {
            b.body = None;
        }
        let b = &b;
        let (a, b) = if r.mode == Mode::Sticky {
            let e = sticky.entry(r.path).or_default();
            e.0.push(a.backend.clone());
            e.1.push(b.backend.clone());
            assert!(
                a.backend.is_some(),
                "{file}: {} {}: no backend answered nginx: {a:?}",
                r.host,
                r.path
            );
            let strip = |x: &Answer| Answer {
                backend: None,
                body: x
                    .body
                    .as_ref()
                    .map(|b| b.lines().skip(1).collect::<Vec<_>>().join("\n")),
                ..x.clone()
            };
            (strip(a), strip(b))
        } else {
            (a.clone(), b.clone())
        };
        assert_eq!(
            a, b,
            "{file}: Host {} GET {}: nginx (left) and Portico (right) answer differently\n--- converted\n{toml}",
            r.host, r.path
        );
    }
    for (path, (a, b)) in sticky {
        assert!(
            a.windows(2).all(|w| w[0] == w[1]),
            "{file}: nginx moved {path}: {a:?}"
        );
        assert!(
            b.windows(2).all(|w| w[0] == w[1]),
            "{file}: Portico moved {path}: {b:?}"
        );
    }
}

#[test]
fn seed_002_websocket_lb_side_by_side() {
    let h = "localhost";
    side_by_side(
        "seed-002-nginx.conf",
        &[],
        &[
            ("80", get(h, "/")),
            ("80", get(h, "/a?b=1")),
            ("80", get(h, "/c")),
            ("80", ws(h, "/chat")),
        ],
    );
}

#[test]
fn seed_003_http_lb_side_by_side() {
    let h = "192.168.99.104";
    let reqs: Vec<(&str, Req)> = (0..6).map(|_| ("6101", get(h, "/x"))).collect();
    side_by_side("seed-003-node1-nginx.conf", &[], &reqs);
}

#[test]
fn seed_004_static_side_by_side() {
    side_by_side(
        "seed-004-nginx.conf",
        &[("html/50x.html", "<h1>error page</h1>\n")],
        &[
            ("88", get("localhost", "/")),
            ("88", get("localhost", "/index.html")),
            ("88", get("localhost", "/50x.html")),
            ("88", get("localhost", "/missing")),
        ],
    );
}

#[test]
fn ws_chat_side_by_side() {
    let h = "chat.example.org";
    side_by_side(
        "ws-chat.conf",
        &[],
        &[
            ("80", ws(h, "/socket/")),
            ("80", sticky(h, "/socket/info")),
            ("80", sticky(h, "/socket/info")),
            ("80", get(h, "/api/a")),
            ("80", get(h, "/api/b")),
            ("80", get(h, "/api/c")),
            ("80", get(h, "/healthz")),
            ("80", get(h, "/")),
            ("80", get(h, "/nope.txt")),
        ],
    );
}

#[test]
fn locations_side_by_side() {
    let h = "www.example.org";
    side_by_side(
        "locations.conf",
        &[("www/srv/assets/static/a.png", "PNG\n")],
        &[
            ("80", get(h, "/")),
            ("80", get(h, "/robots.txt")),
            ("80", get(h, "/static/a.png")),
            ("80", get(h, "/img/photo.JPG")),
            ("80", get(h, "/legacy/abc")),
            ("80", get(h, "/app/x?y=1")),
            ("80", get(h, "/app/admin/users")),
            ("80", get(h, "/.htpasswd")),
            ("80", get(h, "/other/page")),
        ],
    );
}

#[test]
fn redirects_side_by_side() {
    side_by_side(
        "redirects.conf",
        &[],
        &[
            ("80", get("old.example.com", "/a/b?c=1")),
            ("80", get("legacy.example.com", "/x?y=2")),
            ("80", get("www.example.com", "/blog/post?id=3")),
            ("80", get("www.example.com", "/gone")),
            ("80", get("www.example.com", "/teapot")),
            ("80", get("www.example.com", "/")),
        ],
    );
}

#[test]
fn vhosts_side_by_side() {
    side_by_side(
        "vhosts.conf",
        &[],
        &[
            ("80", get("unknown.example", "/")),
            ("80", get("example.com", "/a")),
            ("80", get("www.example.com", "/b")),
            ("80", get("x.tenants.example.com", "/c")),
            ("80", get("example.net", "/d")),
            ("80", get("deep.www.example.net", "/e")),
        ],
    );
}

#[test]
fn api_gateway_side_by_side() {
    let h = "gateway.example.com";
    side_by_side(
        "api-gateway.conf",
        &[],
        &[
            ("8000", get(h, "/users/42?full=1")),
            ("8000", get(h, "/orders/7")),
            ("8000", get(h, "/uploads")),
            ("8000", get(h, "/uploads/file")),
            ("8000", get(h, "/nothing")),
        ],
    );
}

#[test]
fn upstream_params_side_by_side() {
    let mut reqs: Vec<(&str, Req)> = (0..14).map(|_| ("8080", get("any", "/w/"))).collect();
    reqs.extend((0..4).map(|_| ("8080", get("any", "/f/"))));
    reqs.extend((0..3).map(|_| ("8080", sticky("any", "/u/same"))));
    reqs.push(("8080", get("any", "/s/")));
    side_by_side("upstream-params.conf", &[], &reqs);
}

#[test]
fn includes_side_by_side() {
    side_by_side(
        "includes/nginx.conf",
        &[],
        &[
            ("80", get("app.internal", "/")),
            ("80", get("app.internal", "/x")),
            ("80", get("unknown.example", "/y")),
            ("80", get("docs.internal", "/")),
            ("80", get("docs.internal", "/api/v1")),
        ],
    );
}

#[test]
fn static_site_side_by_side() {
    side_by_side(
        "static-site.conf",
        &[("www/srv/static/assets/site.css", "body { color: #333 }\n")],
        &[
            ("8081", get("static.example.com", "/")),
            ("8081", get("static.example.com", "/index.html")),
            ("8081", get("static.example.com", "/assets/site.css")),
            ("8081", get("static.example.com", "/assets/missing.css")),
        ],
    );
}

/// The CLI: report on stderr with FILE:LINE, TOML on stdout, exit 1 for a source it
/// cannot parse, and no silent overwrite of an existing file.
#[test]
fn cli_reports_writes_and_checks() {
    let dir = TempDir::new("import-cli");
    let src = data("policies.conf");
    let out = run_bounded(
        "import-stdout",
        portico(
            dir.path(),
            &["import", "nginx", src.to_str().expect("utf-8")],
        ),
        dir.path(),
        T20,
        Duration::ZERO,
    );
    assert!(out.success(), "{out:?}");
    assert!(out.stdout.contains("[[sites]]"), "{}", out.stdout);
    assert!(
        out.stderr
            .contains("policies.conf:20: approximated: `limit_req zone=api"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr
            .contains("policies.conf:34: not carried over: `fastcgi_pass"),
        "{}",
        out.stderr
    );
    assert!(
        out.stdout
            .contains("limit_rate = { rate = \"10r/s\", burst = 20 }")
    );
    assert!(out.stderr.contains("the converted configuration is valid"));

    let target = dir.path().join("out.toml");
    let t = target.to_str().expect("utf-8");
    let ka = data("lvs-keepalived.conf");
    let args = ["import", "keepalived", ka.to_str().expect("utf-8"), "-o", t];
    let first = run_bounded(
        "import-o",
        portico(dir.path(), &args),
        dir.path(),
        T20,
        Duration::ZERO,
    );
    assert!(first.success(), "{first:?}");
    let check = run_bounded(
        "check",
        portico(dir.path(), &["check", "-c", t]),
        dir.path(),
        T20,
        Duration::ZERO,
    );
    assert!(
        check.success(),
        "portico check on the written file: {check:?}"
    );
    let again = run_bounded(
        "import-o-again",
        portico(dir.path(), &args),
        dir.path(),
        T20,
        Duration::ZERO,
    );
    assert_eq!(
        again.code(),
        2,
        "an existing OUT is not replaced without --force: {again:?}"
    );

    let bad = dir.write("bad.conf", "http {\n  server {\n    listen 80\n  }\n");
    let out = run_bounded(
        "import-bad",
        portico(
            dir.path(),
            &["import", "nginx", bad.to_str().expect("utf-8")],
        ),
        dir.path(),
        T20,
        Duration::ZERO,
    );
    assert_eq!(out.code(), 1, "{out:?}");
    assert!(out.stderr.contains("bad.conf:4:"), "{}", out.stderr);
}
