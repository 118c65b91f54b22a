//! `portico import`, end to end with the real binaries: nginx (the one `scripts/test.sh`
//! installs) serves an nginx configuration from `crates/portico-import/tests/data`, then
//! Portico serves what `portico import nginx` made of it, on the same ports, in front of the
//! same `portico echo`-style backends; every request gets the same answer from both (status,
//! chosen backend, the request line the backend saw, body, `Location`).
//!
//! The configurations run as written except for what a test machine needs: listen ports
//! become free loopback ports, backend addresses become local echo servers named after the
//! original address, absolute `root`/`alias` folders move under the test's temp folder,
//! `user`/`pid`/`error_log` go (given on nginx's command line), `access_log` paths point into
//! the temp folder, nginx Plus parameters (`slow_start=`, `sticky`) go, TLS certificates
//! become one test certificate for every `server_name`, `auth_basic_user_file` becomes the
//! test's `htpasswd`, `proxy_pass https://` becomes `http://` (the echo backends speak plain
//! HTTP), and nginx runs one
//! worker (each nginx worker keeps its own round-robin position; one worker makes the
//! sequence of chosen backends comparable). nginx runs in the foreground (`daemon off`) with
//! `-p TEMP` and is stopped by its PID. Under CI a missing nginx fails the test.

use std::collections::{BTreeMap, HashMap};
use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::support::http::Conn;
use crate::support::net::{free_port, local, wait_closed};
use crate::support::process::{ChildGuard, portico, run_bounded};
use crate::support::{TempDir, report};
use portico_testkit::echo::EchoServer;
use regex::{Captures, Regex};

const TEST: &str = "import";
const T20: Duration = Duration::from_secs(20);

pub(crate) fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../portico-import/tests/data")
        .join(name)
}

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

/// A configuration made runnable, and what it needs.
pub(crate) struct Prepared {
    pub(crate) dir: TempDir,
    conf: PathBuf,
    /// Original listen port -> the loopback port it became.
    ports: BTreeMap<String, u16>,
    _backends: Vec<EchoServer>,
}

impl Prepared {
    fn addrs(&self) -> Vec<SocketAddr> {
        self.ports.values().map(|p| local(*p)).collect()
    }

    /// The loopback port that replaced the original `port`.
    pub(crate) fn port(&self, port: &str) -> u16 {
        self.ports[port]
    }
}

/// What the rewriting of a configuration's files found and decided.
struct Rewriter {
    root: PathBuf,
    ports: BTreeMap<String, u16>,
    backends: HashMap<String, u16>,
    upstreams: Vec<String>,
    folders: Vec<(String, String)>,
}

impl Rewriter {
    fn backend(&mut self, addr: &str) -> String {
        let key = if addr.contains(':') {
            addr.to_string()
        } else {
            format!("{addr}:80")
        };
        let port = *self.backends.entry(key).or_insert_with(free_port);
        format!("127.0.0.1:{port}")
    }

    /// Rewrite one file's text (see the module doc).
    fn rewrite(&mut self, text: &str) -> String {
        let re = |r: &str| Regex::new(r).expect("regex");
        let mut text = re(r"(?m)^\s*(user|pid|error_log|worker_processes)\s[^;]*;")
            .replace_all(text, "")
            .into_owned();
        // nginx Plus parameters the open-source nginx refuses.
        text = re(r"(?m)^\s*sticky\s[^;]*;")
            .replace_all(&text, "")
            .into_owned();
        text = re(r"\s+slow_start=\S+?;")
            .replace_all(&text, ";")
            .into_owned();
        text = text.replace("include /etc/nginx/mime.types;", "include mime.types;");
        text = text.replace("proxy_pass https://", "proxy_pass http://");
        let cert = self.root.join("test-cert.pem").display().to_string();
        let key = self.root.join("test-key.pem").display().to_string();
        text = re(r"\b(ssl_certificate|ssl_certificate_key)\s+[^;\s]+\s*;")
            .replace_all(&text, |c: &Captures| {
                let file = if &c[1] == "ssl_certificate" {
                    &cert
                } else {
                    &key
                };
                format!("{} {file};", &c[1])
            })
            .into_owned();
        let users = self.root.join("htpasswd").display().to_string();
        text = re(r"\bauth_basic_user_file\s+[^;\s]+\s*;")
            .replace_all(&text, format!("auth_basic_user_file {users};").as_str())
            .into_owned();
        let log = self.root.join("access.log").display().to_string();
        text = re(r"access_log\s+([^\s;]+)([^;]*);")
            .replace_all(&text, |c: &Captures| {
                if &c[1] == "off" {
                    c[0].to_string()
                } else {
                    format!("access_log {log}{};", &c[2])
                }
            })
            .into_owned();
        text = re(r"listen\s+([^\s;]+)([^;]*);")
            .replace_all(&text, |c: &Captures| {
                let spec = &c[1];
                if spec.starts_with('[') {
                    return String::new(); // IPv6 twins of IPv4 listeners: one is enough here.
                }
                let port = spec.rsplit(':').next().unwrap_or(spec).to_string();
                let new = *self.ports.entry(port).or_insert_with(free_port);
                format!("listen 127.0.0.1:{new}{};", &c[2])
            })
            .into_owned();
        text = re(r"\bserver\s+([^\s;{]+)([^;{]*);")
            .replace_all(&text, |c: &Captures| {
                if c[1].starts_with("unix:") {
                    return String::new();
                }
                format!("server {}{};", self.backend(&c[1]), &c[2])
            })
            .into_owned();
        text = re(r"proxy_pass\s+http://([^/;\s]+)")
            .replace_all(&text, |c: &Captures| {
                if self.upstreams.iter().any(|u| u == &c[1]) {
                    c[0].to_string()
                } else {
                    format!("proxy_pass http://{}", self.backend(&c[1]))
                }
            })
            .into_owned();
        let www = self.root.join("www");
        re(r"\b(root|alias)\s+([^;\s]+)\s*;")
            .replace_all(&text, |c: &Captures| {
                let p = &c[2];
                let folder = if p.starts_with('/') {
                    format!("{}{p}", www.display())
                } else {
                    self.root.join(p).display().to_string()
                };
                self.folders.push((folder.clone(), p.to_string()));
                format!("{} {folder};", &c[1])
            })
            .into_owned()
    }
}

/// Copy `file` (and, for a file in a subfolder, that whole folder: its includes) into a temp
/// prefix as `conf/...`, rewritten to run here; start its backends.
pub(crate) fn prepare(file: &str, extra_files: &[(&str, &str)]) -> Prepared {
    let dir = TempDir::new("import");
    let root = dir.path().to_path_buf();
    let conf_dir = root.join("conf");
    std::fs::create_dir_all(&conf_dir).expect("conf dir");
    for d in [&conf_dir, &root] {
        std::fs::copy(data("mime.types"), d.join("mime.types")).expect("mime.types");
    }
    // The files to rewrite: the file itself, or every file of its folder.
    let src = data(file);
    let mut files: Vec<(PathBuf, PathBuf)> = Vec::new();
    match Path::new(file)
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
    {
        Some(folder) => collect(
            &data(folder.to_str().expect("utf-8")),
            &conf_dir,
            &mut files,
        ),
        None => files.push((src.clone(), conf_dir.join(file))),
    }
    let texts: Vec<String> = files
        .iter()
        .map(|(from, _)| std::fs::read_to_string(from).expect("read data file"))
        .collect();
    let upstreams = texts
        .iter()
        .flat_map(|t| {
            Regex::new(r"upstream\s+(\S+)\s*\{")
                .expect("re")
                .captures_iter(t)
                .map(|c| c[1].to_string())
                .collect::<Vec<_>>()
        })
        .collect();
    let mut rw = Rewriter {
        root: root.clone(),
        ports: BTreeMap::new(),
        backends: HashMap::new(),
        upstreams,
        folders: Vec::new(),
    };
    for ((_, to), text) in files.iter().zip(&texts) {
        let mut out = rw.rewrite(text);
        if to
            .file_name()
            .is_some_and(|n| n == "nginx.conf" || to.parent() == Some(&conf_dir))
            && !out.contains("events")
            && (out.contains("http") || out.contains("stream"))
        {
            out = format!("events {{}}\n{out}");
        }
        std::fs::create_dir_all(to.parent().expect("parent")).expect("dir");
        std::fs::write(to, out).expect("write conf");
    }
    for (folder, original) in &rw.folders {
        std::fs::create_dir_all(folder).expect("root folder");
        let index = Path::new(folder).join("index.html");
        if !index.exists() {
            std::fs::write(&index, format!("index of {original}\n")).expect("index");
        }
    }
    if texts.iter().any(|t| t.contains("ssl_certificate")) {
        let names: Vec<String> = texts
            .iter()
            .flat_map(|t| {
                Regex::new(r"server_name\s+([^;]+);")
                    .expect("re")
                    .captures_iter(t)
                    .flat_map(|c| {
                        c[1].split_whitespace()
                            .map(String::from)
                            .collect::<Vec<_>>()
                    })
                    .collect::<Vec<_>>()
            })
            .filter(|n| n.contains('.') && !n.starts_with('~'))
            .collect();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        let leaf = portico_testkit::certs::TestCa::new("import test CA").leaf(&names);
        std::fs::write(root.join("test-cert.pem"), &leaf.chain_pem).expect("cert");
        std::fs::write(root.join("test-key.pem"), &leaf.key_pem).expect("key");
    }
    for (rel, content) in extra_files {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("dir");
        std::fs::write(&p, content).expect("extra file");
    }
    let conf = conf_dir.join(Path::new(file).file_name().expect("file name"));
    let backends = rw
        .backends
        .into_iter()
        .map(|(name, port)| EchoServer::start(local(port), &name).expect("echo backend"))
        .collect();
    Prepared {
        dir,
        conf,
        ports: rw.ports,
        _backends: backends,
    }
}

/// Every file under `from`, paired with its place under `to`.
fn collect(from: &Path, to: &Path, out: &mut Vec<(PathBuf, PathBuf)>) {
    for e in std::fs::read_dir(from).expect("read data folder") {
        let e = e.expect("entry");
        let target = to.join(e.file_name());
        if e.path().is_dir() {
            collect(&e.path(), &target, out);
        } else {
            out.push((e.path(), target));
        }
    }
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

fn wait_listening(child: &mut ChildGuard, addrs: &[SocketAddr]) {
    for a in addrs {
        child.wait_for_port(*a, T20);
    }
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

/// Serve the prepared configuration with nginx and ask `probe`, then convert it with
/// `portico import nginx` (which must check it valid), serve the conversion with Portico on
/// the same ports and ask `probe` again: (nginx's answers, Portico's, the converted TOML).
/// `probe` gets `true` for Portico.
pub(crate) fn run_both<T>(nginx: &Path, p: &Prepared, probe: impl Fn(bool) -> T) -> (T, T, String) {
    let dir = p.dir.path();
    // nginx, in the foreground.
    let pid_file = dir.join("nginx.pid");
    let mut cmd = Command::new(nginx);
    cmd.arg("-p")
        .arg(dir)
        .arg("-c")
        .arg(&p.conf)
        .arg("-e")
        .arg(dir.join("error.log"))
        .arg("-g")
        .arg(format!(
            "daemon off; worker_processes 1; pid {};",
            pid_file.display()
        ));
    let mut n = ChildGuard::spawn("nginx", cmd, dir);
    wait_listening(&mut n, &p.addrs());
    let from_nginx = probe(false);
    n.signal("QUIT");
    if n.wait_timeout(T20).is_none() {
        n.kill();
    }
    for a in p.addrs() {
        wait_closed(a, T20);
    }
    // The conversion, checked like `portico check`.
    let toml = dir.join("portico.toml");
    let conf = p.conf.to_str().expect("utf-8");
    let out = run_bounded(
        "portico-import",
        portico(
            dir,
            &[
                "import",
                "nginx",
                conf,
                "-o",
                toml.to_str().expect("utf-8"),
                "--nginx-prefix",
                dir.to_str().expect("utf-8"),
            ],
        ),
        dir,
        T20,
        Duration::ZERO,
    );
    assert!(out.success(), "portico import {conf} failed: {out:?}");
    assert!(
        out.stderr.contains("configuration is valid"),
        "{}",
        out.stderr
    );
    // The converted config keeps the admin API's default address; tests run side by side,
    // so this one turns it off (appended: a table the importer never writes).
    let mut text = std::fs::read_to_string(&toml).expect("read the converted config");
    text.push_str("\n[admin]\nlisten = \"off\"\n");
    std::fs::write(&toml, text).expect("write the converted config");
    let mut run = ChildGuard::spawn(
        "portico-run",
        portico(dir, &["run", "-c", toml.to_str().expect("utf-8")]),
        dir,
    );
    wait_listening(&mut run, &p.addrs());
    let from_portico = probe(true);
    run.signal("TERM");
    let _ = run.wait_timeout(T20);
    let converted = std::fs::read_to_string(&toml).unwrap_or_default();
    (from_nginx, from_portico, converted)
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
