//! Reloads with TLS sites: the TLS runtime gets the new sites first, then the server swaps;
//! a new TLS listener serves its new certificate by SNI, its redirect side names the port
//! the new listener actually got, and the sites that stayed keep serving.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use crate::tls_support::*;
use portico_balance::Registry;

const A_TLS: &str = "127.0.0.1:0";
const B_TLS: &str = "127.0.0.5:0";
const B_HTTP: &str = "127.0.0.6:0";

fn site_a() -> String {
    format!(
        r#"
[[sites]]
listen = ["{A_TLS}"]
hosts = ["a.test"]
tls = {{ cert = "a.pem", key = "a.key" }}
http_redirect = false
[[sites.routes]]
path = "/"
respond = "site a"
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_adds_a_tls_site_with_its_certificate_and_redirect_port() {
    let ca = TestCa::new("reload CA");
    let (a, b) = (ca.leaf(&["a.test"]), ca.leaf(&["b.test"]));
    let mut proxy = TlsProxy::start(&site_a(), &[("a.pem", &a.chain_pem), ("a.key", &a.key_pem)]);
    let config = client_config(ca.roots(), &[b"http/1.1"], &[]);
    let a_addr = proxy.addr(A_TLS);
    let r = https_get(a_addr, config.clone(), "a.test", "a.test", "/").await;
    assert_eq!(r.text(), "site a");

    // The new config: site b on a new TLS listener with its own plain side.
    std::fs::write(proxy.path("b.pem"), &b.chain_pem).unwrap();
    std::fs::write(proxy.path("b.key"), &b.key_pem).unwrap();
    let toml = format!(
        r#"{}
[[sites]]
listen = ["{B_TLS}"]
hosts = ["b.test"]
tls = {{ cert = "b.pem", key = "b.key" }}
http_listen = ["{B_HTTP}"]
[[sites.routes]]
path = "/"
respond = "site b"
"#,
        site_a()
    );
    let path = proxy.path("portico.toml");
    std::fs::write(&path, &toml).unwrap();
    let mut next = portico_config::parse(&toml, &path).expect("valid");
    next.server.threads = 1;
    next.server.access_log = portico_config::AccessLogTarget::Off;
    let next = Arc::new(next);
    proxy
        .tls
        .reload(&next.sites, &next.base_dir)
        .expect("certificates");
    let outcome = proxy
        .server
        .as_ref()
        .unwrap()
        .reload(next.clone(), &Registry::default())
        .expect("reload");
    let bound = |want: &str| {
        let want: std::net::SocketAddr = want.parse().unwrap();
        outcome
            .listeners_added
            .iter()
            .find(|(c, _)| *c == want)
            .map(|(_, b)| *b)
            .unwrap_or_else(|| panic!("{want} added: {outcome:?}"))
    };
    let (b_tls, b_http) = (bound(B_TLS), bound(B_HTTP));

    let stream = connect(b_tls, config.clone(), "b.test")
        .await
        .expect("b handshake");
    assert_eq!(peer_leaf(&stream), b.der);
    let r = https_get(b_tls, config.clone(), "b.test", "b.test", "/").await;
    assert_eq!((r.status, r.text().as_str()), (200, "site b"));
    let r = plain_get(b_http, "b.test", "/p?q").await;
    assert_eq!(r.status, 301);
    assert_eq!(
        r.header("location"),
        Some(format!("https://b.test:{}/p?q", b_tls.port()).as_str()),
        "the redirect names the new listener's bound port"
    );
    // Site a kept its listener and certificate.
    let stream = connect(a_addr, config.clone(), "a.test")
        .await
        .expect("a handshake");
    assert_eq!(peer_leaf(&stream), a.der);
    let r = https_get(a_addr, config, "a.test", "a.test", "/").await;
    assert_eq!(r.text(), "site a");
    proxy.config = next;
}
