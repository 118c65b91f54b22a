//! TLS termination on `[[streams]]` (`tls = { cert, key }`) with real sockets: rcgen-made
//! certificates in a temp dir, Portico's stream server terminating TLS in front of plain TCP
//! backends, tokio-rustls clients verifying against the test CA. Covers the echo path (no
//! ALPN negotiated), failed handshakes closing only their own connection, certificate files
//! replaced on disk (broken pair kept out, good pair swapped in after the poll interval),
//! PROXY headers after termination (v2 to the server, v1 accepted before the ClientHello),
//! and the configuration errors.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::support::*;
use portico_balance::Registry;
use portico_stream::proxy_protocol::{self, ProxyAddrs};
use portico_stream::{StreamOptions, StreamServer};
use portico_testkit::certs::{Leaf, TestCa, client_config};
use portico_tls::rustls::ClientConfig;
use portico_tls::rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The certificate-file poll interval used here (the default is 5 s).
const POLL: Duration = Duration::from_millis(50);

/// A client config trusting `ca` only, no ALPN, full handshakes only (a resumed session
/// would not show a swapped certificate).
fn trusting(ca: &TestCa) -> Arc<ClientConfig> {
    client_config(ca.roots(), &[], &[])
}

/// Write a file by rename (a new inode, as `cp` + `mv` or a secret volume update does).
fn replace(dir: &Path, name: &str, text: &str) {
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, dir.join(name)).unwrap();
}

fn write_leaf(dir: &Path, leaf: &Leaf) {
    replace(dir, "cert.pem", &leaf.chain_pem);
    replace(dir, "key.pem", &leaf.key_pem);
}

/// Start a stream server with `leaf` in `cert.pem`/`key.pem` beside the config (relative
/// paths) and `body` as the config after `[server]`.
fn start(leaf: &Leaf, body: &str) -> Portico {
    let options = StreamOptions {
        cert_poll_interval: POLL,
    };
    Portico::start_with(body, &options, |dir| write_leaf(dir, leaf))
}

fn tls_stream_to(server: SocketAddr, extra: &str) -> String {
    format!(
        "[upstreams.app]\nservers = [\"{server}\"]\n[[streams]]\nlisten = [\"127.0.0.1:0\"]\nupstream = \"app\"\n\
         tls = {{ cert = \"cert.pem\", key = \"key.pem\" }}\n{extra}"
    )
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

type Client = tokio_rustls::client::TlsStream<tokio::net::TcpStream>;

/// TLS client handshake with `sni`, bounded in time.
async fn connect(
    addr: SocketAddr,
    config: Arc<ClientConfig>,
    sni: &str,
) -> std::io::Result<Client> {
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    tls_over(tcp, config, sni).await
}

/// TLS client handshake with `sni` over `io`, bounded in time.
async fn tls_over<IO: AsyncRead + AsyncWrite + Unpin>(
    io: IO,
    config: Arc<ClientConfig>,
    sni: &str,
) -> std::io::Result<tokio_rustls::client::TlsStream<IO>> {
    let connector = tokio_rustls::TlsConnector::from(config);
    let name = ServerName::try_from(sni.to_string()).unwrap();
    tokio::time::timeout(Duration::from_secs(5), connector.connect(name, io))
        .await
        .map_err(|_| std::io::Error::other("handshake timed out"))?
}

/// Read the backend's first line, check one echo round trip; the line.
async fn exchange(s: &mut Client, payload: &[u8]) -> String {
    let mut line = Vec::new();
    loop {
        let b = tokio::time::timeout(Duration::from_secs(5), s.read_u8())
            .await
            .expect("first line in time")
            .unwrap();
        if b == b'\n' {
            break;
        }
        line.push(b);
    }
    s.write_all(payload).await.unwrap();
    let mut back = vec![0u8; payload.len()];
    tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut back))
        .await
        .expect("echo in time")
        .unwrap();
    assert_eq!(back, payload);
    String::from_utf8(line).unwrap()
}

/// Read until the peer closes (or the connection fails) within 5 s, else panic with
/// `what`; the bytes read.
async fn read_until_closed<S: AsyncRead + Unpin>(s: &mut S, what: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out))
        .await
        .unwrap_or_else(|_| panic!("{what}"));
    out
}

fn leaf_of(c: &Client) -> CertificateDer<'static> {
    c.get_ref().1.peer_certificates().unwrap()[0].clone()
}

#[test]
fn terminates_tls_in_front_of_a_plain_echo() {
    let ca = TestCa::new("stream test CA");
    let leaf = ca.leaf(&["stream.test"]);
    let backend = Backend::spawn("plain");
    let p = start(&leaf, &tls_stream_to(backend.addr, ""));
    let addr = p.addr(0);
    rt().block_on(async {
        // A client offering ALPN gets none: after TLS a stream is raw bytes.
        let started = Instant::now();
        let mut c = connect(
            addr,
            client_config(ca.roots(), &[b"h2".as_slice(), b"http/1.1"], &[]),
            "stream.test",
        )
        .await
        .unwrap();
        assert_eq!(c.get_ref().1.alpn_protocol(), None);
        assert_eq!(leaf_of(&c), leaf.der);
        assert_eq!(exchange(&mut c, b"hello over tls").await, "plain");
        println!(
            "first connection: TCP connect + TLS handshake + first line + echo in {:?}",
            started.elapsed()
        );
        // A bigger transfer both ways (several TLS records, several copy buffers).
        let big: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let (mut r, mut w) = tokio::io::split(c);
        let sent = big.clone();
        let writer = tokio::spawn(async move {
            w.write_all(&sent).await.unwrap();
            w.shutdown().await.unwrap();
        });
        let mut back = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), r.read_to_end(&mut back))
            .await
            .expect("echo of 300 kB in time")
            .unwrap();
        writer.await.unwrap();
        assert_eq!(
            back, big,
            "echoed bytes, then close_notify/FIN after the client's"
        );

        // Latency of the whole path, warm: a few connections, handshake + echo each.
        let mut times = Vec::new();
        for _ in 0..20 {
            let t = Instant::now();
            let mut c = connect(addr, trusting(&ca), "stream.test").await.unwrap();
            exchange(&mut c, b"x").await;
            times.push(t.elapsed());
        }
        times.sort();
        println!(
            "connect + TLS handshake + echo, 20 connections: median {:?}, max {:?}",
            times[10], times[19]
        );
    });
    let lines = p.log_lines(21);
    assert_eq!(lines.len(), 21, "{lines:#?}");
    let big = lines
        .iter()
        .find(|l| l.contains("received=300020"))
        .unwrap_or_else(|| panic!("a line for the big transfer: {lines:#?}"));
    // "plain\n" + 14 + 300000 bytes came back; 14 + 300000 went out (plaintext counts).
    assert!(big.contains("sent=300014"), "{big}");
    assert!(big.contains("end=client_closed"), "{big}");
}

#[test]
fn failed_handshakes_close_only_their_own_connection() {
    let ca = TestCa::new("stream test CA");
    let other_ca = TestCa::new("another CA");
    let leaf = ca.leaf(&["stream.test"]);
    let backend = Backend::spawn("plain");
    let p = start(&leaf, &tls_stream_to(backend.addr, ""));
    let addr = p.addr(0);
    rt().block_on(async {
        let mut kept = connect(addr, trusting(&ca), "stream.test").await.unwrap();
        assert_eq!(exchange(&mut kept, b"before").await, "plain");

        // Wrong SNI: the stream's certificate does not cover it, the client refuses it.
        let e = connect(addr, trusting(&ca), "other.test")
            .await
            .expect_err("wrong name");
        assert!(
            e.to_string().contains("NotValidForName") || e.to_string().contains("not valid"),
            "{e}"
        );
        // A client that does not trust the certificate.
        let e = connect(addr, trusting(&other_ca), "stream.test")
            .await
            .expect_err("unknown issuer");
        assert!(e.to_string().contains("UnknownIssuer"), "{e}");
        // Not TLS at all: closed without an answer from any server.
        let mut plain = tokio::net::TcpStream::connect(addr).await.unwrap();
        plain
            .write_all(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let out = read_until_closed(&mut plain, "closed in time").await;
        assert!(
            !out.starts_with(b"plain"),
            "no backend bytes for a non-TLS client"
        );
        // Silent: closed after header_timeout (1 s here).
        let t = Instant::now();
        let mut silent = tokio::net::TcpStream::connect(addr).await.unwrap();
        read_until_closed(
            &mut silent,
            "a silent client is closed within header_timeout",
        )
        .await;
        assert!(
            t.elapsed() >= Duration::from_millis(900),
            "{:?}",
            t.elapsed()
        );

        // The established connection and new ones still work.
        assert_eq!(kept.write_all(b"after").await.ok(), Some(()));
        let mut back = [0u8; 5];
        kept.read_exact(&mut back).await.unwrap();
        assert_eq!(&back, b"after");
        let mut fresh = connect(addr, trusting(&ca), "stream.test").await.unwrap();
        assert_eq!(exchange(&mut fresh, b"fresh").await, "plain");
    });
    // Failed handshakes never reached a server: only the two good connections did.
    assert_eq!(
        backend.accepted.load(std::sync::atomic::Ordering::SeqCst),
        2
    );
    let lines = p.log_lines(6);
    let failed = lines
        .iter()
        .filter(|l| l.contains("end=tls_failed"))
        .count();
    assert_eq!(failed, 4, "{lines:#?}");
    assert!(
        lines
            .iter()
            .filter(|l| l.contains("end=tls_failed"))
            .all(|l| l.contains("-> - - sent=0 received=0")),
        "{lines:#?}"
    );
}

#[test]
fn replaced_certificate_files_are_served_after_the_poll_interval() {
    let ca = TestCa::new("stream test CA");
    let first = ca.leaf(&["stream.test"]);
    let second = ca.leaf(&["stream.test"]);
    let backend = Backend::spawn("plain");
    let p = start(&first, &tls_stream_to(backend.addr, ""));
    let addr = p.addr(0);
    let dir = p.dir.path().to_path_buf();
    rt().block_on(async {
        let mut old = connect(addr, trusting(&ca), "stream.test").await.unwrap();
        assert_eq!(leaf_of(&old), first.der);
        assert_eq!(exchange(&mut old, b"one").await, "plain");

        // A broken pair (key of another certificate, then garbage): the old one stays.
        replace(&dir, "cert.pem", &second.chain_pem);
        tokio::time::sleep(POLL * 6).await;
        replace(
            &dir,
            "cert.pem",
            "-----BEGIN CERTIFICATE-----\nnot base64\n",
        );
        tokio::time::sleep(POLL * 6).await;
        let c = connect(addr, trusting(&ca), "stream.test").await.unwrap();
        assert_eq!(
            leaf_of(&c),
            first.der,
            "a broken pair keeps the old certificate"
        );

        // A good new pair: served after the poll interval.
        write_leaf(&dir, &second);
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let c = connect(addr, trusting(&ca), "stream.test").await.unwrap();
            if leaf_of(&c) == second.der {
                break;
            }
            assert!(Instant::now() < deadline, "new certificate never served");
            tokio::time::sleep(POLL).await;
        }
        // The connection made before the swap is untouched.
        old.write_all(b"still").await.unwrap();
        let mut back = [0u8; 5];
        old.read_exact(&mut back).await.unwrap();
        assert_eq!(&back, b"still");
    });
}

/// A backend that reads a PROXY header, answers `SRC DST\n` with its addresses, then echoes.
fn proxy_header_backend() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for conn in l.incoming() {
            let Ok(mut conn) = conn else { continue };
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                let header = loop {
                    if let Ok(Some(h)) = proxy_protocol::decode(&buf) {
                        break h;
                    }
                    match conn.read(&mut chunk) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                };
                let line = match header.addrs {
                    ProxyAddrs::Tcp { src, dst } => format!("v{} {src} {dst}\n", header.version),
                    ProxyAddrs::Unknown => "unknown\n".into(),
                };
                let _ = conn.write_all(line.as_bytes());
                let _ = conn.write_all(&buf[header.len..]);
                let mut r = BufReader::new(conn.try_clone().unwrap());
                loop {
                    let Ok(got) = r.fill_buf() else { return };
                    if got.is_empty() {
                        return;
                    }
                    let n = got.len();
                    if conn.write_all(got).is_err() {
                        return;
                    }
                    r.consume(n);
                }
            });
        }
    });
    addr
}

#[test]
fn proxy_headers_after_termination_carry_the_real_client() {
    let ca = TestCa::new("stream test CA");
    let leaf = ca.leaf(&["stream.test"]);
    let server = proxy_header_backend();
    rt().block_on(async {
        // PROXY v2 to the server, with the TLS client's own address.
        let p = start(&leaf, &tls_stream_to(server, "proxy_protocol = \"v2\"\n"));
        let addr = p.addr(0);
        let sock = tokio::net::TcpSocket::new_v4().unwrap();
        sock.bind("127.0.0.2:0".parse().unwrap()).unwrap();
        let tcp = sock.connect(addr).await.unwrap();
        let me = tcp.local_addr().unwrap();
        let mut c = tls_over(tcp, trusting(&ca), "stream.test").await.unwrap();
        let line = exchange(&mut c, b"payload").await;
        assert_eq!(line, format!("v2 {me} {addr}"));

        // A PROXY v1 header accepted from the client, sent in the same packet as the
        // ClientHello's start, is passed on (as v2) with the address it carries.
        let p = start(
            &leaf,
            &tls_stream_to(
                server,
                "proxy_protocol = \"v2\"\naccept_proxy_protocol = true\n",
            ),
        );
        let addr = p.addr(0);
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (tcp, header_sent) = PrefixFirstWrite::wrap(
            tcp,
            b"PROXY TCP4 203.0.113.7 198.51.100.1 40000 443\r\n".to_vec(),
        );
        let mut c = tls_over(tcp, trusting(&ca), "stream.test").await.unwrap();
        assert!(header_sent.load(std::sync::atomic::Ordering::SeqCst));
        let mut line = Vec::new();
        let mut r = tokio::io::BufReader::new(&mut c);
        r.read_until(b'\n', &mut line).await.unwrap();
        assert_eq!(
            String::from_utf8(line).unwrap(),
            "v2 203.0.113.7:40000 198.51.100.1:443\n"
        );
    });
}

/// A client socket whose first write is prefixed with `prefix` (one segment: the PROXY
/// header and the ClientHello arrive together, so Portico reads TLS bytes past the header).
struct PrefixFirstWrite {
    io: tokio::net::TcpStream,
    prefix: Option<Vec<u8>>,
    sent: Arc<std::sync::atomic::AtomicBool>,
}

impl PrefixFirstWrite {
    fn wrap(
        io: tokio::net::TcpStream,
        prefix: Vec<u8>,
    ) -> (PrefixFirstWrite, Arc<std::sync::atomic::AtomicBool>) {
        let sent = Arc::new(std::sync::atomic::AtomicBool::new(false));
        (
            PrefixFirstWrite {
                io,
                prefix: Some(prefix),
                sent: sent.clone(),
            },
            sent,
        )
    }
}

impl tokio::io::AsyncRead for PrefixFirstWrite {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for PrefixFirstWrite {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let me = self.get_mut();
        if let Some(prefix) = me.prefix.take() {
            // Small enough for the socket buffer of a fresh connection: written at once.
            let mut joined = prefix;
            joined.extend_from_slice(buf);
            let n = me.io.try_write(&joined).unwrap();
            assert_eq!(n, joined.len());
            me.sent.store(true, std::sync::atomic::Ordering::SeqCst);
            return std::task::Poll::Ready(Ok(buf.len()));
        }
        std::pin::Pin::new(&mut me.io).poll_write(cx, buf)
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

#[test]
fn config_errors_point_at_the_key() {
    let up = "[upstreams.app]\nservers = [\"127.0.0.1:1\"]\n";
    let diags = |text: &str| -> Vec<String> {
        portico_config::parse(text, Path::new("streams.toml"))
            .expect_err(text)
            .diagnostics()
            .iter()
            .map(ToString::to_string)
            .collect()
    };
    let d = diags(&format!(
        "{up}[[streams]]\nlisten = \"127.0.0.1:1\"\nupstream = \"app\"\ntls = \"acme\"\n"
    ));
    assert_eq!(d.len(), 1, "{d:#?}");
    assert!(
        d[0].starts_with(
            "streams.toml:6:7: stream #1 has tls = \"acme\", but ACME on streams needs names"
        ),
        "{}",
        d[0]
    );
    assert!(d[0].contains("\n  hint: use a [[sites]] entry"), "{}", d[0]);
    let d = diags(&format!(
        "{up}[[streams]]\nlisten = \"127.0.0.1:1\"\ntls = {{ cert = \"c.pem\", key = \"k.pem\" }}\n\
         sni_routes = {{ \"*\" = \"app\" }}\n"
    ));
    assert!(
        d.iter()
            .any(|l| l.starts_with("streams.toml:6:1: stream #1 has both `tls` and `sni_routes`")),
        "{d:#?}"
    );
    let d = diags(&format!(
        "{up}[[streams]]\nlisten = \"127.0.0.1:1\"\nupstream = \"app\"\ntls = {{ cert = \"c.pem\" }}\n"
    ));
    assert!(
        d[0].starts_with("streams.toml:6:7: `tls` needs both `cert` and `key`"),
        "{d:#?}"
    );
}

#[test]
fn unusable_certificate_files_stop_the_start_with_the_file_named() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("key.pem"), "nope").unwrap();
    let text = "[admin]\nlisten = \"off\"\n[upstreams.app]\nservers = [\"127.0.0.1:1\"]\n\
                [[streams]]\nlisten = \"127.0.0.1:0\"\nupstream = \"app\"\n\
                tls = { cert = \"missing.pem\", key = \"key.pem\" }\n";
    let path = dir.path().join("portico.toml");
    let config = portico_config::parse(text, &path).unwrap();
    let err = StreamServer::start(Arc::new(config), Registry::new())
        .expect_err("missing certificate file");
    let msg = err.to_string();
    assert!(
        msg.starts_with("stream #1: tls: ") && msg.contains("missing.pem"),
        "{msg}"
    );
}

/// A backend that sends `n` bytes (a pattern) then reads everything the client sends and
/// answers with the count, as `COUNT\n`.
fn bulk_backend(n: usize) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for conn in l.incoming() {
            let Ok(mut conn) = conn else { continue };
            std::thread::spawn(move || {
                let mut reader = conn.try_clone().unwrap();
                let counter = std::thread::spawn(move || {
                    let mut total = 0usize;
                    let mut buf = [0u8; 65536];
                    loop {
                        match reader.read(&mut buf) {
                            Ok(0) | Err(_) => return total,
                            Ok(k) => total += k,
                        }
                    }
                });
                let data: Vec<u8> = (0..n).map(|i| (i % 253) as u8).collect();
                if conn.write_all(&data).is_err() {
                    return;
                }
                let total = counter.join().unwrap();
                let _ = conn.write_all(format!("{total}\n").as_bytes());
            });
        }
    });
    addr
}

#[test]
fn bulk_both_ways_with_a_slow_reader() {
    const N: usize = 8 << 20;
    let ca = TestCa::new("stream test CA");
    let leaf = ca.leaf(&["stream.test"]);
    let server = bulk_backend(N);
    let p = start(&leaf, &tls_stream_to(server, ""));
    let addr = p.addr(0);
    rt().block_on(async {
        let t = Instant::now();
        let c = connect(addr, trusting(&ca), "stream.test").await.unwrap();
        let (mut r, mut w) = tokio::io::split(c);
        // The client sends N bytes while not reading at first: both sockets fill up, so
        // Portico holds bytes and stops reading (back-pressure) in both directions.
        let writer = tokio::spawn(async move {
            let chunk = vec![7u8; 64 * 1024];
            for _ in 0..N / chunk.len() {
                w.write_all(&chunk).await.unwrap();
            }
            w.shutdown().await.unwrap();
        });
        tokio::time::sleep(Duration::from_millis(300)).await;
        let mut got = Vec::with_capacity(N + 16);
        tokio::time::timeout(Duration::from_secs(15), r.read_to_end(&mut got))
            .await
            .expect("bulk transfer in time")
            .unwrap();
        writer.await.unwrap();
        assert!(got.len() > N, "{}", got.len());
        let (data, tail) = got.split_at(N);
        assert!(
            data.iter().enumerate().all(|(i, b)| *b == (i % 253) as u8),
            "server -> client bytes intact"
        );
        assert_eq!(tail, format!("{N}\n").as_bytes(), "client -> server count");
        println!(
            "{} MiB each way through TLS termination in {:?}",
            N >> 20,
            t.elapsed()
        );
    });
}

#[test]
fn idle_timeout_and_stop_close_tls_streams() {
    let ca = TestCa::new("stream test CA");
    let leaf = ca.leaf(&["stream.test"]);
    let backend = Backend::spawn("plain");
    let p = start(
        &leaf,
        &tls_stream_to(backend.addr, "idle_timeout = \"300ms\"\n"),
    );
    let addr = p.addr(0);
    rt().block_on(async {
        let mut c = connect(addr, trusting(&ca), "stream.test").await.unwrap();
        assert_eq!(exchange(&mut c, b"x").await, "plain");
        let t = Instant::now();
        read_until_closed(&mut c, "closed by the idle timeout").await;
        assert!(
            t.elapsed() >= Duration::from_millis(250),
            "{:?}",
            t.elapsed()
        );
    });
    let lines = p.log_lines(1);
    assert!(lines[0].contains("end=idle_timeout"), "{lines:?}");

    let p = start(&leaf, &tls_stream_to(backend.addr, ""));
    let addr = p.addr(0);
    rt().block_on(async {
        let mut c = connect(addr, trusting(&ca), "stream.test").await.unwrap();
        assert_eq!(exchange(&mut c, b"x").await, "plain");
        p.running.stop_now();
        read_until_closed(&mut c, "closed by stop_now").await;
    });
    let lines = p.log_lines(1);
    assert!(lines[0].contains("end=shutdown"), "{lines:?}");
}
