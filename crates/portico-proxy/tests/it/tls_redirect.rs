//! `http_redirect` / `http_listen`: the plain-HTTP side of TLS sites answers 301 to https
//! (same host, the TLS listener's port, same URI), except ACME HTTP-01 challenges, which
//! every plain listener answers; several sites share one `http_listen` address with a plain
//! site; `hsts` only on https.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::tls_support::*;

const TLS: &str = "127.0.0.1:0";
const HTTP: &str = "127.0.0.2:0";
const OTHER: &str = "127.0.0.3:0";

fn setup() -> (TestCa, TlsProxy) {
    let ca = TestCa::new("redirect test CA");
    let (a, b) = (ca.leaf(&["a.test"]), ca.leaf(&["b.test", "www.b.test"]));
    let toml = format!(
        r#"
[[sites]]
listen = ["{TLS}"]
hosts = ["a.test"]
tls = {{ cert = "a.pem", key = "a.key" }}
http_listen = ["{HTTP}"]
hsts = "max-age=31536000"
[[sites.routes]]
path = "/"
respond = "secure a"

[[sites]]
listen = ["{TLS}"]
hosts = ["b.test", "www.b.test"]
tls = {{ cert = "b.pem", key = "b.key" }}
http_listen = ["{HTTP}"]
[[sites.routes]]
path = "/"
respond = "secure b"

[[sites]]
listen = ["{HTTP}"]
hosts = ["plain.test"]
[[sites.routes]]
path = "/"
respond = "plain site"

[[sites]]
listen = ["{OTHER}"]
[[sites.routes]]
path = "/"
respond = "other plain listener"
{}"#,
        tls_site(TLS, "noredirect.test", "a", "respond = \"no redirect\"")
    );
    let proxy = TlsProxy::start(&toml, &cert_files(&[("a", &a), ("b", &b)]));
    (ca, proxy)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_side_redirects_to_the_tls_port_with_host_and_uri() {
    let (ca, proxy) = setup();
    let (http, tls) = (proxy.addr(HTTP), proxy.addr(TLS));
    let port = tls.port();
    assert_ne!(port, 443);
    for (host, path, want) in [
        ("a.test", "/", format!("https://a.test:{port}/")),
        (
            "a.test:80",
            "/x/y?q=1&r",
            format!("https://a.test:{port}/x/y?q=1&r"),
        ),
        (
            "www.b.test:8080",
            "/deep/path",
            format!("https://www.b.test:{port}/deep/path"),
        ),
    ] {
        let r = plain_get(http, host, path).await;
        assert_eq!(r.status, 301, "{host}{path}: {}", r.text());
        assert_eq!(r.header("location"), Some(want.as_str()));
        assert_eq!(
            r.header("strict-transport-security"),
            None,
            "no hsts on http"
        );
    }
    // The Location works: the TLS side answers it, with hsts.
    let config = client_config(ca.roots(), &[b"http/1.1"], &[]);
    let r = https_get(tls, config, "a.test", &format!("a.test:{port}"), "/x").await;
    assert_eq!((r.status, r.text().as_str()), (200, "secure a"));
    assert_eq!(
        r.header("strict-transport-security"),
        Some("max-age=31536000")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_site_on_the_same_address_is_served_not_redirected() {
    let (_ca, proxy) = setup();
    let r = plain_get(proxy.addr(HTTP), "plain.test", "/").await;
    assert_eq!((r.status, r.text().as_str()), (200, "plain site"));
    // http_redirect = false: no plain side for that site (its host is unknown there and the
    // first site on the address, a.test, redirects).
    let r = plain_get(proxy.addr(HTTP), "noredirect.test", "/").await;
    assert_eq!(r.status, 301);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acme_http01_challenges_are_answered_on_every_plain_listener() {
    let (_ca, proxy) = setup();
    proxy
        .http01
        .insert("tok-123".into(), "tok-123.thumbprint".into());
    let path = "/.well-known/acme-challenge/tok-123";
    // The validator's Host carries the port; any host works.
    for (addr, host) in [
        (proxy.addr(HTTP), "a.test:80"),
        (proxy.addr(HTTP), "plain.test"),
        (proxy.addr(OTHER), "whatever.test"),
    ] {
        let r = plain_get(addr, host, path).await;
        assert_eq!(r.status, 200, "{host}: {}", r.text());
        assert_eq!(r.text(), "tok-123.thumbprint");
    }
    // Unknown tokens are not answered from the store: redirect / normal routes as usual.
    let r = plain_get(
        proxy.addr(HTTP),
        "a.test",
        "/.well-known/acme-challenge/nope",
    )
    .await;
    assert_eq!(r.status, 301);
    let r = plain_get(proxy.addr(OTHER), "x", "/.well-known/acme-challenge/nope").await;
    assert_eq!(r.text(), "other plain listener");
    // Once withdrawn, the token is gone.
    proxy.http01.remove("tok-123");
    let r = plain_get(proxy.addr(HTTP), "a.test", path).await;
    assert_eq!(r.status, 301);
}

/// An ACME site whose certificate is not there yet (the CA is unreachable): its handshakes
/// fail cleanly while the other TLS site and the plain side keep working.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_without_a_certificate_yet_fails_its_handshake_only() {
    let ca = TestCa::new("pending CA");
    let files = ca.leaf(&["files.test"]);
    let toml = format!(
        r#"
[server]
state_dir = "state"

[acme]
email = "ops@example.test"
directory = "https://127.0.0.1:9/dir"
{}
[[sites]]
listen = ["{TLS}"]
hosts = ["pending.test"]
tls = "acme"
http_listen = ["{HTTP}"]
[[sites.routes]]
path = "/"
respond = "pending site"
"#,
        tls_site(TLS, "files.test", "f", "respond = \"files site\"")
    );
    let proxy = TlsProxy::start_acme(&toml, &cert_files(&[("f", &files)]));
    let tls = proxy.addr(TLS);
    let config = client_config(ca.roots(), &[b"http/1.1"], &[]);
    for _ in 0..3 {
        let Err(e) = connect(tls, config.clone(), "pending.test").await else {
            panic!("no certificate yet: the handshake must fail");
        };
        assert!(!e.to_string().contains("timed out"), "fails at once: {e}");
        let r = https_get(tls, config.clone(), "files.test", "files.test", "/").await;
        assert_eq!((r.status, r.text().as_str()), (200, "files site"));
    }
    let r = plain_get(proxy.addr(HTTP), "pending.test", "/x").await;
    assert_eq!(r.status, 301);
    assert_eq!(
        r.header("location"),
        Some(format!("https://pending.test:{}/x", tls.port()).as_str())
    );
}
