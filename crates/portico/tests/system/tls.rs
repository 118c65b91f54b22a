//! TLS sites through the real binary: `portico run` with `tls = { cert, key }`, `hsts` and
//! the `http_redirect` side. curl speaks HTTP/2 over TLS to it (verifying with the test CA);
//! the plain side answers 301 to the TLS port; certificate files replaced on disk are served
//! without a restart; SIGTERM stops it cleanly.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

use crate::support::net::{free_port, local};
use crate::support::process::{run_bounded, start_portico};
use crate::support::{TempDir, eventually};
use portico_tls::rustls::pki_types::{CertificateDer, ServerName};
use portico_tls::rustls::{self, ClientConfig, RootCertStore};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};

const TEST: &str = "system_tls";

struct Ca {
    pem: String,
    der: CertificateDer<'static>,
    issuer: Issuer<'static, KeyPair>,
}

impl Ca {
    fn new() -> Ca {
        let key = KeyPair::generate().expect("key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params
            .distinguished_name
            .push(DnType::CommonName, "system tls CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let cert = params.self_signed(&key).expect("CA");
        Ca {
            pem: cert.pem(),
            der: cert.der().clone(),
            issuer: Issuer::new(params, key),
        }
    }

    /// (chain PEM, key PEM, leaf DER) for `name`.
    fn leaf(&self, name: &str) -> (String, String, CertificateDer<'static>) {
        let key = KeyPair::generate().expect("key");
        let params = CertificateParams::new(vec![name.to_string()]).expect("params");
        let cert = params.signed_by(&key, &self.issuer).expect("leaf");
        (
            format!("{}{}", cert.pem(), self.pem),
            key.serialize_pem(),
            cert.der().clone(),
        )
    }
}

/// The leaf certificate `127.0.0.1:port` serves for `sni` (blocking rustls handshake).
fn served_leaf(port: u16, sni: &str, ca: &Ca) -> Option<CertificateDer<'static>> {
    let mut roots = RootCertStore::empty();
    roots.add(ca.der.clone()).ok()?;
    let mut config = ClientConfig::builder_with_provider(portico_tls::default_provider())
        .with_safe_default_protocol_versions()
        .ok()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.resumption = rustls::client::Resumption::disabled();
    let name = ServerName::try_from(sni.to_string()).ok()?;
    let mut conn = rustls::ClientConnection::new(Arc::new(config), name).ok()?;
    let mut tcp = TcpStream::connect(local(port)).ok()?;
    tcp.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    while conn.is_handshaking() {
        conn.complete_io(&mut tcp).ok()?;
    }
    conn.peer_certificates().map(|c| c[0].clone())
}

/// One plain HTTP/1.1 request with `Connection: close`; the raw response.
fn plain_get(port: u16, host: &str, path: &str) -> String {
    let mut s = TcpStream::connect(local(port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .expect("send");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read");
    out
}

#[test]
fn tls_site_h2_redirect_and_certificate_reload() {
    if portico_testkit::require_peer("curl").is_none() {
        return;
    }
    let dir = TempDir::new(TEST);
    let ca = Ca::new();
    let (chain, key, first) = ca.leaf("site.test");
    dir.write("site.pem", &chain);
    dir.write("site.key", &key);
    let ca_path = dir.write("ca.pem", &ca.pem);
    let (https, http) = (free_port(), free_port());
    let cfg = dir.write(
        "portico.toml",
        format!(
            r#"
[server]
state_dir = "state"

[admin]
listen = "off"

[[sites]]
listen = ["127.0.0.1:{https}"]
hosts = ["site.test"]
tls = {{ cert = "site.pem", key = "site.key" }}
http_listen = ["127.0.0.1:{http}"]
hsts = "max-age=600"
[[sites.routes]]
path = "/"
respond = "hello over tls"
"#
        ),
    );
    let mut proxy = start_portico(&cfg, dir.path());
    proxy.wait_for_port(local(https), Duration::from_secs(15));
    proxy.wait_for_port(local(http), Duration::from_secs(15));

    // HTTP/2 over TLS with curl, verified against the test CA.
    let url = format!("https://site.test:{https}/x");
    let resolve = format!("site.test:{https}:127.0.0.1");
    let ca_arg = ca_path.to_str().expect("utf-8");
    let mut curl = std::process::Command::new("curl");
    curl.args(["-sS", "--http2", "--max-time", "10", "--cacert", ca_arg])
        .args(["--resolve", &resolve, "-D", "-"])
        .args(["-w", "\n%{http_version} %{response_code}"])
        .arg(&url);
    let out = run_bounded(
        "curl",
        curl,
        dir.path(),
        Duration::from_secs(20),
        Duration::ZERO,
    );
    assert!(out.success(), "curl: {out:?}\n{}", proxy.logs());
    assert!(
        out.stdout.ends_with("hello over tls\n2 200"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("strict-transport-security: max-age=600"),
        "{}",
        out.stdout
    );

    // The plain side: 301 to the TLS port, same host and URI, no hsts.
    let raw = plain_get(http, "site.test", "/a?b=1");
    assert!(raw.starts_with("HTTP/1.1 301"), "{raw}");
    assert!(
        raw.contains(&format!("location: https://site.test:{https}/a?b=1")),
        "{raw}"
    );
    assert!(!raw.contains("strict-transport-security"), "{raw}");

    // New certificate files are served without a restart.
    assert_eq!(served_leaf(https, "site.test", &ca), Some(first.clone()));
    let (chain, key, second) = ca.leaf("site.test");
    dir.write("site.key.new", &key);
    dir.write("site.pem.new", &chain);
    std::fs::rename(dir.path().join("site.key.new"), dir.path().join("site.key")).expect("mv");
    std::fs::rename(dir.path().join("site.pem.new"), dir.path().join("site.pem")).expect("mv");
    eventually(
        Duration::from_secs(20),
        "the new certificate is served",
        || {
            proxy.assert_running();
            (served_leaf(https, "site.test", &ca).as_ref() == Some(&second)).then_some(())
        },
    );

    proxy.signal("TERM");
    let status = proxy.wait_timeout(Duration::from_secs(15)).expect("exits");
    assert!(status.success(), "{status:?}\n{}", proxy.logs());
}

/// A reload that loads new certificate files but then fails (a new listen address is taken)
/// keeps the sites as they were, and their certificates with them.
#[test]
fn refused_reload_keeps_the_running_certificates() {
    let dir = TempDir::new("system_tls_refused_reload");
    let ca = Ca::new();
    let (chain, key, first) = ca.leaf("site.test");
    dir.write("a.pem", &chain);
    dir.write("a.key", &key);
    let (chain, key, _second) = ca.leaf("site.test");
    dir.write("b.pem", &chain);
    dir.write("b.key", &key);
    let https = free_port();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let taken_port = taken.local_addr().expect("addr").port();
    let config = |cert: &str, extra: &str| {
        format!(
            r#"
[server]
state_dir = "state"

[admin]
listen = "off"

[[sites]]
listen = ["127.0.0.1:{https}"]
hosts = ["site.test"]
tls = {{ cert = "{cert}.pem", key = "{cert}.key" }}
http_redirect = false
[[sites.routes]]
path = "/"
respond = "hello"
{extra}"#
        )
    };
    let cfg = dir.write("portico.toml", config("a", ""));
    let mut proxy = start_portico(&cfg, dir.path());
    proxy.wait_for_port(local(https), Duration::from_secs(15));
    assert_eq!(served_leaf(https, "site.test", &ca), Some(first.clone()));

    let extra = format!(
        "\n[[sites]]\nlisten = [\"127.0.0.1:{taken_port}\"]\n[[sites.routes]]\npath = \"/\"\nrespond = \"x\"\n"
    );
    dir.write("portico.toml", config("b", &extra));
    proxy.signal("HUP");
    eventually(Duration::from_secs(20), "the reload is refused", || {
        proxy.assert_running();
        proxy.logs().contains("reload failed").then_some(())
    });
    assert_eq!(
        served_leaf(https, "site.test", &ca),
        Some(first),
        "{}",
        proxy.logs()
    );
    drop(taken);
    proxy.signal("TERM");
    let status = proxy.wait_timeout(Duration::from_secs(15)).expect("exits");
    assert!(status.success(), "{status:?}\n{}", proxy.logs());
}
