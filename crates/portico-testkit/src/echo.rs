//! The HTTP + WebSocket echo backend behind `portico echo`, `portico demo`, tests and benches.
//!
//! HTTP/1.1 with keep-alive (hyper 1). Every response carries `x-echo-name: NAME` and
//! `x-echo-connection: N` (the serial number of the TCP connection, from 1).
//!
//! | request | answer |
//! |---|---|
//! | `POST`/`PUT`/`PATCH` | the request body streamed back, `Content-Type` preserved |
//! | any other method | `NAME\n<METHOD> <URI> <VERSION>\n` |
//! | `/_echo/headers` | `NAME\n` then one `name: value\n` per request header |
//! | `/_echo/sleep?ms=N` | waits N ms (at most 10 min), then the usual answer |
//! | `/_echo/status?code=N` | status N with the usual body |
//! | `/_echo/drip?chunks=N&ms=M` | N chunks (`chunk i\n`) M ms apart, chunked encoding |
//! | `/_echo/bytes?n=N` | N bytes (at most 1 GiB) of a text pattern, with Content-Length |
//! | `/_echo/consume` | reads the whole request body first (as an upload handler does), then answers `NAME\nconsumed N bytes\n` (a body that breaks: 400) |
//! | `/_echo/close` | the usual answer with `Connection: close`, then the server closes |
//! | `/_echo/abort` | the connection is closed with no response at all |
//! | `Upgrade: websocket` | 101, then every message echoed (fragments reassembled, ping -> pong, close -> close); messages up to 64 MiB |
//!
//! [`serve`] runs on any runtime; [`EchoServer`] owns a thread and a current-thread runtime
//! and can be stopped like a dying backend: listener closed and every connection dropped.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::watch;

mod ws;

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type EchoBody = BoxBody<Bytes, BoxError>;

const X_ECHO_NAME: HeaderName = HeaderName::from_static("x-echo-name");
const X_ECHO_CONNECTION: HeaderName = HeaderName::from_static("x-echo-connection");
const MAX_SLEEP_MS: u64 = 600_000;
const MAX_DRIP_CHUNKS: u64 = 100_000;
const MAX_BYTES: u64 = 1 << 30;

/// State shared by every connection of one echo server.
struct Shared {
    name: Arc<str>,
    name_header: HeaderValue,
    accepted: AtomicU64,
    /// Becomes true (or closed) when the server stops: every task watches it.
    stop: watch::Receiver<bool>,
}

/// Serve the echo backend on `listener` until this future is dropped. Dropping it closes the
/// listener and every connection (HTTP and WebSocket) it accepted.
pub async fn serve(listener: TcpListener, name: Arc<str>) -> io::Result<()> {
    // The sender lives as long as this future; its drop is the stop signal.
    let (_stop_tx, stop_rx) = watch::channel(false);
    serve_until(listener, shared(name, stop_rx)).await
}

fn shared(name: Arc<str>, stop: watch::Receiver<bool>) -> Arc<Shared> {
    let name_header =
        HeaderValue::from_str(&name).unwrap_or_else(|_| HeaderValue::from_static("echo"));
    Arc::new(Shared {
        name,
        name_header,
        accepted: AtomicU64::new(0),
        stop,
    })
}

/// Resolves once the server is told to stop (or its stop sender is gone).
async fn stopped(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

async fn serve_until(listener: TcpListener, shared: Arc<Shared>) -> io::Result<()> {
    let stop = shared.stop.clone();
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stopped(stop.clone()) => return Ok(()),
        };
        let (stream, _peer) = match accepted {
            Ok(s) => s,
            Err(e) => {
                // Out of descriptors and the like: back off instead of spinning.
                tracing::warn!(error = %e, "echo: accept failed");
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let conn_no = shared.accepted.fetch_add(1, Ordering::Relaxed) + 1;
        let shared = shared.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                let shared = shared.clone();
                async move { handle(req, &shared, conn_no).await }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .keep_alive(true)
                .timer(TokioTimer::new())
                .serve_connection(TokioIo::new(stream), svc)
                .with_upgrades();
            tokio::select! {
                r = conn => {
                    if let Err(e) = r {
                        tracing::debug!(error = %e, "echo: connection ended with an error");
                    }
                }
                _ = stopped(stop) => {}
            }
        });
    }
}

/// Returned by the service for `/_echo/abort`: hyper then closes the connection without
/// writing a response (a backend that dies before the first response byte).
#[derive(Debug)]
struct Abort;

impl std::fmt::Display for Abort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("aborted on request (/_echo/abort)")
    }
}

impl std::error::Error for Abort {}

async fn handle(
    req: Request<Incoming>,
    shared: &Shared,
    conn_no: u64,
) -> Result<Response<EchoBody>, Abort> {
    let mut resp = route(req, shared).await?;
    let h = resp.headers_mut();
    h.insert(X_ECHO_NAME, shared.name_header.clone());
    h.insert(X_ECHO_CONNECTION, HeaderValue::from(conn_no));
    Ok(resp)
}

async fn route(req: Request<Incoming>, shared: &Shared) -> Result<Response<EchoBody>, Abort> {
    if ws::is_websocket(&req) {
        return Ok(ws::websocket(req, shared.stop.clone()));
    }
    let query = req.uri().query().unwrap_or("");
    let resp = match req.uri().path() {
        "/_echo/headers" => {
            let mut text = format!("{}\n", shared.name);
            for (k, v) in req.headers() {
                text.push_str(k.as_str());
                text.push_str(": ");
                text.push_str(&String::from_utf8_lossy(v.as_bytes()));
                text.push('\n');
            }
            text_response(StatusCode::OK, text)
        }
        "/_echo/status" => {
            let code = param(query, "code")
                .and_then(|c| u16::try_from(c).ok())
                .and_then(|c| StatusCode::from_u16(c).ok());
            let status = code.unwrap_or(StatusCode::BAD_REQUEST);
            text_response(status, request_line(&req, shared))
        }
        "/_echo/drip" => {
            let chunks = param(query, "chunks").unwrap_or(10).min(MAX_DRIP_CHUNKS);
            let ms = param(query, "ms").unwrap_or(100).min(MAX_SLEEP_MS);
            drip(chunks, Duration::from_millis(ms))
        }
        "/_echo/bytes" => bytes(param(query, "n").unwrap_or(0).min(MAX_BYTES)),
        "/_echo/close" => {
            let mut resp = text_response(StatusCode::OK, request_line(&req, shared));
            let close = HeaderValue::from_static("close");
            resp.headers_mut().insert(header::CONNECTION, close);
            resp
        }
        "/_echo/consume" => {
            let name = shared.name.clone();
            let mut body = req.into_body();
            let mut n: u64 = 0;
            loop {
                match body.frame().await {
                    Some(Ok(frame)) => n += frame.data_ref().map_or(0, |d| d.len() as u64),
                    Some(Err(e)) => {
                        return Ok(text_response(
                            StatusCode::BAD_REQUEST,
                            format!("{name}\n{e}\n"),
                        ));
                    }
                    None => break,
                }
            }
            text_response(StatusCode::OK, format!("{name}\nconsumed {n} bytes\n"))
        }
        "/_echo/abort" => return Err(Abort),
        "/_echo/sleep" => {
            let ms = param(query, "ms").unwrap_or(0).min(MAX_SLEEP_MS);
            tokio::time::sleep(Duration::from_millis(ms)).await;
            plain(req, shared)
        }
        _ => plain(req, shared),
    };
    Ok(resp)
}

/// The default answer: the body echoed for POST/PUT/PATCH, else the name and request line.
fn plain(req: Request<Incoming>, shared: &Shared) -> Response<EchoBody> {
    if matches!(*req.method(), Method::POST | Method::PUT | Method::PATCH) {
        let ct = req.headers().get(header::CONTENT_TYPE).cloned();
        let mut resp = Response::new(req.into_body().map_err(BoxError::from).boxed());
        if let Some(ct) = ct {
            resp.headers_mut().insert(header::CONTENT_TYPE, ct);
        }
        return resp;
    }
    text_response(StatusCode::OK, request_line(&req, shared))
}

/// `n` bytes of `abc..xyz\n` repeated, with a Content-Length, sent in 64 KiB chunks.
fn bytes(n: u64) -> Response<EchoBody> {
    const CHUNK: u64 = 64 * 1024;
    let pattern: Bytes = (0..CHUNK)
        .map(|i| {
            if i % 27 == 26 {
                b'\n'
            } else {
                b'a' + (i % 27) as u8
            }
        })
        .collect();
    let stream = futures_util::stream::unfold(n, move |left| {
        let pattern = pattern.clone();
        async move {
            if left == 0 {
                return None;
            }
            let take = left.min(CHUNK);
            // take <= CHUNK, so the cast cannot truncate.
            let frame = Frame::data(pattern.slice(..take as usize));
            Some((Ok::<_, BoxError>(frame), left - take))
        }
    });
    let mut resp = Response::new(BodyExt::boxed(StreamBody::new(stream)));
    let h = resp.headers_mut();
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(n));
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    resp
}

fn request_line(req: &Request<Incoming>, shared: &Shared) -> String {
    format!(
        "{}\n{} {} {:?}\n",
        shared.name,
        req.method(),
        req.uri(),
        req.version()
    )
}

fn text_response(status: StatusCode, text: String) -> Response<EchoBody> {
    let mut resp = Response::new(Full::new(Bytes::from(text)).map_err(BoxError::from).boxed());
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

/// A numeric query parameter.
fn param(query: &str, name: &str) -> Option<u64> {
    query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == name)
        .and_then(|(_, v)| v.parse().ok())
}

fn drip(chunks: u64, every: Duration) -> Response<EchoBody> {
    let stream = futures_util::stream::unfold(0u64, move |i| async move {
        if i >= chunks {
            return None;
        }
        if i > 0 {
            tokio::time::sleep(every).await;
        }
        let frame = Frame::data(Bytes::from(format!("chunk {i}\n")));
        Some((Ok::<_, BoxError>(frame), i + 1))
    });
    let mut resp = Response::new(BodyExt::boxed(StreamBody::new(stream)));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

/// An echo backend on its own thread, stoppable like a backend that dies.
pub struct EchoServer {
    /// The bound address (the real port when started with port 0).
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for EchoServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EchoServer")
            .field("addr", &self.addr)
            .field("name", &self.shared.name)
            .finish()
    }
}

impl EchoServer {
    /// Bind `addr` (port 0 picks a free port) and serve on a new thread.
    pub fn start(addr: SocketAddr, name: &str) -> io::Result<EchoServer> {
        let std_listener = std::net::TcpListener::bind(addr)?;
        std_listener.set_nonblocking(true)?;
        let addr = std_listener.local_addr()?;
        let (stop, stop_rx) = watch::channel(false);
        let shared = shared(Arc::from(name), stop_rx);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let thread_shared = shared.clone();
        let thread = std::thread::Builder::new()
            .name(format!("echo-{name}"))
            .spawn(move || {
                runtime.block_on(async move {
                    match TcpListener::from_std(std_listener) {
                        Ok(l) => {
                            let _ = serve_until(l, thread_shared).await;
                        }
                        Err(e) => tracing::error!(error = %e, "echo: cannot register the listener"),
                    }
                });
                // Dropping the runtime here drops every connection and WebSocket task.
                drop(runtime);
            })?;
        Ok(EchoServer {
            addr,
            shared,
            stop,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// The server's name (first line of its answers and `x-echo-name`).
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// `http://ADDR` for building request URLs.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// TCP connections accepted so far (to check upstream keep-alive reuse).
    pub fn connections_accepted(&self) -> u64 {
        self.shared.accepted.load(Ordering::Relaxed)
    }

    /// Close the listener and every open connection; returns once they are closed, so new
    /// connects are refused from then on. Idempotent.
    pub fn stop(&self) {
        let _ = self.stop.send(true);
        let handle = match self.thread.lock() {
            Ok(mut g) => g.take(),
            Err(poisoned) => poisoned.into_inner().take(),
        };
        if let Some(h) = handle {
            let _ = h.join();
        }
    }
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        self.stop();
    }
}
