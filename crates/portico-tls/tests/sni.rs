//! TLS termination over the resolver with real tokio-rustls clients on 127.0.0.1: certificate
//! chosen by SNI (exact, wildcard, default), unknown names and names without a certificate
//! refused cleanly while other names keep working, ALPN, both TLS versions, live swaps.
#![allow(clippy::unwrap_used)]

mod support;

use std::sync::Arc;

use portico_tls::rustls;
use portico_tls::{CertResolver, NamePattern};
use support::*;

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
