//! Running an nginx configuration and its conversion side by side (for [`crate::import`]
//! and [`crate::import_policy`]).
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
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::support::TempDir;
use crate::support::net::{free_port, local, wait_closed};
use crate::support::process::{ChildGuard, portico, run_bounded};
use portico_testkit::echo::EchoServer;
use regex::{Captures, Regex};

const T20: Duration = Duration::from_secs(20);

/// A file of the importer's test data (`crates/portico-import/tests/data`).
pub(crate) fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../portico-import/tests/data")
        .join(name)
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

fn wait_listening(child: &mut ChildGuard, addrs: &[SocketAddr]) {
    for a in addrs {
        child.wait_for_port(*a, T20);
    }
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
