//! The certificate of a handshake without SNI, or with a name no site of the listener serves,
//! is the one of the listener's first TLS site (nginx's default server of an address), not
//! a global default: two TLS listeners with their own sites, real sockets, rcgen
//! certificates. The default follows certificate file swaps and reloads that reorder sites.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Instant;

use crate::tls_support::*;
use portico_balance::Registry;
use portico_tls::rustls::ClientConfig;
use portico_tls::rustls::pki_types::{CertificateDer, ServerName};
use portico_tls::tokio_rustls::TlsConnector;
use tokio::net::TcpStream;

const A: &str = "127.0.0.1:0";
const B: &str = "127.0.0.5:0";

/// Sites interleaved in file order: a1 (A), b1 (B), a2 (A), b2 (B). The global first TLS
/// site is a1; listener B's is b1.
fn sites(order_b: [&str; 2]) -> String {
    let site = |name: &str, listen: &str| {
        format!(
            r#"
[[sites]]
listen = ["{listen}"]
hosts = ["{name}.test"]
tls = {{ cert = "{name}.pem", key = "{name}.key" }}
http_redirect = false
[[sites.routes]]
path = "/"
respond = "site {name}"
"#
        )
    };
    [
        site("a1", A),
        site(order_b[0], B),
        site("a2", A),
        site(order_b[1], B),
    ]
    .concat()
}

/// A client sending SNI (or not), offering `alpn`, no resumption.
fn client(sni: bool, alpn: &[u8]) -> Arc<ClientConfig> {
    // Accepts any certificate (still checks handshake signatures): these tests look at which
    // certificate the server chose, also for names it does not cover.
    let mut config = portico_testkit::certs::any_cert_client_config(&[alpn]);
    config.enable_sni = sni;
    Arc::new(config)
}

/// The leaf certificate served on `addr` to a ClientHello with `sni` (none when `None`).
async fn served(addr: std::net::SocketAddr, sni: Option<&str>) -> CertificateDer<'static> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    // With SNI off the name is only used for verification, which `any_cert_client_config` skips.
    let name = ServerName::try_from(sni.unwrap_or("no-sni.invalid").to_string()).unwrap();
    let connector = TlsConnector::from(client(sni.is_some(), b"http/1.1"));
    let stream = tokio::time::timeout(TIMEOUT, connector.connect(name, tcp))
        .await
        .expect("handshake in time")
        .unwrap_or_else(|e| panic!("handshake on {addr} with SNI {sni:?}: {e}"));
    peer_leaf(&stream)
}

struct Setup {
    proxy: TlsProxy,
    leaves: Vec<(&'static str, Leaf)>,
}

impl Setup {
    fn der(&self, name: &str) -> CertificateDer<'static> {
        self.leaves
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, l)| l.der.clone())
            .unwrap()
    }
}

fn setup() -> Setup {
    let ca = TestCa::new("default cert CA");
    let leaves: Vec<(&'static str, Leaf)> = ["a1", "a2", "b1", "b2"]
        .into_iter()
        .map(|n| (n, ca.leaf(&[&format!("{n}.test")])))
        .collect();
    let mut files = Vec::new();
    for (name, leaf) in &leaves {
        files.push((format!("{name}.pem"), leaf.chain_pem.clone()));
        files.push((format!("{name}.key"), leaf.key_pem.clone()));
    }
    let proxy = TlsProxy::start(&sites(["b1", "b2"]), &files);
    Setup { proxy, leaves }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_sni_gets_the_first_site_of_each_listener() {
    let s = setup();
    let (a, b) = (s.proxy.addr(A), s.proxy.addr(B));
    assert_eq!(served(a, None).await, s.der("a1"));
    assert_eq!(
        served(b, None).await,
        s.der("b1"),
        "listener B's first site, not the global first TLS site"
    );
    // And the site serves HTTP on that connection (no SNI: the Host picks the site).
    let tcp = TcpStream::connect(b).await.unwrap();
    let name = ServerName::try_from("b1.test").unwrap();
    let mut stream = TlsConnector::from(client(false, b"http/1.1"))
        .connect(name, tcp)
        .await
        .unwrap();
    let r = get(&mut stream, "b2.test", "/").await;
    assert_eq!((r.status, r.text().as_str()), (200, "site b2"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_a_listener_does_not_serve_get_its_first_site() {
    let s = setup();
    let (a, b) = (s.proxy.addr(A), s.proxy.addr(B));
    // Its own names: exact match.
    assert_eq!(served(a, Some("a2.test")).await, s.der("a2"));
    assert_eq!(served(b, Some("b2.test")).await, s.der("b2"));
    // Unknown names.
    assert_eq!(served(a, Some("unknown.test")).await, s.der("a1"));
    assert_eq!(served(b, Some("unknown.test")).await, s.der("b1"));
    // A name served only on the other listener is unknown here (nginx: server names are
    // per address).
    assert_eq!(served(a, Some("b2.test")).await, s.der("a1"));
    assert_eq!(served(b, Some("a2.test")).await, s.der("b1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acme_tls_alpn_still_reaches_the_challenge_certificate_on_every_listener() {
    let s = setup();
    let ca = TestCa::new("challenge CA");
    let challenge = ca.leaf(&["b1.test"]);
    let key = portico_tls::pem::certified_key_from_pem(
        challenge.chain_pem.as_bytes(),
        challenge.key_pem.as_bytes(),
        std::path::Path::new("challenge"),
        &portico_tls::default_provider(),
    )
    .unwrap()
    .key;
    s.proxy.tls.resolver().set_alpn_challenge("b1.test", key);
    for addr in [s.proxy.addr(A), s.proxy.addr(B)] {
        let tcp = TcpStream::connect(addr).await.unwrap();
        let name = ServerName::try_from("b1.test").unwrap();
        let stream = TlsConnector::from(client(true, portico_tls::ACME_TLS_ALPN))
            .connect(name, tcp)
            .await
            .expect("validation handshake");
        assert_eq!(peer_leaf(&stream), challenge.der, "on {addr}");
    }
    // Without a pending challenge for the name, a validation handshake fails instead of
    // falling back to the listener's default.
    let tcp = TcpStream::connect(s.proxy.addr(B)).await.unwrap();
    let name = ServerName::try_from("b2.test").unwrap();
    let refused = TlsConnector::from(client(true, portico_tls::ACME_TLS_ALPN))
        .connect(name, tcp)
        .await;
    assert!(refused.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_swapped_default_certificate_file_is_served_without_sni() {
    let s = setup();
    let b = s.proxy.addr(B);
    assert_eq!(served(b, None).await, s.der("b1"));
    let next = TestCa::new("swap CA").leaf(&["b1.test"]);
    // Key first, then the certificate: the poller keeps the old pair while they mismatch.
    std::fs::write(s.proxy.path("b1.key"), &next.key_pem).unwrap();
    std::fs::write(s.proxy.path("b1.pem"), &next.chain_pem).unwrap();
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let got = served(b, None).await;
        if got == next.der {
            break;
        }
        assert_eq!(got, s.der("b1"), "only the old or the new certificate");
        assert!(Instant::now() < deadline, "new certificate never served");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(served(s.proxy.addr(A), None).await, s.der("a1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_that_reorders_sites_changes_the_default() {
    let mut s = setup();
    let b = s.proxy.addr(B);
    assert_eq!(served(b, None).await, s.der("b1"));
    let toml = sites(["b2", "b1"]);
    let path = s.proxy.path("portico.toml");
    std::fs::write(&path, &toml).unwrap();
    let mut next = portico_config::parse(&toml, &path).expect("valid");
    next.server.threads = 1;
    next.server.access_log = portico_config::AccessLogTarget::Off;
    let next = Arc::new(next);
    s.proxy
        .tls
        .reload(&next.sites, &next.base_dir)
        .expect("certificates");
    s.proxy
        .server
        .as_ref()
        .unwrap()
        .reload(next.clone(), &Registry::default())
        .expect("reload");
    assert_eq!(s.proxy.addr(B), b, "listener B kept its socket");
    assert_eq!(served(b, None).await, s.der("b2"));
    assert_eq!(served(b, Some("unknown.test")).await, s.der("b2"));
    assert_eq!(served(b, Some("b1.test")).await, s.der("b1"));
    assert_eq!(served(s.proxy.addr(A), None).await, s.der("a1"));
    s.proxy.config = next;
}
