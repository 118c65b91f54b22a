//! ACME against a real pebble + pebble-challtestsrv: HTTP-01 and TLS-ALPN-01 orders with
//! several names, the account created once and reused, certificates stored (keys 0600) and
//! verified against pebble's root, renewal of short-lived certificates swapped in live, and
//! order timing (printed). Without pebble the tests skip, or fail under `CI=true`.
#![allow(clippy::unwrap_used)]

fn trace() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::{Duration, Instant};

use crate::support::pebble::{Pebble, http01_responder, start_pebble, verify_chain};
use crate::support::*;
use portico_tls::CertResolver;
use portico_tls::acme::{
    AcmeDirectory, AcmeManager, AcmeSettings, ChallengeKind, Http01Challenges, KeyType,
};

fn settings(pebble: &Pebble, state: &std::path::Path, challenge: ChallengeKind) -> AcmeSettings {
    let mut s = AcmeSettings::new("ops@portico.test", state);
    s.directory = AcmeDirectory::Url(pebble.directory_url());
    s.directory_ca = Some(pebble.tls_ca_path());
    s.challenge = challenge;
    s
}

fn mode(path: &std::path::Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// Traces, skips without pebble (fails under CI), and bounds `test` to 60 s.
async fn with_pebble(test: impl std::future::Future<Output = ()>) {
    trace();
    if portico_testkit::require(portico_testkit::pebble::find()).is_none() {
        return;
    }
    tokio::time::timeout(Duration::from_secs(60), test)
        .await
        .expect("test timed out");
}

/// An HTTP-01 challenge map, its responder (and its count of answered challenges) and a
/// pebble validating HTTP-01 against that responder; `validity_secs` as [`Pebble::start_temp`].
async fn http01_pebble(validity_secs: Option<u64>) -> (Http01Challenges, Arc<AtomicUsize>, Pebble) {
    let http01 = Http01Challenges::new();
    let (http_addr, hits) = http01_responder(http01.clone()).await;
    let pebble = start_pebble(http_addr.port(), 1, validity_secs).await;
    (http01, hits, pebble)
}

/// An HTTP-01 manager on `pebble` keeping its state in `state`, installing into `resolver`,
/// publishing its challenges in `http01`.
fn http01_manager(
    pebble: &Pebble,
    state: &std::path::Path,
    resolver: Arc<CertResolver>,
    http01: &Http01Challenges,
) -> AcmeManager {
    AcmeManager::new(
        settings(pebble, state, ChallengeKind::Http01),
        resolver,
        http01.clone(),
    )
    .unwrap()
}

/// The directory of the (only) ACME account under `state`.
fn account_dir(state: &std::path::Path) -> std::path::PathBuf {
    std::fs::read_dir(state.join("acme"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http01_order_several_names_account_kept_cert_stored_and_verified() {
    with_pebble(async {
        let (http01, hits, pebble) = http01_pebble(None).await;
        let state = tempfile::tempdir().unwrap();
        let resolver = CertResolver::new();
        let acme = http01_manager(&pebble, state.path(), resolver.clone(), &http01);

        let names = vec![
            "lb.portico.test".to_string(),
            "www.lb.portico.test".to_string(),
        ];
        let t0 = Instant::now();
        let info = acme
            .order_now(&names)
            .await
            .unwrap_or_else(|e| panic!("{e}\n{}", pebble.logs()));
        let first = t0.elapsed();
        assert!(
            hits.load(std::sync::atomic::Ordering::Relaxed) >= 2,
            "pebble validated over HTTP-01"
        );
        assert!(
            http01.is_empty(),
            "challenge tokens withdrawn after the order"
        );
        let mut sans = info.names.clone();
        sans.sort();
        assert_eq!(sans, vec!["lb.portico.test", "www.lb.portico.test"]);

        let (chain, key) = acme.stored_paths(&names);
        let roots = pebble.roots();
        verify_chain(
            &std::fs::read(&chain).unwrap(),
            roots.clone(),
            "www.lb.portico.test",
        );
        assert_eq!(mode(&key), 0o600);
        let account = account_dir(state.path()).join("account.json");
        assert_eq!(mode(&account), 0o600);
        let account_json = std::fs::read(&account).unwrap();
        assert!(resolver.lookup(Some("www.lb.portico.test")).is_some());

        // Second order, same account (no registration).
        let t1 = Instant::now();
        acme.order_now(&["api.portico.test".to_string()])
            .await
            .unwrap();
        let second = t1.elapsed();
        println!(
            "ACME HTTP-01 order, 2 names, incl. account registration: {} ms",
            first.as_millis()
        );
        println!(
            "ACME HTTP-01 order, 1 name, existing account: {} ms",
            second.as_millis()
        );
        assert!(
            first < Duration::from_millis(2600),
            "slower than certbot: {first:?}"
        );

        // A new manager on the same state_dir: the stored account and certificate are used,
        // nothing is ordered.
        let resolver2 = CertResolver::new();
        let acme2 = http01_manager(&pebble, state.path(), resolver2.clone(), &http01);
        let task = acme2.manage(names.clone());
        eventually(
            "stored certificate installed",
            Duration::from_secs(5),
            || resolver2.lookup(Some("lb.portico.test")).is_some(),
        )
        .await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let status = acme2.status();
        assert_eq!(status[0].orders, 0, "no new order: {status:?}");
        assert!(
            status[0].next_attempt.unwrap()
                > std::time::SystemTime::now() + Duration::from_secs(86_400)
        );
        assert_eq!(
            std::fs::read(&account).unwrap(),
            account_json,
            "account kept"
        );
        task.abort();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_alpn01_order_through_the_tls_listener_rsa_key() {
    with_pebble(async {
        let resolver = CertResolver::new();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let tls_port = listener.local_addr().unwrap().port();
        drop(listener);
        let (addr, validations) = tls_echo_counting(resolver.clone(), tls_port).await;
        let pebble = start_pebble(1, tls_port, None).await;
        let state = tempfile::tempdir().unwrap();
        let mut s = settings(&pebble, state.path(), ChallengeKind::TlsAlpn01);
        s.key_type = KeyType::Rsa2048;
        let acme = AcmeManager::new(s, resolver.clone(), Http01Challenges::new()).unwrap();
        let names = vec![
            "alpn.portico.test".to_string(),
            "www.alpn.portico.test".to_string(),
        ];
        let t0 = Instant::now();
        acme.order_now(&names)
            .await
            .unwrap_or_else(|e| panic!("{e}\n{}", pebble.logs()));
        println!(
            "ACME TLS-ALPN-01 order, 2 names, RSA-2048, incl. account: {} ms",
            t0.elapsed().as_millis()
        );
        let answered = validations.load(std::sync::atomic::Ordering::Relaxed);
        assert!(
            answered >= 2,
            "pebble validated over acme-tls/1 ({answered} handshakes)"
        );

        // The issued certificate is served by the same listener and verifies against pebble's root.
        let client = client_config(pebble.roots(), &[b"h2", b"http/1.1"]);
        let mut hs = handshake(addr, client, "www.alpn.portico.test")
            .await
            .unwrap();
        assert_eq!(echo_roundtrip(&mut hs.stream, b"hello").await, b"hello");
        let key_pem = std::fs::read_to_string(acme.stored_paths(&names).1).unwrap();
        assert!(key_pem.contains("PRIVATE KEY"));
        let info = portico_tls::pem::CertInfo::from_der(&hs.leaf).unwrap();
        assert!(info.names.contains(&"alpn.portico.test".to_string()));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_lived_certificate_is_renewed_and_swapped_live() {
    with_pebble(async {
        // 24 s certificates: renewal when a third (8 s) is left, i.e. ~16 s after issuance.
        let (http01, _, pebble) = http01_pebble(Some(24)).await;
        let state = tempfile::tempdir().unwrap();
        let resolver = CertResolver::new();
        let addr = tls_echo(resolver.clone(), 0).await;
        let acme = http01_manager(&pebble, state.path(), resolver.clone(), &http01);
        let names = vec!["renew.portico.test".to_string()];
        let task = acme.manage(names.clone());
        eventually("first certificate", Duration::from_secs(10), || {
            acme.status().first().is_some_and(|s| s.orders == 1)
        })
        .await;
        let issued_at = Instant::now();
        let client = client_config(pebble.roots(), &[b"http/1.1"]);
        let mut before = handshake(addr, client.clone(), "renew.portico.test")
            .await
            .unwrap();
        let first_leaf = before.leaf.clone();
        let first_after = acme.status()[0].not_after.unwrap();

        eventually("renewed certificate", Duration::from_secs(30), || {
            acme.status().first().is_some_and(|s| s.orders >= 2)
        })
        .await;
        let renewed_after = issued_at.elapsed();
        println!(
            "renewed {} ms after the first issuance (24 s lifetime)",
            renewed_after.as_millis()
        );
        assert!(
            renewed_after > Duration::from_secs(10),
            "not renewed too early: {renewed_after:?}"
        );
        let after = handshake(addr, client, "renew.portico.test").await.unwrap();
        assert_ne!(
            after.leaf, first_leaf,
            "new certificate served without restart"
        );
        assert!(acme.status()[0].not_after.unwrap() > first_after);
        // The connection opened before the swap keeps working.
        assert_eq!(echo_roundtrip(&mut before.stream, b"alive").await, b"alive");
        task.abort();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn account_unknown_to_a_restarted_ca_is_recreated() {
    with_pebble(async {
        let (http01, _, mut pebble) = http01_pebble(None).await;
        let state = tempfile::tempdir().unwrap();
        let acme = http01_manager(&pebble, state.path(), CertResolver::new(), &http01);
        let names = vec!["again.portico.test".to_string()];
        acme.order_now(&names).await.unwrap();
        pebble.restart();
        let err = acme.order_now(&names).await.unwrap_err();
        assert!(
            matches!(err, portico_tls::TlsError::AcmeAccountUnknown { .. }),
            "{err}"
        );
        acme.order_now(&names)
            .await
            .unwrap_or_else(|e| panic!("new account and order: {e}"));
        let account_dir = account_dir(state.path());
        assert!(
            account_dir.join("account.json.unknown").exists(),
            "old account kept aside"
        );
        assert_eq!(mode(&account_dir.join("account.json")), 0o600);
        verify_chain(
            &std::fs::read(acme.stored_paths(&names).0).unwrap(),
            pebble.roots(),
            "again.portico.test",
        );
    })
    .await;
}

fn site(index: usize, hosts: &[&str], tls: portico_config::SiteTls) -> portico_config::Site {
    portico_config::Site {
        index,
        listen: vec!["127.0.0.1:443".parse().unwrap()],
        hosts: hosts
            .iter()
            .map(|h| portico_config::HostPattern::Exact(h.to_string()))
            .collect(),
        tls: Some(tls),
        http_redirect: true,
        http_listen: vec![],
        hsts: None,
        accept_proxy_protocol: false,
        routes: vec![],
        error_pages: vec![],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_runtime_serves_files_and_acme_sites_and_reloads() {
    with_pebble(async {
        let dir = tempfile::tempdir().unwrap();
        let ca = TestCa::new("runtime CA");
        let files_leaf = ca.leaf(&["files.portico.test"]);
        std::fs::write(dir.path().join("f.pem"), &files_leaf.chain_pem).unwrap();
        std::fs::write(dir.path().join("f.key"), &files_leaf.key_pem).unwrap();
        let files_site = site(
            0,
            &["files.portico.test"],
            portico_config::SiteTls::Files {
                cert: "f.pem".into(),
                key: "f.key".into(),
            },
        );
        let acme_site = site(1, &["auto.portico.test"], portico_config::SiteTls::Acme);

        // Without [acme], an ACME site is a configuration error.
        let err = portico_tls::TlsRuntime::start(
            std::slice::from_ref(&acme_site),
            dir.path(),
            None,
            Http01Challenges::new(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("[acme]"), "{err}");

        // The plain listener exists before pebble (its port goes into pebble's config) and
        // shares its HTTP-01 map with the runtime.
        let (http01, _, pebble) = http01_pebble(None).await;
        let state = tempfile::tempdir().unwrap();
        let mut runtime = portico_tls::TlsRuntime::start(
            &[files_site.clone(), acme_site.clone()],
            dir.path(),
            Some(settings(&pebble, state.path(), ChallengeKind::Http01)),
            http01.clone(),
        )
        .unwrap();
        let addr = tls_echo(runtime.resolver().clone(), 0).await;
        let files_client = client_config(ca.roots(), &[]);
        assert_eq!(
            handshake(addr, files_client.clone(), "files.portico.test")
                .await
                .unwrap()
                .leaf,
            files_leaf.der
        );
        eventually(
            "ACME certificate for auto.portico.test",
            Duration::from_secs(20),
            || runtime.acme_status().first().is_some_and(|s| s.orders == 1),
        )
        .await;
        let acme_client = client_config(pebble.roots(), &[]);
        handshake(addr, acme_client.clone(), "auto.portico.test")
            .await
            .unwrap();

        // Reload without the ACME site: its entry goes away; the files site stays.
        runtime
            .reload(std::slice::from_ref(&files_site), dir.path())
            .unwrap();
        assert!(
            handshake(addr, acme_client, "auto.portico.test")
                .await
                .is_err()
        );
        assert_eq!(
            handshake(addr, files_client, "files.portico.test")
                .await
                .unwrap()
                .leaf,
            files_leaf.der
        );
        assert_eq!(runtime.file_status().len(), 1);
        runtime.stop();
    })
    .await;
}

/// A reload that adds `[acme]` and an ACME site gets the site its certificate; a reload with
/// changed `[acme]` settings restarts the ACME tasks with them, the stored certificate
/// serving throughout and nothing ordered; a reload whose `directory_ca` cannot be read
/// changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_runtime_reload_adds_and_changes_acme_settings() {
    with_pebble(async {
        let dir = tempfile::tempdir().unwrap();
        let (http01, _, pebble) = http01_pebble(None).await;
        let state = tempfile::tempdir().unwrap();
        let acme_site = site(0, &["added.portico.test"], portico_config::SiteTls::Acme);

        // Started without [acme] and without ACME sites.
        let mut runtime =
            portico_tls::TlsRuntime::start(&[], dir.path(), None, http01.clone()).unwrap();
        assert!(runtime.acme_status().is_empty());
        // An ACME site without [acme]: refused, as at start.
        assert!(
            runtime
                .reload_with_acme(std::slice::from_ref(&acme_site), dir.path(), None)
                .is_err()
        );
        // [acme] and the site added by one reload.
        let settings_a = settings(&pebble, state.path(), ChallengeKind::Http01);
        let replaced = runtime
            .reload_with_acme(
                std::slice::from_ref(&acme_site),
                dir.path(),
                Some(settings_a.clone()),
            )
            .unwrap();
        assert!(replaced);
        let addr = tls_echo(runtime.resolver().clone(), 0).await;
        let client = client_config(pebble.roots(), &[]);
        eventually(
            "certificate for the site added by reload",
            Duration::from_secs(20),
            || runtime.acme_status().first().is_some_and(|s| s.orders == 1),
        )
        .await;
        let first = handshake(addr, client.clone(), "added.portico.test")
            .await
            .unwrap()
            .leaf;

        // The same settings again: nothing restarts.
        let replaced = runtime
            .reload_with_acme(
                std::slice::from_ref(&acme_site),
                dir.path(),
                Some(settings_a.clone()),
            )
            .unwrap();
        assert!(!replaced);
        assert_eq!(runtime.acme_status()[0].orders, 1);

        // directory_ca unreadable: an error, the running manager stays.
        let mut broken = settings_a.clone();
        broken.directory_ca = Some(dir.path().join("missing-ca.pem"));
        assert!(
            runtime
                .reload_with_acme(std::slice::from_ref(&acme_site), dir.path(), Some(broken))
                .is_err()
        );
        assert_eq!(runtime.acme_status()[0].orders, 1);

        // Changed settings (key type): a new manager; the stored certificate keeps serving
        // and nothing is ordered (it is not due).
        let mut settings_b = settings_a.clone();
        settings_b.key_type = KeyType::Rsa2048;
        let replaced = runtime
            .reload_with_acme(
                std::slice::from_ref(&acme_site),
                dir.path(),
                Some(settings_b),
            )
            .unwrap();
        assert!(replaced);
        eventually(
            "the new manager installed the stored certificate",
            Duration::from_secs(5),
            || {
                runtime
                    .acme_status()
                    .first()
                    .is_some_and(|s| s.not_after.is_some() && s.next_attempt.is_some())
            },
        )
        .await;
        let again = handshake(addr, client, "added.portico.test")
            .await
            .unwrap()
            .leaf;
        assert_eq!(again, first, "the stored certificate serves on");
        assert_eq!(runtime.acme_status()[0].orders, 0, "nothing ordered");
        runtime.stop();
    })
    .await;
}
