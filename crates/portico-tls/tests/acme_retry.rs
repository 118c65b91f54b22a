//! The ACME directory is down (nothing listens): the manager keeps retrying with growing,
//! jittered delays, never crashes, and the stored certificate (due for renewal) keeps serving.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::{Duration, SystemTime};

use portico_tls::CertResolver;
use portico_tls::acme::{AcmeDirectory, AcmeManager, AcmeSettings, Http01Challenges};
use support::*;

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
