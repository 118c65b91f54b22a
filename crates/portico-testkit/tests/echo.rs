//! The echo backend over real sockets: HTTP answers, body echo, helper endpoints,
//! keep-alive, WebSocket echo (text, binary, fragmented, ping, close, 16 MiB) and stop().

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use portico_testkit::echo::EchoServer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};

const T: Duration = Duration::from_secs(10);

fn start(name: &str) -> EchoServer {
    EchoServer::start("127.0.0.1:0".parse().expect("addr"), name).expect("start echo")
}

async fn client(addr: SocketAddr) -> SendRequest<Full<Bytes>> {
    let s = TcpStream::connect(addr).await.expect("connect");
    let (tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(s))
        .await
        .expect("handshake");
    tokio::spawn(conn);
    tx
}

async fn call(
    tx: &mut SendRequest<Full<Bytes>>,
    req: http::request::Builder,
    body: impl Into<Bytes>,
) -> (http::response::Parts, Bytes) {
    let req = req
        .header("host", "echo.test")
        .body(Full::new(body.into()))
        .expect("request");
    let resp = tokio::time::timeout(T, tx.send_request(req))
        .await
        .expect("in time")
        .expect("send");
    let (parts, body) = resp.into_parts();
    let bytes = tokio::time::timeout(T, body.collect())
        .await
        .expect("in time")
        .expect("body");
    (parts, bytes.to_bytes())
}

fn get(uri: &str) -> http::request::Builder {
    http::Request::builder().uri(uri)
}

#[tokio::test]
async fn get_answers_name_and_request_line_over_keep_alive() {
    let echo = start("alpha");
    let mut tx = client(echo.addr).await;
    for i in 0..3 {
        let (parts, body) = call(&mut tx, get(&format!("/x?i={i}")), "").await;
        assert_eq!(parts.status, 200);
        assert_eq!(parts.headers["x-echo-name"], "alpha");
        assert_eq!(parts.headers["x-echo-connection"], "1");
        assert_eq!(body, format!("alpha\nGET /x?i={i} HTTP/1.1\n"));
    }
    assert_eq!(echo.connections_accepted(), 1);
    let (parts, body) = call(&mut tx, get("/h").method("HEAD"), "").await;
    assert_eq!(parts.status, 200);
    assert!(body.is_empty());
    let expected_len = "alpha\nHEAD /h HTTP/1.1\n".len().to_string();
    assert_eq!(parts.headers["content-length"], expected_len.as_str());
    let mut tx2 = client(echo.addr).await;
    let (parts, _) = call(&mut tx2, get("/").method("DELETE"), "").await;
    assert_eq!(parts.headers["x-echo-connection"], "2");
    assert_eq!(echo.connections_accepted(), 2);
}

#[tokio::test]
async fn bytes_close_and_abort_endpoints() {
    let echo = start("delta");
    let mut tx = client(echo.addr).await;
    let (parts, body) = call(&mut tx, get("/_echo/bytes?n=200000"), "").await;
    assert_eq!(parts.headers["content-length"], "200000");
    assert_eq!(body.len(), 200_000);
    assert_eq!(&body[..4], b"abcd");
    let (parts, body) = call(&mut tx, get("/_echo/bytes?n=0"), "").await;
    assert_eq!((parts.status.as_u16(), body.len()), (200, 0));

    let (parts, _) = call(&mut tx, get("/_echo/close"), "").await;
    assert_eq!(parts.headers["connection"], "close");
    let deadline = Instant::now() + T;
    while !tx.is_closed() {
        assert!(
            Instant::now() < deadline,
            "server kept the connection after Connection: close"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // Abort: the connection closes with no response byte at all.
    let mut raw = TcpStream::connect(echo.addr).await.expect("connect");
    raw.write_all(b"GET /_echo/abort HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    let mut buf = Vec::new();
    let read = tokio::time::timeout(T, raw.read_to_end(&mut buf))
        .await
        .expect("closed in time");
    assert!(
        read.is_err() || buf.is_empty(),
        "abort sent {:?}",
        String::from_utf8_lossy(&buf)
    );
    assert_eq!(echo.connections_accepted(), 2);
}

#[tokio::test]
async fn post_and_put_echo_the_body() {
    let echo = start("beta");
    let mut tx = client(echo.addr).await;
    let big: Vec<u8> = (0..2_000_000u32).map(|i| (i % 253) as u8).collect();
    let req = get("/upload")
        .method("POST")
        .header("content-type", "application/x-thing");
    let (parts, body) = call(&mut tx, req, big.clone()).await;
    assert_eq!(parts.status, 200);
    assert_eq!(parts.headers["content-type"], "application/x-thing");
    assert_eq!(parts.headers["x-echo-name"], "beta");
    assert!(body == big, "echoed body differs");
    let (_, body) = call(&mut tx, get("/p").method("PUT"), "put me").await;
    assert_eq!(body, "put me");
    assert_eq!(echo.connections_accepted(), 1);
}

#[tokio::test]
async fn helper_endpoints() {
    let echo = start("gamma");
    let mut tx = client(echo.addr).await;
    let (_, body) = call(&mut tx, get("/_echo/headers").header("x-test", "v1"), "").await;
    let text = String::from_utf8(body.to_vec()).expect("utf8");
    assert!(text.starts_with("gamma\n"), "{text}");
    assert!(
        text.contains("x-test: v1\n") && text.contains("host: echo.test\n"),
        "{text}"
    );

    let (parts, body) = call(&mut tx, get("/_echo/status?code=503"), "").await;
    assert_eq!(parts.status, 503);
    assert!(body.starts_with(b"gamma\n"));
    let (parts, _) = call(&mut tx, get("/_echo/status?code=65736"), "").await;
    assert_eq!(parts.status, 400, "out-of-range code must not wrap to 200");

    let started = Instant::now();
    let (parts, _) = call(&mut tx, get("/_echo/sleep?ms=300"), "").await;
    assert_eq!(parts.status, 200);
    assert!(started.elapsed() >= Duration::from_millis(300));

    let started = Instant::now();
    let req = get("/_echo/drip?chunks=4&ms=100")
        .header("host", "x")
        .body(Full::new(Bytes::new()));
    let resp = tx.send_request(req.expect("req")).await.expect("send");
    assert!(
        resp.headers().get("content-length").is_none(),
        "drip must be chunked"
    );
    let mut body = resp.into_body();
    let mut frames = Vec::new();
    while let Some(f) = tokio::time::timeout(T, body.frame())
        .await
        .expect("in time")
    {
        if let Ok(data) = f.expect("frame").into_data() {
            frames.push((started.elapsed(), data));
        }
    }
    let all: Vec<u8> = frames.iter().flat_map(|(_, d)| d.to_vec()).collect();
    assert_eq!(all, b"chunk 0\nchunk 1\nchunk 2\nchunk 3\n");
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert!(
        frames[0].0 < Duration::from_millis(250),
        "first chunk came late"
    );
}

async fn ws_connect(
    addr: SocketAddr,
) -> (
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>,
    http::Response<Option<Vec<u8>>>,
) {
    let url = format!("ws://{addr}/chat");
    tokio::time::timeout(T, tokio_tungstenite::connect_async(url))
        .await
        .expect("in time")
        .expect("ws")
}

async fn next_msg<S>(ws: &mut tokio_tungstenite::WebSocketStream<S>) -> Message
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    tokio::time::timeout(T, ws.next())
        .await
        .expect("in time")
        .expect("open")
        .expect("message")
}

#[tokio::test]
async fn websocket_echoes_every_kind_of_message() {
    let echo = start("ws-echo");
    let (mut ws, resp) = ws_connect(echo.addr).await;
    assert_eq!(resp.status(), 101);
    assert_eq!(resp.headers()["x-echo-name"], "ws-echo");

    ws.send(Message::text("hello")).await.expect("send");
    assert_eq!(next_msg(&mut ws).await, Message::text("hello"));
    ws.send(Message::binary(vec![0u8, 1, 2, 255]))
        .await
        .expect("send");
    assert_eq!(
        next_msg(&mut ws).await,
        Message::binary(vec![0u8, 1, 2, 255])
    );

    // A fragmented text message comes back whole.
    ws.send(Message::Frame(Frame::message(
        "frag",
        OpCode::Data(Data::Text),
        false,
    )))
    .await
    .expect("f1");
    ws.send(Message::Frame(Frame::message(
        "ment",
        OpCode::Data(Data::Continue),
        false,
    )))
    .await
    .expect("f2");
    ws.send(Message::Frame(Frame::message(
        "ed",
        OpCode::Data(Data::Continue),
        true,
    )))
    .await
    .expect("f3");
    assert_eq!(next_msg(&mut ws).await, Message::text("fragmented"));

    ws.send(Message::Ping(Bytes::from_static(b"pp")))
        .await
        .expect("ping");
    assert_eq!(
        next_msg(&mut ws).await,
        Message::Pong(Bytes::from_static(b"pp"))
    );

    let big: Vec<u8> = (0..16 * 1024 * 1024u32).map(|i| (i % 249) as u8).collect();
    ws.send(Message::binary(big.clone()))
        .await
        .expect("send big");
    match next_msg(&mut ws).await {
        Message::Binary(b) => assert!(b == big, "16 MiB message differs"),
        other => panic!("unexpected {other:?}"),
    }

    ws.close(None).await.expect("close");
    match next_msg(&mut ws).await {
        Message::Close(_) => {}
        other => panic!("expected close, got {other:?}"),
    }
    assert!(
        tokio::time::timeout(T, ws.next())
            .await
            .expect("in time")
            .is_none()
    );
}

#[tokio::test]
async fn websocket_subprotocol_is_answered() {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let echo = start("proto");
    let mut req = format!("ws://{}/", echo.addr)
        .into_client_request()
        .expect("req");
    req.headers_mut().insert(
        "sec-websocket-protocol",
        "chat, superchat".parse().expect("hv"),
    );
    let (mut ws, resp) = tokio_tungstenite::connect_async(req).await.expect("ws");
    assert_eq!(resp.headers()["sec-websocket-protocol"], "chat");
    ws.send(Message::text("x")).await.expect("send");
    assert_eq!(next_msg(&mut ws).await, Message::text("x"));
}

#[tokio::test]
async fn stop_refuses_new_connections_and_drops_open_ones() {
    let echo = start("doomed");
    let addr = echo.addr;
    // An idle keep-alive HTTP connection.
    let mut raw = TcpStream::connect(addr).await.expect("connect");
    raw.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(T, raw.read(&mut buf))
        .await
        .expect("in time")
        .expect("read");
    assert!(String::from_utf8_lossy(&buf[..n]).contains("doomed"));
    // An open WebSocket.
    let (mut ws, _) = ws_connect(addr).await;
    ws.send(Message::text("before")).await.expect("send");
    assert_eq!(next_msg(&mut ws).await, Message::text("before"));

    echo.stop();

    assert!(
        TcpStream::connect(addr).await.is_err(),
        "connect after stop must be refused"
    );
    let read = tokio::time::timeout(T, raw.read(&mut buf))
        .await
        .expect("closed in time");
    assert!(
        matches!(read, Ok(0) | Err(_)),
        "keep-alive connection still open: {read:?}"
    );
    let next = tokio::time::timeout(T, ws.next())
        .await
        .expect("closed in time");
    assert!(
        matches!(next, None | Some(Err(_))),
        "websocket still open: {next:?}"
    );
    echo.stop(); // idempotent
}

#[tokio::test]
async fn serve_runs_on_any_runtime_until_dropped() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let task = tokio::spawn(portico_testkit::echo::serve(listener, "plain".into()));
    let mut tx = client(addr).await;
    let (_, body) = call(&mut tx, get("/"), "").await;
    assert_eq!(body, "plain\nGET / HTTP/1.1\n");
    let (mut ws, _) = ws_connect(addr).await;
    task.abort();
    let _ = task.await;
    // Dropping serve() closes its connections too.
    let deadline = Instant::now() + T;
    while !tx.is_closed() {
        assert!(
            Instant::now() < deadline,
            "keep-alive connection still open after drop"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let next = tokio::time::timeout(T, ws.next())
        .await
        .expect("closed in time");
    assert!(
        matches!(next, None | Some(Err(_))),
        "websocket still open: {next:?}"
    );
    let deadline = Instant::now() + T;
    while TcpStream::connect(addr).await.is_ok() {
        assert!(Instant::now() < deadline, "listener still open after drop");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
