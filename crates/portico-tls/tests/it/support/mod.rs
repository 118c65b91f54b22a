//! Test support: certificates (`portico_testkit::certs`, rcgen), TLS client handshakes, a
//! TLS echo listener.
#![allow(clippy::unwrap_used)]

pub mod pebble;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use portico_testkit::certs::{Leaf, TestCa};
use portico_tls::rustls::pki_types::{
    CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName,
};
use portico_tls::rustls::{self, ClientConfig, RootCertStore};
use portico_tls::{CertResolver, ServerOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A loaded key for the resolver from a leaf.
pub fn certified(leaf: &Leaf) -> Arc<rustls::sign::CertifiedKey> {
    portico_tls::pem::certified_key_from_pem(
        leaf.chain_pem.as_bytes(),
        leaf.key_pem.as_bytes(),
        std::path::Path::new("test"),
        &portico_tls::default_provider(),
    )
    .unwrap()
    .key
}

pub fn pkcs8(pem: &str) -> PrivateKeyDer<'static> {
    use rustls::pki_types::pem::PemObject;
    PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from_pem_slice(pem.as_bytes()).unwrap())
}

/// A client config trusting `roots`, offering `alpn`, TLS 1.2 and 1.3, resumption off.
pub fn client_config(roots: RootCertStore, alpn: &[&[u8]]) -> Arc<ClientConfig> {
    portico_testkit::certs::client_config(roots, alpn, &[])
}

/// The outcome of a client handshake: the server's leaf and the negotiated ALPN, or the error.
pub struct Handshake {
    pub leaf: CertificateDer<'static>,
    pub alpn: Option<Vec<u8>>,
    pub stream: tokio_rustls::client::TlsStream<TcpStream>,
}

pub async fn handshake(
    addr: SocketAddr,
    config: Arc<ClientConfig>,
    sni: &str,
) -> std::io::Result<Handshake> {
    let tcp = TcpStream::connect(addr).await?;
    let connector = tokio_rustls::TlsConnector::from(config);
    let name = ServerName::try_from(sni.to_string()).unwrap();
    let stream = tokio::time::timeout(Duration::from_secs(10), connector.connect(name, tcp))
        .await
        .map_err(|_| std::io::Error::other("handshake timed out"))??;
    let (_, conn) = stream.get_ref();
    let leaf = conn.peer_certificates().unwrap()[0].clone();
    let alpn = conn.alpn_protocol().map(<[u8]>::to_vec);
    Ok(Handshake { leaf, alpn, stream })
}

/// A TLS listener over `resolver` on 127.0.0.1 (port 0, or `port`): echoes bytes on each
/// connection, closes ACME validation connections at once. Dropped with the runtime.
pub async fn tls_echo(resolver: Arc<CertResolver>, port: u16) -> SocketAddr {
    tls_echo_counting(resolver, port).await.0
}

/// [`tls_echo`], also counting the ACME validation (`acme-tls/1`) handshakes it answered.
pub async fn tls_echo_counting(
    resolver: Arc<CertResolver>,
    port: u16,
) -> (SocketAddr, Arc<std::sync::atomic::AtomicUsize>) {
    let validations = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = validations.clone();
    let listener = TcpListener::bind(("127.0.0.1", port)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = portico_tls::acceptor(resolver, &ServerOptions::default()).unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            let counter = counter.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                if portico_tls::is_acme_validation(tls.get_ref().1) {
                    counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let _ = tls.shutdown().await;
                    return;
                }
                let mut buf = [0u8; 1024];
                while let Ok(n) = tls.read(&mut buf).await {
                    if n == 0 || tls.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (addr, validations)
}

/// Write `msg` and read the echo.
pub async fn echo_roundtrip(
    stream: &mut tokio_rustls::client::TlsStream<TcpStream>,
    msg: &[u8],
) -> Vec<u8> {
    stream.write_all(msg).await.unwrap();
    let mut got = vec![0u8; msg.len()];
    tokio::time::timeout(Duration::from_secs(5), stream.read_exact(&mut got))
        .await
        .unwrap()
        .unwrap();
    got
}

/// Poll `f` until it returns true or `deadline` passes.
pub async fn eventually(what: &str, deadline: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(
            start.elapsed() < deadline,
            "timed out after {deadline:?} waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
