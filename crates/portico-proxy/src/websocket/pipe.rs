//! The WebSocket byte pipe between a client and a server after `101 Switching Protocols`.
//!
//! This file keeps the I/O; the direction state and logic shared with the TLS pipe are in
//! [`crate::websocket::dir`].
//!
//! Bytes are never parsed, changed or reordered. Memory: an idle pipe holds no buffer. Data
//! is read into the worker's shared buffer and written at once with `try_write`; only what
//! the destination cannot take right now is copied into a buffer of its own, and that
//! direction stops reading until it is flushed (backpressure). A read that does not fill the
//! buffer drained the socket (see [`read_drained`]): the pipe waits for readiness again
//! instead of paying one more `recvfrom` that would only say `EAGAIN` (one system call per
//! message each way).
//!
//! - Idle timeout: the route's `read_timeout` (else the upstream's) without a byte either
//!   way closes both sides.
//! - Half-close: when one side shuts its write, the other side's write is shut after the
//!   data in flight; the pipe ends when both directions are done.
//! - Graceful stop: at the next frame boundary of each direction (tracked by
//!   `FrameTracker`), a close frame 1001 Going Away is sent — unmasked to the client,
//!   masked to the server — then both write sides are shut and the pipe waits for the peers
//!   to close, at most until the stop deadline. The same happens to one WebSocket when a
//!   reload removes its server or its listener (its [`WsTicket`]'s trigger, see
//!   `server::drain`); every other WebSocket is left alone.
//! - `ws_ping` (see [`crate::websocket::ping`]): a side heard nothing from for `ws_ping` gets a
//!   ping at the next frame boundary of the direction towards it; the pongs answering it are
//!   swallowed (`FrameTracker::filter`); a side silent for another `ws_ping` is closed and the
//!   other side gets a close frame (1001 to the server, 1011 to the client).
//! - A frame breaking the framing rules (a 64-bit length with its top bit set) is not
//!   forwarded; that side is read no more and both sides get close 1002 at their next frame
//!   boundary, as in a graceful stop with a deadline of `CLOSE_LINGER`.

use std::future::poll_fn;
use std::io;
use std::net::Shutdown;
use std::pin::Pin;
use std::rc::Rc;
use std::time::{Duration, Instant};

use hyper::upgrade::OnUpgrade;
use portico_balance::Picked;
use socket2::SockRef;
use tokio::net::TcpStream;
use tokio::time::Sleep;

use crate::exchange::log_line::LogCtx;
use crate::websocket::dir::{
    CLOSE_LINGER, End, READS_PER_WAKE, Way, WsState, closing_at, linger_deadline, mask_from_clock,
};
use crate::websocket::ping::PingSide;
use crate::websocket::ticket::WsTicket;
use crate::worker::conn::ConnCtx;
use crate::worker::state::{StopWatch, Worker};
use crate::worker::stop::RunState;

/// Wait for both upgrades, then pipe until the WebSocket ends; log it.
///
/// An `async` block rather than an `async fn`: an `async fn`'s task keeps every argument for
/// its whole life beside the locals they are moved into (~150 bytes here), and this task
/// lives as long as the WebSocket (see `tests/ws_idle_memory.rs`).
#[allow(clippy::too_many_arguments)] // each is one thing the pipe needs, handed over once
#[allow(clippy::manual_async_fn)] // on purpose, see above
pub(crate) fn run(
    ctx: Rc<ConnCtx>,
    client: OnUpgrade,
    upstream: OnUpgrade,
    idle_timeout: Duration,
    ws_ping: Option<Duration>,
    picked: Picked,
    ticket: WsTicket,
    log: Option<Box<LogCtx>>,
    series: Option<portico_metrics::SeriesId>,
) -> impl Future<Output = ()> {
    async move {
        let mut log = log;
        let (c, u) = tokio::join!(client, upstream);
        let (Ok(c), Ok(u)) = (c, u) else {
            tracing::debug!("websocket upgrade did not complete");
            if let Some(id) = series {
                // Counted as opened with the 101: close it as a client error.
                ctx.worker.metrics.ws_closed(id, 4, 0, 0);
            }
            return;
        };
        // Plain TCP both ways stays here; a TLS side (wss client, `tls` upstream) goes to the
        // AsyncRead/AsyncWrite pipe in tls_pipe.rs (same stop watch and contract).
        let (c, u) = match crate::websocket::tls_pipe::split(c, u) {
            crate::websocket::tls_pipe::Split::Plain(c, u) => (c, u),
            crate::websocket::tls_pipe::Split::Tls(sides) => {
                // Boxed: its state would otherwise widen every plain pipe's task too.
                Box::pin(crate::websocket::tls_pipe::run(
                    ctx,
                    *sides,
                    idle_timeout,
                    ws_ping,
                    picked,
                    ticket,
                    log,
                    series,
                ))
                .await;
                return;
            }
        };
        let started = Instant::now();
        // An idle WebSocket keeps only what the pipe needs: the worker, and the connection's
        // slot (live count, max_connections). The client connection's context (~300 bytes with
        // its clock and client address) is let go.
        let (worker, listener, _slot) = (ctx.worker.clone(), ctx.listener, ctx.take_slot());
        drop(ctx);
        // Bytes hyper read past the upgrade heads belong to the other side. They are copied
        // out and hyper's read buffers (8 KiB and more, shared by these `Bytes`) freed now: an
        // idle WebSocket must hold no buffer.
        let (c_io, c_early) = (c.io, c.read_buf);
        let (u_io, u_early) = (u.io, u.read_buf);
        let mut pipe = Pipe {
            client: c_io.into_inner().into_stream(),
            server: u_io.into_inner(),
            st: WsState::new(started, ws_ping, c_early, u_early),
        };

        // The worker's registry of live WebSockets: a reload that removes this server drains it.
        let stop = ticket.stop_watch(listener).await;
        let end = pipe.run(&worker, idle_timeout, stop).await;
        pipe.st.finish(
            end,
            started,
            ticket,
            picked,
            log.as_deref_mut(),
            series.map(|id| (&worker.metrics, id)),
        );
    }
}

struct Pipe {
    client: TcpStream,
    server: TcpStream,
    st: WsState,
}

impl Pipe {
    /// The pipe's loop. An `async` block, not an `async fn`, for the reason given at
    /// [`run`]: the arguments are not stored twice in every WebSocket's task.
    #[allow(clippy::manual_async_fn)] // on purpose, see above
    fn run<'a>(
        &'a mut self,
        worker: &'a Worker,
        idle_timeout: Duration,
        stop: StopWatch,
    ) -> impl Future<Output = End> + 'a {
        async move {
            let mut stop = stop;
            let mut closing = match closing_at(stop.state()) {
                Ok(closing) => closing,
                Err(end) => return end,
            };
            let idle = tokio::time::sleep(idle_timeout);
            tokio::pin!(idle);
            // Lazily re-armed like `idle`: each firing computes the next check. Boxed, and only
            // with `ws_ping`: a WebSocket without it carries no second timer.
            let mut ping_timer = self
                .st
                .ping
                .as_ref()
                .map(|p| Box::pin(tokio::time::sleep_until(p.next_check().into())));
            // The graceful stop's deadline, boxed and made only when a stop begins: a running
            // pipe's task carries no third timer.
            let mut closing_timer: Option<Pin<Box<Sleep>>> = None;
            loop {
                if self.st.take_violation() {
                    closing = Some(linger_deadline(closing));
                }
                if let Some(deadline) = closing {
                    match closing_timer.as_mut() {
                        Some(t) if t.deadline() == deadline.into() => {}
                        Some(t) => t.as_mut().reset(deadline.into()),
                        None => {
                            closing_timer =
                                Some(Box::pin(tokio::time::sleep_until(deadline.into())))
                        }
                    }
                    if let Err(end) = self.send_closes() {
                        return end;
                    }
                    let (c2s, s2c) = (&self.st.c2s, &self.st.s2c);
                    if c2s.shut && s2c.shut && c2s.close_sent && s2c.close_sent {
                        // Both peers have our close: give them a moment to close, no more.
                        closing = Some(deadline.min(Instant::now() + CLOSE_LINGER));
                    }
                }
                if let Some(end) = self.st.finished() {
                    return end;
                }
                let read_c = self.st.c2s.readable();
                let read_s = self.st.s2c.readable();
                let flush_c2s = self.st.c2s.has_pending();
                let flush_s2c = self.st.s2c.has_pending();
                // Readiness through the sockets' single waker slots (`poll_*_ready`), not
                // `readable()`: the slot still holds the waker of the task that used the socket
                // before the upgrade (hyper's connection task), and a waker keeps that task's
                // memory (7 KiB for a client connection) alive until it is replaced
                // (crates/portico-proxy/tests/ws_idle_memory.rs fails with `readable()` here).
                let step = tokio::select! {
                    r = poll_fn(|cx| self.client.poll_read_ready(cx)), if read_c => r.map(|_| Step::Read(Way::C2S)),
                    r = poll_fn(|cx| self.server.poll_read_ready(cx)), if read_s => r.map(|_| Step::Read(Way::S2C)),
                    r = poll_fn(|cx| self.server.poll_write_ready(cx)), if flush_c2s => r.map(|_| Step::Flush(Way::C2S)),
                    r = poll_fn(|cx| self.client.poll_write_ready(cx)), if flush_s2c => r.map(|_| Step::Flush(Way::S2C)),
                    _ = idle.as_mut() => Ok(Step::Idle),
                    _ = tick(&mut ping_timer), if closing.is_none() => Ok(Step::Ping),
                    s = stop.changed() => Ok(Step::State(s)),
                    _ = tick(&mut closing_timer) => Ok(Step::Deadline),
                };
                let result = match step {
                    Ok(Step::Read(way)) => self.read(worker, way, closing.is_some()),
                    Ok(Step::Flush(way)) => self.flush(way),
                    Ok(Step::Idle) => {
                        let deadline = self.st.last_activity + idle_timeout;
                        if deadline <= Instant::now() {
                            return End::Timeout;
                        }
                        idle.as_mut().reset(deadline.into());
                        Ok(())
                    }
                    Ok(Step::Ping) => {
                        let (client, server) = (&self.client, &self.server);
                        let pinged = self.st.keepalive(|way, b| {
                            // A write error shows on the next read or flush of that side.
                            try_write(dst(client, server, way), b).unwrap_or(Some(b.len()))
                        });
                        match pinged {
                            Ok(next) => {
                                if let Some(t) = ping_timer.as_mut() {
                                    t.as_mut().reset(next.into());
                                }
                                Ok(())
                            }
                            // Boxed: rare, and its state (a read buffer, a timeout) would
                            // otherwise widen every idle pipe's task.
                            Err(side) => return Box::pin(self.close_silent(side)).await,
                        }
                    }
                    Ok(Step::State(RunState::Draining(deadline))) => {
                        closing = Some(deadline);
                        Ok(())
                    }
                    Ok(Step::State(RunState::Stopped)) | Ok(Step::Deadline) => {
                        return self.st.violation.unwrap_or(End::Proxy);
                    }
                    Ok(Step::State(RunState::Running)) => Ok(()),
                    Err(_) => Err(End::Proxy),
                };
                if let Err(end) = result {
                    return end;
                }
            }
        }
    }

    fn parts(&mut self, way: Way) -> (&TcpStream, &TcpStream, &mut crate::websocket::dir::Dir) {
        let dir = self.st.dir(way);
        match way {
            Way::C2S => (&self.client, &self.server, dir),
            Way::S2C => (&self.server, &self.client, dir),
        }
    }

    /// Read what is there and write it on at once; keep only the remainder.
    fn read(&mut self, worker: &Worker, way: Way, closing: bool) -> Result<(), End> {
        let (src_err, dst_err, _) = way.ends();
        let mut buf = worker.pipe_buf.borrow_mut();
        let mut active = false;
        let mut saw_eof = false;
        let ours = self.st.ours();
        {
            let (src, dst, dir) = self.parts(way);
            let mut write = |b: &[u8]| try_write(dst, b);
            for _ in 0..READS_PER_WAKE {
                let n = match read_drained(src, &mut buf) {
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
                if dir
                    .forward(&buf[..n], ours.as_ref(), closing, &mut write)
                    .map_err(|_| dst_err)?
                    || n < buf.len()
                {
                    // Stopped by the direction, or the socket is drained (short read).
                    break;
                }
            }
        }
        self.st.record(way, active, active, saw_eof);
        let (_, dst, dir) = self.parts(way);
        if dir.eof && !dir.has_pending() && !dir.shut {
            dir.shut = true;
            let _ = SockRef::from(dst).shutdown(Shutdown::Write);
        }
        Ok(())
    }

    /// Write pending bytes; free the buffer once empty.
    fn flush(&mut self, way: Way) -> Result<(), End> {
        let (_, dst_err, _) = way.ends();
        let (_, dst, dir) = self.parts(way);
        dir.write_pending(&mut |b| try_write(dst, b))
            .map_err(|_| dst_err)?;
        if dir.has_pending() {
            return Ok(());
        }
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
            let Some(frame) = self.st.take_close(way, mask) else {
                continue;
            };
            let (_, dst, dir) = self.parts(way);
            match try_write(dst, &frame) {
                Ok(Some(n)) if n == frame.len() => {
                    dir.shut = true;
                    let _ = SockRef::from(dst).shutdown(Shutdown::Write);
                }
                Ok(Some(n)) => dir.queue(&frame[n..]),
                Ok(None) => dir.set_pending(frame),
                Err(_) => return Err(End::Proxy),
            }
        }
        Ok(())
    }

    /// `ws_ping`: `side` did not answer our ping: close it, send the other side a close
    /// frame after what is in flight, and give it a moment to close.
    async fn close_silent(&mut self, side: PingSide) -> End {
        let (end, way, out) = self.st.silent(side);
        let Some(out) = out else {
            return end;
        };
        let live = dst(&self.client, &self.server, way);
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

enum Step {
    Read(Way),
    Flush(Way),
    Idle,
    Ping,
    State(RunState),
    Deadline,
}

/// The destination of `way`.
fn dst<'a>(client: &'a TcpStream, server: &'a TcpStream, way: Way) -> &'a TcpStream {
    match way {
        Way::C2S => server,
        Way::S2C => client,
    }
}

/// `try_read`, except that a short read (fewer bytes than `buf` holds) also clears tokio's
/// read readiness, as tokio's own `poll_read` does: on Linux (epoll, edge-triggered) a read
/// that does not fill the buffer has drained the socket, so the next wait goes to the
/// reactor instead of costing a `recvfrom` that returns `EAGAIN`. Data that arrives after
/// the read raises a new readiness event, which this clearing cannot erase (tokio clears
/// only the event the read was made for).
fn read_drained(s: &TcpStream, buf: &mut [u8]) -> io::Result<usize> {
    use std::io::Read;
    let mut got = 0;
    let r = s.try_io(tokio::io::Interest::READABLE, || {
        got = (&*SockRef::from(s)).read(buf)?;
        if got > 0 && got < buf.len() {
            // Drained: `WouldBlock` makes `try_io` clear the readiness; `got` carries the data.
            return Err(io::ErrorKind::WouldBlock.into());
        }
        Ok(got)
    });
    match r {
        Err(e) if e.kind() == io::ErrorKind::WouldBlock && got > 0 => Ok(got),
        r => r,
    }
}

/// `try_write` as the shared direction logic wants it: `None` when the socket is full.
#[inline]
fn try_write(s: &TcpStream, b: &[u8]) -> io::Result<Option<usize>> {
    match s.try_write(b) {
        Ok(n) => Ok(Some(n)),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
        Err(e) => Err(e),
    }
}

/// A lazily made timer (`ws_ping`'s, the graceful stop's), or never.
async fn tick(timer: &mut Option<Pin<Box<Sleep>>>) {
    match timer {
        Some(t) => t.as_mut().await,
        None => std::future::pending().await,
    }
}

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
