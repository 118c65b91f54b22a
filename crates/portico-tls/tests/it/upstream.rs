//! Upstream TLS client configs against a real rustls server: verified with `ca_file`, a wrong
//! CA or name fails with a one-line reason, `verify = false` connects, SNI from
//! `server_name`, client certificates presented when configured.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use crate::support::*;
use portico_config::UpstreamTls;
use portico_tls::rustls::{self, server::WebPkiClientVerifier};
use portico_tls::{client_config, failure_reason, server_name};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

/// A TLS server for `leaf`; when `client_ca` is given it requires a client certificate.
/// Sends the SNI it saw and closes.
async fn upstream(leaf: &Leaf, client_ca: Option<&TestCa>) -> SocketAddr {
    let chain = portico_tls::pem::parse_chain(leaf.chain_pem.as_bytes(), Path::new("t")).unwrap();
    let builder = rustls::ServerConfig::builder_with_provider(portico_tls::default_provider())
        .with_safe_default_protocol_versions()
        .unwrap();
    let builder = match client_ca {
        Some(ca) => builder.with_client_cert_verifier(
            WebPkiClientVerifier::builder_with_provider(
                Arc::new(ca.roots()),
                portico_tls::default_provider(),
            )
            .build()
            .unwrap(),
        ),
        None => builder.with_no_client_auth(),
    };
    let config = builder
        .with_single_cert(chain, pkcs8(&leaf.key_pem))
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                if let Ok(mut tls) = acceptor.accept(tcp).await {
                    let sni = tls.get_ref().1.server_name().unwrap_or("-").to_string();
                    let _ = tls.write_all(sni.as_bytes()).await;
                    let _ = tls.shutdown().await;
                }
            });
        }
    });
    addr
}

fn tls(ca_file: Option<&Path>) -> UpstreamTls {
    UpstreamTls {
        server_name: None,
        verify: true,
        ca_file: ca_file.map(Path::to_path_buf),
        client_cert: None,
        client_key: None,
    }
}

async fn connect(
    addr: SocketAddr,
    tls: &UpstreamTls,
    base: &Path,
    host: &str,
) -> std::io::Result<String> {
    use tokio::io::AsyncReadExt;
    let config = client_config(tls, base).unwrap();
    assert_eq!(config.alpn_protocols, vec![b"http/1.1".to_vec()]);
    let tcp = TcpStream::connect(addr).await?;
    let mut stream = tokio_rustls::TlsConnector::from(config)
        .connect(server_name(tls, host).unwrap(), tcp)
        .await?;
    let mut sni = String::new();
    stream.read_to_string(&mut sni).await?;
    Ok(sni)
}

#[tokio::test]
async fn ca_file_verifies_wrong_ca_and_name_fail_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("upstream CA");
    std::fs::write(dir.path().join("ca.pem"), &ca.cert_pem).unwrap();
    let other = TestCa::new("other CA");
    std::fs::write(dir.path().join("other.pem"), &other.cert_pem).unwrap();
    let addr = upstream(&ca.leaf(&["backend.internal"]), None).await;

    // Relative ca_file resolves against the config folder.
    let good = tls(Some(Path::new("ca.pem")));
    assert_eq!(
        connect(addr, &good, dir.path(), "backend.internal")
            .await
            .unwrap(),
        "backend.internal"
    );

    let wrong = tls(Some(Path::new("other.pem")));
    let err = connect(addr, &wrong, dir.path(), "backend.internal")
        .await
        .unwrap_err();
    let reason = failure_reason(&err);
    assert!(
        reason.starts_with("certificate verify failed: unknown issuer"),
        "{reason}"
    );
    assert!(!reason.contains('\n'));

    let err = connect(addr, &good, dir.path(), "other.internal")
        .await
        .unwrap_err();
    let reason = failure_reason(&err);
    assert!(
        reason.contains("certificate verify failed") && reason.contains("not valid for name"),
        "{reason}"
    );

    // server_name overrides the host for SNI and verification.
    let mut named = good.clone();
    named.server_name = Some("backend.internal".into());
    assert_eq!(
        connect(addr, &named, dir.path(), "127.0.0.1")
            .await
            .unwrap(),
        "backend.internal"
    );

    // System (Mozilla) roots do not know a private CA.
    let err = connect(addr, &tls(None), dir.path(), "backend.internal")
        .await
        .unwrap_err();
    assert!(failure_reason(&err).contains("unknown issuer"));

    // verify = false connects anyway.
    let mut insecure = tls(None);
    insecure.verify = false;
    assert_eq!(
        connect(addr, &insecure, dir.path(), "anything.test")
            .await
            .unwrap(),
        "anything.test"
    );
}

#[tokio::test]
async fn client_certificate_is_presented_when_configured() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("mtls CA");
    std::fs::write(dir.path().join("ca.pem"), &ca.cert_pem).unwrap();
    let client_ca = TestCa::new("client CA");
    let client = client_ca.leaf(&["portico.client"]);
    std::fs::write(dir.path().join("client.pem"), &client.chain_pem).unwrap();
    std::fs::write(dir.path().join("client.key"), &client.key_pem).unwrap();
    let addr = upstream(&ca.leaf(&["mtls.internal"]), Some(&client_ca)).await;

    let mut with_cert = tls(Some(Path::new("ca.pem")));
    with_cert.client_cert = Some("client.pem".into());
    with_cert.client_key = Some("client.key".into());
    assert_eq!(
        connect(addr, &with_cert, dir.path(), "mtls.internal")
            .await
            .unwrap(),
        "mtls.internal"
    );

    // Without one the server refuses (TLS 1.3 reports it on the first read).
    let without = tls(Some(Path::new("ca.pem")));
    let err = connect(addr, &without, dir.path(), "mtls.internal")
        .await
        .unwrap_err();
    let reason = failure_reason(&err);
    assert!(
        reason.starts_with("server refused the handshake: CertificateRequired"),
        "{reason}"
    );

    // Only one of the pair is a configuration error.
    let mut half = tls(None);
    half.client_cert = Some("client.pem".into());
    let e = portico_tls::client_config(&half, dir.path()).unwrap_err();
    assert!(e.to_string().contains("together"), "{e}");
}
