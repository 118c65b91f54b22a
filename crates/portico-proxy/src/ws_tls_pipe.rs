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
//! - `ws_ping` (the same [`Pinger`] schedule as the plain pipe): a side heard nothing from
//!   for `ws_ping` gets a ping queued at the next frame boundary of the direction towards it;
//!   pongs carrying Portico's payload are swallowed by the direction's filtering
//!   [`FrameTracker`]; a side silent for another `ws_ping` is closed and the other side gets
//!   a close frame (1001 to the server, 1011 to the client).
//!
//! Hooks shared with `ws_pipe.rs`: the stop watch handed to [`run`] (graceful stop and
//! reload drain), [`Dir::tracker`] (frame boundaries) and [`Dir::pending`] (where our own
//! frames, close and ping, are queued, written by the next poll).

use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use portico_balance::Picked;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::access_log::WsLog;
use crate::conn::ConnCtx;
use crate::drain::WsTicket;
use crate::log::LogCtx;
use crate::worker::{RunState, StopWatch};
use crate::ws_frame::{FrameTracker, GOING_AWAY, PING_LEN, client_close_frame, server_close_frame};
use crate::ws_ping::{PingSide, Pinger};
pub(crate) use crate::ws_tls_stream::{Split, Stream, TlsSides, split};

/// After our close frames went both ways, how long the peers get to close their side.
const CLOSE_LINGER: Duration = Duration::from_secs(1);

/// Reads per wake-up and direction before yielding.
const READS_PER_WAKE: usize = 8;

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
#[allow(clippy::too_many_arguments)]
pub(crate) async fn run(
    ctx: Rc<ConnCtx>,
    sides: TlsSides,
    idle_timeout: Duration,
    ws_ping: Option<Duration>,
    picked: Picked,
    ticket: WsTicket,
    mut log: Option<Box<LogCtx>>,
) {
    let started = Instant::now();
    let mut pipe = TlsPipe::new(sides, started, ws_ping);
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
    /// `ws_ping`: the side did not answer a ping.
    ClientSilent,
    ServerSilent,
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
            End::ClientSilent => "client_silent",
            End::ServerSilent => "server_silent",
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
    /// `ws_ping`'s schedule; None without `ws_ping` (then the trackers do not filter).
    ping: Option<Box<Pinger>>,
}

#[derive(Clone, Copy)]
enum Way {
    C2S,
    S2C,
}

impl Way {
    /// The side this direction's bytes come from.
    fn source(self) -> PingSide {
        match self {
            Way::C2S => PingSide::Client,
            Way::S2C => PingSide::Server,
        }
    }
}

enum Step {
    Io,
    Idle,
    Ping,
    State(RunState),
    Deadline,
}

impl TlsPipe {
    pub fn new(sides: TlsSides, now: Instant, ws_ping: Option<Duration>) -> TlsPipe {
        let mut pipe = TlsPipe {
            client: sides.client,
            server: sides.server,
            c2s: Dir::default(),
            s2c: Dir::default(),
            last_activity: now,
            first_close: None,
            ping: ws_ping.map(|every| Box::new(Pinger::new(every, now))),
        };
        let ours = pipe.ping.as_ref().map(|p| *p.payload());
        // Bytes hyper read past the heads go first; hyper's buffers are freed with them.
        for (dir, early) in [
            (&mut pipe.c2s, sides.c_early),
            (&mut pipe.s2c, sides.s_early),
        ] {
            if ours.is_some() {
                dir.tracker = FrameTracker::filtering();
            }
            if !early.is_empty() {
                dir.bytes += early.len() as u64;
                match &ours {
                    Some(ours) => {
                        let pending = &mut dir.pending;
                        dir.tracker
                            .filter(&early, ours, false, &mut |b| pending.extend_from_slice(b));
                    }
                    None => {
                        dir.tracker.feed(&early);
                        dir.pending = early.to_vec();
                    }
                }
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
        // Lazily re-armed like `idle`: each firing computes the next check.
        let first_check = self
            .ping
            .as_ref()
            .map_or_else(Instant::now, |p| p.next_check());
        let ping_timer = tokio::time::sleep_until(first_check.into());
        tokio::pin!(ping_timer);
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
                _ = ping_timer.as_mut(), if self.ping.is_some() && closing.is_none() => Step::Ping,
                s = stop.changed() => Step::State(s),
                _ = sleep_until_opt(closing) => Step::Deadline,
            };
            match step {
                Step::Io => {}
                Step::Ping => match self.keepalive() {
                    Ok(next) => ping_timer.as_mut().reset(next.into()),
                    Err(side) => return self.close_silent(ctx, side).await,
                },
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
        let mut heard = false;
        let ours = self.ping.as_ref().map(|p| *p.payload());
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
                    heard = true;
                    dir.bytes += n as u64;
                    if dir.close_sent {
                        // After our own close frame nothing more may go this way: drain only.
                        continue;
                    }
                    if let Some(ours) = &ours {
                        if forward_filtered(cx, dst, dir, &buf[..n], ours, closing)
                            .map_err(|_| dst_err)?
                        {
                            break;
                        }
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
            let now = Instant::now();
            self.last_activity = now;
            let eof = self.parts(way).2.eof;
            if let Some(p) = self.ping.as_deref_mut() {
                if heard {
                    p.heard(way.source(), now);
                }
                if eof {
                    p.retire(way.source());
                }
            }
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

/// `ws_ping`.
impl TlsPipe {
    /// Queue the pings that are due (at frame boundaries); find a silent side. Returns when
    /// to check next, or the silent side.
    fn keepalive(&mut self) -> Result<Instant, PingSide> {
        let now = Instant::now();
        let Some(p) = self.ping.as_deref_mut() else {
            return Ok(now + Duration::from_secs(3600));
        };
        // A side we are not reading from (its bytes wait for the other side) is not silent.
        if self.c2s.has_pending() {
            p.heard(PingSide::Client, now);
        }
        if self.s2c.has_pending() {
            p.heard(PingSide::Server, now);
        }
        if let Some(side) = p.silent(now) {
            return Err(side);
        }
        let mut busy = false;
        for side in [PingSide::Client, PingSide::Server] {
            if !p.due(side, now) {
                continue;
            }
            let dir = match side {
                PingSide::Client => &mut self.s2c,
                PingSide::Server => &mut self.c2s,
            };
            if dir.shut || dir.close_sent {
                p.retire(side);
                continue;
            }
            if dir.has_pending() || !dir.tracker.at_boundary() {
                // Mid-frame or backed up: try again shortly.
                busy = true;
                continue;
            }
            let (frame, len) = p.frame(side, now);
            // Written by the next poll of that direction.
            dir.pending = frame[..len].to_vec();
            dir.off = 0;
        }
        let mut next = p.next_check();
        if busy {
            next = next.min(now + Duration::from_millis(50));
        }
        Ok(next.max(now + Duration::from_millis(1)))
    }

    /// `side` did not answer our ping: stop reading it, send the other side a close frame
    /// (1001 Going Away to the server, 1011 to the client) after what is in flight, and
    /// give it `CLOSE_LINGER` to go out.
    async fn close_silent(&mut self, ctx: &ConnCtx, side: PingSide) -> End {
        let every = self.ping.as_ref().map(|p| p.interval());
        tracing::info!(
            side = ?side,
            ws_ping = ?every,
            "websocket closed: a side did not answer Portico's ping within ws_ping"
        );
        // The direction from the silent side towards the live one: its reading stops, and
        // our close frame goes out on it after what is in flight.
        let (end, live, frame) = match side {
            PingSide::Client => (
                End::ClientSilent,
                Way::C2S,
                client_close_frame(GOING_AWAY, mask_from_clock()).to_vec(),
            ),
            PingSide::Server => (
                End::ServerSilent,
                Way::S2C,
                server_close_frame(INTERNAL_ERROR).to_vec(),
            ),
        };
        let (_, _, dir) = self.parts(live);
        if dir.close_sent || dir.shut || !dir.tracker.at_boundary() {
            return end;
        }
        // Nothing more is read from the silent side; our close follows what is in flight.
        dir.eof = true;
        let mut out = dir.pending.split_off(dir.off.min(dir.pending.len()));
        out.extend_from_slice(&frame);
        dir.pending = out;
        dir.off = 0;
        dir.close_sent = true;
        let _ = tokio::time::timeout(CLOSE_LINGER, async {
            loop {
                let r = poll_fn(|cx| self.poll_io(cx, ctx, true)).await;
                if r.is_err() || self.parts(live).2.shut {
                    return;
                }
            }
        })
        .await;
        end
    }
}

/// Close code 1011 "Internal Error" (the server stopped answering).
const INTERNAL_ERROR: u16 = 1011;

/// `ws_ping` on: pass `data` through the direction's filter and write what comes out; once
/// the destination is full the rest goes to `pending`. Returns whether reading should stop
/// (destination full, or at a boundary while closing).
fn forward_filtered(
    cx: &mut Context<'_>,
    dst: &mut Stream,
    dir: &mut Dir,
    data: &[u8],
    ours: &[u8; PING_LEN],
    closing: bool,
) -> io::Result<bool> {
    let mut failed = None;
    let mut wrote = false;
    let (pending, off) = (&mut dir.pending, &mut dir.off);
    dir.tracker.filter(data, ours, closing, &mut |b| {
        if failed.is_some() {
            return;
        }
        if *off < pending.len() {
            pending.extend_from_slice(b);
            return;
        }
        let w = match Pin::new(&mut *dst).poll_write(cx, b) {
            Poll::Ready(Ok(w)) => w,
            Poll::Ready(Err(e)) => {
                failed = Some(e);
                return;
            }
            Poll::Pending => 0,
        };
        wrote |= w > 0;
        if w < b.len() {
            pending.clear();
            pending.extend_from_slice(&b[w..]);
            *off = 0;
        }
    });
    dir.unflushed |= wrote;
    if let Some(e) = failed {
        return Err(e);
    }
    Ok(dir.has_pending() || (closing && dir.tracker.at_boundary()))
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
