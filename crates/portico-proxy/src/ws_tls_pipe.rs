//! The WebSocket byte pipe when either side is TLS (wss clients, `tls` upstreams).
//!
//! [`crate::ws_pipe`] works on two raw `TcpStream`s with `try_read` / `try_write`; TLS
//! streams only offer `AsyncRead` / `AsyncWrite`, so this pipe does the same work with
//! `poll_read` / `poll_write` / `poll_flush` / `poll_shutdown`, under the same contract:
//!
//! - bytes are never parsed, changed or reordered (the [`FrameTracker`] only watches them);
//! - data is read into the worker's shared buffer (borrowed inside one poll only) and
//!   written on at once; only what the destination cannot take is copied into a buffer of
//!   its own, and that direction stops reading until it is flushed (backpressure). An idle
//!   pipe holds no buffer of its own (rustls keeps its own record buffers per connection);
//! - idle timeout (the route's `read_timeout`), half-close (EOF one way shuts the other
//!   side's write after the data in flight; with TLS that sends close_notify), both
//!   directions done ends the pipe;
//! - graceful stop and reload drain: the pipe follows the same [`StopWatch`] as the plain
//!   pipe (the `WsTicket`'s, so a reload that removes the server or listener drains it), and
//!   on `Draining` sends close 1001 at the next frame boundary of each direction (unmasked to
//!   the client, masked to the server), shuts both writes and waits for the peers at most
//!   `CLOSE_LINGER` or the deadline.
//!
//! Hook points for further features (shared with `ws_pipe.rs`): the stop watch handed to
//! [`run`] (reload drain), [`Dir::tracker`] (frame boundaries: where a `ws_ping` ping would
//! be queued into [`Dir::pending`] exactly as the close frame is in [`TlsPipe::send_closes`]).
//! `ws_ping` itself is not applied on TLS pipes yet.

use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::upgrade::{Parts, Upgraded};
use hyper_util::rt::TokioIo;
use portico_balance::Picked;
use portico_tls::tokio_rustls::{client, server};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::access_log::WsLog;
use crate::conn::{ClientIo, ConnCtx};
use crate::drain::WsTicket;
use crate::log::LogCtx;
use crate::worker::{RunState, StopWatch};
use crate::ws_frame::{FrameTracker, GOING_AWAY, client_close_frame, server_close_frame};

/// After our close frames went both ways, how long the peers get to close their side.
const CLOSE_LINGER: Duration = Duration::from_secs(1);

/// Reads per wake-up and direction before yielding.
const READS_PER_WAKE: usize = 8;

/// One side of a TLS pipe: the concrete stream types (no boxing) and, should hyper ever hand
/// over something else, the upgraded stream itself.
pub(crate) enum Stream {
    Tcp(TcpStream),
    /// A wss client.
    ServerTls(Box<server::TlsStream<TcpStream>>),
    /// A `tls` upstream server.
    ClientTls(Box<client::TlsStream<TcpStream>>),
    Upgraded(TokioIo<Upgraded>),
}

macro_rules! each {
    ($self:expr, $s:ident => $e:expr) => {
        match $self.get_mut() {
            Stream::Tcp($s) => $e,
            Stream::ServerTls($s) => $e,
            Stream::ClientTls($s) => $e,
            Stream::Upgraded($s) => $e,
        }
    };
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        each!(self, s => Pin::new(s).poll_read(cx, buf))
    }
}

impl AsyncWrite for Stream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, b: &[u8]) -> Poll<io::Result<usize>> {
        each!(self, s => Pin::new(s).poll_write(cx, b))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        each!(self, s => Pin::new(s).poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        each!(self, s => Pin::new(s).poll_shutdown(cx))
    }
}

/// Both upgraded streams, sorted: the plain pair for `ws_pipe`, anything else for this pipe.
pub(crate) enum Split {
    Plain(Parts<TokioIo<ClientIo>>, Parts<TokioIo<TcpStream>>),
    Tls(Box<TlsSides>),
}

/// The two sides of a TLS pipe and the bytes hyper read past the upgrade heads.
pub(crate) struct TlsSides {
    client: Stream,
    c_early: Bytes,
    server: Stream,
    s_early: Bytes,
}

type ClientTlsIo = TokioIo<ClientIo<server::TlsStream<TcpStream>>>;
type ServerTlsIo = TokioIo<client::TlsStream<TcpStream>>;

/// Sort the upgraded client and server streams by type.
pub(crate) fn split(c: Upgraded, u: Upgraded) -> Split {
    let (client, c_early) = match c.downcast::<TokioIo<ClientIo>>() {
        Ok(plain) => match u.downcast::<TokioIo<TcpStream>>() {
            Ok(u) => return Split::Plain(plain, u),
            Err(u) => {
                let (server, s_early) = server_side(u);
                return Split::Tls(Box::new(TlsSides {
                    client: Stream::Tcp(plain.io.into_inner().stream),
                    c_early: plain.read_buf,
                    server,
                    s_early,
                }));
            }
        },
        Err(c) => match c.downcast::<ClientTlsIo>() {
            Ok(p) => (
                Stream::ServerTls(Box::new(p.io.into_inner().stream)),
                p.read_buf,
            ),
            Err(c) => (Stream::Upgraded(TokioIo::new(c)), Bytes::new()),
        },
    };
    let (server, s_early) = server_side(u);
    Split::Tls(Box::new(TlsSides {
        client,
        c_early,
        server,
        s_early,
    }))
}

fn server_side(u: Upgraded) -> (Stream, Bytes) {
    match u.downcast::<TokioIo<TcpStream>>() {
        Ok(p) => (Stream::Tcp(p.io.into_inner()), p.read_buf),
        Err(u) => match u.downcast::<ServerTlsIo>() {
            Ok(p) => (Stream::ClientTls(Box::new(p.io.into_inner())), p.read_buf),
            Err(u) => (Stream::Upgraded(TokioIo::new(u)), Bytes::new()),
        },
    }
}

/// One direction: bytes from `src` to `dst`.
#[derive(Default)]
pub(crate) struct Dir {
    /// Bytes read but not yet written (`off..` still to go).
    pub pending: Vec<u8>,
    off: usize,
    /// Frame boundaries of this direction (graceful close; `ws_ping` would use it too).
    pub tracker: FrameTracker,
    pub bytes: u64,
    /// Written to the destination since its last flush.
    unflushed: bool,
    /// The source shut its write (EOF).
    eof: bool,
    /// We shut the destination's write.
    shut: bool,
    /// Our own close frame went (or is pending) to the destination.
    close_sent: bool,
}

impl Dir {
    fn has_pending(&self) -> bool {
        self.off < self.pending.len()
    }

    fn done(&self) -> bool {
        self.eof && !self.has_pending() && self.shut
    }
}

/// Pipe a WebSocket with a TLS side until it ends; log it like `ws_pipe::run` does. The
/// stop watch comes from `ticket` (graceful stop, and reload drains of its server or
/// listener).
pub(crate) async fn run(
    ctx: Rc<ConnCtx>,
    sides: TlsSides,
    idle_timeout: Duration,
    picked: Picked,
    ticket: WsTicket,
    mut log: Option<Box<LogCtx>>,
) {
    let started = Instant::now();
    let mut pipe = TlsPipe::new(sides, started);
    let stop = ticket.stop_watch(ctx.listener).await;
    let end = pipe.run(&ctx, idle_timeout, stop).await;
    drop(ticket);
    drop(picked);
    if let Some(log) = log.as_deref_mut() {
        log.websocket = Some(WsLog {
            client_to_server: pipe.c2s.bytes,
            server_to_client: pipe.s2c.bytes,
            duration: started.elapsed(),
            closed_by: end.as_str(),
        });
    }
}

/// How a TLS pipe ended (the access log's `closed_by`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum End {
    Client,
    Server,
    Timeout,
    Proxy,
    ClientError,
    ServerError,
}

impl End {
    pub fn as_str(self) -> &'static str {
        match self {
            End::Client => "client",
            End::Server => "server",
            End::Timeout => "timeout",
            End::Proxy => "proxy",
            End::ClientError => "client_error",
            End::ServerError => "server_error",
        }
    }
}

/// The pipe over the two sides.
pub(crate) struct TlsPipe {
    client: Stream,
    server: Stream,
    pub c2s: Dir,
    pub s2c: Dir,
    last_activity: Instant,
    first_close: Option<End>,
}

#[derive(Clone, Copy)]
enum Way {
    C2S,
    S2C,
}

enum Step {
    Io,
    Idle,
    State(RunState),
    Deadline,
}

impl TlsPipe {
    pub fn new(sides: TlsSides, now: Instant) -> TlsPipe {
        let mut pipe = TlsPipe {
            client: sides.client,
            server: sides.server,
            c2s: Dir::default(),
            s2c: Dir::default(),
            last_activity: now,
            first_close: None,
        };
        // Bytes hyper read past the heads go first; hyper's buffers are freed with them.
        for (dir, early) in [
            (&mut pipe.c2s, sides.c_early),
            (&mut pipe.s2c, sides.s_early),
        ] {
            if !early.is_empty() {
                dir.tracker.feed(&early);
                dir.bytes += early.len() as u64;
                dir.pending = early.to_vec();
            }
        }
        pipe
    }

    /// Pipe until the WebSocket ends.
    pub async fn run(&mut self, ctx: &ConnCtx, idle_timeout: Duration, mut stop: StopWatch) -> End {
        let mut closing: Option<Instant> = match stop.state() {
            RunState::Running => None,
            RunState::Draining(deadline) => Some(deadline),
            RunState::Stopped => return End::Proxy,
        };
        let idle = tokio::time::sleep(idle_timeout);
        tokio::pin!(idle);
        loop {
            if let Some(deadline) = closing {
                self.send_closes();
                if self.c2s.close_sent && self.s2c.close_sent {
                    // Both peers have our close: give them a moment to close, no more.
                    closing = Some(deadline.min(Instant::now() + CLOSE_LINGER));
                }
            }
            if self.c2s.done() && self.s2c.done() {
                return self.first_close.unwrap_or(End::Client);
            }
            let is_closing = closing.is_some();
            let step = tokio::select! {
                r = poll_fn(|cx| self.poll_io(cx, ctx, is_closing)) => match r {
                    Ok(()) => Step::Io,
                    Err(end) => return end,
                },
                _ = idle.as_mut() => Step::Idle,
                s = stop.changed() => Step::State(s),
                _ = sleep_until_opt(closing) => Step::Deadline,
            };
            match step {
                Step::Io => {}
                Step::Idle => {
                    let deadline = self.last_activity + idle_timeout;
                    if deadline <= Instant::now() {
                        return End::Timeout;
                    }
                    idle.as_mut().reset(deadline.into());
                }
                Step::State(RunState::Draining(deadline)) => closing = Some(deadline),
                Step::State(RunState::Stopped) | Step::Deadline => return End::Proxy,
                Step::State(RunState::Running) => {}
            }
        }
    }

    fn parts(&mut self, way: Way) -> (&mut Stream, &mut Stream, &mut Dir) {
        match way {
            Way::C2S => (&mut self.client, &mut self.server, &mut self.c2s),
            Way::S2C => (&mut self.server, &mut self.client, &mut self.s2c),
        }
    }

    /// Move bytes both ways as far as possible; `Ready(Ok)` once something happened.
    fn poll_io(
        &mut self,
        cx: &mut Context<'_>,
        ctx: &ConnCtx,
        closing: bool,
    ) -> Poll<Result<(), End>> {
        let mut progress = false;
        for way in [Way::C2S, Way::S2C] {
            progress |= self.poll_way(cx, ctx, way, closing)?;
        }
        if progress {
            Poll::Ready(Ok(()))
        } else {
            Poll::Pending
        }
    }

    /// One direction: flush what is pending, read and forward, shut after EOF.
    fn poll_way(
        &mut self,
        cx: &mut Context<'_>,
        ctx: &ConnCtx,
        way: Way,
        closing: bool,
    ) -> Result<bool, End> {
        let (src_err, dst_err, source_end) = match way {
            Way::C2S => (End::ClientError, End::ServerError, End::Client),
            Way::S2C => (End::ServerError, End::ClientError, End::Server),
        };
        let mut progress = false;
        let mut close_seen = false;
        {
            let (src, dst, dir) = self.parts(way);
            // 1. Pending bytes first (backpressure: no reading meanwhile).
            while dir.has_pending() {
                match Pin::new(&mut *dst).poll_write(cx, &dir.pending[dir.off..]) {
                    Poll::Ready(Ok(0)) => return Err(dst_err),
                    Poll::Ready(Ok(n)) => {
                        dir.off += n;
                        dir.unflushed = true;
                        progress = true;
                    }
                    Poll::Ready(Err(_)) => return Err(dst_err),
                    Poll::Pending => break,
                }
            }
            if !dir.has_pending() && !dir.pending.is_empty() {
                dir.pending = Vec::new();
                dir.off = 0;
            }
            // 2. Read and forward at once.
            if !dir.has_pending() && !dir.eof {
                let mut buf = ctx.worker.pipe_buf.borrow_mut();
                for _ in 0..READS_PER_WAKE {
                    let mut rb = ReadBuf::new(&mut buf);
                    match Pin::new(&mut *src).poll_read(cx, &mut rb) {
                        Poll::Ready(Ok(())) => {}
                        Poll::Ready(Err(_)) => return Err(src_err),
                        Poll::Pending => break,
                    }
                    let n = rb.filled().len();
                    progress = true;
                    if n == 0 {
                        dir.eof = true;
                        close_seen = true;
                        break;
                    }
                    dir.bytes += n as u64;
                    if dir.close_sent {
                        // After our own close frame nothing more may go this way: drain only.
                        continue;
                    }
                    let mut data = &buf[..n];
                    if closing {
                        let upto = dir.tracker.feed_to_boundary(data);
                        data = &data[..upto];
                    } else {
                        dir.tracker.feed(data);
                    }
                    let written = match Pin::new(&mut *dst).poll_write(cx, data) {
                        Poll::Ready(Ok(w)) => w,
                        Poll::Ready(Err(_)) => return Err(dst_err),
                        Poll::Pending => 0,
                    };
                    dir.unflushed |= written > 0;
                    if written < data.len() {
                        dir.pending.clear();
                        dir.pending.extend_from_slice(&data[written..]);
                        dir.off = 0;
                        break;
                    }
                    if closing && dir.tracker.at_boundary() {
                        break;
                    }
                }
            }
            // 3. Flush what the destination buffered (TLS records).
            if dir.unflushed {
                match Pin::new(&mut *dst).poll_flush(cx) {
                    Poll::Ready(Ok(())) => dir.unflushed = false,
                    Poll::Ready(Err(_)) => return Err(dst_err),
                    Poll::Pending => {}
                }
            }
            // 4. Half-close once everything went.
            if (dir.eof || dir.close_sent) && !dir.has_pending() && !dir.unflushed && !dir.shut {
                match Pin::new(&mut *dst).poll_shutdown(cx) {
                    Poll::Ready(_) => {
                        dir.shut = true;
                        progress = true;
                    }
                    Poll::Pending => {}
                }
            }
            close_seen |= dir.tracker.saw_close();
        }
        if progress {
            self.last_activity = Instant::now();
        }
        if close_seen {
            self.first_close.get_or_insert(source_end);
        }
        Ok(progress)
    }

    /// During a graceful stop: queue close 1001 on every direction at a frame boundary;
    /// the next poll writes it and shuts that destination's write.
    fn send_closes(&mut self) {
        let mask = mask_from_clock();
        for way in [Way::C2S, Way::S2C] {
            let (_, _, dir) = self.parts(way);
            if dir.close_sent || dir.has_pending() || !dir.tracker.at_boundary() || dir.shut {
                continue;
            }
            dir.close_sent = true;
            dir.pending = match way {
                Way::C2S => client_close_frame(GOING_AWAY, mask).to_vec(),
                Way::S2C => server_close_frame(GOING_AWAY).to_vec(),
            };
            dir.off = 0;
            self.first_close.get_or_insert(End::Proxy);
        }
    }
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d.into()).await,
        None => std::future::pending().await,
    }
}

/// A masking key for our own client-to-server close frame.
fn mask_from_clock() -> [u8; 4] {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0x5a5a_5a5a, |d| d.subsec_nanos());
    (nanos ^ 0x9e37_79b9).to_be_bytes()
}
