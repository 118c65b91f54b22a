//! The WebSocket byte pipe between a client and a server after `101 Switching Protocols`.
//!
//! Bytes are never parsed, changed or reordered. Memory: an idle pipe holds no buffer. Data
//! is read with `try_read` into the worker's shared buffer and written at once with
//! `try_write`; only what the destination cannot take right now is copied into a buffer of
//! its own, and that direction stops reading until it is flushed (backpressure).
//!
//! - Idle timeout: the route's `read_timeout` (else the upstream's) without a byte either
//!   way closes both sides.
//! - Half-close: when one side shuts its write, the other side's write is shut after the
//!   data in flight; the pipe ends when both directions are done.
//! - Graceful stop: at the next frame boundary of each direction (tracked by
//!   [`FrameTracker`]), a close frame 1001 Going Away is sent — unmasked to the client,
//!   masked to the server — then both write sides are shut and the pipe waits for the peers
//!   to close, at most until the stop deadline. The same happens to one WebSocket when a
//!   reload removes its server or its listener (its [`WsTicket`]'s trigger, see
//!   `drain.rs`); every other WebSocket is left alone.
//! - `ws_ping` (see [`crate::ws_ping`]): a side heard nothing from for `ws_ping` gets a ping
//!   at the next frame boundary of the direction towards it; the pongs answering it are
//!   swallowed ([`FrameTracker::filter`]); a side silent for another `ws_ping` is closed and
//!   the other side gets a close frame (1001 to the server, 1011 to the client).

use std::future::poll_fn;
use std::io;
use std::net::Shutdown;
use std::rc::Rc;
use std::time::{Duration, Instant};

use hyper::upgrade::OnUpgrade;
use portico_balance::Picked;
use socket2::SockRef;
use tokio::net::TcpStream;

use crate::access_log::WsLog;
use crate::conn::ConnCtx;
use crate::drain::WsTicket;
use crate::log::LogCtx;
use crate::worker::{RunState, StopWatch};
use crate::ws_frame::{FrameTracker, GOING_AWAY, client_close_frame, server_close_frame};
use crate::ws_ping::{PingSide, Pinger};

/// After our close frames went both ways, how long the peers get to close their side.
const CLOSE_LINGER: Duration = Duration::from_secs(1);

/// Reads per wake-up before yielding to other directions.
const READS_PER_WAKE: usize = 8;

/// One direction: bytes from `src` to `dst`.
#[derive(Default)]
struct Dir {
    /// Bytes read but not yet written (`off..` still to go).
    pending: Vec<u8>,
    off: usize,
    tracker: FrameTracker,
    bytes: u64,
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
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
    fn as_str(self) -> &'static str {
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

/// Wait for both upgrades, then pipe until the WebSocket ends; log it.
#[allow(clippy::too_many_arguments)] // each is one thing the pipe needs, handed over once
pub(crate) async fn run(
    ctx: Rc<ConnCtx>,
    client: OnUpgrade,
    upstream: OnUpgrade,
    idle_timeout: Duration,
    ws_ping: Option<Duration>,
    picked: Picked,
    ticket: WsTicket,
    mut log: Option<Box<LogCtx>>,
) {
    let (c, u) = tokio::join!(client, upstream);
    let (Ok(c), Ok(u)) = (c, u) else {
        tracing::debug!("websocket upgrade did not complete");
        return;
    };
    // Plain TCP both ways stays here; a TLS side (wss client, `tls` upstream) goes to the
    // AsyncRead/AsyncWrite pipe in ws_tls_pipe.rs (same stop watch and contract).
    let (c, u) = match crate::ws_tls_pipe::split(c, u) {
        crate::ws_tls_pipe::Split::Plain(c, u) => (c, u),
        crate::ws_tls_pipe::Split::Tls(sides) => {
            // Boxed: its state would otherwise widen every plain pipe's task too.
            Box::pin(crate::ws_tls_pipe::run(
                ctx,
                *sides,
                idle_timeout,
                ws_ping,
                picked,
                ticket,
                log,
            ))
            .await;
            return;
        }
    };
    let started = Instant::now();
    // Bytes hyper read past the upgrade heads belong to the other side. They are copied
    // out and hyper's read buffers (8 KiB and more, shared by these `Bytes`) freed now: an
    // idle WebSocket must hold no buffer.
    let (c_io, c_early) = (c.io, c.read_buf);
    let (u_io, u_early) = (u.io, u.read_buf);
    let mut pipe = Pipe {
        client: c_io.into_inner().stream,
        server: u_io.into_inner(),
        c2s: Dir::default(),
        s2c: Dir::default(),
        last_activity: started,
        first_close: None,
        ping: ws_ping.map(|every| Box::new(Pinger::new(every, started))),
    };
    let ours = pipe.ping.as_ref().map(|p| *p.payload());
    for (dir, early) in [(&mut pipe.c2s, c_early), (&mut pipe.s2c, u_early)] {
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

    // The worker's registry of live WebSockets: a reload that removes this server drains it.
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

struct Pipe {
    client: TcpStream,
    server: TcpStream,
    c2s: Dir,
    s2c: Dir,
    last_activity: Instant,
    first_close: Option<End>,
    /// `ws_ping`'s schedule; None without `ws_ping` (then the trackers do not filter).
    ping: Option<Box<Pinger>>,
}

/// Which side a step works on.
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

impl Pipe {
    async fn run(&mut self, ctx: &ConnCtx, idle_timeout: Duration, mut stop: StopWatch) -> End {
        let mut closing: Option<Instant> = match stop.state() {
            RunState::Running => None,
            RunState::Draining(deadline) => Some(deadline),
            RunState::Stopped => return End::Proxy,
        };
        let idle = tokio::time::sleep(idle_timeout);
        tokio::pin!(idle);
        // Lazily re-armed like `idle`: each firing computes the next check. Boxed, and only
        // with `ws_ping`: a WebSocket without it carries no second timer.
        let mut ping_timer = self
            .ping
            .as_ref()
            .map(|p| Box::pin(tokio::time::sleep_until(p.next_check().into())));
        loop {
            if let Some(deadline) = closing {
                if let Err(end) = self.send_closes() {
                    return end;
                }
                if self.c2s.shut && self.s2c.shut && self.c2s.close_sent && self.s2c.close_sent {
                    // Both peers have our close: give them a moment to close, no more.
                    closing = Some(deadline.min(Instant::now() + CLOSE_LINGER));
                }
            }
            if self.c2s.done() && self.s2c.done() {
                return self.first_close.unwrap_or(End::Client);
            }
            let read_c = !self.c2s.eof && !self.c2s.has_pending();
            let read_s = !self.s2c.eof && !self.s2c.has_pending();
            let flush_c2s = self.c2s.has_pending();
            let flush_s2c = self.s2c.has_pending();
            // Readiness through the sockets' single waker slots (`poll_*_ready`), not
            // `readable()`: the slot still holds the waker of the task that used the socket
            // before the upgrade (hyper's connection task), and a waker keeps that task's
            // memory (7 KiB for a client connection) alive until it is replaced.
            let step = tokio::select! {
                r = poll_fn(|cx| self.client.poll_read_ready(cx)), if read_c => r.map(|_| Step::Read(Way::C2S)),
                r = poll_fn(|cx| self.server.poll_read_ready(cx)), if read_s => r.map(|_| Step::Read(Way::S2C)),
                r = poll_fn(|cx| self.server.poll_write_ready(cx)), if flush_c2s => r.map(|_| Step::Flush(Way::C2S)),
                r = poll_fn(|cx| self.client.poll_write_ready(cx)), if flush_s2c => r.map(|_| Step::Flush(Way::S2C)),
                _ = idle.as_mut() => Ok(Step::Idle),
                _ = tick(&mut ping_timer), if closing.is_none() => Ok(Step::Ping),
                s = stop.changed() => Ok(Step::State(s)),
                _ = sleep_until_opt(closing) => Ok(Step::Deadline),
            };
            let result = match step {
                Ok(Step::Read(way)) => self.read(ctx, way, closing.is_some()),
                Ok(Step::Flush(way)) => self.flush(way),
                Ok(Step::Idle) => {
                    let deadline = self.last_activity + idle_timeout;
                    if deadline <= Instant::now() {
                        return End::Timeout;
                    }
                    idle.as_mut().reset(deadline.into());
                    Ok(())
                }
                Ok(Step::Ping) => match self.keepalive() {
                    Ok(next) => {
                        if let Some(t) = ping_timer.as_mut() {
                            t.as_mut().reset(next.into());
                        }
                        Ok(())
                    }
                    Err(side) => return self.close_silent(side).await,
                },
                Ok(Step::State(RunState::Draining(deadline))) => {
                    closing = Some(deadline);
                    Ok(())
                }
                Ok(Step::State(RunState::Stopped)) | Ok(Step::Deadline) => return End::Proxy,
                Ok(Step::State(RunState::Running)) => Ok(()),
                Err(_) => Err(End::Proxy),
            };
            if let Err(end) = result {
                return end;
            }
        }
    }

    fn parts(&mut self, way: Way) -> (&TcpStream, &TcpStream, &mut Dir) {
        match way {
            Way::C2S => (&self.client, &self.server, &mut self.c2s),
            Way::S2C => (&self.server, &self.client, &mut self.s2c),
        }
    }

    fn errors(way: Way) -> (End, End) {
        // (source error, destination error)
        match way {
            Way::C2S => (End::ClientError, End::ServerError),
            Way::S2C => (End::ServerError, End::ClientError),
        }
    }

    /// Read what is there and write it on at once; keep only the remainder.
    fn read(&mut self, ctx: &ConnCtx, way: Way, closing: bool) -> Result<(), End> {
        let (src_err, dst_err) = Self::errors(way);
        let source_end = match way {
            Way::C2S => End::Client,
            Way::S2C => End::Server,
        };
        let mut buf = ctx.worker.pipe_buf.borrow_mut();
        let mut active = false;
        let mut saw_eof = false;
        let ours = self.ping.as_ref().map(|p| *p.payload());
        {
            let (src, dst, dir) = self.parts(way);
            for _ in 0..READS_PER_WAKE {
                let n = match src.try_read(&mut buf) {
                    Ok(0) => {
                        dir.eof = true;
                        saw_eof = true;
                        break;
                    }
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(_) => return Err(src_err),
                };
                active = true;
                dir.bytes += n as u64;
                if dir.close_sent {
                    // After our own close frame nothing more may go this way: drain only.
                    continue;
                }
                if let Some(ours) = &ours {
                    if forward_filtered(dst, dir, &buf[..n], ours, closing).map_err(|_| dst_err)? {
                        break;
                    }
                    continue;
                }
                let mut data = &buf[..n];
                if closing {
                    // Forward only up to the end of the current frame, then stop.
                    let upto = dir.tracker.feed_to_boundary(data);
                    data = &data[..upto];
                } else {
                    dir.tracker.feed(data);
                }
                match dst.try_write(data) {
                    Ok(w) if w == data.len() => {}
                    Ok(w) => {
                        dir.pending.clear();
                        dir.pending.extend_from_slice(&data[w..]);
                        dir.off = 0;
                        break;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        dir.pending.clear();
                        dir.pending.extend_from_slice(data);
                        dir.off = 0;
                        break;
                    }
                    Err(_) => return Err(dst_err),
                }
                if closing && dir.tracker.at_boundary() {
                    break;
                }
            }
        }
        if active {
            let now = Instant::now();
            self.last_activity = now;
            if let Some(p) = self.ping.as_deref_mut() {
                p.heard(way.source(), now);
            }
        }
        if saw_eof && let Some(p) = self.ping.as_deref_mut() {
            p.retire(way.source());
        }
        let (_, dst, dir) = self.parts(way);
        let close_seen = dir.tracker.saw_close() || saw_eof;
        if dir.eof && !dir.has_pending() && !dir.shut {
            dir.shut = true;
            let _ = SockRef::from(dst).shutdown(Shutdown::Write);
        }
        if close_seen {
            self.first_close.get_or_insert(source_end);
        }
        Ok(())
    }

    /// Write pending bytes; free the buffer once empty.
    fn flush(&mut self, way: Way) -> Result<(), End> {
        let (_, dst_err) = Self::errors(way);
        let (_, dst, dir) = self.parts(way);
        while dir.has_pending() {
            match dst.try_write(&dir.pending[dir.off..]) {
                Ok(n) => dir.off += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(_) => return Err(dst_err),
            }
        }
        dir.pending = Vec::new();
        dir.off = 0;
        if (dir.eof || dir.close_sent) && !dir.shut {
            dir.shut = true;
            let _ = SockRef::from(dst).shutdown(Shutdown::Write);
        }
        Ok(())
    }

    /// During a graceful stop: send close 1001 on every direction at a frame boundary,
    /// then shut that destination's write.
    fn send_closes(&mut self) -> Result<(), End> {
        let mask = mask_from_clock();
        for way in [Way::C2S, Way::S2C] {
            let (_, dst, dir) = self.parts(way);
            if dir.close_sent || dir.has_pending() || !dir.tracker.at_boundary() || dir.shut {
                continue;
            }
            dir.close_sent = true;
            let frame: Vec<u8> = match way {
                Way::C2S => client_close_frame(GOING_AWAY, mask).to_vec(),
                Way::S2C => server_close_frame(GOING_AWAY).to_vec(),
            };
            match dst.try_write(&frame) {
                Ok(n) if n == frame.len() => {
                    dir.shut = true;
                    let _ = SockRef::from(dst).shutdown(Shutdown::Write);
                }
                Ok(n) => {
                    dir.pending = frame[n..].to_vec();
                    dir.off = 0;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    dir.pending = frame;
                    dir.off = 0;
                }
                Err(_) => return Err(End::Proxy),
            }
            self.first_close.get_or_insert(End::Proxy);
        }
        Ok(())
    }
}

enum Step {
    Read(Way),
    Flush(Way),
    Idle,
    Ping,
    State(RunState),
    Deadline,
}

/// The `ws_ping` timer, or never.
async fn tick(timer: &mut Option<std::pin::Pin<Box<tokio::time::Sleep>>>) {
    match timer {
        Some(t) => t.as_mut().await,
        None => std::future::pending().await,
    }
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d.into()).await,
        None => std::future::pending().await,
    }
}

/// A masking key for our own client-to-server close frame (RFC 6455 wants it
/// unpredictable to the peer's intermediaries; a clock-derived key serves for one frame).
fn mask_from_clock() -> [u8; 4] {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0x5a5a_5a5a, |d| d.subsec_nanos());
    (nanos ^ 0x9e37_79b9).to_be_bytes()
}

/// `ws_ping` on: pass `data` through the direction's filter and write what comes out; once
/// the destination is full the rest goes to `pending`. Returns whether reading should stop
/// (destination full, or at a boundary while closing).
fn forward_filtered(
    dst: &TcpStream,
    dir: &mut Dir,
    data: &[u8],
    ours: &[u8; crate::ws_frame::PING_LEN],
    closing: bool,
) -> io::Result<bool> {
    let mut failed = None;
    let (pending, off) = (&mut dir.pending, &mut dir.off);
    dir.tracker.filter(data, ours, closing, &mut |b| {
        if failed.is_some() {
            return;
        }
        if *off < pending.len() {
            pending.extend_from_slice(b);
            return;
        }
        let w = match dst.try_write(b) {
            Ok(w) => w,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => 0,
            Err(e) => {
                failed = Some(e);
                return;
            }
        };
        if w < b.len() {
            pending.clear();
            pending.extend_from_slice(&b[w..]);
            *off = 0;
        }
    });
    if let Some(e) = failed {
        return Err(e);
    }
    Ok(dir.has_pending() || (closing && dir.tracker.at_boundary()))
}

/// `ws_ping`.
impl Pipe {
    /// Send the pings that are due (at frame boundaries); find a silent side. Returns when
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
            let (dst, dir) = match side {
                PingSide::Client => (&self.client, &mut self.s2c),
                PingSide::Server => (&self.server, &mut self.c2s),
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
            let frame = &frame[..len];
            match dst.try_write(frame) {
                Ok(n) if n == len => {}
                Ok(n) => {
                    dir.pending = frame[n..].to_vec();
                    dir.off = 0;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    dir.pending = frame.to_vec();
                    dir.off = 0;
                }
                // The write error shows on the next read or flush of that side.
                Err(_) => {}
            }
        }
        let mut next = p.next_check();
        if busy {
            next = next.min(now + Duration::from_millis(50));
        }
        Ok(next.max(now + Duration::from_millis(1)))
    }

    /// `side` did not answer our ping: close it, send the other side a close frame (1001
    /// Going Away to the server, 1011 to the client) after what is in flight, and give it a
    /// moment to close.
    async fn close_silent(&mut self, side: PingSide) -> End {
        let (end, live, dir, frame) = match side {
            PingSide::Client => (
                End::ClientSilent,
                &self.server,
                &mut self.c2s,
                client_close_frame(GOING_AWAY, mask_from_clock()).to_vec(),
            ),
            PingSide::Server => (
                End::ServerSilent,
                &self.client,
                &mut self.s2c,
                server_close_frame(INTERNAL_ERROR).to_vec(),
            ),
        };
        let every = self.ping.as_ref().map(|p| p.interval());
        tracing::info!(
            side = ?side,
            ws_ping = ?every,
            "websocket closed: a side did not answer Portico's ping within ws_ping"
        );
        if dir.close_sent || dir.shut || !dir.tracker.at_boundary() {
            return end;
        }
        let mut out = dir.pending.split_off(dir.off.min(dir.pending.len()));
        out.extend_from_slice(&frame);
        let _ = tokio::time::timeout(CLOSE_LINGER, async {
            if write_all(live, &out).await.is_ok() {
                let _ = SockRef::from(live).shutdown(Shutdown::Write);
                // Read until the peer closes, so our close is not lost to a reset.
                let mut sink = [0u8; 512];
                while live.readable().await.is_ok() {
                    match live.try_read(&mut sink) {
                        Ok(0) => break,
                        Ok(_) => {}
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                        Err(_) => break,
                    }
                }
            }
        })
        .await;
        end
    }
}

/// Close code 1011 "Internal Error" (the server stopped answering).
const INTERNAL_ERROR: u16 = 1011;

async fn write_all(s: &TcpStream, mut b: &[u8]) -> io::Result<()> {
    while !b.is_empty() {
        s.writable().await?;
        match s.try_write(b) {
            Ok(n) => b = &b[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
