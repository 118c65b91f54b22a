//! Shared helpers of the stream integration tests: start the stream server from config
//! text, tagged TCP echo backends on 127.0.0.1:0, clients bound to a chosen loopback
//! address (127.0.0.2, 127.0.0.3... work on Linux without setup), and external peers.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use portico_balance::Registry;
use portico_net::Plumbing;
use portico_stream::{RunningStreams, StreamOptions, StreamServer};

/// A running stream server and the folder holding its config and access log.
pub struct Portico {
    pub running: RunningStreams,
    pub dir: tempfile::TempDir,
    /// The plumbing it was started on, when not its own (shut down on drop).
    pub plumbing: Option<Plumbing>,
}

/// The config text the helpers start from: `server` (more `[server]` keys, one per line)
/// and `toml` after the defaults.
pub fn config_text(server: &str, toml: &str) -> String {
    format!(
        "[admin]\nlisten = \"off\"\n[server]\naccess_log = \"access.log\"\nheader_timeout = \"1s\"\nshutdown_grace = \"2s\"\n{server}\n{toml}"
    )
}

/// Parse `text` as the file `dir/portico.toml` (written there).
pub fn parse_in(dir: &Path, text: &str) -> portico_config::Config {
    let path = dir.join("portico.toml");
    std::fs::write(&path, text).unwrap();
    portico_config::parse(text, &path).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

impl Portico {
    /// Start from `toml` (an `[admin] listen = "off"` and a file access log are added).
    pub fn start(toml: &str) -> Portico {
        Portico::start_with(toml, &StreamOptions::default(), |_| {})
    }

    /// [`Portico::start`] with `options`, after `prepare` wrote what the config names
    /// (relative paths) into the config's folder.
    pub fn start_with(toml: &str, options: &StreamOptions, prepare: impl FnOnce(&Path)) -> Portico {
        let dir = tempfile::tempdir().unwrap();
        prepare(dir.path());
        let config = parse_in(dir.path(), &config_text("", toml));
        let running = StreamServer::start_with(Arc::new(config), Registry::new(), options).unwrap();
        Portico {
            running,
            dir,
            plumbing: None,
        }
    }

    /// Start alone from `toml` with more `[server]` keys (`server`, one per line).
    pub fn start_server(server: &str, toml: &str) -> Portico {
        let dir = tempfile::tempdir().unwrap();
        let config = parse_in(dir.path(), &config_text(server, toml));
        let running = StreamServer::start(Arc::new(config), Registry::new()).unwrap();
        Portico {
            running,
            dir,
            plumbing: None,
        }
    }

    /// Start on plumbing made by `plumbing` from the config's `[server]` (as the binary
    /// does), e.g. with a resolver of the test's own.
    pub fn start_on(
        toml: &str,
        plumbing: impl FnOnce(&portico_config::ServerConfig) -> Plumbing,
    ) -> Portico {
        let dir = tempfile::tempdir().unwrap();
        let config = parse_in(dir.path(), &config_text("", toml));
        let plumbing = plumbing(&config.server);
        let running = StreamServer::start_on(
            Arc::new(config),
            Registry::new(),
            &StreamOptions::default(),
            &plumbing,
        )
        .unwrap();
        Portico {
            running,
            dir,
            plumbing: Some(plumbing),
        }
    }

    /// Bound address of listener `i` (in file order).
    pub fn addr(&self, i: usize) -> SocketAddr {
        self.running.bound_addrs()[i].1
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("access.log")).unwrap_or_default()
    }

    /// Wait (up to 10 s) until the access log's text satisfies `done`; returns it.
    pub fn log_until(&self, done: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let text = self.log();
            if done(&text) || Instant::now() > deadline {
                return text;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Wait until the access log has at least `n` lines; returns them.
    pub fn log_lines(&self, n: usize) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let lines: Vec<String> = self.log().lines().map(String::from).collect();
            if lines.len() >= n || Instant::now() > deadline {
                return lines;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Portico {
    fn drop(&mut self) {
        self.running.stop_now();
        if let Some(p) = &self.plumbing {
            p.shutdown_and_join();
        }
    }
}

/// A TCP backend that greets each connection with `TAG\n` and then echoes.
pub struct Backend {
    pub addr: SocketAddr,
    pub tag: String,
    pub accepted: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl Backend {
    pub fn spawn(tag: &str) -> Backend {
        Backend::spawn_at("127.0.0.1", tag)
    }

    /// A backend on `ip` (a loopback address), port chosen by the kernel.
    pub fn spawn_at(ip: &str, tag: &str) -> Backend {
        let listener = TcpListener::bind((ip, 0)).unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let accepted = Arc::new(AtomicUsize::new(0));
        let (s, a, t) = (stop.clone(), accepted.clone(), tag.to_string());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if s.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(mut conn) = conn else { continue };
                a.fetch_add(1, Ordering::SeqCst);
                let t = t.clone();
                std::thread::spawn(move || {
                    let _ = conn.write_all(format!("{t}\n").as_bytes());
                    let mut buf = [0u8; 16384];
                    loop {
                        match conn.read(&mut buf) {
                            Ok(0) | Err(_) => return,
                            Ok(n) => {
                                if conn.write_all(&buf[..n]).is_err() {
                                    return;
                                }
                            }
                        }
                    }
                });
            }
        });
        Backend {
            addr,
            tag: tag.to_string(),
            accepted,
            stop,
        }
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
    }
}

/// A port on 127.0.0.1 with nothing listening (bound, then released).
pub fn dead_port() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

/// A free port on 127.0.0.1 for an external peer (bound, then released).
pub fn free_port() -> u16 {
    dead_port().port()
}

/// Connect to `to` from `from` (a loopback address such as 127.0.0.2).
pub fn connect_from(from: IpAddr, to: SocketAddr) -> TcpStream {
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.bind(&SocketAddr::new(from, 0).into()).unwrap();
    sock.connect_timeout(&to.into(), Duration::from_secs(5))
        .unwrap();
    let s: TcpStream = sock.into();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s
}

/// Read the backend's tag, check one echo round trip, return the tag.
pub fn exchange(s: &mut TcpStream) -> String {
    let mut r = BufReader::new(s.try_clone().unwrap());
    let mut tag = String::new();
    r.read_line(&mut tag).unwrap();
    s.write_all(b"ping").unwrap();
    let mut back = [0u8; 4];
    r.read_exact(&mut back).unwrap();
    assert_eq!(&back, b"ping");
    tag.trim_end().to_string()
}

/// One connection from `from`: the backend's tag.
pub fn tag_from(from: &str, to: SocketAddr) -> String {
    let mut s = connect_from(from.parse().unwrap(), to);
    exchange(&mut s)
}

pub fn servers(backends: &[&Backend]) -> String {
    let list: Vec<String> = backends.iter().map(|b| format!("\"{}\"", b.addr)).collect();
    format!("[{}]", list.join(", "))
}

/// An external program, or `None` with a printed reason (a failure under `CI=true`).
pub fn peer(program: &str) -> Option<PathBuf> {
    for dir in ["/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin"] {
        let p = Path::new(dir).join(program);
        if p.is_file() {
            return Some(p);
        }
    }
    if matches!(std::env::var("CI").as_deref(), Ok("true" | "1")) {
        panic!("{program} is required under CI=true (scripts/test.sh installs it)");
    }
    eprintln!("SKIP: {program} not installed");
    None
}

/// Start `nginx` (a path from [`peer`]) in the foreground from `dir/nginx.conf`: one worker,
/// pid, error log and temp paths in `dir`, access log off, `servers` (its `server` blocks)
/// inside the `http` block.
pub fn spawn_nginx(nginx: &Path, dir: &Path, servers: &str) -> Proc {
    let d = dir.display();
    let conf = format!(
        "daemon off;\nmaster_process off;\nworker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/nginx-error.log;\n\
         events {{ worker_connections 64; }}\n\
         http {{\n  access_log off;\n  client_body_temp_path {d}/t1;\n  proxy_temp_path {d}/t2;\n  fastcgi_temp_path {d}/t3;\n  uwsgi_temp_path {d}/t4;\n  scgi_temp_path {d}/t5;\n{servers}}}\n"
    );
    let path = dir.join("nginx.conf");
    std::fs::write(&path, conf).unwrap();
    spawn(
        nginx,
        &[
            "-c",
            path.to_str().unwrap(),
            "-p",
            dir.to_str().unwrap(),
            "-e",
            &format!("{d}/nginx-error.log"),
        ],
    )
}

/// A child process killed (by PID) and reaped on drop.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn spawn(program: &Path, args: &[&str]) -> Proc {
    Proc(
        Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap(),
    )
}

/// Wait until `addr` accepts TCP connections.
pub fn wait_listening(addr: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        assert!(Instant::now() < deadline, "{addr} never listened");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Send an HTTP/1.0 GET through `to` from `from`; the response body.
pub fn http_get_from(from: &str, to: SocketAddr) -> String {
    let mut s = connect_from(from.parse().unwrap(), to);
    s.write_all(b"GET / HTTP/1.0\r\nHost: t\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out.split("\r\n\r\n").nth(1).unwrap_or("").to_string()
}

/// Poll `cond` until true or panic after `timeout`.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "condition not met within {timeout:?}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}
