//! WebSocket through the proxy: echo, big messages, ping/pong, close from either side,
//! idle timeout, non-101 answers, and close 1001 on graceful shutdown.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use crate::common::*;
use futures_util::{SinkExt, StreamExt};
use portico_testkit::proxy::TestProxy;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

const T: Duration = Duration::from_secs(10);

async fn next(
    ws: &mut (impl StreamExt<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin),
) -> Message {
    tokio::time::timeout(T, ws.next())
        .await
        .expect("message in time")
        .expect("stream open")
        .expect("no error")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_text_binary_ping_and_client_close() {
    let backend = echo("ws1");
    let proxy = TestProxy::start(&proxy_config(&[backend.addr], "", "")).unwrap();
    let url = format!("ws://{}/chat", proxy.addr());
    let (mut ws, resp) = tokio_tungstenite::connect_async(&url).await.unwrap();
    assert_eq!(resp.status(), 101);
    assert_eq!(resp.headers()["x-echo-name"], "ws1");
    ws.send(Message::text("hello")).await.unwrap();
    assert_eq!(next(&mut ws).await, Message::text("hello"));
    let big: Vec<u8> = (0..(1 << 20)).map(|i| (i % 251) as u8).collect();
    ws.send(Message::binary(big.clone())).await.unwrap();
    assert_eq!(next(&mut ws).await, Message::binary(big));
    ws.send(Message::Ping(b"p".to_vec().into())).await.unwrap();
    assert_eq!(next(&mut ws).await, Message::Pong(b"p".to_vec().into()));
    for i in 0..50 {
        ws.send(Message::text(format!("m{i}"))).await.unwrap();
    }
    for i in 0..50 {
        assert_eq!(
            next(&mut ws).await,
            Message::text(format!("m{i}")),
            "order kept"
        );
    }
    ws.close(None).await.unwrap();
    // The server's close reply arrives, then the stream ends.
    let end = tokio::time::timeout(T, async {
        while let Some(m) = ws.next().await {
            if m.is_err() {
                break;
            }
        }
    })
    .await;
    assert!(end.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_close_reaches_the_client() {
    // The echo backend stops: its WebSockets are dropped, the client sees the end.
    let backend = echo("ws1");
    let proxy = TestProxy::start(&proxy_config(&[backend.addr], "", "")).unwrap();
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/", proxy.addr()))
        .await
        .unwrap();
    ws.send(Message::text("x")).await.unwrap();
    assert_eq!(next(&mut ws).await, Message::text("x"));
    tokio::task::spawn_blocking(move || backend.stop())
        .await
        .unwrap();
    let ended = tokio::time::timeout(T, async {
        loop {
            match ws.next().await {
                None | Some(Err(_)) => return,
                Some(Ok(Message::Close(_))) => {}
                Some(Ok(_)) => {}
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "client sees the server side end");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_websocket_is_closed_after_read_timeout() {
    let backend = echo("ws1");
    let proxy = TestProxy::start(&proxy_config(
        &[backend.addr],
        "",
        ", read_timeout = \"1s\"",
    ))
    .unwrap();
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/", proxy.addr()))
        .await
        .unwrap();
    // Activity keeps it open past the timeout (gaps of 300 ms leave a loaded machine 700 ms
    // of slack; 5 rounds outlast the 1 s timeout).
    let active = Instant::now();
    for _ in 0..5 {
        ws.send(Message::text("k")).await.unwrap();
        assert_eq!(next(&mut ws).await, Message::text("k"));
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert!(active.elapsed() > Duration::from_secs(1));
    let start = Instant::now();
    let ended = tokio::time::timeout(T, async {
        loop {
            match ws.next().await {
                None | Some(Err(_)) => return,
                Some(Ok(_)) => {}
            }
        }
    })
    .await;
    assert!(ended.is_ok());
    assert!(
        start.elapsed() < Duration::from_secs(4),
        "{:?}",
        start.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_101_answer_is_passed_through() {
    let proxy = TestProxy::start(
        "[[sites]]\nlisten = [\"127.0.0.1:0\"]\nroutes = [{ path = \"/\", respond = \"no ws here\", status = 404 }]\n",
    )
    .unwrap();
    let err = tokio_tungstenite::connect_async(format!("ws://{}/", proxy.addr()))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("404"), "{err}");
    // A proxied upstream that refuses the upgrade: its answer passes through.
    let backend = echo("plain");
    let proxy = TestProxy::start(&proxy_config(&[backend.addr], "", "")).unwrap();
    let mut conn = Conn::open(proxy.addr());
    conn.send(b"GET /_echo/status?code=403 HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n");
    let r = conn.read_response(false);
    // The echo answers the upgrade (it has a key check): without a key it is 400.
    assert_eq!(r.status, 400);
    assert_eq!(r.header("x-echo-name"), Some("plain"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_disabled_on_the_route_is_not_upgraded() {
    let backend = echo("ws1");
    let proxy =
        TestProxy::start(&proxy_config(&[backend.addr], "", ", websocket = false")).unwrap();
    let err = tokio_tungstenite::connect_async(format!("ws://{}/", proxy.addr()))
        .await
        .expect_err("upgrade must not pass");
    // The refusal expected: the request reached the backend as a plain GET (the upgrade
    // headers dropped as hop-by-hop), so the backend answered it with a plain 200 instead
    // of a 101 (not a connection error, not a proxy error page).
    match &err {
        tokio_tungstenite::tungstenite::Error::Http(resp) => {
            assert_eq!(resp.status(), 200, "{err}");
            assert_eq!(resp.headers()["x-echo-name"], "ws1", "{err}");
        }
        other => panic!("expected the backend's plain answer, got {other}"),
    }
    // And the backend saw no upgrade at all.
    let mut conn = Conn::open(proxy.addr());
    conn.send(b"GET /_echo/headers HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n");
    let r = conn.read_response(false);
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = r.text().to_ascii_lowercase();
    assert!(!seen.contains("upgrade:"), "{seen}");
    assert!(
        seen.contains("sec-websocket-key:"),
        "the request did arrive: {seen}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_sends_1001_and_finishes_requests_in_flight() {
    let backend = echo("ws1");
    let proxy = TestProxy::start(&proxy_config(&[backend.addr], "", "")).unwrap();
    let addr = proxy.addr();
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/"))
        .await
        .unwrap();
    ws.send(Message::text("before")).await.unwrap();
    assert_eq!(next(&mut ws).await, Message::text("before"));
    // A slow request in flight when the stop begins.
    let before = backend.connections_accepted();
    let slow = tokio::task::spawn_blocking(move || get(addr, "h", "/_echo/sleep?ms=500"));
    // In flight: the backend has accepted its connection (the WebSocket's came before).
    let deadline = Instant::now() + T;
    while backend.connections_accepted() == before {
        assert!(
            Instant::now() < deadline,
            "the slow request never reached the backend"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let stopper = tokio::task::spawn_blocking(move || proxy.shutdown_and_wait());
    let close = next(&mut ws).await;
    match close {
        Message::Close(Some(frame)) => assert_eq!(frame.code, CloseCode::Away),
        other => panic!("expected close 1001, got {other:?}"),
    }
    let r = slow.await.unwrap();
    assert_eq!(r.status, 200, "request in flight completes");
    tokio::time::timeout(T, stopper).await.unwrap().unwrap();
    // The listener is gone.
    assert!(std::net::TcpStream::connect(addr).is_err());
}

/// The plain pipe lets the client connection's context go once the WebSocket runs
/// (docs/benchmarks.md, idle WebSocket memory) but keeps the connection's place in
/// `max_connections` until the WebSocket closes: a second connection waits until then.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_keeps_its_max_connections_slot_until_it_closes() {
    let backend = echo("ws1");
    let config = format!(
        "[server]\nmax_connections = 1\n\n{}",
        proxy_config(&[backend.addr], "", "")
    );
    let proxy = TestProxy::start(&config).unwrap();
    let addr = proxy.addr();
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/"))
        .await
        .unwrap();
    ws.send(Message::text("x")).await.unwrap();
    assert_eq!(next(&mut ws).await, Message::text("x"));
    assert_eq!(proxy.server().connections(), 1);
    // A second connection is accepted by the kernel but not served while the WebSocket is
    // open.
    let waiting = tokio::task::spawn_blocking(move || {
        let mut c = Conn::open(addr);
        c.send(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n");
        c.stream()
            .set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        let mut byte = [0u8; 1];
        let early = std::io::Read::read(&mut c.reader, &mut byte);
        assert!(early.is_err(), "second connection must wait, got {early:?}");
        c
    })
    .await
    .unwrap();
    // The WebSocket still works, then closes; its slot goes to the waiting connection.
    ws.send(Message::text("y")).await.unwrap();
    assert_eq!(next(&mut ws).await, Message::text("y"));
    ws.close(None).await.unwrap();
    drop(ws);
    let status = tokio::task::spawn_blocking(move || {
        let mut c = waiting;
        c.stream().set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        c.read_response(false).status
    })
    .await
    .unwrap();
    assert_eq!(status, 200);
}
