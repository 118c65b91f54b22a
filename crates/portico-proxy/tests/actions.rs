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
