//! Streams to an upstream with `tls`: the stream speaks TLS to the servers (verified against
//! `ca_file`, SNI from `server_name`), never plaintext. The backends are real TLS servers
//! (rustls, certificates from the test CA); the client side is plain TCP.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use portico_stream::StreamOptions;
use portico_testkit::certs::{Leaf, TestCa};
use portico_tls::rustls::{ServerConfig, ServerConnection, StreamOwned};

use crate::support::*;

/// A TLS echo backend: reads an optional PROXY v1 line in the clear, then the handshake,
/// greets with `TAG sni=NAME proxy=LINE` and echoes. Counts finished handshakes and records
/// each connection's first byte (0x16 for a TLS ClientHello, `P` for a PROXY header).
struct TlsBackend {
    addr: SocketAddr,
    handshakes: Arc<AtomicUsize>,
    first_bytes: Arc<Mutex<Vec<u8>>>,
}

fn server_config(leaf: &Leaf) -> Arc<ServerConfig> {
    let chain =
        portico_tls::pem::parse_chain(leaf.chain_pem.as_bytes(), Path::new("leaf")).unwrap();
    let key = portico_tls::pem::parse_key(leaf.key_pem.as_bytes(), Path::new("key")).unwrap();
    Arc::new(
        ServerConfig::builder_with_provider(portico_tls::default_provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .unwrap(),
    )
}

impl TlsBackend {
    fn spawn(tag: &str, leaf: &Leaf) -> TlsBackend {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let config = server_config(leaf);
        let handshakes = Arc::new(AtomicUsize::new(0));
        let first_bytes = Arc::new(Mutex::new(Vec::new()));
        let (h, f, tag) = (handshakes.clone(), first_bytes.clone(), tag.to_string());
        std::thread::spawn(move || {
            for tcp in listener.incoming() {
                let Ok(tcp) = tcp else { continue };
                let (config, h, f, tag) = (config.clone(), h.clone(), f.clone(), tag.clone());
                std::thread::spawn(move || serve(tcp, config, &h, &f, &tag));
            }
        });
        TlsBackend {
            addr,
            handshakes,
            first_bytes,
        }
    }
}

fn serve(
    mut tcp: TcpStream,
    config: Arc<ServerConfig>,
    handshakes: &AtomicUsize,
    first_bytes: &Mutex<Vec<u8>>,
    tag: &str,
) {
    tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut first = [0u8; 1];
    if tcp.peek(&mut first).unwrap_or(0) == 0 {
        return;
    }
    first_bytes.lock().unwrap().push(first[0]);
    let mut proxy = String::from("-");
    if first[0] == b'P' {
        // A PROXY v1 line, byte by byte (nothing past it is consumed).
        let mut line = Vec::new();
        let mut b = [0u8; 1];
        while !line.ends_with(b"\r\n") {
            if tcp.read(&mut b).unwrap_or(0) == 0 {
                return;
            }
            line.push(b[0]);
        }
        proxy = String::from_utf8_lossy(&line).trim_end().replace(' ', "_");
    }
    let Ok(conn) = ServerConnection::new(config) else {
        return;
    };
    let mut tls = StreamOwned::new(conn, tcp);
    while tls.conn.is_handshaking() {
        if tls.conn.complete_io(&mut tls.sock).is_err() {
            return;
        }
    }
    handshakes.fetch_add(1, Ordering::SeqCst);
    let sni = tls.conn.server_name().unwrap_or("-").to_string();
    if tls
        .write_all(format!("{tag} sni={sni} proxy={proxy}\n").as_bytes())
        .is_err()
    {
        return;
    }
    let mut buf = [0u8; 4096];
    loop {
        match tls.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if tls.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
        }
    }
}

/// A stream on 127.0.0.1:0 to `backend` over TLS (`tls_line`: the upstream's `tls` value,
/// `extra`: more stream keys), `ca` written to `ca.pem` beside the config.
fn start(backend: &TlsBackend, ca: &TestCa, tls_line: &str, extra: &str) -> Portico {
    let pem = ca.cert_pem.clone();
    Portico::start_with(
        &format!(
            "[upstreams.secure]\nservers = [\"{}\"]\nretries = 0\ntls = {tls_line}\n[[streams]]\nlisten = [\"127.0.0.1:0\"]\nupstream = \"secure\"\n{extra}",
            backend.addr
        ),
        &StreamOptions::default(),
        |dir| std::fs::write(dir.join("ca.pem"), pem).unwrap(),
    )
}

#[test]
fn a_tls_upstream_is_spoken_to_in_tls() {
    let ca = TestCa::new("stream upstream CA");
    let backend = TlsBackend::spawn("secure", &ca.leaf(&["backend.test"]));
    let p = start(
        &backend,
        &ca,
        "{ server_name = \"backend.test\", ca_file = \"ca.pem\" }",
        "",
    );
    let mut s = connect_from("127.0.0.1".parse().unwrap(), p.addr(0));
    assert_eq!(exchange(&mut s), "secure sni=backend.test proxy=-");
    // A bigger round trip through both TLS directions.
    let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    let mut r = s.try_clone().unwrap();
    let writer = {
        let data = data.clone();
        std::thread::spawn(move || s.write_all(&data).unwrap())
    };
    let mut back = vec![0u8; data.len()];
    r.read_exact(&mut back).unwrap();
    writer.join().unwrap();
    assert!(back == data, "echoed bytes differ");
    assert_eq!(backend.handshakes.load(Ordering::SeqCst), 1);
    assert_eq!(
        *backend.first_bytes.lock().unwrap(),
        [0x16],
        "a TLS ClientHello first"
    );
}

#[test]
fn an_untrusted_upstream_certificate_is_refused_not_downgraded() {
    let ca = TestCa::new("trusted CA");
    let other = TestCa::new("some other CA");
    let backend = TlsBackend::spawn("secure", &other.leaf(&["backend.test"]));
    let p = start(
        &backend,
        &ca,
        "{ server_name = \"backend.test\", ca_file = \"ca.pem\" }",
        "",
    );
    let mut s = connect_from("127.0.0.1".parse().unwrap(), p.addr(0));
    let _ = s.write_all(b"secret");
    let mut got = Vec::new();
    let _ = s.read_to_end(&mut got);
    assert!(
        got.is_empty(),
        "nothing from the server may reach the client: {got:?}"
    );
    let log = p.log_until(|l| l.contains("end="));
    assert!(log.contains("end=connect_failed"), "{log}");
    assert_eq!(backend.handshakes.load(Ordering::SeqCst), 0);
    assert_eq!(
        *backend.first_bytes.lock().unwrap(),
        [0x16],
        "never plaintext"
    );
}

#[test]
fn the_proxy_header_goes_in_the_clear_before_the_handshake() {
    let ca = TestCa::new("stream upstream CA");
    let backend = TlsBackend::spawn("secure", &ca.leaf(&["localhost"]));
    let p = start(
        &backend,
        &ca,
        "{ server_name = \"localhost\", ca_file = \"ca.pem\" }",
        "proxy_protocol = \"v1\"\n",
    );
    let mut s = connect_from("127.0.0.2".parse().unwrap(), p.addr(0));
    let greeting = exchange(&mut s);
    assert!(
        greeting.starts_with("secure sni=localhost proxy=PROXY_TCP4_127.0.0.2_127.0.0.1_"),
        "{greeting}"
    );
    let mut r = BufReader::new(s);
    let mut rest = String::new();
    r.get_mut()
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let _ = r.read_line(&mut rest);
    assert!(rest.is_empty(), "{rest}");
}

/// `connect_timeout` is one deadline for TCP connect + TLS handshake (as on sites): the
/// server's accept queue is full when Portico connects (backlog 1, two connections waiting),
/// so the connect completes only with the SYN's retransmission about 1 s later; then the
/// server never answers the ClientHello. With `connect_timeout = "2s"` the client is closed
/// about 2 s after it connected, not 1 + 2 s.
#[test]
fn connect_timeout_covers_the_tls_handshake() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (silent, addr) = rt.block_on(async {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let listener = socket.listen(1).unwrap();
        let addr = listener.local_addr().unwrap();
        (listener, addr)
    });
    let fillers: Vec<TcpStream> = (0..2).map(|_| TcpStream::connect(addr).unwrap()).collect();
    let p = Portico::start(&format!(
        "[upstreams.secure]\nservers = [\"{addr}\"]\nretries = 0\nconnect_timeout = \"2s\"\ntls = {{ verify = false }}\n[[streams]]\nlisten = [\"127.0.0.1:0\"]\nupstream = \"secure\"\n"
    ));
    // 0.5 s in, accept (and hold, never writing) everything, for at most 3 s.
    let holder = std::thread::spawn(move || {
        rt.block_on(async move {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let mut held = Vec::new();
            let _ = tokio::time::timeout(Duration::from_secs(3), async {
                while let Ok((s, _)) = silent.accept().await {
                    held.push(s);
                }
            })
            .await;
        });
    });
    let started = std::time::Instant::now();
    let mut s = connect_from("127.0.0.1".parse().unwrap(), p.addr(0));
    let mut got = Vec::new();
    let _ = s.read_to_end(&mut got);
    let took = started.elapsed();
    assert!(got.is_empty());
    assert!(
        took >= Duration::from_millis(1900) && took < Duration::from_millis(2700),
        "took {took:?}: one 2 s deadline expected, not 1 s of connect + 2 s of handshake"
    );
    let log = p.log_until(|l| l.contains("end="));
    assert!(log.contains("end=connect_failed"), "{log}");
    drop(fillers);
    holder.join().unwrap();
}
