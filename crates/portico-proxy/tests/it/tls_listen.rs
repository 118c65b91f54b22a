//! TLS listeners: TLS 1.2 and 1.3, certificates by SNI, the site by SNI then Host (421),
//! X-Forwarded-Proto, HSTS, HTTP/2 by ALPN (hyper client, and curl when installed),
//! certificate files replaced on disk.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use crate::tls_support::*;
use portico_tls::rustls::{self, ProtocolVersion};

struct Setup {
    ca: TestCa,
    proxy: TlsProxy,
    _echo: portico_testkit::echo::EchoServer,
}

const LISTEN: &str = "127.0.0.1:0";

/// Sites a.test (hsts, proxied to an echo backend), b.test (own certificate), and c.test +
/// d.test sharing one wildcard certificate, all on one TLS listener.
fn setup() -> Setup {
    let ca = TestCa::new("listen test CA");
    let (a, b, wild) = (
        ca.leaf(&["a.test"]),
        ca.leaf(&["b.test"]),
        ca.leaf(&["*.w.test"]),
    );
    let echo = crate::common::echo("app");
    let toml = format!(
        r#"
[upstreams.app]
servers = ["{echo}"]

[[sites]]
listen = ["{LISTEN}"]
hosts = ["a.test"]
tls = {{ cert = "a.pem", key = "a.key" }}
http_redirect = false
hsts = "max-age=60"
[[sites.routes]]
path = "/"
proxy = "app"
[[sites.routes]]
exact = "/go"
redirect = "{{scheme}}://{{host}}/went"
{}{}{}"#,
        tls_site(LISTEN, "b.test", "b", "respond = \"site b\""),
        tls_site(LISTEN, "c.w.test", "w", "respond = \"site c\""),
        tls_site(LISTEN, "d.w.test", "w", "respond = \"site d\""),
        echo = echo
            .url()
            .trim_start_matches("http://")
            .trim_end_matches('/'),
    );
    let proxy = TlsProxy::start(&toml, &cert_files(&[("a", &a), ("b", &b), ("w", &wild)]));
    Setup {
        ca,
        proxy,
        _echo: echo,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls12_and_tls13_handshakes_serve_requests() {
    let s = setup();
    let addr = s.proxy.addr(LISTEN);
    for (version, want) in [
        (&rustls::version::TLS12, ProtocolVersion::TLSv1_2),
        (&rustls::version::TLS13, ProtocolVersion::TLSv1_3),
    ] {
        let config = client_config(s.ca.roots(), &[b"http/1.1"], &[version]);
        let mut stream = connect(addr, config, "b.test").await.expect("handshake");
        assert_eq!(stream.get_ref().1.protocol_version(), Some(want));
        let r = get(&mut stream, "b.test", "/").await;
        assert_eq!((r.status, r.text().as_str()), (200, "site b"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sni_chooses_the_certificate_and_unknown_names_get_the_first_site() {
    let s = setup();
    let addr = s.proxy.addr(LISTEN);
    let config = client_config(s.ca.roots(), &[b"http/1.1"], &[]);
    let mut leaves = Vec::new();
    for sni in ["a.test", "b.test", "c.w.test"] {
        let stream = connect(addr, config.clone(), sni).await.expect(sni);
        leaves.push(peer_leaf(&stream));
    }
    assert_ne!(leaves[0], leaves[1]);
    assert_ne!(leaves[1], leaves[2]);
    // An unknown name gets the first TLS site's certificate (nginx's default server): it
    // does not cover the name, so a verifying client refuses it.
    let Err(err) = connect(addr, config, "other.test").await else {
        panic!("a certificate not covering the name must be refused")
    };
    assert!(err.to_string().contains("certificate"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_of_a_site_with_another_certificate_is_misdirected() {
    let s = setup();
    let addr = s.proxy.addr(LISTEN);
    let config = client_config(s.ca.roots(), &[b"http/1.1"], &[]);
    let r = https_get(addr, config.clone(), "b.test", "b.test", "/").await;
    assert_eq!((r.status, r.text().as_str()), (200, "site b"));
    let r = https_get(addr, config.clone(), "b.test", "a.test", "/").await;
    assert_eq!(r.status, 421, "{}", r.text());
    assert_eq!(r.text(), "421 Misdirected Request\n");
    // Same certificate: the request may move to the other site.
    let r = https_get(addr, config.clone(), "c.w.test", "d.w.test", "/").await;
    assert_eq!((r.status, r.text().as_str()), (200, "site d"));
    // No Host port confusion: a Host with the port is the same site.
    let r = https_get(
        addr,
        config,
        "b.test",
        &format!("b.test:{}", addr.port()),
        "/",
    )
    .await;
    assert_eq!(r.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_requests_carry_forwarded_proto_scheme_and_hsts() {
    let s = setup();
    let addr = s.proxy.addr(LISTEN);
    let config = client_config(s.ca.roots(), &[b"http/1.1"], &[]);
    let r = https_get(addr, config.clone(), "a.test", "a.test", "/_echo/headers").await;
    assert_eq!(r.status, 200);
    assert!(
        r.text().contains("x-forwarded-proto: https"),
        "{}",
        r.text()
    );
    assert_eq!(r.header("strict-transport-security"), Some("max-age=60"));
    let r = https_get(addr, config.clone(), "a.test", "a.test", "/go").await;
    assert_eq!(r.status, 301);
    assert_eq!(r.header("location"), Some("https://a.test/went"));
    assert_eq!(r.header("strict-transport-security"), Some("max-age=60"));
    // A site without hsts sends none.
    let r = https_get(addr, config, "b.test", "b.test", "/").await;
    assert_eq!(r.header("strict-transport-security"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alpn_h2_serves_http2_with_concurrent_streams() {
    use http_body_util::BodyExt;
    let s = setup();
    let addr = s.proxy.addr(LISTEN);
    let config = client_config(s.ca.roots(), &[b"h2", b"http/1.1"], &[]);
    let stream = connect(addr, config, "a.test").await.expect("handshake");
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .expect("h2 handshake");
    tokio::spawn(conn);
    let mut tasks = Vec::new();
    for i in 0..4 {
        let mut sender = sender.clone();
        tasks.push(tokio::spawn(async move {
            let req = http::Request::get(format!("https://a.test/_echo/headers?n={i}"))
                .body(http_body_util::Full::new(bytes::Bytes::new()))
                .unwrap();
            let resp = sender.send_request(req).await.expect("h2 response");
            let version = resp.version();
            let status = resp.status();
            let hsts = resp.headers().get("strict-transport-security").cloned();
            let body = resp.into_body().collect().await.unwrap().to_bytes();
            (
                version,
                status,
                hsts,
                String::from_utf8_lossy(&body).into_owned(),
            )
        }));
    }
    for task in tasks {
        let (version, status, hsts, body) = task.await.unwrap();
        assert_eq!(version, http::Version::HTTP_2);
        assert_eq!(status, 200, "{body}");
        assert_eq!(hsts.unwrap(), "max-age=60");
        assert!(body.contains("host: a.test"), "{body}");
        assert!(body.contains("x-forwarded-proto: https"), "{body}");
    }
    // A request body streams through (h2 DATA frames -> HTTP/1.1 upstream -> back).
    let body: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let mut post = sender.clone();
    let req = http::Request::post("https://a.test/upload")
        .body(http_body_util::Full::new(bytes::Bytes::from(body.clone())))
        .unwrap();
    let resp = post.send_request(req).await.expect("h2 POST");
    assert_eq!(resp.status(), 200);
    let echoed = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(echoed.len(), body.len());
    assert!(echoed[..] == body[..], "body intact");
    // 421 over h2 too.
    let mut sender = sender.clone();
    let req = http::Request::get("https://b.test/")
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    assert_eq!(sender.send_request(req).await.unwrap().status(), 421);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_http2_with_cacert() {
    let Some(curl) = portico_testkit::require_peer("curl") else {
        return;
    };
    let s = setup();
    let addr = s.proxy.addr(LISTEN);
    let ca = s.proxy.path("ca.pem");
    std::fs::write(&ca, &s.ca.cert_pem).unwrap();
    let port = addr.port();
    let out = tokio::process::Command::new(&curl)
        .args(["-sS", "--http2", "--max-time", "10", "--cacert"])
        .arg(&ca)
        .args(["--resolve", &format!("a.test:{port}:127.0.0.1")])
        .args(["-w", "\n%{http_version} %{response_code}", "-D", "-"])
        .arg(format!("https://a.test:{port}/_echo/headers"))
        .kill_on_drop(true)
        .output()
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.ends_with("\n2 200"), "{text}");
    assert!(text.contains("x-forwarded-proto: https"), "{text}");
    assert!(
        text.contains("strict-transport-security: max-age=60"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replaced_certificate_files_are_served_without_restart_and_broken_ones_are_not() {
    let s = setup();
    let addr = s.proxy.addr(LISTEN);
    let config = client_config(s.ca.roots(), &[b"http/1.1"], &[]);
    let old = peer_leaf(&connect(addr, config.clone(), "b.test").await.unwrap());
    let new = s.ca.leaf(&["b.test"]);
    replace_file(&s.proxy.path("b.key"), &new.key_pem);
    replace_file(&s.proxy.path("b.pem"), &new.chain_pem);
    let cfg = config.clone();
    eventually("the new certificate is served", async || {
        let leaf = peer_leaf(&connect(addr, cfg.clone(), "b.test").await.unwrap());
        leaf == new.der
    })
    .await;
    assert_ne!(old, new.der);
    // A broken replacement: the new pair stays.
    replace_file(&s.proxy.path("b.pem"), "not a certificate\n");
    tokio::time::sleep(Duration::from_millis(400)).await;
    let mut stream = connect(addr, config.clone(), "b.test")
        .await
        .expect("still served");
    assert_eq!(peer_leaf(&stream), new.der);
    let r = get(&mut stream, "b.test", "/").await;
    assert_eq!(r.status, 200);
    // Other sites were never affected.
    let r = https_get(addr, config, "a.test", "a.test", "/").await;
    assert_eq!(r.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_and_slow_handshakes_do_not_disturb_the_listener() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let s = setup();
    let addr = s.proxy.addr(LISTEN);
    // Plain HTTP on the TLS port: the handshake fails, the connection closes.
    let mut plain = tokio::net::TcpStream::connect(addr).await.unwrap();
    plain
        .write_all(b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(TIMEOUT, plain.read_to_end(&mut buf))
        .await
        .expect("closed");
    assert!(!String::from_utf8_lossy(&buf).contains("200"));
    // A client that never finishes its handshake does not block others.
    let _silent = tokio::net::TcpStream::connect(addr).await.unwrap();
    let config = client_config(s.ca.roots(), &[b"http/1.1"], &[]);
    let r = https_get(addr, config, "b.test", "b.test", "/").await;
    assert_eq!(r.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acme_tls_alpn_validation_gets_the_challenge_certificate_and_is_closed() {
    use tokio::io::AsyncReadExt;
    let s = setup();
    let addr = s.proxy.addr(LISTEN);
    let challenge = s.ca.leaf(&["b.test"]);
    let key = portico_tls::pem::certified_key_from_pem(
        challenge.chain_pem.as_bytes(),
        challenge.key_pem.as_bytes(),
        std::path::Path::new("challenge"),
        &portico_tls::default_provider(),
    )
    .unwrap()
    .key;
    s.proxy.tls.resolver().set_alpn_challenge("b.test", key);
    let config = client_config(s.ca.roots(), &[portico_tls::ACME_TLS_ALPN], &[]);
    let mut stream = connect(addr, config, "b.test")
        .await
        .expect("validation handshake");
    assert_eq!(
        stream.get_ref().1.alpn_protocol(),
        Some(portico_tls::ACME_TLS_ALPN)
    );
    assert_eq!(
        peer_leaf(&stream),
        challenge.der,
        "the challenge certificate"
    );
    let mut rest = Vec::new();
    let read = tokio::time::timeout(TIMEOUT, stream.read_to_end(&mut rest)).await;
    assert!(read.is_ok() && rest.is_empty(), "closed at once, no HTTP");
    // Ordinary handshakes for the name still get the site's certificate.
    let config = client_config(s.ca.roots(), &[b"http/1.1"], &[]);
    let stream = connect(addr, config, "b.test").await.unwrap();
    assert_ne!(peer_leaf(&stream), challenge.der);
}
