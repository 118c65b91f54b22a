//! WebSockets across reloads (in-process, real sockets): untouched by unrelated reloads;
//! those of a removed server, or whose site or route the reload removed or pointed
//! elsewhere (also an upgrade still in flight during the reload), get close 1001 spread over
//! half of `shutdown_grace`, and a pipe stuck mid-frame is closed hard at the cap.
#![allow(clippy::unwrap_used)]

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::common::*;
use crate::reload_support::Live;
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

const T: Duration = Duration::from_secs(10);

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Upstream `app` (the WebSocket route `/ws`) and upstream `other` (route `/other`), on
/// `127.0.0.1:0`; `extra` is appended (more sites).
fn config(app: &[SocketAddr], other: SocketAddr, ws_extra: &str, extra: &str) -> String {
    let list: Vec<String> = app.iter().map(|a| format!("\"{a}\"")).collect();
    format!(
        "[server]\nthreads = 2\naccess_log = \"off\"\nshutdown_grace = \"2s\"\n\n\
         [upstreams.app]\nservers = [{}]\n\n[upstreams.other]\nservers = [\"{other}\"]\n\n\
         [[sites]]\nlisten = [\"127.0.0.1:0\"]\nroutes = [\n\
         {{ path = \"/ws\", proxy = \"app\", websocket = true{ws_extra} }},\n\
         {{ path = \"/other\", proxy = \"other\" }},\n]\n{extra}",
        list.join(", ")
    )
}

async fn open(addr: SocketAddr) -> (Ws, String) {
    open_at(addr, "h", "/ws").await
}

/// A WebSocket to `path` with `Host: host`; also returns the echo server's name.
async fn open_at(addr: SocketAddr, host: &str, path: &str) -> (Ws, String) {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut req = format!("ws://{addr}{path}").into_client_request().unwrap();
    req.headers_mut()
        .insert("host", http::HeaderValue::from_str(host).unwrap());
    let (ws, resp) = tokio::time::timeout(T, tokio_tungstenite::connect_async(req))
        .await
        .expect("handshake in time")
        .expect("handshake");
    assert_eq!(resp.status(), 101);
    let name = resp.headers()["x-echo-name"].to_str().unwrap().to_string();
    (ws, name)
}

async fn next(ws: &mut Ws) -> Message {
    tokio::time::timeout(T, ws.next())
        .await
        .expect("message in time")
        .expect("stream open")
        .expect("no error")
}

/// Every WebSocket sends one message, then every one reads its echo.
async fn echo_round(sockets: &mut [Ws], round: usize) {
    for (i, ws) in sockets.iter_mut().enumerate() {
        ws.send(Message::text(format!("r{round}-{i}")))
            .await
            .unwrap();
    }
    for (i, ws) in sockets.iter_mut().enumerate() {
        assert_eq!(
            next(ws).await,
            Message::text(format!("r{round}-{i}")),
            "websocket {i} after reload {round}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_websockets_keep_echoing_through_fifty_unrelated_reloads() {
    let a = echo("A");
    let b = echo("B");
    let c = echo("C");
    let live = Live::start(&config(&[a.addr], b.addr, "", "")).unwrap();
    let addr = live.addr();
    let mut sockets = Vec::new();
    for _ in 0..200 {
        sockets.push(open(addr).await.0);
    }
    echo_round(&mut sockets, 0).await;
    let started = Instant::now();
    for i in 1..=50 {
        // Unrelated changes: the other upstream's server, a site on a new listener added
        // and removed again, header rules on the WebSocket route itself.
        let other = if i % 2 == 0 { b.addr } else { c.addr };
        let headers = format!(", request_headers = {{ set = {{ x-gen = \"{i}\" }} }}");
        let extra = if i % 3 == 0 {
            "[[sites]]\nlisten = [\"127.0.0.2:0\"]\nroutes = [{ path = \"/\", respond = \"new\" }]\n"
        } else {
            ""
        };
        let out = live
            .reload(&config(&[a.addr], other, &headers, extra))
            .unwrap();
        assert!(out.servers_removed.iter().all(|s| &*s.upstream == "other"));
        // Every third reload adds the extra site's listener, the next one removes it.
        if i % 3 == 0 {
            assert_eq!(out.listeners_added.len(), 1, "reload {i}: {out:?}");
            let bound = out.listeners_added[0].1;
            let r = tokio::task::spawn_blocking(move || get(bound, "h", "/"))
                .await
                .unwrap();
            assert_eq!(r.text(), "new", "the added listener serves at once");
        } else {
            assert!(out.listeners_added.is_empty(), "reload {i}: {out:?}");
            assert_eq!(
                out.listeners_removed.len(),
                usize::from(i % 3 == 1 && i > 1),
                "reload {i}: {out:?}"
            );
        }
        echo_round(&mut sockets, i).await;
    }
    println!(
        "200 websockets through 50 reloads in {:?}",
        started.elapsed()
    );
    assert_eq!(live.server.websockets(), 200, "none was closed");
    // A new WebSocket still works, and the kept ones close normally.
    let (mut fresh, _) = open(addr).await;
    fresh.send(Message::text("late")).await.unwrap();
    assert_eq!(next(&mut fresh).await, Message::text("late"));
    for mut ws in sockets {
        ws.close(None).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_a_server_drains_only_its_websockets_with_1001_spread_over_the_window() {
    let a = echo("A");
    let b = echo("B");
    let other = echo("O");
    let live = Live::start(&config(&[a.addr, b.addr], other.addr, "", "")).unwrap();
    let addr = live.addr();
    let mut on_a = Vec::new();
    let mut on_b = Vec::new();
    for _ in 0..24 {
        let (ws, name) = open(addr).await;
        match name.as_str() {
            "A" => on_a.push(ws),
            _ => on_b.push(ws),
        }
    }
    assert!(
        on_a.len() >= 4 && on_b.len() >= 4,
        "{} on A, {} on B",
        on_a.len(),
        on_b.len()
    );
    echo_round(&mut on_a, 0).await;
    echo_round(&mut on_b, 0).await;
    // Remove B (shutdown_grace 2 s: closes spread over 1 s, hard cap at 2 s).
    let reloaded = Instant::now();
    let out = live.reload(&config(&[a.addr], other.addr, "", "")).unwrap();
    assert_eq!(out.servers_removed.len(), 1);
    assert_eq!(&*out.servers_removed[0].addr, b.addr.to_string());
    // Every WebSocket on B gets close 1001; note when (all read at once).
    let waits = on_b.into_iter().map(|mut ws| async move {
        loop {
            match next(&mut ws).await {
                Message::Close(Some(frame)) => {
                    assert_eq!(frame.code, CloseCode::Away);
                    return reloaded.elapsed();
                }
                Message::Close(None) => panic!("close without 1001"),
                _ => {}
            }
        }
    });
    let mut closed_at = futures_util::future::join_all(waits).await;
    closed_at.sort();
    let (first, last) = (closed_at[0], closed_at[closed_at.len() - 1]);
    println!(
        "{} websockets drained between {first:?} and {last:?}",
        closed_at.len()
    );
    assert!(
        last < Duration::from_millis(2000),
        "all within the 1 s window (2 s cap): {closed_at:?}"
    );
    assert!(
        last - first >= Duration::from_millis(300),
        "spread, not all at once: {closed_at:?}"
    );
    // The ones on A were never touched, during and after.
    for round in 1..=3 {
        echo_round(&mut on_a, round).await;
    }
    let (_, name) = open(addr).await;
    assert_eq!(name, "A", "new WebSockets go to the remaining server");
}

#[test]
fn a_websocket_stuck_mid_frame_is_closed_hard_at_the_cap() {
    let a = echo("A");
    let b = echo("B");
    let other = echo("O");
    // Only B, so the WebSocket surely goes there.
    let live = Live::start(&config(&[b.addr], other.addr, "", "")).unwrap();
    let mut s = std::net::TcpStream::connect(live.addr()).unwrap();
    s.set_read_timeout(Some(T)).unwrap();
    s.write_all(
        b"GET /ws HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )
    .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    // A masked text frame announcing 100 bytes, of which only 3 are sent: the client-to-
    // server direction never reaches a frame boundary.
    s.write_all(&[0x81, 0x80 | 100, 1, 2, 3, 4, b'a', b'b', b'c'])
        .unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let reloaded = Instant::now();
    live.reload(&config(&[a.addr], other.addr, "", "")).unwrap();
    // The client gets close 1001 at once (its direction is at a boundary) and its read side
    // ends; the pipe itself lives on (the other direction is mid-frame) until the cap.
    let mut got = Vec::new();
    let _ = s.read_to_end(&mut got);
    assert!(
        got.starts_with(&[0x88, 0x02, 0x03, 0xe9]),
        "close 1001 first: {got:?}"
    );
    assert!(
        reloaded.elapsed() < Duration::from_millis(500),
        "the close is not delayed"
    );
    // More of the frame's payload, a byte every 50 ms, until the proxy's socket is gone.
    let mut sent = 0;
    let elapsed = loop {
        std::thread::sleep(Duration::from_millis(50));
        if s.write_all(b"x").is_err() || sent > 90 {
            break reloaded.elapsed();
        }
        sent += 1;
    };
    assert!(
        elapsed >= Duration::from_millis(1800) && elapsed < Duration::from_secs(4),
        "closed hard at the 2 s cap, not before: {elapsed:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websockets_on_a_removed_listener_get_1001_at_once_and_the_others_stay() {
    let a = echo("A");
    let other = echo("O");
    let second = "[[sites]]\nlisten = [\"127.0.0.2:0\"]\nroutes = [{ path = \"/ws\", proxy = \"app\", websocket = true }]\n";
    let live = Live::start(&config(&[a.addr], other.addr, "", second)).unwrap();
    let (kept_addr, gone_addr) = (
        live.server.bound_addrs()[0].1,
        live.server.bound_addrs()[1].1,
    );
    let (mut kept, _) = open(kept_addr).await;
    let (mut gone, _) = open(gone_addr).await;
    let reloaded = Instant::now();
    let out = live.reload(&config(&[a.addr], other.addr, "", "")).unwrap();
    assert_eq!(out.listeners_removed.len(), 1);
    match next(&mut gone).await {
        Message::Close(Some(frame)) => assert_eq!(frame.code, CloseCode::Away),
        m => panic!("expected close 1001, got {m:?}"),
    }
    assert!(
        reloaded.elapsed() < Duration::from_millis(1000),
        "not spread: at once"
    );
    kept.send(Message::text("kept")).await.unwrap();
    assert_eq!(next(&mut kept).await, Message::text("kept"));
}

/// Close 1001 within `within` of `since`, whatever arrives before it; returns when.
async fn expect_away(ws: &mut Ws, what: &str, since: Instant, within: Duration) -> Duration {
    loop {
        match next(ws).await {
            Message::Close(Some(frame)) => {
                assert_eq!(frame.code, CloseCode::Away, "{what}");
                break;
            }
            Message::Close(None) => panic!("{what}: close without 1001"),
            _ => {}
        }
    }
    let at = since.elapsed();
    assert!(at < within, "{what}: closed after {at:?}");
    at
}

/// Site 1 (any host) with WebSocket routes to `app` on `/ws`, `/gone`, `/moved`, `/plain`,
/// `/nows`; site 2 (`b.test`, same listener) proxies WebSockets on `/` to `app`. The
/// reloaded variant keeps `/ws` as it was, drops `/gone` and site 2, points `/moved` to the
/// upstream `other`, makes `/plain` a `respond` route and `/nows` a proxy route without
/// WebSockets; `app` keeps its one server throughout.
fn routes_config(app: SocketAddr, other: SocketAddr, reloaded: bool) -> String {
    let routes = if reloaded {
        "{ path = \"/ws\", proxy = \"app\", websocket = true },\n\
         { path = \"/moved\", proxy = \"other\", websocket = true },\n\
         { path = \"/plain\", respond = \"not a proxy\" },\n\
         { path = \"/nows\", proxy = \"app\", websocket = false },\n"
    } else {
        "{ path = \"/ws\", proxy = \"app\", websocket = true },\n\
         { path = \"/gone\", proxy = \"app\", websocket = true },\n\
         { path = \"/moved\", proxy = \"app\", websocket = true },\n\
         { path = \"/plain\", proxy = \"app\", websocket = true },\n\
         { path = \"/nows\", proxy = \"app\", websocket = true },\n"
    };
    let site2 = if reloaded {
        ""
    } else {
        "[[sites]]\nlisten = [\"127.0.0.1:0\"]\nhosts = [\"b.test\"]\n\
         routes = [{ path = \"/\", proxy = \"app\", websocket = true }]\n"
    };
    format!(
        "[server]\nthreads = 2\naccess_log = \"off\"\nshutdown_grace = \"2s\"\n\n\
         [upstreams.app]\nservers = [\"{app}\"]\n\n[upstreams.other]\nservers = [\"{other}\"]\n\n\
         [[sites]]\nlisten = [\"127.0.0.1:0\"]\nroutes = [\n{routes}]\n\n{site2}"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websockets_whose_route_or_site_a_reload_removed_or_retargeted_get_1001_the_others_stay() {
    let a = echo("A");
    let other = echo("O");
    let live = Live::start(&routes_config(a.addr, other.addr, false)).unwrap();
    let addr = live.addr();
    // Two on the kept route (one with the host of the removed site: same route, kept).
    let mut kept = vec![
        open_at(addr, "h", "/ws").await.0,
        open_at(addr, "b.test", "/ws/x").await.0,
    ];
    let mut gone = Vec::new();
    for (host, path) in [
        ("h", "/gone"),
        ("h", "/moved"),
        ("h", "/plain"),
        ("h", "/nows"),
        ("b.test", "/chat"),
    ] {
        let (ws, name) = open_at(addr, host, path).await;
        assert_eq!(name, "A");
        gone.push((format!("{host}{path}"), ws));
    }
    echo_round(&mut kept, 0).await;
    assert_eq!(live.server.websockets(), 7);

    let reloaded = Instant::now();
    let out = live
        .reload(&routes_config(a.addr, other.addr, true))
        .unwrap();
    assert!(out.servers_removed.is_empty(), "{out:?}");
    assert!(out.listeners_removed.is_empty(), "{out:?}");
    // shutdown_grace 2 s: closes spread over 1 s, hard cap at 2 s.
    let waits = gone
        .iter_mut()
        .map(|(what, ws)| expect_away(ws, what, reloaded, Duration::from_millis(2000)));
    let mut closed_at = futures_util::future::join_all(waits).await;
    closed_at.sort();
    // Five over two workers: one worker spreads three or more over its 1 s window.
    assert!(
        closed_at[4] - closed_at[0] >= Duration::from_millis(300),
        "spread, not all at once: {closed_at:?}"
    );
    // The kept ones were never touched, during the window and after it.
    for round in 1..=3 {
        echo_round(&mut kept, round).await;
    }
    tokio::time::sleep(Duration::from_millis(1200)).await;
    echo_round(&mut kept, 4).await;
    let end = Instant::now() + T;
    while live.server.websockets() != 2 && Instant::now() < end {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(live.server.websockets(), 2, "only the kept ones stay open");
    // The moved route now reaches the other upstream.
    let (_, name) = open_at(addr, "h", "/moved").await;
    assert_eq!(name, "O");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgrade_in_flight_during_the_reload_that_removes_its_route_drains_when_it_lands() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // A backend that answers the upgrade only when told to.
    let backend = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let backend_addr = backend.local_addr().unwrap();
    let (got_tx, got) = tokio::sync::oneshot::channel::<()>();
    let (answer, answer_rx) = tokio::sync::oneshot::channel::<()>();
    let slow = tokio::spawn(async move {
        let (mut s, _) = backend.accept().await.unwrap();
        let mut head = Vec::new();
        let mut buf = [0u8; 1024];
        while !head.ends_with(b"\r\n\r\n") {
            let n = s.read(&mut buf).await.unwrap();
            assert!(n > 0, "the upgrade request arrives");
            head.extend_from_slice(&buf[..n]);
        }
        let head = String::from_utf8(head).unwrap();
        let key = head
            .lines()
            .find_map(|l| {
                let (name, value) = l.split_once(':')?;
                name.eq_ignore_ascii_case("sec-websocket-key")
                    .then(|| value.trim().to_string())
            })
            .unwrap();
        let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
        got_tx.send(()).unwrap();
        answer_rx.await.unwrap();
        let answer = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: {accept}\r\nx-echo-name: slow\r\n\r\n"
        );
        s.write_all(answer.as_bytes()).await.unwrap();
        // Hold the connection until the proxy closes it.
        let _ = s.read(&mut buf).await;
        s
    });
    let other = echo("O");
    let toml = |route: &str| {
        format!(
            "[server]\nthreads = 1\naccess_log = \"off\"\nshutdown_grace = \"2s\"\n\n\
             [upstreams.app]\nservers = [\"{backend_addr}\"]\n\n\
             [upstreams.other]\nservers = [\"{}\"]\n\n\
             [[sites]]\nlisten = [\"127.0.0.1:0\"]\nroutes = [{route}]\n",
            other.addr
        )
    };
    let live = Live::start(&toml("{ path = \"/gone\", proxy = \"app\" }")).unwrap();
    let addr = live.addr();
    let client = tokio::spawn(async move { open_at(addr, "h", "/gone").await.0 });
    tokio::time::timeout(T, got).await.unwrap().unwrap();
    // The route goes while the upgrade waits for the server's answer; the workers apply
    // the reload before the answer lands (the WebSocket registers after the drain ran).
    live.reload(&toml("{ path = \"/\", respond = \"gone\" }"))
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    answer.send(()).unwrap();
    let mut ws = tokio::time::timeout(T, client).await.unwrap().unwrap();
    let landed = Instant::now();
    expect_away(
        &mut ws,
        "upgrade in flight",
        landed,
        Duration::from_millis(2000),
    )
    .await;
    drop(ws);
    let _ = tokio::time::timeout(T, slow).await;
}
