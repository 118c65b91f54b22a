//! The context of one client connection, shared by its requests: [`ConnCtx`] (the worker,
//! peer, listener, TLS facts, timers), [`ActiveGuard`] (one request in service) and the
//! client stream as hyper reads it, [`ClientIo`], which notes when a new request head starts
//! (the connection's `header_timeout` counts from there; see `client::http`), feeds the
//! head to the double-framing scan ([`HeadScan`]), notes since when a write to the
//! client has been stalled (`send_timeout`), and counts the bytes the client took and the
//! time writes waited for it (`send_min_rate`).
//!
//! The serving code is generic over the client stream: plain TCP is served as
//! `ClientIo<TcpStream>` (no boxing, as before TLS existed), TLS as
//! `ClientIo<TlsStream<TcpStream>>`.

use std::cell::{Cell, RefCell};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use http::HeaderValue;
use portico_tls::tokio_rustls::server::TlsStream;
use socket2::SockRef;
use tokio::net::TcpStream;

use crate::policy::real_ip::{ClientAddr, is_trusted};
use crate::proto::framing::HeadScan;
use crate::worker::state::Worker;

/// Response-head timers an HTTP/2 connection keeps beyond its first for its concurrent
/// streams (each one boxed `Sleep`; more streams than this waiting at once make new ones).
const SPARE_HEAD_TIMERS: usize = 32;

/// What every request of one client connection shares.
pub(crate) struct ConnCtx {
    pub worker: Rc<Worker>,
    pub peer: SocketAddr,
    /// The listener's identity: its configured address (stable across reloads; see
    /// `Worker::snapshot_for`).
    pub listener: SocketAddr,
    /// The client's IP as a header value, built once per connection.
    pub real_ip: HeaderValue,
    /// The peer is in `[server] trusted_proxies`: its requests' `X-Forwarded-For` /
    /// `X-Real-IP` name the client (see [`ConnCtx::client`]).
    pub trusted: bool,
    /// The client came over TLS (a TLS listener).
    pub https: bool,
    /// On TLS: the site the handshake's SNI selects on this listener (`None`: no SNI).
    pub sni_site: Cell<Option<usize>>,
    accepted: Instant,
    /// Requests in service, and when the next head started (shared with [`ClientIo`]).
    clock: Arc<HeadClock>,
    served: Cell<u64>,
    idle_since: Cell<Instant>,
    /// Bytes of early upstream responses read ahead and held while their requests' bodies
    /// still stream ([`HeldAhead`]).
    held_ahead: Cell<u64>,
    /// The upstream response-head timer, reused by the connection's requests (one at a
    /// time on HTTP/1.1); see [`ConnCtx::take_head_timer`].
    head_timer: RefCell<Option<Pin<Box<tokio::time::Sleep>>>>,
    /// More such timers for the streams of an HTTP/2 connection that wait for upstream
    /// heads at the same time (at most [`SPARE_HEAD_TIMERS`]; empty on HTTP/1.1).
    spare_head_timers: RefCell<Vec<Pin<Box<tokio::time::Sleep>>>>,
    /// The connection's place in the worker's live count and the `max_connections` gate,
    /// given back when the context is dropped, or handed to the WebSocket pipe that
    /// outlives it ([`ConnCtx::take_slot`]).
    slot: Cell<Option<ConnSlot>>,
}

impl ConnCtx {
    /// A timer that fires `timeout` from now: the connection's reusable one when free (its
    /// deadline only moves later, which tokio does without touching the timer wheel; the
    /// old deadline, if ever reached, finds the new one and is rescheduled without a
    /// wake-up), else a new one. Give it back with [`ConnCtx::put_head_timer`].
    pub fn take_head_timer(&self, timeout: Duration) -> Pin<Box<tokio::time::Sleep>> {
        let deadline = tokio::time::Instant::now() + timeout;
        let reused = self.head_timer.borrow_mut().take();
        match reused.or_else(|| self.spare_head_timers.borrow_mut().pop()) {
            Some(mut timer) => {
                timer.as_mut().reset(deadline);
                timer
            }
            None => Box::pin(tokio::time::sleep_until(deadline)),
        }
    }

    /// The client of a request: the address its trusted proxy named
    /// ([`ClientAddr`] in the request's extensions, set by the request path), else the peer.
    pub fn client<'a>(&'a self, ext: &'a http::Extensions) -> (IpAddr, &'a HeaderValue) {
        if self.trusted
            && let Some(c) = ext.get::<ClientAddr>()
        {
            return (c.ip, &c.header);
        }
        (self.peer.ip(), &self.real_ip)
    }

    /// The [`ClientAddr`] a trusted proxy named for a request, taken out of its extensions
    /// (`None` for every request of an untrusted peer, at the cost of one branch).
    pub fn take_client(&self, ext: &mut http::Extensions) -> Option<ClientAddr> {
        if self.trusted {
            ext.remove::<ClientAddr>()
        } else {
            None
        }
    }

    /// The connection's slot (live count, `max_connections`), for a WebSocket pipe that
    /// keeps the connection counted after it lets the context go (an idle WebSocket then
    /// holds no `ConnCtx`). `None` if already taken.
    pub fn take_slot(&self) -> Option<ConnSlot> {
        self.slot.take()
    }

    /// Bytes held ahead over the connection's requests now.
    pub fn held_ahead(&self) -> u64 {
        self.held_ahead.get()
    }

    /// A count of bytes one request holds ahead, added to the connection's.
    pub fn hold_ahead(&self) -> HeldAhead<'_> {
        HeldAhead {
            mine: 0,
            conn: &self.held_ahead,
        }
    }

    /// Keep `timer` for the connection's next request (HTTP/2: up to
    /// [`SPARE_HEAD_TIMERS`] more for concurrent streams).
    pub fn put_head_timer(&self, timer: Pin<Box<tokio::time::Sleep>>) {
        let mut slot = self.head_timer.borrow_mut();
        if slot.is_none() {
            *slot = Some(timer);
            return;
        }
        let mut spare = self.spare_head_timers.borrow_mut();
        if spare.len() < SPARE_HEAD_TIMERS {
            spare.push(timer);
        }
    }

    /// The context of a connection just accepted on `listener` (counted live on the worker
    /// until dropped).
    pub fn new(worker: Rc<Worker>, peer: SocketAddr, listener: SocketAddr, https: bool) -> ConnCtx {
        let slot = ConnSlot::new(&worker);
        let now = Instant::now();
        let real_ip = ip_header(peer.ip());
        let trusted = {
            let nets = &worker.snapshot().server.trusted_proxies;
            !nets.is_empty() && is_trusted(nets, peer.ip())
        };
        ConnCtx {
            worker,
            peer,
            listener,
            real_ip,
            trusted,
            https,
            sni_site: Cell::new(None),
            accepted: now,
            clock: Arc::new(HeadClock {
                active: AtomicU32::new(0),
                head_started: AtomicU64::new(0),
                base: now,
                ambiguous: AtomicBool::new(false),
                write_stalled: AtomicU64::new(0),
                written: AtomicU64::new(0),
                waited: AtomicU64::new(0),
                reset: AtomicBool::new(false),
            }),
            served: Cell::new(0),
            held_ahead: Cell::new(0),
            idle_since: Cell::new(now),
            head_timer: RefCell::new(None),
            spare_head_timers: RefCell::new(Vec::new()),
            slot: Cell::new(Some(slot)),
        }
    }

    /// Since when a write to the client has made no progress (`send_timeout`), if one is
    /// waiting.
    pub fn write_stalled_since(&self) -> Option<Instant> {
        match self.clock.write_stalled.load(Ordering::Relaxed) {
            0 => None,
            nanos => Some(self.clock.base + Duration::from_nanos(nanos - 1)),
        }
    }

    /// Close the client connection with a reset (RST) rather than a FIN once its stream is
    /// dropped, discarding what the kernel still holds for the client (nginx's
    /// `reset_timedout_connection`): for a client that stopped taking bytes, a FIN would
    /// wait behind that data, keeping the connection and its buffer alive in the kernel.
    pub fn reset_on_close(&self) {
        self.clock.reset.store(true, Ordering::Relaxed);
    }

    /// Bytes the client has taken so far, and for how long writes have waited for it in
    /// all (until `now` for a write waiting now): `send_min_rate`.
    pub fn send_progress(&self, now: Instant) -> (u64, Duration) {
        let mut waited = Duration::from_nanos(self.clock.waited.load(Ordering::Relaxed));
        if let Some(since) = self.write_stalled_since() {
            waited += now.saturating_duration_since(since);
        }
        (self.clock.written.load(Ordering::Relaxed), waited)
    }

    /// When the connection should be closed for idleness, or `None` while busy.
    pub fn idle_deadline(&self, header_timeout: Duration, keepalive: Duration) -> Option<Instant> {
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

impl ConnCtx {
    /// Whether the request head just read framed its body twice ([`HeadScan`]); clears it.
    #[inline]
    pub fn take_ambiguous(&self) -> bool {
        self.clock.ambiguous.swap(false, Ordering::Relaxed)
    }
}

/// One client connection counted live on its worker and holding its `max_connections`
/// slot (taken at accept, see `client::accept`) until dropped.
pub(crate) struct ConnSlot {
    worker: Rc<Worker>,
}

impl ConnSlot {
    fn new(worker: &Rc<Worker>) -> ConnSlot {
        worker.live.set(worker.live.get() + 1);
        ConnSlot {
            worker: Rc::clone(worker),
        }
    }
}

impl Drop for ConnSlot {
    fn drop(&mut self) {
        let live = self.worker.live.get().saturating_sub(1);
        self.worker.live.set(live);
        if live == 0 {
            self.worker.all_closed.notify_waiters();
        }
        let shared = &self.worker.shared;
        shared.gate.release();
    }
}

/// `ip` as a header value. Formatted on the stack: the value's own copy is the only
/// allocation (`to_string()` cost a `malloc` and a `realloc` more per connection).
fn ip_header(ip: IpAddr) -> HeaderValue {
    use std::io::Write;
    // The longest text form of an IPv6 address is 45 bytes.
    let mut buf = [0u8; 48];
    let mut rest = &mut buf[..];
    let written = match write!(rest, "{ip}") {
        Ok(()) => 48 - rest.len(),
        Err(_) => 0,
    };
    HeaderValue::from_bytes(&buf[..written]).unwrap_or_else(|_| HeaderValue::from_static("unknown"))
}

/// Bytes one request holds ahead of its response (see `upstream::hold_until_request_done`),
/// counted on its connection too until dropped (a borrow of the connection's count: no
/// allocation per connection for it).
pub(crate) struct HeldAhead<'a> {
    mine: u64,
    conn: &'a Cell<u64>,
}

impl HeldAhead<'_> {
    pub fn add(&mut self, n: u64) {
        self.mine += n;
        self.conn.set(self.conn.get() + n);
    }

    pub fn get(&self) -> u64 {
        self.mine
    }
}

impl Drop for HeldAhead<'_> {
    fn drop(&mut self) {
        self.conn.set(self.conn.get().saturating_sub(self.mine));
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
    /// Nanoseconds after `base` (plus one) since when a write to the client has been
    /// waiting for the client to take bytes; 0 = no write waiting (`send_timeout`).
    write_stalled: AtomicU64,
    /// Bytes the client's stream took (`send_min_rate`).
    written: AtomicU64,
    /// Nanoseconds writes waited for the client, over the stalls that ended
    /// (`send_min_rate`).
    waited: AtomicU64,
    /// Close with a reset ([`ConnCtx::reset_on_close`]).
    reset: AtomicBool,
}

impl HeadClock {
    fn nanos(&self) -> u64 {
        u64::try_from(self.base.elapsed().as_nanos()).unwrap_or(u64::MAX - 1) + 1
    }

    /// Note how a write to the client went: `Pending` starts the stall clock (if not
    /// running), anything else stops it (adding the stall to `waited`).
    fn wrote<T>(&self, r: &Poll<T>) {
        let since = self.write_stalled.load(Ordering::Relaxed);
        if r.is_pending() {
            if since == 0 {
                self.write_stalled.store(self.nanos(), Ordering::Relaxed);
            }
        } else if since != 0 {
            self.write_stalled.store(0, Ordering::Relaxed);
            let stalled = self.nanos().saturating_sub(since);
            self.waited.fetch_add(stalled, Ordering::Relaxed);
        }
    }

    /// [`HeadClock::wrote`] for a data write, counting the bytes taken.
    fn wrote_bytes(&self, r: &Poll<io::Result<usize>>) {
        if let Poll::Ready(Ok(n)) = r {
            self.written.fetch_add(*n as u64, Ordering::Relaxed);
        }
        self.wrote(r);
    }
}

/// A client stream whose TCP socket can be reached (for [`ConnCtx::reset_on_close`]).
pub(crate) trait ClientStream {
    fn tcp(&self) -> &TcpStream;
}

impl ClientStream for TcpStream {
    fn tcp(&self) -> &TcpStream {
        self
    }
}

impl ClientStream for TlsStream<TcpStream> {
    fn tcp(&self) -> &TcpStream {
        self.get_ref().0
    }
}

/// The client's stream (TCP, or TLS over TCP) as hyper sees it: notes when a new request
/// head starts.
#[derive(Debug)]
pub(crate) struct ClientIo<S: ClientStream = TcpStream> {
    /// Always `Some` until [`ClientIo::into_stream`] takes it (the `Drop` that may reset
    /// the connection needs it in an `Option` to let it go).
    stream: Option<S>,
    clock: Arc<HeadClock>,
    /// HTTP/1.1 only: watches request heads for a double framing ([`crate::proto::framing`]).
    scan: Option<HeadScan>,
    /// HTTP/1.1: bytes read may start a request head (HTTP/2: only the write stall clock).
    heads: bool,
    /// Plain TCP: hyper's shutdown at the end of a connection is skipped, see
    /// [`ClientIo::poll_shutdown`].
    fin_at_close: bool,
}

impl<S: ClientStream + 'static> ClientIo<S> {
    /// `stream` of `ctx`'s connection, for HTTP/1.1 (its heads are scanned).
    pub fn new(stream: S, ctx: &ConnCtx) -> ClientIo<S> {
        ClientIo {
            stream: Some(stream),
            clock: ctx.clock.clone(),
            scan: Some(HeadScan::default()),
            heads: true,
            fin_at_close: std::any::TypeId::of::<S>() == std::any::TypeId::of::<TcpStream>(),
        }
    }

    /// `stream` of `ctx`'s HTTP/2 connection: only writes are watched (`send_timeout`); a
    /// PING or WINDOW_UPDATE of an idle connection is no request head.
    pub fn h2(stream: S, ctx: &ConnCtx) -> ClientIo<S> {
        ClientIo {
            stream: Some(stream),
            clock: ctx.clock.clone(),
            scan: None,
            heads: false,
            fin_at_close: false,
        }
    }
}

impl<S: ClientStream> ClientIo<S> {
    /// The stream, for the WebSocket pipes after an upgrade (nothing to reset then).
    #[allow(clippy::expect_used)]
    pub fn into_stream(mut self) -> S {
        // Invariant: `stream` is only taken here, and this takes `self` by value.
        self.stream.take().expect("the client stream is taken once")
    }

    fn stream(&mut self) -> io::Result<Pin<&mut S>>
    where
        S: Unpin,
    {
        self.stream.as_mut().map(Pin::new).ok_or_else(gone)
    }
}

/// The stream was taken ([`ClientIo::into_stream`]); nothing polls it afterwards.
fn gone() -> io::Error {
    io::ErrorKind::NotConnected.into()
}

impl<S: ClientStream> Drop for ClientIo<S> {
    fn drop(&mut self) {
        if self.clock.reset.load(Ordering::Relaxed)
            && let Some(s) = &self.stream
        {
            // SO_LINGER 0: close() sends RST and drops the unsent bytes.
            let _ = SockRef::from(s.tcp()).set_linger(Some(Duration::ZERO));
        }
    }
}

impl<S: ClientStream + AsyncRead + Unpin> AsyncRead for ClientIo<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let result = match self.stream() {
            Ok(s) => s.poll_read(cx, buf),
            Err(e) => return Poll::Ready(Err(e)),
        };
        if self.heads && buf.filled().len() > before {
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

impl<S: ClientStream + AsyncWrite + Unpin> AsyncWrite for ClientIo<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = match self.stream() {
            Ok(s) => s.poll_write(cx, buf),
            Err(e) => return Poll::Ready(Err(e)),
        };
        self.clock.wrote_bytes(&r);
        r
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = match self.stream() {
            Ok(s) => s.poll_write_vectored(cx, bufs),
            Err(e) => return Poll::Ready(Err(e)),
        };
        self.clock.wrote_bytes(&r);
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.as_ref().is_some_and(|s| s.is_write_vectored())
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let r = match self.stream() {
            Ok(s) => s.poll_flush(cx),
            Err(e) => return Poll::Ready(Err(e)),
        };
        self.clock.wrote(&r);
        r
    }

    /// hyper shuts the write side when it ends a connection and returns; the stream is
    /// dropped (closed) right after. On plain TCP that close sends the same FIN, so the
    /// `shutdown(2)` is skipped: one system call less per connection (nginx does not shut
    /// down before closing either). TLS still sends its `close_notify` here.
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.fin_at_close {
            return Poll::Ready(Ok(()));
        }
        match self.stream() {
            Ok(s) => s.poll_shutdown(cx),
            Err(e) => Poll::Ready(Err(e)),
        }
    }
}

/// Counts a connection as closed in its listener's metrics when dropped.
pub(crate) struct ConnCounted {
    worker: Rc<Worker>,
    id: portico_metrics::ListenerId,
}

impl ConnCounted {
    pub(crate) fn new(worker: &Rc<Worker>, id: portico_metrics::ListenerId) -> ConnCounted {
        worker.metrics.accepted(id);
        ConnCounted {
            worker: Rc::clone(worker),
            id,
        }
    }
}

impl Drop for ConnCounted {
    fn drop(&mut self) {
        self.worker.metrics.closed(self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::ip_header;

    #[test]
    fn ip_header_is_the_address_text() {
        for ip in [
            "127.0.0.1",
            "255.255.255.255",
            "::1",
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
            "::ffff:255.255.255.255",
        ] {
            let parsed: std::net::IpAddr = ip.parse().unwrap_or(std::net::IpAddr::from([0; 4]));
            assert_eq!(ip_header(parsed).as_bytes(), parsed.to_string().as_bytes());
        }
    }
}
