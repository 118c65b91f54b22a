//! The real client address behind a trusted proxy (`[server] trusted_proxies`), with a real
//! nginx in front of Portico: nginx connects from 127.0.0.5 (`proxy_bind`), the trusted
//! address, and appends its client to `X-Forwarded-For`. Access rules, rate limits and the
//! `X-Real-IP` / `X-Forwarded-For` sent upstream use the client nginx names; headers sent
//! by an untrusted client (directly, or spoofed through nginx) are not believed.

#![allow(clippy::unwrap_used)]

use crate::common;

use std::io::{BufReader, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use portico_testkit::proxy::TestProxy;
use socket2::{Domain, Socket, Type};

fn peer(program: &str) -> Option<PathBuf> {
    for dir in ["/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin"] {
        let p = Path::new(dir).join(program);
        if p.is_file() {
            return Some(p);
        }
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{program} is required under CI=true (scripts/test.sh installs it)");
    }
    eprintln!("SKIP: {program} not installed");
    None
}

/// A child process killed (by PID) and reaped on drop.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_listening(addr: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        assert!(Instant::now() < deadline, "{addr} never listened");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// nginx on 127.0.0.1:PORT proxying to `portico` from 127.0.0.5, as a trusted proxy does.
fn nginx_in_front(dir: &Path, portico: SocketAddr) -> Option<(Proc, SocketAddr)> {
    let nginx = peer("nginx")?;
    let listen = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let d = dir.display();
    let conf = format!(
        "daemon off;\nmaster_process off;\nworker_processes 1;\npid {d}/nginx.pid;\n\
         error_log {d}/nginx-error.log;\nevents {{ worker_connections 64; }}\n\
         http {{\n  access_log off;\n  client_body_temp_path {d}/t1;\n  proxy_temp_path {d}/t2;\n\
         fastcgi_temp_path {d}/t3;\n  uwsgi_temp_path {d}/t4;\n  scgi_temp_path {d}/t5;\n\
         server {{\n    listen {listen};\n    location / {{\n      proxy_pass http://{portico};\n\
         proxy_bind 127.0.0.5;\n      proxy_set_header Host $host;\n\
         proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;\n    }}\n  }}\n}}\n"
    );
    let path = dir.join("nginx.conf");
    std::fs::write(&path, conf).unwrap();
    let child = Command::new(nginx)
        .args(["-c", path.to_str().unwrap(), "-p", dir.to_str().unwrap()])
        .args(["-e", &format!("{d}/nginx-error.log")])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let proc = Proc(child);
    wait_listening(listen);
    Some((proc, listen))
}

/// One HTTP/1.1 request from the address `from`, with extra header lines; (status, body).
fn request_from(from: &str, to: SocketAddr, path: &str, extra: &str) -> (u16, String) {
    let ip: IpAddr = from.parse().unwrap();
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    socket.bind(&SocketAddr::new(ip, 0).into()).unwrap();
    socket.connect(&to.into()).unwrap();
    let mut s: TcpStream = socket.into();
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: example.com\r\n{extra}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut c = Conn {
        reader: BufReader::new(s),
    };
    let r = c.read_response(false);
    let mut rest = Vec::new();
    let _ = c.reader.read_to_end(&mut rest);
    (r.status, r.text())
}

/// The value of `name` in the echo backend's `/_echo/headers` listing.
fn echoed(body: &str, name: &str) -> String {
    body.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}: ")))
        .unwrap_or_else(|| panic!("no {name} in {body}"))
        .to_string()
}

#[test]
fn behind_nginx_the_client_it_names_is_the_client_and_spoofs_are_not_believed() {
    let backend = echo("b1");
    let proxy = TestProxy::start(&format!(
        r#"
[server]
trusted_proxies = ["127.0.0.5"]

[upstreams.app]
servers = ["{}"]

[[sites]]
listen = ["127.0.0.1:0"]
routes = [
  {{ path = "/", proxy = "app" }},
  {{ path = "/no7", respond = "in\n", access = ["deny 127.0.0.7", "allow all"] }},
  {{ path = "/only9", respond = "in\n", access = ["allow 127.0.0.9", "deny all"] }},
  {{ path = "/limited", respond = "in\n", limit_rate = {{ rate = "1r/m" }} }},
]
"#,
        backend.addr
    ))
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let Some((_nginx, front)) = nginx_in_front(dir.path(), proxy.addr()) else {
        return;
    };

    // Through nginx: Portico sees 127.0.0.5, trusts it, and the client is 127.0.0.7.
    let (s, body) = request_from("127.0.0.7", front, "/_echo/headers", "");
    assert_eq!(s, 200, "{body}");
    assert_eq!(echoed(&body, "x-real-ip"), "127.0.0.7");
    assert_eq!(echoed(&body, "x-forwarded-for"), "127.0.0.7, 127.0.0.7");
    assert_eq!(request_from("127.0.0.7", front, "/no7", "").0, 403);
    assert_eq!(request_from("127.0.0.8", front, "/no7", "").0, 200);

    // A client spoofing X-Forwarded-For through nginx: nginx appends the real address,
    // and the walk from the right stops at it (127.0.0.7 is not a trusted proxy).
    let (_, body) = request_from(
        "127.0.0.7",
        front,
        "/_echo/headers",
        "X-Forwarded-For: 127.0.0.9\r\n",
    );
    assert_eq!(echoed(&body, "x-real-ip"), "127.0.0.7");
    let spoof = "X-Forwarded-For: 127.0.0.9\r\nX-Real-IP: 127.0.0.9\r\n";
    assert_eq!(request_from("127.0.0.7", front, "/only9", spoof).0, 403);

    // Directly from an untrusted address: its headers are not believed.
    let (_, body) = request_from("127.0.0.8", proxy.addr(), "/_echo/headers", spoof);
    assert_eq!(echoed(&body, "x-real-ip"), "127.0.0.8");
    assert_eq!(
        request_from("127.0.0.8", proxy.addr(), "/only9", spoof).0,
        403
    );

    // Rate limits count per real client: two clients behind the same nginx connection
    // source have their own counts.
    assert_eq!(request_from("127.0.0.7", front, "/limited", "").0, 200);
    assert_eq!(request_from("127.0.0.7", front, "/limited", "").0, 429);
    assert_eq!(request_from("127.0.0.8", front, "/limited", "").0, 200);
}
