//! The WebSocket byte pipe when either side is TLS (wss clients, `tls` upstreams).
//!
//! [`crate::websocket::pipe`] works on two raw `TcpStream`s with `try_read` / `try_write`; TLS
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
//! - A frame breaking the framing rules: close 1002 both ways, as in the plain pipe.
//!
//! The direction state and logic are shared with `pipe.rs` ([`crate::websocket::dir`]: frame
//! boundaries, our own frames queued in `Dir::pending` and written by the next poll, the
//! `ws_ping` schedule); this file keeps the polling I/O.
//!
//! [`FrameTracker`]: crate::proto::ws_frame::FrameTracker
//! [`Pinger`]: crate::websocket::ping::Pinger

use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use portico_balance::Picked;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::exchange::log_line::LogCtx;
use crate::websocket::dir::{
    CLOSE_LINGER, Dir, End, READS_PER_WAKE, Way, WsState, closing_at, linger_deadline,
    mask_from_clock, sleep_until_opt,
};
use crate::websocket::ping::PingSide;
use crate::websocket::ticket::WsTicket;
pub(crate) use crate::websocket::tls_stream::{Split, Stream, TlsSides, split};
use crate::worker::conn::ConnCtx;
use crate::worker::state::{StopWatch, Worker};
use crate::worker::stop::RunState;

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
    series: Option<portico_metrics::SeriesId>,
) {
    let started = Instant::now();
    // As the plain pipe: keep the worker and the connection's slot (live count,
    // max_connections), let the client connection's context go.
    let (worker, listener, _slot) = (ctx.worker.clone(), ctx.listener, ctx.take_slot());
    drop(ctx);
    let mut pipe = TlsPipe {
        client: sides.client,
        server: sides.server,
        // Bytes hyper read past the heads go first; hyper's buffers are freed with them.
        st: WsState::new(started, ws_ping, sides.c_early, sides.s_early),
    };
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

/// The pipe over the two sides.
struct TlsPipe {
    client: Stream,
    server: Stream,
    st: WsState,
}

enum Step {
    Io,
    Idle,
    Ping,
    State(RunState),
    Deadline,
}

impl TlsPipe {
    /// Pipe until the WebSocket ends.
    async fn run(&mut self, worker: &Worker, idle_timeout: Duration, mut stop: StopWatch) -> End {
        let mut closing = match closing_at(stop.state()) {
            Ok(closing) => closing,
            Err(end) => return end,
        };
        let idle = tokio::time::sleep(idle_timeout);
        tokio::pin!(idle);
        // Lazily re-armed like `idle`: each firing computes the next check.
        let first_check = self
            .st
            .ping
            .as_ref()
            .map_or_else(Instant::now, |p| p.next_check());
        let ping_timer = tokio::time::sleep_until(first_check.into());
        tokio::pin!(ping_timer);
        loop {
            if self.st.take_violation() {
                closing = Some(linger_deadline(closing));
            }
            if let Some(deadline) = closing {
                self.send_closes();
                if self.st.c2s.close_sent && self.st.s2c.close_sent {
                    // Both peers have our close: give them a moment to close, no more.
                    closing = Some(deadline.min(Instant::now() + CLOSE_LINGER));
                }
            }
            if let Some(end) = self.st.finished() {
                return end;
            }
            let is_closing = closing.is_some();
            let step = tokio::select! {
                r = poll_fn(|cx| self.poll_io(cx, worker, is_closing)) => match r {
                    Ok(()) => Step::Io,
                    Err(end) => return end,
                },
                _ = idle.as_mut() => Step::Idle,
                _ = ping_timer.as_mut(), if self.st.ping.is_some() && closing.is_none() => Step::Ping,
                s = stop.changed() => Step::State(s),
                _ = sleep_until_opt(closing) => Step::Deadline,
            };
            match step {
                Step::Io => {}
                // Pings are queued; the next poll of that direction writes them.
                Step::Ping => match self.st.keepalive(|_, _| None) {
                    Ok(next) => ping_timer.as_mut().reset(next.into()),
                    Err(side) => return self.close_silent(worker, side).await,
                },
                Step::Idle => {
                    let deadline = self.st.last_activity + idle_timeout;
                    if deadline <= Instant::now() {
                        return End::Timeout;
                    }
                    idle.as_mut().reset(deadline.into());
                }
                Step::State(RunState::Draining(deadline)) => closing = Some(deadline),
                Step::State(RunState::Stopped) | Step::Deadline => {
                    return self.st.violation.unwrap_or(End::Proxy);
                }
                Step::State(RunState::Running) => {}
            }
        }
    }

    fn parts(&mut self, way: Way) -> (&mut Stream, &mut Stream, &mut Dir) {
        let dir = self.st.dir(way);
        match way {
            Way::C2S => (&mut self.client, &mut self.server, dir),
            Way::S2C => (&mut self.server, &mut self.client, dir),
        }
    }

    /// Move bytes both ways as far as possible; `Ready(Ok)` once something happened.
    fn poll_io(
        &mut self,
        cx: &mut Context<'_>,
        worker: &Worker,
        closing: bool,
    ) -> Poll<Result<(), End>> {
        let mut progress = false;
        for way in [Way::C2S, Way::S2C] {
            progress |= self.poll_way(cx, worker, way, closing)?;
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
        worker: &Worker,
        way: Way,
        closing: bool,
    ) -> Result<bool, End> {
        let (src_err, dst_err, _) = way.ends();
        let mut progress = false;
        let mut saw_eof = false;
        let mut heard = false;
        let ours = self.st.ours();
        {
            let (src, dst, dir) = self.parts(way);
            // 1. Pending bytes first (backpressure: no reading meanwhile).
            progress |= dir
                .write_pending(&mut |b| poll_write(cx, dst, b))
                .map_err(|_| dst_err)?;
            // 2. Read and forward at once.
            if dir.readable() {
                let mut buf = worker.pipe_buf.borrow_mut();
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
                        saw_eof = true;
                        break;
                    }
                    heard = true;
                    if dir
                        .forward(&buf[..n], ours.as_ref(), closing, &mut |b| {
                            poll_write(cx, dst, b)
                        })
                        .map_err(|_| dst_err)?
                    {
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
        }
        self.st.record(way, progress, heard, saw_eof);
        Ok(progress)
    }

    /// During a graceful stop: queue close 1001 on every direction at a frame boundary;
    /// the next poll writes it and shuts that destination's write.
    fn send_closes(&mut self) {
        let mask = mask_from_clock();
        for way in [Way::C2S, Way::S2C] {
            if let Some(frame) = self.st.take_close(way, mask) {
                self.st.dir(way).set_pending(frame);
            }
        }
    }

    /// `ws_ping`: `side` did not answer our ping: stop reading it, send the other side a
    /// close frame after what is in flight, and give it `CLOSE_LINGER` to go out.
    async fn close_silent(&mut self, worker: &Worker, side: PingSide) -> End {
        // The direction from the silent side towards the live one: its reading stops, and
        // our close frame goes out on it after what is in flight.
        let (end, live, out) = self.st.silent(side);
        let Some(out) = out else {
            return end;
        };
        let dir = self.st.dir(live);
        dir.eof = true;
        dir.set_pending(out);
        dir.close_sent = true;
        let _ = tokio::time::timeout(CLOSE_LINGER, async {
            loop {
                let r = poll_fn(|cx| self.poll_io(cx, worker, true)).await;
                if r.is_err() || self.st.dir(live).shut {
                    return;
                }
            }
        })
        .await;
        end
    }
}

/// `poll_write` as the shared direction logic wants it: `None` while the stream is full.
fn poll_write(cx: &mut Context<'_>, dst: &mut Stream, b: &[u8]) -> io::Result<Option<usize>> {
    match Pin::new(dst).poll_write(cx, b) {
        Poll::Ready(Ok(n)) => Ok(Some(n)),
        Poll::Ready(Err(e)) => Err(e),
        Poll::Pending => Ok(None),
    }
}
