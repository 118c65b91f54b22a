//! WebSocket with TLS sides: wss clients to a plain backend, wss and ws clients to a TLS
//! backend (`[upstreams.NAME].tls` with `ca_file`), close 1001 on graceful stop, idle
//! timeout, half-close.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod tls_support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use portico_tls::rustls::ClientConfig;
use tls_support::*;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

const TLS: &str = "127.0.0.1:0";
const PLAIN: &str = "127.0.0.2:0";

struct Setup {
    ca: TestCa,
    proxy: TlsProxy,
    _echo: portico_testkit::echo::EchoServer,
}

/// wss.test -> plain echo backend; up.test -> TLS WebSocket backend (cert for localhost,
/// verified with ca_file); a plain site proxying to the TLS backend too.
async fn setup(read_timeout: &str) -> Setup {
    let ca = TestCa::new("ws test CA");
    let site = ca.leaf(&["wss.test", "up.test"]);
    let backend_leaf = ca.leaf(&["localhost"]);
    let tls_backend = tls_ws_backend(server_config(&backend_leaf, None)).await;
    let echo = common::echo("plain-ws");
    let toml = format!(
        r#"
[upstreams.plain]
servers = ["{echo}"]

[upstreams.secure]
servers = ["{tls_backend}"]
tls = {{ server_name = "localhost", ca_file = "ca.pem" }}

[[sites]]
listen = ["{TLS}"]
hosts = ["wss.test"]
tls = {{ cert = "site.pem", key = "site.key" }}
http_redirect = false
[[sites.routes]]
path = "/"
proxy = "plain"
read_timeout = "{read_timeout}"

[[sites]]
listen = ["{TLS}"]
hosts = ["up.test"]
tls = {{ cert = "site.pem", key = "site.key" }}
http_redirect = false
[[sites.routes]]
path = "/"
proxy = "secure"
read_timeout = "{read_timeout}"

[[sites]]
listen = ["{PLAIN}"]
[[sites.routes]]
path = "/"
proxy = "secure"
"#,
        echo = echo.url().trim_start_matches("http://"),
    );
    let proxy = TlsProxy::start(
        &toml,
        &[
            ("site.pem", &site.chain_pem),
            ("site.key", &site.key_pem),
            ("ca.pem", &ca.cert_pem),
        ],
    );
    Setup {
        ca,
        proxy,
        _echo: echo,
    }
}

type Wss = WebSocketStream<portico_tls::tokio_rustls::client::TlsStream<tokio::net::TcpStream>>;

async fn wss(addr: SocketAddr, config: Arc<ClientConfig>, host: &str) -> Wss {
    let tls = connect(addr, config, host).await.expect("TLS handshake");
    let (ws, resp) = tokio_tungstenite::client_async(format!("wss://{host}/chat"), tls)
        .await
        .expect("websocket handshake");
    assert_eq!(resp.status(), 101);
    ws
}

async fn next<S>(ws: &mut WebSocketStream<S>) -> Message
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    tokio::time::timeout(TIMEOUT, ws.next())
        .await
        .expect("message in time")
        .expect("stream open")
        .expect("no error")
}

async fn exercise<S>(ws: &mut WebSocketStream<S>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    ws.send(Message::text("hello")).await.unwrap();
    assert_eq!(next(ws).await, Message::text("hello"));
    let big: Vec<u8> = (0..(1 << 20)).map(|i| (i % 251) as u8).collect();
    ws.send(Message::binary(big.clone())).await.unwrap();
    assert_eq!(next(ws).await, Message::binary(big));
    ws.send(Message::Ping(b"p".to_vec().into())).await.unwrap();
    assert_eq!(next(ws).await, Message::Pong(b"p".to_vec().into()));
    for i in 0..50 {
        ws.send(Message::text(format!("m{i}"))).await.unwrap();
    }
    for i in 0..50 {
        assert_eq!(next(ws).await, Message::text(format!("m{i}")), "order kept");
    }
}

/// The client closes; the close reply comes back and the stream ends.
async fn close<S>(mut ws: WebSocketStream<S>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    ws.close(None).await.unwrap();
    let ended = tokio::time::timeout(TIMEOUT, async {
        while let Some(m) = ws.next().await {
            if m.is_err() {
                break;
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the pipe closes after the close handshake");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wss_client_to_plain_backend() {
    let s = setup("60s").await;
    let config = client_config(s.ca.roots(), &[b"http/1.1"], &[]);
    let mut ws = wss(s.proxy.addr(TLS), config, "wss.test").await;
    exercise(&mut ws).await;
    close(ws).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wss_and_ws_clients_to_a_tls_backend() {
    let s = setup("60s").await;
    // No ALPN at all (as wscat and Python websockets do).
    let config = client_config(s.ca.roots(), &[], &[]);
    let mut ws = wss(s.proxy.addr(TLS), config, "up.test").await;
    exercise(&mut ws).await;
    close(ws).await;
    // Plain client, TLS upstream.
    let tcp = tokio::net::TcpStream::connect(s.proxy.addr(PLAIN))
        .await
        .unwrap();
    let (mut ws, resp) = tokio_tungstenite::client_async("ws://up.test/chat", tcp)
        .await
        .expect("websocket handshake");
    assert_eq!(resp.status(), 101);
    exercise(&mut ws).await;
    close(ws).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_stop_sends_close_1001_on_wss() {
    let s = setup("60s").await;
    let config = client_config(s.ca.roots(), &[b"http/1.1"], &[]);
    let mut plain_backend = wss(s.proxy.addr(TLS), config.clone(), "wss.test").await;
    let mut tls_backend = wss(s.proxy.addr(TLS), config, "up.test").await;
    for ws in [&mut plain_backend, &mut tls_backend] {
        ws.send(Message::text("before")).await.unwrap();
        assert_eq!(next(ws).await, Message::text("before"));
    }
    s.proxy.server.as_ref().unwrap().shutdown();
    for ws in [&mut plain_backend, &mut tls_backend] {
        match next(ws).await {
            Message::Close(Some(frame)) => assert_eq!(frame.code, CloseCode::Away),
            other => panic!("expected close 1001, got {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_wss_is_closed_after_read_timeout() {
    let s = setup("300ms").await;
    let config = client_config(s.ca.roots(), &[b"http/1.1"], &[]);
    let mut ws = wss(s.proxy.addr(TLS), config, "up.test").await;
    ws.send(Message::text("x")).await.unwrap();
    assert_eq!(next(&mut ws).await, Message::text("x"));
    let started = Instant::now();
    let ended = tokio::time::timeout(TIMEOUT, async {
        loop {
            match ws.next().await {
                None | Some(Err(_)) => return,
                Some(Ok(Message::Close(_))) => {}
                Some(Ok(other)) => panic!("unexpected {other:?}"),
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "closed by the idle timeout");
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(250), "{took:?}");
}
