//! Clients for the ACME scenario tests: blocking rustls connections to 127.0.0.1 with the
//! scenario's host name as SNI (the names resolve nowhere else, so connecting to 127.0.0.1
//! with SNI is what `curl --resolve` does), verified against pebble's issuing root; a
//! minimal RFC 6455 client over such a connection; `curl --resolve` for HTTPS and the
//! plain-HTTP side.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use portico_config::UpstreamTls;
use portico_tls::rustls::pki_types::{CertificateDer, ServerName};
use portico_tls::rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};

use crate::support::net::local;
use crate::support::process::{RunOutput, run_bounded};

/// A TLS connection to Portico.
pub type Tls = StreamOwned<ClientConnection, TcpStream>;

/// Roots from a PEM text (pebble's issuing root).
pub fn roots(pem: &str) -> RootCertStore {
    let mut store = RootCertStore::empty();
    for der in portico_tls::pem::parse_chain(pem.as_bytes(), Path::new("roots")).expect("PEM") {
        store.add(der).expect("root");
    }
    store
}

/// A client trusting only `roots`, offering `alpn` (e.g. `["http/1.1"]`).
pub fn verifying(roots: RootCertStore, alpn: &[&str]) -> Arc<ClientConfig> {
    let mut config = ClientConfig::builder_with_provider(portico_tls::default_provider())
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
    Arc::new(config)
}

/// A client that accepts any certificate (to see what is served once it has expired).
pub fn unverified() -> Arc<ClientConfig> {
    let tls = UpstreamTls {
        server_name: None,
        verify: false,
        ca_file: None,
        client_cert: None,
        client_key: None,
    };
    portico_tls::client_config(&tls, Path::new(".")).expect("unverified client config")
}

/// Connect to 127.0.0.1:`port` with SNI `name` and complete the handshake (verification
/// included): the error says why it failed.
pub fn connect(port: u16, name: &str, config: &Arc<ClientConfig>) -> Result<Tls, String> {
    let tcp = TcpStream::connect_timeout(&local(port), Duration::from_secs(5))
        .map_err(|e| format!("connect :{port}: {e}"))?;
    tcp.set_read_timeout(Some(Duration::from_secs(10))).ok();
    tcp.set_write_timeout(Some(Duration::from_secs(10))).ok();
    let server_name = ServerName::try_from(name.to_string()).map_err(|e| e.to_string())?;
    let conn = ClientConnection::new(config.clone(), server_name).map_err(|e| e.to_string())?;
    let mut tls = StreamOwned::new(conn, tcp);
    while tls.conn.is_handshaking() {
        tls.conn
            .complete_io(&mut tls.sock)
            .map_err(|e| format!("TLS handshake for {name}: {e}"))?;
    }
    Ok(tls)
}

/// The leaf certificate Portico serves for `name` on `port`, verified with `config`.
pub fn served_leaf(
    port: u16,
    name: &str,
    config: &Arc<ClientConfig>,
) -> Result<CertificateDer<'static>, String> {
    let tls = connect(port, name, config)?;
    tls.conn
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|c| c.clone().into_owned())
        .ok_or_else(|| "no peer certificate".to_string())
}

/// A WebSocket client (RFC 6455, client frames masked) over any stream.
pub struct Ws<S: Read + Write> {
    s: S,
    buf: Vec<u8>,
}

/// RFC 6455's sample key and the accept value it must produce (section 1.3).
const SAMPLE_KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
const SAMPLE_ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

impl<S: Read + Write> Ws<S> {
    /// Send the upgrade request for `/` with `Host: host` and read the 101.
    pub fn handshake(mut s: S, host: &str) -> Result<Ws<S>, String> {
        let req = format!(
            "GET / HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: {SAMPLE_KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        );
        s.write_all(req.as_bytes())
            .map_err(|e| format!("write upgrade: {e}"))?;
        let mut buf = Vec::new();
        let end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let mut chunk = [0u8; 4096];
            let n = s.read(&mut chunk).map_err(|e| format!("read 101: {e}"))?;
            if n == 0 {
                return Err(format!(
                    "closed before the upgrade answer: {:?}",
                    String::from_utf8_lossy(&buf)
                ));
            }
            buf.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&buf[..end]).to_string();
        if !head.starts_with("HTTP/1.1 101") || !head.contains(SAMPLE_ACCEPT) {
            return Err(format!("no WebSocket upgrade: {head:?}"));
        }
        buf.drain(..end);
        Ok(Ws { s, buf })
    }

    /// Send one text message (masked).
    pub fn send_text(&mut self, text: &str) -> Result<(), String> {
        let payload = text.as_bytes();
        let mut frame = vec![0x81u8];
        match payload.len() {
            n if n < 126 => frame.push(0x80 | n as u8),
            n if n <= 0xffff => {
                frame.push(0x80 | 126);
                frame.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                frame.push(0x80 | 127);
                frame.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        let mask: [u8; 4] = rand_mask();
        frame.extend_from_slice(&mask);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        self.s
            .write_all(&frame)
            .and_then(|()| self.s.flush())
            .map_err(|e| format!("write frame: {e}"))
    }

    fn fill(&mut self, want: usize) -> Result<(), String> {
        while self.buf.len() < want {
            let mut chunk = [0u8; 16384];
            let n = self
                .s
                .read(&mut chunk)
                .map_err(|e| format!("read frame: {e}"))?;
            if n == 0 {
                return Err("connection closed".into());
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
        Ok(())
    }

    /// The next text message (pings and pongs are skipped; a close is an error).
    pub fn recv_text(&mut self) -> Result<String, String> {
        loop {
            self.fill(2)?;
            let (b0, b1) = (self.buf[0], self.buf[1]);
            let (mut len, mut at) = (usize::from(b1 & 0x7f), 2);
            if len == 126 {
                self.fill(4)?;
                len = usize::from(u16::from_be_bytes([self.buf[2], self.buf[3]]));
                at = 4;
            } else if len == 127 {
                self.fill(10)?;
                let mut b = [0u8; 8];
                b.copy_from_slice(&self.buf[2..10]);
                len = usize::try_from(u64::from_be_bytes(b)).map_err(|e| e.to_string())?;
                at = 10;
            }
            if b1 & 0x80 != 0 {
                return Err("server frames must not be masked".into());
            }
            self.fill(at + len)?;
            let payload: Vec<u8> = self.buf[at..at + len].to_vec();
            self.buf.drain(..at + len);
            match b0 & 0x0f {
                0x1 => return String::from_utf8(payload).map_err(|e| e.to_string()),
                0x8 => return Err(format!("close frame {payload:?}")),
                0x9 | 0xa => continue,
                op => return Err(format!("unexpected opcode {op:#x}")),
            }
        }
    }

    /// Send `text`, return the answer.
    pub fn roundtrip(&mut self, text: &str) -> Result<String, String> {
        self.send_text(text)?;
        self.recv_text()
    }
}

fn rand_mask() -> [u8; 4] {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0x5a5a_5a5a);
    nanos.to_le_bytes()
}

/// A wss connection to 127.0.0.1:`port` for `name`, verified with `config`, upgraded.
pub fn wss(port: u16, name: &str, config: &Arc<ClientConfig>) -> Result<Ws<Tls>, String> {
    let tls = connect(port, name, config)?;
    Ws::handshake(tls, &format!("{name}:{port}"))
}

/// `curl` with `--resolve NAME:PORT:127.0.0.1` for every `(name, port)`, bounded to 20 s.
pub fn curl(resolve: &[(&str, u16)], args: &[&str], dir: &Path) -> RunOutput {
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "--max-time", "15"]);
    for (name, port) in resolve {
        cmd.arg("--resolve").arg(format!("{name}:{port}:127.0.0.1"));
    }
    cmd.args(args);
    run_bounded("curl", cmd, dir, Duration::from_secs(20), Duration::ZERO)
}

/// The `elapsed_ms` of every "ACME certificate issued" line in Portico's log.
pub fn order_times_ms(log: &str) -> Vec<u64> {
    log.lines()
        .filter(|l| l.contains("ACME certificate issued"))
        .filter_map(|l| {
            let v = l.split("elapsed_ms=").nth(1)?;
            v.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
        })
        .collect()
}

/// Python `websockets` (OpenSSL) as a second wss client: connects a socket to
/// 127.0.0.1:`port`, TLS with SNI `name` verified against the CA file `ca`, sends `msg` and
/// prints the echo. Returns the echo.
pub fn python_wss(
    python: &Path,
    port: u16,
    name: &str,
    ca: &Path,
    msg: &str,
    dir: &Path,
) -> Result<String, String> {
    const SCRIPT: &str = r#"
import socket, ssl, sys
from websockets.sync.client import connect
port, name, ca, msg = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
ctx = ssl.create_default_context(cafile=ca)
sock = socket.create_connection(("127.0.0.1", port), timeout=5)
with connect(f"wss://{name}:{port}/", sock=sock, ssl=ctx, server_hostname=name,
             open_timeout=5, close_timeout=5) as ws:
    ws.send(msg)
    print(ws.recv(timeout=5))
"#;
    let mut cmd = Command::new(python);
    cmd.arg("-c")
        .arg(SCRIPT)
        .arg(port.to_string())
        .arg(name)
        .arg(ca)
        .arg(msg);
    let out = run_bounded(
        "python-wss",
        cmd,
        dir,
        Duration::from_secs(20),
        Duration::ZERO,
    );
    if out.success() {
        Ok(out.stdout.trim().to_string())
    } else {
        Err(format!("{out:?}"))
    }
}

/// The order times of Portico's log once it shows at least `n` orders (a certificate serves
/// a moment before its "issued" line is written).
pub fn logged_orders(log: impl Fn() -> String, n: usize) -> Vec<u64> {
    crate::support::eventually(
        Duration::from_secs(10),
        &format!("{n} ACME orders in the log"),
        || {
            let orders = order_times_ms(&log());
            (orders.len() >= n).then_some(orders)
        },
    )
}
