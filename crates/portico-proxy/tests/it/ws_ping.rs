//! `ws_ping` on a proxied WebSocket, with real WebSocket peers (tokio-tungstenite, which
//! answers pings by itself) and raw sockets for peers that go silent:
//! - an idle WebSocket outlives a short `read_timeout` because Portico pings both sides;
//!   each side sees Portico's pings but never the pongs that answer them, while the peers'
//!   own pings and pongs (even with an 8-byte payload like Portico's) pass untouched;
//! - a server that stops answering is closed and the client gets close 1011;
//! - a client that stops answering is closed and the server gets close 1001.
#![allow(clippy::unwrap_used)]

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::*;
use futures_util::{SinkExt, StreamExt};
use portico_testkit::proxy::TestProxy;
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

const T: Duration = Duration::from_secs(10);

/// What a recording backend received, in order.
pub(crate) type Seen = Arc<Mutex<Vec<Message>>>;

/// A WebSocket backend on 127.0.0.1:0 that records every message (pings and pongs too)
/// and echoes text and binary ones. tungstenite answers pings by itself.
pub(crate) async fn recording_backend() -> (SocketAddr, Seen) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen: Seen = Arc::default();
    let log = seen.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let log = log.clone();
            tokio::spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
                    return;
                };
                while let Some(Ok(m)) = ws.next().await {
                    log.lock().unwrap().push(m.clone());
                    if (m.is_text() || m.is_binary()) && ws.send(m).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    (addr, seen)
}

/// A backend that completes the WebSocket handshake, then never reads or writes again.
async fn silent_backend() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            let mut stream = stream.into_std().unwrap();
            stream.set_nonblocking(false).unwrap();
            let head = read_head(&mut stream);
            let key = header_value(&head, "sec-websocket-key");
            let answer = format!(
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                 Sec-WebSocket-Accept: {}\r\n\r\n",
                derive_accept_key(key.as_bytes())
            );
            stream.write_all(answer.as_bytes()).unwrap();
            held.push(stream);
        }
    });
    addr
}

pub(crate) fn read_head(stream: &mut std::net::TcpStream) -> String {
    stream.set_read_timeout(Some(T)).unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(stream.read(&mut byte).unwrap(), 1, "head cut short");
        head.push(byte[0]);
    }
    String::from_utf8(head).unwrap()
}

fn header_value(head: &str, name: &str) -> String {
    head.lines()
        .find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_string())
        })
        .unwrap_or_else(|| panic!("no {name} in {head}"))
}

/// A proxy with a JSON access log (`access.log` in its folder).
pub(crate) fn ws_proxy(backend: SocketAddr, route: &str) -> TestProxy {
    TestProxy::start(&format!(
        "[server]\naccess_log = \"access.log\"\naccess_log_format = \"json\"\n{}",
        proxy_config(&[backend], "", route)
    ))
    .unwrap()
}

/// Wait for the access log line of a WebSocket; its `closed_by`.
pub(crate) fn ws_closed_by(proxy: &TestProxy) -> String {
    let path = proxy.dir().join("access.log");
    let mut found = None;
    portico_testkit::eventually::assert_eventually(T, "the WebSocket's log line", || {
        found = std::fs::read_to_string(&path)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find_map(|v| Some(v["websocket"]["closed_by"].as_str()?.to_string()));
        found.is_some()
    });
    found.unwrap()
}

fn is_portico_ping(m: &Message) -> bool {
    matches!(m, Message::Ping(p) if p.len() == 8)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_websocket_outlives_read_timeout_and_pongs_stay_hidden() {
    let (backend, seen) = recording_backend().await;
    let proxy = ws_proxy(backend, ", read_timeout = \"1s\", ws_ping = \"250ms\"");
    let (ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/", proxy.addr()))
        .await
        .unwrap();
    let (mut tx, rx) = ws.split();
    // The client keeps reading (tungstenite answers pings while it reads).
    let (reader, mut got) = crate::common::read_in_task(rx);
    let mut client_seen = Vec::new();
    let mut next_data = async || loop {
        let m = tokio::time::timeout(T, got.recv())
            .await
            .expect("message in time")
            .expect("websocket still open");
        if m.is_text() || m.is_binary() {
            return m;
        }
        client_seen.push(m);
    };
    tx.send(Message::text("before")).await.unwrap();
    assert_eq!(next_data().await, Message::text("before"));
    // Idle for 2.5 times read_timeout: without pings the proxy would close it after 1s.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    tx.send(Message::text("after")).await.unwrap();
    assert_eq!(next_data().await, Message::text("after"));
    // Data frames of every size still pass intact through the filtering pipe.
    let big: Vec<u8> = (0..(1 << 20)).map(|i| (i % 251) as u8).collect();
    tx.send(Message::binary(big.clone())).await.unwrap();
    assert_eq!(next_data().await, Message::binary(big));
    // The peers' own control frames pass, even with an 8-byte payload like Portico's.
    tx.send(Message::Ping(b"peerping".to_vec().into()))
        .await
        .unwrap();
    tx.send(Message::Pong(b"peerpong".to_vec().into()))
        .await
        .unwrap();
    tx.send(Message::text("end")).await.unwrap();
    assert_eq!(next_data().await, Message::text("end"));
    reader.abort();

    let pings = client_seen.iter().filter(|m| is_portico_ping(m)).count();
    assert!(pings >= 3, "client pinged while idle: {client_seen:?}");
    let pongs: Vec<_> = client_seen.iter().filter(|m| m.is_pong()).collect();
    assert_eq!(
        pongs,
        [&Message::Pong(b"peerping".to_vec().into())],
        "the client sees only the pong answering its own ping"
    );
    let seen = seen.lock().unwrap().clone();
    let server_pings = seen.iter().filter(|m| is_portico_ping(m)).count();
    assert!(server_pings >= 3, "server pinged while idle: {seen:?}");
    let server_pongs: Vec<_> = seen.iter().filter(|m| m.is_pong()).collect();
    assert_eq!(
        server_pongs,
        [&Message::Pong(b"peerpong".to_vec().into())],
        "the server sees only the client's own pong, none answering Portico"
    );
    assert!(seen.contains(&Message::Ping(b"peerping".to_vec().into())));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_ws_ping_the_same_idle_websocket_is_closed() {
    let (backend, _) = recording_backend().await;
    let proxy = ws_proxy(backend, ", read_timeout = \"1s\"");
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/", proxy.addr()))
        .await
        .unwrap();
    let start = Instant::now();
    let ended = tokio::time::timeout(T, async {
        loop {
            match ws.next().await {
                None | Some(Err(_)) => return,
                Some(Ok(m)) => assert!(!m.is_ping(), "no pings without ws_ping"),
            }
        }
    })
    .await;
    assert!(ended.is_ok());
    assert!(start.elapsed() < Duration::from_secs(3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_server_is_dropped_and_the_client_gets_1011() {
    let backend = silent_backend().await;
    let proxy = ws_proxy(backend, ", read_timeout = \"30s\", ws_ping = \"300ms\"");
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/", proxy.addr()))
        .await
        .unwrap();
    let start = Instant::now();
    let mut pings = 0;
    let close = tokio::time::timeout(T, async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Close(frame))) => return frame,
                Some(Ok(m)) if is_portico_ping(&m) => pings += 1,
                other => panic!("unexpected {other:?}"),
            }
        }
    })
    .await
    .expect("close in time")
    .expect("a close frame with a code");
    let waited = start.elapsed();
    assert_eq!(close.code, CloseCode::Error, "1011");
    // Pinged after 300ms of silence, judged 300ms later: well before read_timeout.
    assert!(
        waited >= Duration::from_millis(500) && waited < Duration::from_secs(5),
        "{waited:?}"
    );
    // The client itself answered, so it was pinged and kept.
    assert!(pings >= 1);
    assert_eq!(ws_closed_by(&proxy), "server_silent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_client_is_dropped_and_the_server_gets_1001() {
    let (backend, seen) = recording_backend().await;
    let proxy = ws_proxy(backend, ", read_timeout = \"30s\", ws_ping = \"300ms\"");
    let addr = proxy.addr();
    // A raw client: handshake, then it never answers.
    let raw = tokio::task::spawn_blocking(move || {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.write_all(
            b"GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
              Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        )
        .unwrap();
        let head = read_head(&mut s);
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        let start = Instant::now();
        let mut rest = Vec::new();
        // Read (never answer) until Portico closes the connection.
        let _ = s.read_to_end(&mut rest);
        (rest, start.elapsed())
    });
    let (rest, waited) = raw.await.unwrap();
    // The raw client got unmasked 8-byte pings from Portico, then the end.
    assert!(rest.len() >= 10, "{rest:?}");
    assert_eq!(&rest[..2], &[0x89, 0x08], "an unmasked ping with 8 bytes");
    assert!(
        waited >= Duration::from_millis(500) && waited < Duration::from_secs(5),
        "{waited:?}"
    );
    let closed = portico_testkit::eventually::eventually(T, || {
        seen.lock()
            .unwrap()
            .iter()
            .any(|m| matches!(m, Message::Close(Some(f)) if f.code == CloseCode::Away))
    });
    assert!(closed, "server got close 1001: {:?}", seen.lock().unwrap());
    assert_eq!(ws_closed_by(&proxy), "client_silent");
}
