//! Upstream TLS (`[upstreams.NAME].tls`): https to servers verified with `ca_file`, SNI from
//! `server_name` or the server's host, keep-alive connections reused over TLS, a client
//! certificate, `verify = false`, and verification failures answered 502 with a log line
//! that says why.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, OnceLock};

use crate::tls_support::*;

const LISTEN: &str = "127.0.0.1:0";

/// Warnings and errors logged by the proxy in this test binary.
fn logs() -> Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let sink = buf.clone();
        let _ = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::WARN)
            .with_ansi(false)
            .with_writer(move || LogWriter(sink.clone()))
            .try_init();
        buf
    })
    .clone()
}

struct LogWriter(Arc<Mutex<Vec<u8>>>);

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn logged(needle: &str) -> bool {
    String::from_utf8_lossy(&logs().lock().unwrap()).contains(needle)
}

/// A plain site on LISTEN proxying `/` to upstream `app` with `tls_line`.
fn proxy_to(servers: &str, tls_line: &str, files: &[(&str, &str)]) -> TlsProxy {
    let toml = format!(
        r#"
[upstreams.app]
servers = [{servers}]
retries = 0
max_fails = 0
{tls_line}

[[sites]]
listen = ["{LISTEN}"]
[[sites.routes]]
path = "/"
proxy = "app"
"#
    );
    TlsProxy::start(&toml, files)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_upstream_verified_with_ca_file_reuses_keepalive_connections() {
    let ca = TestCa::new("upstream CA");
    let backend =
        tls_http_backend("b1", server_config(&ca.leaf(&["backend.internal"]), None)).await;
    let proxy = proxy_to(
        &format!("\"{}\"", backend.addr),
        r#"tls = { server_name = "backend.internal", ca_file = "ca.pem" }"#,
        &[("ca.pem", &ca.cert_pem)],
    );
    let addr = proxy.addr(LISTEN);
    for i in 0..5 {
        let r = plain_get(addr, "site.test", &format!("/r{i}")).await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(
            r.text(),
            format!("b1 GET /r{i} sni=backend.internal proto=http\n")
        );
    }
    assert_eq!(
        backend.handshakes.load(Ordering::SeqCst),
        1,
        "one pooled TLS connection"
    );
    assert_eq!(backend.accepted.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sni_defaults_to_the_server_host() {
    let ca = TestCa::new("upstream CA");
    let backend = tls_http_backend("b2", server_config(&ca.leaf(&["localhost"]), None)).await;
    let proxy = proxy_to(
        &format!("\"localhost:{}\"", backend.addr.port()),
        r#"tls = { ca_file = "ca.pem" }"#,
        &[("ca.pem", &ca.cert_pem)],
    );
    let r = plain_get(proxy.addr(LISTEN), "site.test", "/").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.text().contains("sni=localhost"), "{}", r.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn untrusted_or_misnamed_certificates_get_502_and_a_reason_in_the_log() {
    logs();
    let ca = TestCa::new("upstream CA");
    let backend =
        tls_http_backend("b3", server_config(&ca.leaf(&["backend.internal"]), None)).await;
    // System (Mozilla) roots: the test CA is unknown.
    let proxy = proxy_to(
        &format!("\"{}\"", backend.addr),
        r#"tls = { server_name = "backend.internal" }"#,
        &[],
    );
    let r = plain_get(proxy.addr(LISTEN), "site.test", "/").await;
    assert_eq!(r.status, 502, "{}", r.text());
    assert!(
        logged("certificate verify failed: unknown issuer"),
        "{}",
        String::from_utf8_lossy(&logs().lock().unwrap())
    );
    drop(proxy);
    // Trusted CA, wrong name.
    let proxy = proxy_to(
        &format!("\"{}\"", backend.addr),
        r#"tls = { server_name = "other.internal", ca_file = "ca.pem" }"#,
        &[("ca.pem", &ca.cert_pem)],
    );
    let r = plain_get(proxy.addr(LISTEN), "site.test", "/").await;
    assert_eq!(r.status, 502);
    assert!(
        logged("certificate verify failed: certificate not valid for name"),
        "{}",
        String::from_utf8_lossy(&logs().lock().unwrap())
    );
    drop(proxy);
    // verify = false accepts it (encrypted, not authenticated).
    let proxy = proxy_to(
        &format!("\"{}\"", backend.addr),
        r#"tls = { server_name = "other.internal", verify = false }"#,
        &[],
    );
    let r = plain_get(proxy.addr(LISTEN), "site.test", "/").await;
    assert_eq!(r.status, 200, "{}", r.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_certificate_is_presented_when_configured() {
    let ca = TestCa::new("upstream CA");
    let backend = tls_http_backend(
        "mtls",
        server_config(&ca.leaf(&["backend.internal"]), Some(&ca)),
    )
    .await;
    let client = ca.leaf(&["portico.client"]);
    let servers = format!("\"{}\"", backend.addr);
    let proxy = proxy_to(
        &servers,
        r#"tls = { server_name = "backend.internal", ca_file = "ca.pem", client_cert = "c.pem", client_key = "c.key" }"#,
        &[
            ("ca.pem", &ca.cert_pem),
            ("c.pem", &client.chain_pem),
            ("c.key", &client.key_pem),
        ],
    );
    let r = plain_get(proxy.addr(LISTEN), "site.test", "/").await;
    assert_eq!(
        (r.status, r.text().contains("mtls GET /")),
        (200, true),
        "{}",
        r.text()
    );
    drop(proxy);
    // Without it the server refuses: 502.
    let proxy = proxy_to(
        &servers,
        r#"tls = { server_name = "backend.internal", ca_file = "ca.pem" }"#,
        &[("ca.pem", &ca.cert_pem)],
    );
    let r = plain_get(proxy.addr(LISTEN), "site.test", "/").await;
    assert_eq!(r.status, 502, "{}", r.text());
}

/// `connect_timeout` is one deadline for TCP connect + TLS handshake. The server's accept
/// queue is full when Portico connects (backlog 1, two connections waiting), so the kernel
/// drops its SYN and the connect completes only with the SYN's retransmission, about 1 s
/// later, once the queue was emptied; then the server never answers the ClientHello. With
/// `connect_timeout = "2s"` the request fails (504) about 2 s after it started; a handshake
/// with a timeout of its own would take about 1 + 2 = 3 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_timeout_covers_the_tls_handshake() {
    use std::time::Duration;
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let silent = socket.listen(1).unwrap();
    let silent_addr = silent.local_addr().unwrap();
    // Fill the accept queue (backlog + 1 connections on Linux).
    let mut fillers = Vec::new();
    for _ in 0..2 {
        fillers.push(tokio::net::TcpStream::connect(silent_addr).await.unwrap());
    }
    let proxy = proxy_to(
        &format!("\"{silent_addr}\""),
        "connect_timeout = \"2s\"\ntls = { verify = false }",
        &[] as &[(&str, &str)],
    );
    // 0.5 s in, accept (and hold, never writing) everything: the retransmitted SYN finds room.
    let holder = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let mut held = Vec::new();
        while let Ok((s, _)) = silent.accept().await {
            held.push(s);
        }
    });
    let started = std::time::Instant::now();
    let r = plain_get(proxy.addr(LISTEN), "site.test", "/").await;
    let took = started.elapsed();
    assert_eq!(r.status, 504, "{}", r.text());
    assert!(
        took >= Duration::from_millis(1900) && took < Duration::from_millis(2700),
        "took {took:?}: one 2 s deadline expected, not 1 s of connect + 2 s of handshake"
    );
    holder.abort();
    drop(fillers);
}
