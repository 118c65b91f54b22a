//! The ACME directory is down (nothing listens): the manager keeps retrying with growing,
//! jittered delays, never crashes, and the stored certificate (due for renewal) keeps serving.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, SystemTime};

use crate::support::*;
use portico_tls::CertResolver;
use portico_tls::acme::{AcmeDirectory, AcmeManager, AcmeSettings, Http01Challenges};

#[tokio::test]
async fn directory_down_retries_with_backoff_and_keeps_the_old_certificate() {
    let test = async {
        let state = tempfile::tempdir().unwrap();
        // A stored certificate 10 days old with one hour left: due for renewal now.
        let ca = TestCa::new("old CA");
        let now = time::OffsetDateTime::now_utc();
        let old = ca.leaf_with(&["down.portico.test"], |p| {
            p.not_before = now - time::Duration::days(10);
            p.not_after = now + time::Duration::hours(1);
        });
        let dir = state.path().join("certs/down.portico.test");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("fullchain.pem"), &old.chain_pem).unwrap();
        std::fs::write(dir.join("key.pem"), &old.key_pem).unwrap();

        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = closed.local_addr().unwrap().port();
        drop(closed);
        let mut settings = AcmeSettings::new("ops@portico.test", state.path());
        settings.directory = AcmeDirectory::Url(format!("https://127.0.0.1:{port}/dir"));
        settings.tuning.retry_initial = Duration::from_millis(100);
        settings.tuning.retry_max = Duration::from_millis(800);
        let resolver = CertResolver::new();
        let addr = tls_echo(resolver.clone(), 0).await;
        let acme = AcmeManager::new(settings, resolver.clone(), Http01Challenges::new()).unwrap();
        let task = acme.manage(vec!["down.portico.test".to_string()]);

        eventually("several failed attempts", Duration::from_secs(10), || {
            acme.status().first().is_some_and(|s| s.failures >= 4)
        })
        .await;
        let status = acme.status().remove(0);
        let error = status.last_error.clone().unwrap();
        assert!(
            error.contains("ACME account"),
            "names the failed step: {error}"
        );
        assert!(status.next_attempt.unwrap() > SystemTime::now() - Duration::from_millis(50));
        assert!(!task.is_finished(), "the manager task is still running");
        let hs = handshake(addr, client_config(ca.roots(), &[]), "down.portico.test")
            .await
            .unwrap();
        assert_eq!(hs.leaf, old.der, "the old certificate keeps serving");
        task.abort();
    };
    tokio::time::timeout(Duration::from_secs(30), test)
        .await
        .expect("test timed out");
}

/// An HTTPS endpoint that answers every request 503 with `Retry-After: 3` (as an overloaded
/// CA does); counts requests.
async fn overloaded_directory(
    ca: &TestCa,
) -> (
    std::net::SocketAddr,
    std::sync::Arc<std::sync::atomic::AtomicUsize>,
) {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let leaf = ca.leaf_with(&["localhost"], |p| {
        p.subject_alt_names
            .push(rcgen::SanType::IpAddress("127.0.0.1".parse().unwrap()));
    });
    let chain = portico_tls::pem::parse_chain(leaf.chain_pem.as_bytes(), std::path::Path::new("t"))
        .unwrap();
    let config =
        portico_tls::rustls::ServerConfig::builder_with_provider(portico_tls::default_provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(chain, pkcs8(&leaf.key_pem))
            .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, counter) = (acceptor.clone(), counter.clone());
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut buf = vec![0u8; 4096];
                let mut got = Vec::new();
                while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tls.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                    }
                }
                counter.fetch_add(1, Ordering::Relaxed);
                let body = r#"{"type":"urn:ietf:params:acme:error:rateLimited","detail":"busy","status":503}"#;
                let rsp = format!(
                    "HTTP/1.1 503 Service Unavailable\r\nRetry-After: 3\r\nContent-Type: application/problem+json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = tls.write_all(rsp.as_bytes()).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    (addr, hits)
}

#[tokio::test]
async fn retry_after_from_the_ca_is_honoured_over_a_shorter_backoff() {
    use std::sync::atomic::Ordering;
    let test = async {
        let state = tempfile::tempdir().unwrap();
        let ca = TestCa::new("overloaded CA");
        let ca_path = state.path().join("ca.pem");
        std::fs::write(&ca_path, &ca.cert_pem).unwrap();
        let (addr, hits) = overloaded_directory(&ca).await;
        let mut settings = AcmeSettings::new("ops@portico.test", state.path());
        settings.directory = AcmeDirectory::Url(format!("https://{addr}/dir"));
        settings.directory_ca = Some(ca_path);
        settings.tuning.retry_initial = Duration::from_millis(50);
        settings.tuning.retry_max = Duration::from_millis(100);
        let acme =
            AcmeManager::new(settings, CertResolver::new(), Http01Challenges::new()).unwrap();
        let task = acme.manage(vec!["ra.portico.test".to_string()]);
        eventually("first failure", Duration::from_secs(5), || {
            acme.status().first().is_some_and(|s| s.failures >= 1)
        })
        .await;
        let failed_at = std::time::Instant::now();
        let status = acme.status().remove(0);
        let wait = status
            .next_attempt
            .unwrap()
            .duration_since(SystemTime::now())
            .unwrap_or_default();
        assert!(
            wait > Duration::from_millis(2000),
            "next attempt honours Retry-After: {wait:?}"
        );
        let error = status.last_error.unwrap();
        assert!(error.starts_with("ACME account"), "{error}");
        assert_eq!(hits.load(Ordering::Relaxed), 1);
        eventually(
            "second attempt after Retry-After",
            Duration::from_secs(6),
            || hits.load(Ordering::Relaxed) >= 2,
        )
        .await;
        assert!(
            failed_at.elapsed() > Duration::from_millis(2500),
            "{:?}",
            failed_at.elapsed()
        );
        task.abort();
    };
    tokio::time::timeout(Duration::from_secs(30), test)
        .await
        .expect("test timed out");
}
