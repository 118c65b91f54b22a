//! TLS termination over the resolver with real tokio-rustls clients on 127.0.0.1: certificate
//! chosen by SNI (exact, wildcard, default), unknown names and names without a certificate
//! refused cleanly while other names keep working, ALPN, both TLS versions, live swaps.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use crate::support::*;
use portico_tls::rustls;
use portico_tls::{CertResolver, NamePattern};

fn names(list: &[&str]) -> Vec<NamePattern> {
    list.iter().map(|n| NamePattern::parse(n)).collect()
}

#[tokio::test]
async fn certificate_by_sni_exact_and_wildcard_unknown_refused() {
    let ca = TestCa::new("sni test CA");
    let (a, wild) = (ca.leaf(&["a.test"]), ca.leaf(&["*.w.test"]));
    let resolver = CertResolver::new();
    resolver.set("a", names(&["a.test"]), certified(&a));
    resolver.set("w", names(&["*.w.test"]), certified(&wild));
    let addr = tls_echo(resolver.clone(), 0).await;
    let client = client_config(ca.roots(), &[b"h2", b"http/1.1"]);

    let hs = handshake(addr, client.clone(), "a.test").await.unwrap();
    assert_eq!(hs.leaf, a.der);
    assert_eq!(hs.alpn.as_deref(), Some(&b"h2"[..]));
    let mut hs = handshake(addr, client.clone(), "x.w.test").await.unwrap();
    assert_eq!(hs.leaf, wild.der);
    assert_eq!(echo_roundtrip(&mut hs.stream, b"ping").await, b"ping");

    let err = handshake(addr, client.clone(), "unknown.test")
        .await
        .err()
        .unwrap();
    assert!(
        err.to_string().contains("alert") || err.to_string().contains("Alert"),
        "{err}"
    );
    // The listener keeps serving after a refused handshake.
    assert_eq!(
        handshake(addr, client.clone(), "a.test")
            .await
            .unwrap()
            .leaf,
        a.der
    );

    // With a default, unknown names get the first site's certificate (and fail name checks
    // on the client side, as with nginx's default server).
    resolver.set_default(Some("a"));
    let err = handshake(addr, client.clone(), "unknown.test")
        .await
        .err()
        .unwrap();
    assert!(err.to_string().contains("not valid for name"), "{err}");
}

#[tokio::test]
async fn name_without_certificate_fails_cleanly_others_keep_working() {
    let ca = TestCa::new("pending test CA");
    let a = ca.leaf(&["a.test"]);
    let resolver = CertResolver::new();
    resolver.set("a", names(&["a.test"]), certified(&a));
    resolver.set_default(Some("a"));
    resolver.reserve("acme:b.test", names(&["b.test"]));
    let addr = tls_echo(resolver.clone(), 0).await;
    let client = client_config(ca.roots(), &[b"http/1.1"]);

    let err = handshake(addr, client.clone(), "b.test")
        .await
        .err()
        .unwrap();
    assert!(
        err.to_string().to_lowercase().contains("alert"),
        "refused with an alert: {err}"
    );
    let mut ok = handshake(addr, client.clone(), "a.test").await.unwrap();
    assert_eq!(ok.alpn.as_deref(), Some(&b"http/1.1"[..]));

    // The certificate arrives: swapped in live; the open connection is untouched.
    let b = ca.leaf(&["b.test"]);
    assert!(resolver.replace_key("acme:b.test", certified(&b)));
    assert_eq!(
        handshake(addr, client.clone(), "b.test")
            .await
            .unwrap()
            .leaf,
        b.der
    );
    assert_eq!(
        echo_roundtrip(&mut ok.stream, b"still here").await,
        b"still here"
    );
}

#[tokio::test]
async fn tls12_and_tls13_both_negotiate() {
    let ca = TestCa::new("versions CA");
    let a = ca.leaf(&["a.test"]);
    let resolver = CertResolver::new();
    resolver.set("a", names(&["a.test"]), certified(&a));
    let addr = tls_echo(resolver, 0).await;
    for (version, expect) in [
        (&rustls::version::TLS12, rustls::ProtocolVersion::TLSv1_2),
        (&rustls::version::TLS13, rustls::ProtocolVersion::TLSv1_3),
    ] {
        let config = rustls::ClientConfig::builder_with_provider(portico_tls::default_provider())
            .with_protocol_versions(&[version])
            .unwrap()
            .with_root_certificates(ca.roots())
            .with_no_client_auth();
        let hs = handshake(addr, Arc::new(config), "a.test").await.unwrap();
        assert_eq!(hs.stream.get_ref().1.protocol_version(), Some(expect));
    }
}

#[tokio::test]
async fn acme_tls_alpn_handshake_gets_the_challenge_certificate_only() {
    let ca = TestCa::new("alpn CA");
    let (a, challenge) = (ca.leaf(&["a.test"]), ca.leaf(&["a.test"]));
    let resolver = CertResolver::new();
    resolver.set("a", names(&["a.test"]), certified(&a));
    let addr = tls_echo(resolver.clone(), 0).await;
    let acme_client = client_config(ca.roots(), &[b"acme-tls/1"]);

    // No pending challenge: an acme-tls/1 handshake is refused (not served the site cert).
    assert!(
        handshake(addr, acme_client.clone(), "a.test")
            .await
            .is_err()
    );
    resolver.set_alpn_challenge("A.test", certified(&challenge));
    let hs = handshake(addr, acme_client.clone(), "a.test")
        .await
        .unwrap();
    assert_eq!(hs.leaf, challenge.der);
    assert_eq!(hs.alpn.as_deref(), Some(&b"acme-tls/1"[..]));
    // Ordinary clients still get the site certificate meanwhile.
    let normal = client_config(ca.roots(), &[b"h2", b"acme-tls/1"]);
    assert_eq!(handshake(addr, normal, "a.test").await.unwrap().leaf, a.der);
    resolver.remove_alpn_challenge("a.test");
    assert!(handshake(addr, acme_client, "a.test").await.is_err());
}

fn site(
    index: usize,
    hosts: &[&str],
    tls: Option<portico_config::SiteTls>,
) -> portico_config::Site {
    portico_config::Site {
        index,
        listen: vec!["127.0.0.1:443".parse().unwrap()],
        hosts: hosts
            .iter()
            .map(|h| match NamePattern::parse(h) {
                NamePattern::Any => portico_config::HostPattern::Any,
                NamePattern::Exact(n) => portico_config::HostPattern::Exact(n),
                NamePattern::Suffix(s) => portico_config::HostPattern::Suffix(s),
            })
            .collect(),
        tls,
        http_redirect: true,
        http_listen: vec![],
        hsts: None,
        accept_proxy_protocol: false,
        routes: vec![],
        error_pages: vec![],
    }
}

#[tokio::test]
async fn sites_from_config_files_and_acme_first_site_is_default() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("sites CA");
    let a = ca.leaf(&["a.test", "*.a.test"]);
    std::fs::write(dir.path().join("a.pem"), &a.chain_pem).unwrap();
    std::fs::write(dir.path().join("a.key"), &a.key_pem).unwrap();
    let files_tls = portico_config::SiteTls::Files {
        cert: "a.pem".into(),
        key: "a.key".into(),
    };
    let sites = vec![
        site(0, &["plain.test"], None),
        site(1, &["a.test", "*.a.test"], Some(files_tls)),
        site(
            2,
            &["b.test", "www.b.test"],
            Some(portico_config::SiteTls::Acme),
        ),
    ];
    let resolver = CertResolver::new();
    let mut files = portico_tls::FileCerts::new(resolver.clone());
    let groups = portico_tls::install_sites(&sites, dir.path(), &mut files).unwrap();
    assert_eq!(
        groups,
        vec![vec!["b.test".to_string(), "www.b.test".to_string()]]
    );
    let addr = tls_echo(resolver.clone(), 0).await;
    let client = client_config(ca.roots(), &[]);
    assert_eq!(
        handshake(addr, client.clone(), "x.a.test")
            .await
            .unwrap()
            .leaf,
        a.der
    );
    // The ACME site has no certificate yet: refused, not answered with site 1's.
    assert!(handshake(addr, client.clone(), "www.b.test").await.is_err());
    // Unknown names get the first TLS site's certificate.
    let err = handshake(addr, client.clone(), "zzz.test")
        .await
        .err()
        .unwrap();
    assert!(err.to_string().contains("not valid for name"), "{err}");

    // Reload into the same resolver without site 1: its entry goes; the ACME site keeps its
    // certificate; the ACME site is now the default.
    let b = ca.leaf(&["b.test", "www.b.test"]);
    assert!(resolver.replace_key("acme:b.test", certified(&b)));
    let reloaded = vec![sites[0].clone(), sites[2].clone()];
    let mut files = portico_tls::FileCerts::new(resolver.clone());
    portico_tls::install_sites(&reloaded, dir.path(), &mut files).unwrap();
    assert_eq!(resolver.ids(), vec!["acme:b.test".to_string()]);
    assert_eq!(
        handshake(addr, client.clone(), "www.b.test")
            .await
            .unwrap()
            .leaf,
        b.der
    );
    let err = handshake(addr, client.clone(), "x.a.test")
        .await
        .err()
        .unwrap();
    assert!(
        err.to_string().contains("www.b.test"),
        "the default is now the ACME site: {err}"
    );

    let wildcard_acme = vec![site(0, &["*.c.test"], Some(portico_config::SiteTls::Acme))];
    let mut files = portico_tls::FileCerts::new(CertResolver::new());
    let err = portico_tls::install_sites(&wildcard_acme, dir.path(), &mut files).unwrap_err();
    assert!(err.to_string().contains("wildcard"), "{err}");
}
