//! Connection phase: one client connection served by hyper's HTTP/1.1 server (HTTP/2 on
//! TLS listeners when ALPN picks `h2`, see [`crate::client::tls`]).
//!
//! The serving code is generic over the client stream: plain TCP is served as
//! `ClientIo<TcpStream>` (no boxing, as before TLS existed), TLS as
//! `ClientIo<TlsStream<TcpStream>>`.
//!
//! hyper parses requests (malformed ones get 400 and the connection closes) and keeps the
//! connection alive; this module adds the timeouts hyper does not have in the shape the
//! config wants (hyper's own header timeout also runs while a keep-alive connection is idle,
//! so it cannot tell the two apart):
//! - `header_timeout`: from accept for the first request head; for later ones from the first
//!   byte of the head (noted by [`ClientIo`], one relaxed atomic check per read);
//! - `keepalive_timeout`: an idle keep-alive connection with no byte of a new request;
//! - the graceful stop (`graceful_shutdown`: finish the request in flight, then close).
//!
//! One lazily re-armed timer per connection checks these; it is never reset per request.

use std::cell::{Cell, RefCell};
use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use http::HeaderValue;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::proto::framing::HeadScan;
use crate::worker::state::{RunState, StopWatch, Worker};

/// Request line plus header fields, in bytes: a longer head gets 431 and a close (hyper checks
/// it while the head is still arriving, so a head that never ends is cut here). nginx's
/// default allows 32 KiB as well (4 x 8k buffers). hyper's default of at most 100 header
/// fields also answers 431; setting `max_headers` would move hyper's field array to the heap
/// per request, so the default stays.
const MAX_HEAD: usize = 32 * 1024;

/// What every request of one client connection shares.
pub(crate) struct ConnCtx {
    pub worker: Rc<Worker>,
    pub peer: SocketAddr,
    /// The listener's identity: its configured address (stable across reloads; see
    /// `Worker::snapshot_for`).
    pub listener: SocketAddr,
    /// The client's IP as a header value, built once per connection.
    pub real_ip: HeaderValue,
    /// The client came over TLS (a TLS listener).
    pub https: bool,
    /// On TLS: the site the handshake's SNI selects on this listener (`None`: no SNI).
    pub sni_site: Cell<Option<usize>>,
    accepted: Instant,
    /// Requests in service, and when the next head started (shared with [`ClientIo`]).
    clock: Arc<HeadClock>,
    served: Cell<u64>,
    idle_since: Cell<Instant>,
    /// The upstream response-head timer, reused by the connection's requests (one at a
    /// time on HTTP/1.1); see [`ConnCtx::take_head_timer`].
    head_timer: RefCell<Option<Pin<Box<tokio::time::Sleep>>>>,
}

impl ConnCtx {
    /// A timer that fires `timeout` from now: the connection's reusable one when free (its
    /// deadline only moves later, which tokio does without touching the timer wheel; the
    /// old deadline, if ever reached, finds the new one and is rescheduled without a
    /// wake-up), else a new one. Give it back with [`ConnCtx::put_head_timer`].
    pub fn take_head_timer(&self, timeout: Duration) -> Pin<Box<tokio::time::Sleep>> {
        let deadline = tokio::time::Instant::now() + timeout;
        match self.head_timer.borrow_mut().take() {
            Some(mut timer) => {
                timer.as_mut().reset(deadline);
                timer
            }
            None => Box::pin(tokio::time::sleep_until(deadline)),
        }
    }

    /// Keep `timer` for the connection's next request.
    pub fn put_head_timer(&self, timer: Pin<Box<tokio::time::Sleep>>) {
        *self.head_timer.borrow_mut() = Some(timer);
    }

    fn new(worker: Rc<Worker>, peer: SocketAddr, listener: SocketAddr, https: bool) -> ConnCtx {
        worker.live.set(worker.live.get() + 1);
        let now = Instant::now();
        let real_ip = HeaderValue::from_str(&peer.ip().to_string())
            .unwrap_or_else(|_| HeaderValue::from_static("unknown"));
        ConnCtx {
            worker,
            peer,
            listener,
            real_ip,
            https,
            sni_site: Cell::new(None),
            accepted: now,
            clock: Arc::new(HeadClock {
                active: AtomicU32::new(0),
                head_started: AtomicU64::new(0),
                base: now,
                ambiguous: AtomicBool::new(false),
            }),
            served: Cell::new(0),
            idle_since: Cell::new(now),
            head_timer: RefCell::new(None),
        }
    }

    /// When the connection should be closed for idleness, or `None` while busy.
    fn idle_deadline(&self, header_timeout: Duration, keepalive: Duration) -> Option<Instant> {
        if self.clock.active.load(Ordering::Relaxed) > 0 {
            None
        } else if self.served.get() == 0 {
            Some(self.accepted + header_timeout)
        } else {
            match self.clock.head_started.load(Ordering::Relaxed) {
                0 => Some(self.idle_since.get() + keepalive),
                nanos => Some(self.clock.base + Duration::from_nanos(nanos) + header_timeout),
            }
        }
    }
}

impl Drop for ConnCtx {
    fn drop(&mut self) {
        let live = self.worker.live.get().saturating_sub(1);
        self.worker.live.set(live);
        if live == 0 {
            self.worker.all_closed.notify_waiters();
        }
        let shared = &self.worker.shared;
        let before = shared.connections.fetch_sub(1, Ordering::Relaxed);
        if before >= shared.max_connections {
            shared.slot_freed.notify_waiters();
        }
    }
}

/// Marks one request as in service from its head until its response body is done.
pub(crate) struct ActiveGuard(Rc<ConnCtx>);

impl ActiveGuard {
    pub fn new(ctx: &Rc<ConnCtx>) -> ActiveGuard {
        ctx.clock.active.fetch_add(1, Ordering::Relaxed);
        ctx.clock.head_started.store(0, Ordering::Relaxed);
        ActiveGuard(ctx.clone())
    }
}

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        let ctx = &self.0;
        ctx.clock.active.fetch_sub(1, Ordering::Relaxed);
        ctx.served.set(ctx.served.get() + 1);
        ctx.idle_since.set(Instant::now());
    }
}

/// Serve one accepted client connection until it closes: TLS listeners go through the
/// handshake first ([`crate::client::tls`]).
pub(crate) async fn serve(
    worker: Rc<Worker>,
    stream: TcpStream,
    peer: SocketAddr,
    listener: SocketAddr,
) {
    let (timeouts, tls) = {
        let (snap, index) = worker.snapshot_for(listener);
        let tls = index.is_some_and(|i| snap.listeners[i].tls);
        (
            Timeouts {
                header: snap.server.header_timeout,
                keepalive: snap.server.keepalive_timeout,
            },
            tls,
        )
    };
    let stop = worker.stop_watch_with(Some(listener), None).await;
    let ctx = Rc::new(ConnCtx::new(worker, peer, listener, tls));
    if tls {
        // Boxed: the TLS state machine (handshake, h2) would otherwise size every plain
        // connection's task too (~7 KiB each).
        Box::pin(crate::client::tls::serve(ctx, stream, stop, timeouts)).await;
    } else {
        serve_h1(ctx, stream, stop, timeouts).await;
    }
}

/// `[server]` timeouts of a connection, read once when it starts.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timeouts {
    pub header: Duration,
    pub keepalive: Duration,
}

/// The request service of a connection: every request goes to [`crate::request::handle`].
pub(crate) fn service(
    ctx: &Rc<ConnCtx>,
) -> impl hyper::service::Service<
    http::Request<hyper::body::Incoming>,
    Response = http::Response<crate::exchange::response::RespBody>,
    Error = Infallible,
> + Clone
+ use<> {
    let svc_ctx = ctx.clone();
    hyper::service::service_fn(move |req| {
        let ctx = svc_ctx.clone();
        async move {
            if ctx.clock.ambiguous.swap(false, Ordering::Relaxed) {
                return Ok(crate::proto::framing::refused());
            }
            Ok::<_, Infallible>(crate::request::handle(ctx, req).await)
        }
    })
}

/// Serve HTTP/1.1 (with upgrades) on `stream` until the connection closes.
pub(crate) async fn serve_h1<S>(ctx: Rc<ConnCtx>, stream: S, stop: StopWatch, t: Timeouts)
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let conn = http1::Builder::new()
        .keep_alive(true)
        .half_close(false)
        // 431 past it, also while the head is still incomplete (see `MAX_HEAD`).
        .max_header_size(MAX_HEAD)
        .serve_connection(
            TokioIo::new(ClientIo {
                stream,
                clock: ctx.clock.clone(),
                scan: Some(HeadScan::default()),
            }),
            service(&ctx),
        )
        .with_upgrades();
    tokio::pin!(conn);
    drive(&ctx, conn, |c| c.graceful_shutdown(), stop, t).await;
}

/// Drive a hyper server connection with the connection's timeouts and the graceful stop:
/// `graceful` asks hyper to finish what is in flight and close.
pub(crate) async fn drive<C>(
    ctx: &ConnCtx,
    mut conn: Pin<&mut C>,
    graceful: impl Fn(Pin<&mut C>),
    mut stop: StopWatch,
    t: Timeouts,
) where
    C: std::future::Future<Output = Result<(), hyper::Error>>,
{
    let (header_timeout, keepalive_timeout) = (t.header, t.keepalive);
    // Checked lazily: each firing computes the real deadline from the connection's state.
    let timer = tokio::time::sleep(header_timeout.min(keepalive_timeout));
    tokio::pin!(timer);
    let mut draining = false;
    loop {
        tokio::select! {
            biased;
            r = conn.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(peer = %ctx.peer, error = %e, "client connection ended with an error");
                }
                break;
            }
            _ = timer.as_mut() => {
                let now = Instant::now();
                match ctx.idle_deadline(header_timeout, keepalive_timeout) {
                    Some(deadline) if deadline <= now => break,
                    // Check at least every header_timeout: a new head may start meanwhile.
                    Some(deadline) => timer.as_mut().reset(deadline.min(now + header_timeout).into()),
                    None => timer.as_mut().reset((now + keepalive_timeout.min(header_timeout)).into()),
                }
            }
            now = stop.changed() => {
                if now == RunState::Stopped {
                    break;
                }
                if now != RunState::Running && !draining {
                    draining = true;
                    graceful(conn.as_mut());
                }
            }
        }
    }
}

/// Requests in service and the start of the next request head, shared by the connection's
/// timer and its [`ClientIo`] (atomics because hyper's upgrade wants a `Send` stream; only
/// this worker's thread touches them).
#[derive(Debug)]
pub(crate) struct HeadClock {
    active: AtomicU32,
    /// Nanoseconds after `base` (plus one) when the first byte of a head arrived while no
    /// request was in service; 0 = none.
    head_started: AtomicU64,
    base: Instant,
    /// The head being read has both `Content-Length` and `Transfer-Encoding`
    /// ([`crate::proto::framing`]); taken by the service, which answers 400.
    ambiguous: AtomicBool,
}

/// The client's stream (TCP, or TLS over TCP) as hyper sees it: notes when a new request
/// head starts.
#[derive(Debug)]
pub(crate) struct ClientIo<S = TcpStream> {
    pub stream: S,
    clock: Arc<HeadClock>,
    /// HTTP/1.1 only: watches request heads for a double framing ([`crate::proto::framing`]).
    scan: Option<HeadScan>,
}

impl<S: AsyncRead + Unpin> AsyncRead for ClientIo<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.stream).poll_read(cx, buf);
        if buf.filled().len() > before {
            let this = &mut *self;
            let clock = &this.clock;
            let idle = clock.active.load(Ordering::Relaxed) == 0;
            if idle && clock.head_started.load(Ordering::Relaxed) == 0 {
                let nanos = u64::try_from(clock.base.elapsed().as_nanos()).unwrap_or(u64::MAX - 1);
                clock.head_started.store(nanos + 1, Ordering::Relaxed);
                if let Some(scan) = &mut this.scan {
                    scan.reset();
                }
            }
            if idle
                && let Some(scan) = &mut this.scan
                && !scan.done()
                && scan.feed(&buf.filled()[before..])
            {
                clock.ambiguous.store(true, Ordering::Relaxed);
            }
        }
        result
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for ClientIo<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}
