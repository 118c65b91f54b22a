//! `portico import` carries nginx's protections: the seed-000 nginx configuration (rate limit
//! on the WebSocket balancer, basic auth on the bts_tools site, both over TLS) and
//! `policies.conf` (limits, access rules, basic auth, gzip, error pages) run under real nginx
//! and then, converted, under Portico, on the same ports (see `import.rs` for what is
//! rewritten to run here), and the protections answer alike: no credentials 401, wrong ones
//! 401, good ones 200 (a bcrypt file made with `htpasswd -B`); a denied address 403; past
//! the burst refused (nginx 503, its default `limit_req_status`; Portico 429, the documented
//! difference, reported by the importer); gzip when the client takes it, not otherwise.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::import_harness::{data, prepare, run_both};
use crate::support::http::Conn;
use crate::support::net::local;
use crate::support::report;
use portico_testkit::require_peers;

const TEST: &str = "import_policy";

/// `alice` / `secret` in `ROOT/htpasswd`, where the rewritten configurations look for it.
fn make_users(htpasswd: &Path, root: &Path) {
    let out = Command::new(htpasswd)
        .args(["-B", "-b", "-c"])
        .arg(root.join("htpasswd"))
        .args(["alice", "secret"])
        .output()
        .expect("run htpasswd");
    assert!(out.status.success(), "htpasswd -B: {out:?}");
    let text = std::fs::read_to_string(root.join("htpasswd")).expect("read htpasswd");
    assert!(text.starts_with("alice:$2y$"), "not bcrypt: {text}");
}

/// Start one HTTPS request with curl (any certificate, `host` resolved to loopback); the
/// child prints `STATUS WWW-AUTHENTICATE`.
fn curl(curl: &Path, port: u16, host: &str, path: &str, user: Option<&str>) -> std::process::Child {
    let mut cmd = Command::new(curl);
    cmd.args(["-sk", "--max-time", "20", "-o", "/dev/null"])
        .args(["-w", "%{http_code} %header{www-authenticate}"])
        .arg("--resolve")
        .arg(format!("{host}:{port}:127.0.0.1"))
        .arg(format!("https://{host}:{port}{path}"));
    if let Some(u) = user {
        cmd.args(["-u", u]);
    }
    cmd.stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("run curl")
}

fn finish(child: std::process::Child) -> String {
    let out = child.wait_with_output().expect("curl output");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// What seed 000's protections answered.
#[derive(Debug)]
struct Seed000 {
    no_credentials: String,
    wrong_password: String,
    good_credentials: String,
    /// Statuses of 8 upgrade-less requests sent at once to the rate-limited balancer.
    burst: Vec<u16>,
    /// How long starting the eight took (the bucket drains 1 per second meanwhile).
    spread: Duration,
}

#[test]
fn seed_000_protections_side_by_side() {
    let Some(peers) = require_peers(&["nginx", "curl", "htpasswd"]) else {
        return;
    };
    let (nginx, curl_bin, htpasswd) = (&peers[0], &peers[1], &peers[2]);
    let p = prepare("seed-000-nginx.conf", &[]);
    make_users(htpasswd, p.dir.path());
    let port = p.port("443");
    let (from_nginx, from_portico, toml) = run_both(nginx, &p, |_| {
        let tools = "tools.example.net";
        let no_credentials = finish(curl(curl_bin, port, tools, "/", None));
        let wrong_password = finish(curl(curl_bin, port, tools, "/", Some("alice:wrong")));
        let good_credentials = finish(curl(curl_bin, port, tools, "/", Some("alice:secret")));
        // `limit_req zone=ws burst=5` at 1r/s: 8 at once, so that the bucket cannot drain.
        let start = Instant::now();
        let children: Vec<_> = (0..8)
            .map(|_| curl(curl_bin, port, "ws.example.net", "/", None))
            .collect();
        let spread = start.elapsed();
        let burst = children
            .into_iter()
            .map(|c| {
                finish(c)
                    .split(' ')
                    .next()
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0)
            })
            .collect();
        Seed000 {
            no_credentials,
            wrong_password,
            good_credentials,
            burst,
            spread,
        }
    });
    let ctx = format!("nginx: {from_nginx:?}\nPortico: {from_portico:?}\n--- converted\n{toml}");
    for a in [&from_nginx, &from_portico] {
        // Portico adds `, charset="UTF-8"` (RFC 7617) to the challenge.
        let challenge = "401 Basic realm=\"bts_tools\"";
        assert!(a.no_credentials.starts_with(challenge), "{ctx}");
        assert!(a.wrong_password.starts_with(challenge), "{ctx}");
        assert!(a.good_credentials.starts_with("200"), "{ctx}");
    }
    // Past the burst: nginx refuses with 503 (no limit_req_status in the seed), Portico
    // with 429 (the importer reports the difference). Both let burst + 1 through, plus what
    // the bucket drains (1r/s) while the eight start.
    for (a, refused) in [(&from_nginx, 503), (&from_portico, 429)] {
        let served = a.burst.iter().filter(|s| **s == 200).count();
        let no = a.burst.iter().filter(|s| **s == refused).count();
        assert_eq!(served + no, 8, "only 200 or {refused}: {ctx}");
        let drained = a.spread.as_secs() as usize + 1;
        assert!(
            served >= 6 && served <= 6 + drained,
            "served {served}: {ctx}"
        );
        assert!(no >= 1, "nothing refused: {ctx}");
    }
    assert!(
        toml.contains("limit_rate = { rate = \"1r/s\", burst = 5 }"),
        "{ctx}"
    );
    report(&format!(
        "{TEST}: seed-000: auth 401/401/200 on both; burst of 8: nginx {:?}, Portico {:?}",
        from_nginx.burst, from_portico.burst
    ));
}

/// One plain HTTP request: (status, Content-Encoding, body starts with).
fn http(addr: SocketAddr, host: &str, path: &str, extra: &str) -> (u16, Option<String>, String) {
    let mut conn = Conn::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    let head = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n{extra}Connection: close\r\n\r\n");
    let resp = conn
        .request_raw(&head, b"")
        .unwrap_or_else(|e| panic!("GET {path}: {e}"));
    let body: String = String::from_utf8_lossy(&resp.body)
        .chars()
        .take(40)
        .collect();
    (
        resp.status,
        resp.header("content-encoding").map(String::from),
        body,
    )
}

#[derive(Debug)]
struct Policies {
    denied: u16,
    denied_with_credentials: u16,
    gzip: (u16, Option<String>),
    plain: (u16, Option<String>),
    /// Statuses of requests one after the other to /v1/ (10r/s, burst=20, nodelay), until
    /// three were refused (at most 200).
    burst: Vec<u16>,
    /// How long they took (the bucket drains 10 per second meanwhile).
    took: Duration,
    refused_body: String,
}

#[test]
fn policies_side_by_side() {
    let Some(peers) = require_peers(&["nginx", "htpasswd"]) else {
        return;
    };
    let (nginx, htpasswd) = (&peers[0], &peers[1]);
    assert!(data("policies.conf").exists());
    let p = prepare(
        "policies.conf",
        &[
            ("conf/fastcgi_params", ""),
            ("www/usr/share/nginx/html/50x.html", "<h1>sorry</h1>\n"),
        ],
    );
    make_users(htpasswd, p.dir.path());
    let addr = local(p.port("80"));
    let host = "api.example.io";
    let (from_nginx, from_portico, toml) = run_both(nginx, &p, |_| {
        // /admin/: allow 10.0.0.0/8; deny all; then basic auth. Loopback is denied first.
        let denied = http(addr, host, "/admin/x", "").0;
        let auth = "Authorization: Basic YWxpY2U6c2VjcmV0\r\n"; // alice:secret
        let denied_with_credentials = http(addr, host, "/admin/x", auth).0;
        let (s, enc, _) = http(addr, host, "/v1/gz", "Accept-Encoding: gzip\r\n");
        let gzip = (s, enc);
        let (s, enc, _) = http(addr, host, "/v1/plain", "");
        let plain = (s, enc);
        let mut burst = Vec::new();
        let mut refused_body = String::new();
        let start = Instant::now();
        while burst.len() < 200 && burst.iter().filter(|s| **s != 200).count() < 3 {
            let (s, _, body) = http(addr, host, "/v1/b", "");
            if s != 200 && refused_body.is_empty() {
                refused_body = body;
            }
            burst.push(s);
        }
        let took = start.elapsed();
        Policies {
            denied,
            denied_with_credentials,
            gzip,
            plain,
            burst,
            took,
            refused_body,
        }
    });
    let ctx = format!("nginx: {from_nginx:?}\nPortico: {from_portico:?}\n--- converted\n{toml}");
    for a in [&from_nginx, &from_portico] {
        assert_eq!(a.denied, 403, "{ctx}");
        assert_eq!(a.denied_with_credentials, 403, "{ctx}");
        assert_eq!(a.gzip, (200, Some("gzip".to_string())), "{ctx}");
        assert_eq!(a.plain, (200, None), "{ctx}");
    }
    // 21 at once (burst=20 nodelay; the gzip and plain requests to /v1/ took two of them),
    // plus what drains (10r/s) while the requests go, then refused.
    for (a, refused) in [(&from_nginx, 503), (&from_portico, 429)] {
        let served = a.burst.iter().take_while(|s| **s == 200).count();
        let drained = (a.took.as_millis() / 100) as usize + 1;
        assert!(
            served >= 19 && served <= 19 + drained,
            "served {served}: {ctx}"
        );
        assert!(a.burst[served..].contains(&refused), "{ctx}");
        assert!(a.burst.iter().all(|s| *s == 200 || *s == refused), "{ctx}");
    }
    // nginx's 503 gets its error_page; the same page is Portico's for its own 502 and 503.
    assert_eq!(from_nginx.refused_body, "<h1>sorry</h1>\n", "{ctx}");
    assert!(toml.contains("error_pages = { 502 = "), "{ctx}");
    report(&format!(
        "{TEST}: policies.conf: 403 with and without credentials, gzip, burst: nginx served {} then 503, Portico {} then 429",
        from_nginx.burst.iter().filter(|s| **s == 200).count(),
        from_portico.burst.iter().filter(|s| **s == 200).count()
    ));
}
