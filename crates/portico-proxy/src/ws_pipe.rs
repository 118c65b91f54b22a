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

use std::io;
use std::net::Shutdown;
use std::rc::Rc;
use std::time::{Duration, Instant};

use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use portico_balance::Picked;
use socket2::SockRef;
use tokio::net::TcpStream;

use crate::access_log::WsLog;
use crate::conn::{ClientIo, ConnCtx};
use crate::drain::WsTicket;
use crate::log::LogCtx;
use crate::worker::{RunState, StopWatch};
use crate::ws_frame::{FrameTracker, GOING_AWAY, client_close_frame, server_close_frame};

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
        }
    }
}

/// Wait for both upgrades, then pipe until the WebSocket ends; log it.
pub(crate) async fn run(
    ctx: Rc<ConnCtx>,
    client: OnUpgrade,
    upstream: OnUpgrade,
    idle_timeout: Duration,
    picked: Picked,
    ticket: WsTicket,
    mut log: Option<Box<LogCtx>>,
) {
    let (c, u) = tokio::join!(client, upstream);
    let (Ok(c), Ok(u)) = (c, u) else {
        tracing::debug!("websocket upgrade did not complete");
        return;
    };
    let (Ok(c), Ok(u)) = (
        c.downcast::<TokioIo<ClientIo>>(),
        u.downcast::<TokioIo<TcpStream>>(),
    ) else {
        tracing::warn!("websocket upgrade: unexpected stream type");
        return;
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
    };
    for (dir, early) in [(&mut pipe.c2s, c_early), (&mut pipe.s2c, u_early)] {
        if !early.is_empty() {
            dir.tracker.feed(&early);
            dir.bytes += early.len() as u64;
            dir.pending = early.to_vec();
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
}

/// Which side a step works on.
#[derive(Clone, Copy)]
enum Way {
    C2S,
    S2C,
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
            let step = tokio::select! {
                r = self.client.readable(), if read_c => r.map(|_| Step::Read(Way::C2S)),
                r = self.server.readable(), if read_s => r.map(|_| Step::Read(Way::S2C)),
                r = self.server.writable(), if flush_c2s => r.map(|_| Step::Flush(Way::C2S)),
                r = self.client.writable(), if flush_s2c => r.map(|_| Step::Flush(Way::S2C)),
                _ = idle.as_mut() => Ok(Step::Idle),
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
            self.last_activity = Instant::now();
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
    State(RunState),
    Deadline,
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
