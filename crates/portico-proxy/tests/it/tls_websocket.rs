//! WebSocket with TLS sides: wss clients to a plain backend, wss and ws clients to a TLS
//! backend (`[upstreams.NAME].tls` with `ca_file`), close 1001 on graceful stop, idle
//! timeout, half-close.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::tls_support::*;
use futures_util::{SinkExt, StreamExt};
use portico_tls::rustls::ClientConfig;
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
    setup_with(read_timeout, "").await
}

/// [`setup`] with extra route lines (`\nws_ping = "250ms"`) and a silent TLS backend
/// (upgrade answered, then nothing) for silent.test.
async fn setup_with(read_timeout: &str, route: &str) -> Setup {
    let ca = TestCa::new("ws test CA");
    let site = ca.leaf(&["wss.test", "up.test", "silent.test"]);
    let backend_leaf = ca.leaf(&["localhost"]);
    let tls_backend = tls_ws_backend(server_config(&backend_leaf, None)).await;
    let silent = silent_tls_ws_backend(server_config(&backend_leaf, None)).await;
    let echo = crate::common::echo("plain-ws");
    let sites: String = [
        ("wss.test", "plain"),
        ("up.test", "secure"),
        ("silent.test", "silent"),
    ]
    .iter()
    .map(|(host, upstream)| {
        let route = format!("proxy = \"{upstream}\"\nread_timeout = \"{read_timeout}\"{route}");
        tls_site(TLS, host, "site", &route)
    })
    .collect();
    let toml = format!(
        r#"
[upstreams.plain]
servers = ["{echo}"]

[upstreams.secure]
servers = ["{tls_backend}"]
tls = {{ server_name = "localhost", ca_file = "ca.pem" }}

[upstreams.silent]
servers = ["{silent}"]
tls = {{ server_name = "localhost", ca_file = "ca.pem" }}

{sites}
[[sites]]
listen = ["{PLAIN}"]
[[sites.routes]]
path = "/"
proxy = "secure"
"#,
        echo = echo.url().trim_start_matches("http://"),
    );
    let mut files = cert_files(&[("site", &site)]);
    files.push(("ca.pem".into(), ca.cert_pem.clone()));
    let proxy = TlsProxy::start(&toml, &files);
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

/// A TLS WebSocket backend that answers the upgrade and then never reads or writes again.
async fn silent_tls_ws_backend(config: Arc<portico_tls::rustls::ServerConfig>) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = portico_tls::tokio_rustls::TlsAcceptor::from(config);
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((tcp, _)) = listener.accept().await {
            let Ok(mut tls) = acceptor.accept(tcp).await else {
                continue;
            };
            // Answered, then never read or written again.
            let _ = answer_upgrade(&mut tls).await;
            held.push(tls);
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ws_ping_keeps_an_idle_wss_alive_and_hides_the_pongs() {
    // A pong has one ws_ping (500 ms) to come back: room for a loaded machine.
    let s = setup_with("1500ms", "\nws_ping = \"500ms\"").await;
    let config = client_config(s.ca.roots(), &[b"http/1.1"], &[]);
    for host in ["wss.test", "up.test"] {
        let ws = wss(s.proxy.addr(TLS), config.clone(), host).await;
        let (mut tx, rx) = ws.split();
        // Keep reading (tungstenite answers pings while it reads); note what arrives.
        let (reader, mut got) = crate::common::read_in_task(rx);
        tx.send(Message::text("before")).await.unwrap();
        // Idle for 2.5 times read_timeout: without pings the proxy would close it after 1.5s.
        tokio::time::sleep(Duration::from_millis(3750)).await;
        tx.send(Message::text("after")).await.unwrap();
        let mut seen = Vec::new();
        loop {
            let m = tokio::time::timeout(TIMEOUT, got.recv())
                .await
                .expect("message in time")
                .expect("websocket still open");
            if m == Message::text("after") {
                break;
            }
            seen.push(m);
        }
        reader.abort();
        assert!(seen.contains(&Message::text("before")), "{host}: {seen:?}");
        let pings = seen
            .iter()
            .filter(|m| matches!(m, Message::Ping(p) if p.len() == 8))
            .count();
        assert!(pings >= 3, "{host}: client pinged while idle: {seen:?}");
        assert!(
            !seen.iter().any(Message::is_pong),
            "{host}: no pong reaches the client"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ws_ping_closes_a_silent_tls_server_and_tells_the_client_1011() {
    let s = setup_with("30s", "\nws_ping = \"200ms\"").await;
    let config = client_config(s.ca.roots(), &[b"http/1.1"], &[]);
    let mut ws = wss(s.proxy.addr(TLS), config, "silent.test").await;
    let started = Instant::now();
    let code = tokio::time::timeout(TIMEOUT, async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Close(Some(frame)))) => return Some(frame.code),
                Some(Ok(_)) => {}
                _ => return None,
            }
        }
    })
    .await
    .expect("closed in time");
    assert_eq!(code, Some(CloseCode::Error), "close 1011 to the client");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

/// A plain backend that answers the upgrade, reads until the client's EOF, then still sends
/// `late` and closes: the other half of a half-closed connection keeps working.
async fn half_close_backend() -> SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                if !answer_upgrade(&mut tcp).await {
                    return;
                }
                let mut got = Vec::new();
                let _ = tcp.read_to_end(&mut got).await;
                let reply = format!("late after {} bytes", got.len());
                let _ = tcp.write_all(reply.as_bytes()).await;
                let _ = tcp.shutdown().await;
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wss_half_close_passes_eof_one_way_and_data_the_other() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let ca = TestCa::new("half-close CA");
    let site = ca.leaf(&["half.test"]);
    let backend = half_close_backend().await;
    let toml = format!(
        r#"
[upstreams.half]
servers = ["{backend}"]
{}"#,
        tls_site(TLS, "half.test", "site", "proxy = \"half\"")
    );
    let proxy = TlsProxy::start(&toml, &cert_files(&[("site", &site)]));
    let config = client_config(ca.roots(), &[b"http/1.1"], &[]);
    let mut tls = connect(proxy.addr(TLS), config, "half.test").await.unwrap();
    tls.write_all(
        b"GET /ws HTTP/1.1\r\nHost: half.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
    )
    .await
    .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(tls.read(&mut byte).await.unwrap(), 1, "head cut short");
        head.push(byte[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    // Opaque bytes (a masked text frame "hi"), then our write side ends (close_notify + FIN).
    let frame = [0x81, 0x82, 1, 2, 3, 4, b'h' ^ 1, b'i' ^ 2];
    tls.write_all(&frame).await.unwrap();
    tls.shutdown().await.unwrap();
    let mut rest = Vec::new();
    let read = tokio::time::timeout(TIMEOUT, tls.read_to_end(&mut rest)).await;
    assert!(read.is_ok(), "the proxy closes after the backend does");
    assert_eq!(
        String::from_utf8_lossy(&rest),
        format!("late after {} bytes", frame.len()),
        "the server saw our EOF after our bytes and could still answer"
    );
}
