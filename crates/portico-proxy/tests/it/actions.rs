//! `redirect` and `respond` actions served by a real hyper server, read with a raw client
//! (so the Host header and HEAD handling are exactly what goes over the wire).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use portico_config::{RedirectAction, RespondAction};
use portico_proxy::actions::{redirect, respond};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

enum Act {
    Redirect(RedirectAction),
    Respond(RespondAction),
}

async fn serve(act: Act) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let act = Arc::new(act);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let act = act.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: hyper::Request<_>| {
                    let act = act.clone();
                    async move {
                        let (parts, _body) = req.into_parts();
                        let resp = match &*act {
                            Act::Redirect(a) => redirect::redirect(&parts, "http", a),
                            Act::Respond(a) => respond::respond(a),
                        };
                        Ok::<_, Infallible>(resp)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    addr
}

/// Raw exchange: returns the response head (lower-cased) and body.
async fn exchange(addr: SocketAddr, request: &str) -> (String, Vec<u8>) {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(request.as_bytes()).await.expect("write");
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut raw))
        .await
        .expect("in time")
        .expect("read");
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("head");
    let head = String::from_utf8_lossy(&raw[..split]).to_ascii_lowercase();
    (head, raw[split + 4..].to_vec())
}

#[tokio::test]
async fn redirect_expands_host_with_port_and_uri() {
    let addr = serve(Act::Redirect(RedirectAction {
        template: "https://{host}{uri}".into(),
        status: 301,
    }))
    .await;
    let (head, body) = exchange(
        addr,
        "GET /shop/cart?item=4&q=a%20b HTTP/1.1\r\nHost: Example.COM:8443\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(head.starts_with("http/1.1 301"), "{head}");
    assert!(
        head.contains("\r\nlocation: https://example.com:8443/shop/cart?item=4&q=a%20b"),
        "{head}"
    );
    assert!(!body.is_empty() && body.len() < 200);
}

#[tokio::test]
async fn redirect_with_path_and_query_placeholders() {
    let addr = serve(Act::Redirect(RedirectAction {
        template: "{scheme}://new.example{path}?from={query}".into(),
        status: 302,
    }))
    .await;
    let (head, _) = exchange(
        addr,
        "GET /a?b=c HTTP/1.1\r\nHost: old\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(head.starts_with("http/1.1 302"), "{head}");
    assert!(
        head.contains("\r\nlocation: http://new.example/a?from=b=c"),
        "{head}"
    );
}

#[tokio::test]
async fn respond_status_type_body_and_head() {
    let addr = serve(Act::Respond(RespondAction {
        body: "{\"ok\":true}".into(),
        status: 418,
        content_type: "application/json".into(),
    }))
    .await;
    let (head, body) = exchange(
        addr,
        "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(head.starts_with("http/1.1 418"), "{head}");
    assert!(
        head.contains("\r\ncontent-type: application/json"),
        "{head}"
    );
    assert!(head.contains("\r\ncontent-length: 11"), "{head}");
    assert_eq!(body, b"{\"ok\":true}");
    let (head, body) = exchange(
        addr,
        "HEAD / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(head.starts_with("http/1.1 418"), "{head}");
    assert!(head.contains("\r\ncontent-length: 11"), "{head}");
    assert!(body.is_empty());
}

/// Blocking raw exchange with the in-process proxy.
fn exchange_blocking(addr: SocketAddr, request: &str) -> (String, Vec<u8>) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    s.write_all(request.as_bytes()).expect("write");
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("read");
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("head");
    let head = String::from_utf8_lossy(&raw[..split]).to_ascii_lowercase();
    (head, raw[split + 4..].to_vec())
}

fn req(addr: SocketAddr, method: &str, target: &str) -> (String, Vec<u8>) {
    exchange_blocking(
        addr,
        &format!("{method} {target} HTTP/1.1\r\nHost: site.test:8080\r\nConnection: close\r\n\r\n"),
    )
}

/// The three actions wired through the real proxy (routing, `root` relative to the config
/// folder, nginx `root` semantics: the whole request path is looked up below the root).
#[test]
fn actions_through_the_real_proxy() {
    let proxy = portico_testkit::proxy::TestProxy::builder(
        r#"
[[sites]]
listen = ["127.0.0.1:0"]
routes = [
  { exact = "/old", redirect = "{scheme}://{host}/new?{query}", status = 302 },
  { exact = "/hello", respond = "hi\n", status = 201, content_type = "text/x-hi" },
  { path = "/", root = "www" },
]
"#,
    )
    .file("www/index.html", "<h1>home</h1>")
    .file("www/docs/a.txt", "0123456789")
    .file("secret.txt", "SECRET-NEXT-TO-CONFIG")
    .start()
    .expect("proxy");
    let addr = proxy.addr();

    let (head, body) = req(addr, "GET", "/");
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert_eq!(body, b"<h1>home</h1>");
    let (head, body) = req(addr, "HEAD", "/docs/a.txt");
    assert!(head.contains("\r\ncontent-length: 10"), "{head}");
    assert!(body.is_empty(), "HEAD through the proxy carried a body");
    let (head, _) = req(addr, "GET", "/docs");
    assert!(
        head.starts_with("http/1.1 301") && head.contains("\r\nlocation: /docs/"),
        "{head}"
    );
    let (head, body) = exchange_blocking(
        addr,
        "GET /docs/a.txt HTTP/1.1\r\nHost: x\r\nRange: bytes=2-4\r\nConnection: close\r\n\r\n",
    );
    assert!(head.starts_with("http/1.1 206"), "{head}");
    assert_eq!(body, b"234");
    for bad in [
        "/../secret.txt",
        "/%2e%2e/secret.txt",
        "/docs/..%2f..%2fsecret.txt",
    ] {
        let (head, body) = req(addr, "GET", bad);
        assert!(!head.starts_with("http/1.1 2"), "{bad}: {head}");
        assert!(
            !String::from_utf8_lossy(&body).contains("SECRET"),
            "{bad} leaked"
        );
    }

    let (head, _) = req(addr, "GET", "/old?a=1");
    assert!(head.starts_with("http/1.1 302"), "{head}");
    assert!(
        head.contains("\r\nlocation: http://site.test:8080/new?a=1"),
        "{head}"
    );

    let (head, body) = req(addr, "GET", "/hello");
    assert!(
        head.starts_with("http/1.1 201") && head.contains("content-type: text/x-hi"),
        "{head}"
    );
    assert_eq!(body, b"hi\n");
}
