//! What the two WebSocket pipes share, apart from their I/O.
//!
//! [`crate::websocket::pipe`] moves bytes between two raw `TcpStream`s with `try_read` /
//! `try_write`, [`crate::websocket::tls_pipe`] between `AsyncRead` / `AsyncWrite` streams (TLS on
//! either side). Everything else is here, once: the per-direction state ([`Dir`]: pending
//! bytes, frame tracking, EOF / shut / close flags), forwarding a chunk that was read
//! (plain or through the `ws_ping` pong filter, stopping at a frame boundary while closing),
//! writing what is pending, our own close frames at frame boundaries, the `ws_ping`
//! schedule (pings queued at frame boundaries, silent sides), a side breaking the framing
//! rules (closed with 1002, [`WsState::take_violation`]), and how a pipe ended ([`End`]).
//!
//! A pipe hands its writes in as a closure (`write`: `Ok(Some(n))` bytes taken,
//! `Ok(None)` would block, `Err` a broken destination); the closures are generic, so the
//! plain pipe's read path has no `dyn` and no allocation of its own.

use std::io;
use std::time::{Duration, Instant};

use bytes::Bytes;
use portico_balance::Picked;

use crate::access_log::WsLog;
use crate::exchange::log_line::LogCtx;
use crate::proto::ws_frame::{
    FrameTracker, GOING_AWAY, PING_LEN, PROTOCOL_ERROR, client_close_frame, server_close_frame,
};
use crate::websocket::ping::{PingSide, Pinger};
use crate::websocket::ticket::WsTicket;
use crate::worker::stop::RunState;

/// After our close frames went both ways, how long the peers get to close their side.
pub(crate) const CLOSE_LINGER: Duration = Duration::from_secs(1);

/// Reads per wake-up and direction before yielding to other directions.
pub(crate) const READS_PER_WAKE: usize = 8;

/// Close code 1011 "Internal Error" (the server stopped answering).
const INTERNAL_ERROR: u16 = 1011;

/// One direction: bytes from its source to its destination.
#[derive(Default)]
pub(crate) struct Dir {
    /// Bytes read (or frames of our own) not yet written (`off..` still to go).
    pub pending: Vec<u8>,
    pub off: usize,
    /// Frame boundaries of this direction (graceful close, `ws_ping`).
    pub tracker: FrameTracker,
    pub bytes: u64,
    /// Written to the destination since its last flush (only the TLS pipe flushes).
    pub unflushed: bool,
    /// The source shut its write (EOF).
    pub eof: bool,
    /// We shut the destination's write.
    pub shut: bool,
    /// Our own close frame went (or is pending) to the destination.
    pub close_sent: bool,
    /// The source broke the framing rules: it is read no more (it counts as ended).
    pub halted: bool,
}

impl Dir {
    pub fn has_pending(&self) -> bool {
        self.off < self.pending.len()
    }

    pub fn done(&self) -> bool {
        (self.eof || self.halted) && !self.has_pending() && self.shut
    }

    /// Whether the source may be read now (not ended, nothing waiting for the destination).
    pub fn readable(&self) -> bool {
        !self.eof && !self.halted && !self.has_pending()
    }

    /// Keep a copy of `b` to write later.
    pub fn queue(&mut self, b: &[u8]) {
        self.pending.clear();
        self.pending.extend_from_slice(b);
        self.off = 0;
    }

    /// Write `frame` (all of it) later.
    pub fn set_pending(&mut self, frame: Vec<u8>) {
        self.pending = frame;
        self.off = 0;
    }

    /// Account for a chunk read from the source and write it on at once (through the
    /// `ws_ping` filter when `ours` is set); what the destination does not take is queued.
    /// Returns whether reading should stop (destination full, or at a frame boundary while
    /// `closing`).
    pub fn forward(
        &mut self,
        data: &[u8],
        ours: Option<&[u8; PING_LEN]>,
        closing: bool,
        write: &mut impl FnMut(&[u8]) -> io::Result<Option<usize>>,
    ) -> io::Result<bool> {
        self.bytes += data.len() as u64;
        if self.close_sent {
            // After our own close frame nothing more may go this way: drain only.
            return Ok(false);
        }
        if let Some(ours) = ours {
            return self.forward_filtered(data, ours, closing, write);
        }
        // Closing: only up to the end of the current frame, then stop. A frame breaking
        // the framing rules is never forwarded: only the bytes before it.
        let upto = if closing {
            self.tracker.feed_to_boundary(data)
        } else {
            self.tracker.feed(data)
        };
        let data = &data[..upto];
        let written = write(data)?.unwrap_or(0);
        self.unflushed |= written > 0;
        if written < data.len() {
            self.queue(&data[written..]);
            return Ok(true);
        }
        Ok((closing && self.tracker.at_boundary()) || self.tracker.protocol_error())
    }

    /// `ws_ping` on: pass `data` through the filter and write what comes out; once the
    /// destination is full the rest is queued.
    fn forward_filtered(
        &mut self,
        data: &[u8],
        ours: &[u8; PING_LEN],
        closing: bool,
        write: &mut impl FnMut(&[u8]) -> io::Result<Option<usize>>,
    ) -> io::Result<bool> {
        let mut failed = None;
        let mut wrote = false;
        let (pending, off) = (&mut self.pending, &mut self.off);
        self.tracker.filter(data, ours, closing, &mut |b| {
            if failed.is_some() {
                return;
            }
            if *off < pending.len() {
                pending.extend_from_slice(b);
                return;
            }
            let w = match write(b) {
                Ok(w) => w.unwrap_or(0),
                Err(e) => {
                    failed = Some(e);
                    return;
                }
            };
            wrote |= w > 0;
            if w < b.len() {
                pending.clear();
                pending.extend_from_slice(&b[w..]);
                *off = 0;
            }
        });
        self.unflushed |= wrote;
        if let Some(e) = failed {
            return Err(e);
        }
        Ok(self.has_pending()
            || (closing && self.tracker.at_boundary())
            || self.tracker.protocol_error())
    }

    /// Write what is pending until the destination is full; free the buffer once it all
    /// went. Returns whether anything was written.
    pub fn write_pending(
        &mut self,
        write: &mut impl FnMut(&[u8]) -> io::Result<Option<usize>>,
    ) -> io::Result<bool> {
        let mut wrote = false;
        while self.has_pending() {
            match write(&self.pending[self.off..])? {
                None => return Ok(wrote),
                Some(0) => return Err(io::ErrorKind::WriteZero.into()),
                Some(n) => {
                    self.off += n;
                    self.unflushed = true;
                    wrote = true;
                }
            }
        }
        if !self.pending.is_empty() {
            self.pending = Vec::new();
        }
        self.off = 0;
        Ok(wrote)
    }
}

/// How a pipe ended (the access log's `closed_by`).
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

/// A direction.
#[derive(Clone, Copy)]
pub(crate) enum Way {
    C2S,
    S2C,
}

impl Way {
    /// The side this direction's bytes come from.
    pub fn source(self) -> PingSide {
        match self {
            Way::C2S => PingSide::Client,
            Way::S2C => PingSide::Server,
        }
    }

    /// (source error, destination error, the source closed).
    pub fn ends(self) -> (End, End, End) {
        match self {
            Way::C2S => (End::ClientError, End::ServerError, End::Client),
            Way::S2C => (End::ServerError, End::ClientError, End::Server),
        }
    }
}

/// Both directions and what the pipe knows about the WebSocket as a whole.
pub(crate) struct WsState {
    pub c2s: Dir,
    pub s2c: Dir,
    pub last_activity: Instant,
    pub first_close: Option<End>,
    /// `ws_ping`'s schedule; None without `ws_ping` (then the trackers do not filter).
    pub ping: Option<Box<Pinger>>,
    /// The code of our close frames: 1001, or 1002 once a side broke the framing rules.
    pub close_code: u16,
    /// A side broke the framing rules: how the pipe ends (that side's error).
    pub violation: Option<End>,
}

impl WsState {
    /// Start with the bytes hyper read past the upgrade heads (each to go to the other
    /// side); they are copied and hyper's buffers dropped here: an idle pipe holds none.
    pub fn new(now: Instant, ws_ping: Option<Duration>, c_early: Bytes, s_early: Bytes) -> Self {
        let mut st = WsState {
            c2s: Dir::default(),
            s2c: Dir::default(),
            last_activity: now,
            first_close: None,
            ping: ws_ping.map(|every| Box::new(Pinger::new(every, now))),
            close_code: GOING_AWAY,
            violation: None,
        };
        let ours = st.ours();
        for (dir, early) in [(&mut st.c2s, c_early), (&mut st.s2c, s_early)] {
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
                        let n = dir.tracker.feed(&early);
                        dir.pending = early[..n].to_vec();
                    }
                }
            }
        }
        st
    }

    pub fn dir(&mut self, way: Way) -> &mut Dir {
        match way {
            Way::C2S => &mut self.c2s,
            Way::S2C => &mut self.s2c,
        }
    }

    /// Portico's ping payload, with `ws_ping`.
    pub fn ours(&self) -> Option<[u8; PING_LEN]> {
        self.ping.as_ref().map(|p| *p.payload())
    }

    /// The pipe is over: both directions went all the way.
    pub fn finished(&self) -> Option<End> {
        (self.c2s.done() && self.s2c.done()).then(|| self.first_close.unwrap_or(End::Client))
    }

    /// After moving bytes of `way`: `active` counts as activity (idle timeout), `heard`
    /// tells `ws_ping` the source spoke, `eof` retires the source from `ws_ping`, and a
    /// close (`eof`, or a close frame seen) records who closed first.
    pub fn record(&mut self, way: Way, active: bool, heard: bool, eof: bool) {
        if active {
            let now = Instant::now();
            self.last_activity = now;
            if heard && let Some(p) = self.ping.as_deref_mut() {
                p.heard(way.source(), now);
            }
        }
        if eof && let Some(p) = self.ping.as_deref_mut() {
            p.retire(way.source());
        }
        if eof || self.dir(way).tracker.saw_close() {
            self.first_close.get_or_insert(way.ends().2);
        }
    }

    /// The pipe ended with `end`: release its registration with the worker (`ticket`) and
    /// its server (`picked`), then put its record in the access log entry.
    pub fn finish(
        &self,
        end: End,
        started: Instant,
        ticket: WsTicket,
        picked: Picked,
        log: Option<&mut LogCtx>,
        metrics: Option<(&portico_metrics::WorkerMetrics, portico_metrics::SeriesId)>,
    ) {
        drop(ticket);
        drop(picked);
        if let Some((m, id)) = metrics {
            let closer = portico_metrics::WS_CLOSERS
                .iter()
                .position(|c| *c == end.as_str())
                .unwrap_or(3);
            m.ws_closed(id, closer, self.c2s.bytes, self.s2c.bytes);
            m.ws_messages(
                id,
                u64::from(self.c2s.tracker.messages()),
                u64::from(self.s2c.tracker.messages()),
            );
        }
        if let Some(log) = log {
            log.websocket = Some(WsLog {
                client_to_server: self.c2s.bytes,
                server_to_client: self.s2c.bytes,
                duration: started.elapsed(),
                closed_by: end.as_str(),
            });
        }
    }

    /// A side sent a frame breaking the framing rules (RFC 6455 §5.2): the first time,
    /// log it, stop reading that side, and make our close frames 1002 (Protocol Error).
    /// Returns true then: the pipe closes both ways as in a graceful stop (the offending
    /// side gets 1002 at the next frame boundary towards it, the other side gets 1002 after
    /// the frames before the bad one), with [`CLOSE_LINGER`] as its deadline.
    pub fn take_violation(&mut self) -> bool {
        if self.violation.is_some() {
            return false;
        }
        let way = if self.c2s.tracker.protocol_error() {
            Way::C2S
        } else if self.s2c.tracker.protocol_error() {
            Way::S2C
        } else {
            return false;
        };
        let end = way.ends().0;
        tracing::info!(
            side = ?way.source(),
            "websocket closed with 1002: a frame's 64-bit payload length has its top bit set \
             (RFC 6455 section 5.2)"
        );
        self.violation = Some(end);
        self.first_close = Some(end);
        self.close_code = PROTOCOL_ERROR;
        self.dir(way).halted = true;
        true
    }

    /// Graceful stop (or a side's protocol error): our close frame (`close_code`) for
    /// `way` if it is due now (at a frame boundary, nothing pending, not sent yet); marks it
    /// sent.
    pub fn take_close(&mut self, way: Way, mask: [u8; 4]) -> Option<Vec<u8>> {
        let dir = self.dir(way);
        if dir.close_sent || dir.has_pending() || !dir.tracker.at_boundary() || dir.shut {
            return None;
        }
        dir.close_sent = true;
        let code = self.close_code;
        let frame = match way {
            Way::C2S => client_close_frame(code, mask).to_vec(),
            Way::S2C => server_close_frame(code).to_vec(),
        };
        self.first_close.get_or_insert(End::Proxy);
        Some(frame)
    }

    /// `ws_ping`: send the pings that are due (at frame boundaries) with `write` (what it
    /// does not take is queued); find a silent side. Returns when to check next, or the
    /// silent side.
    pub fn keepalive(
        &mut self,
        mut write: impl FnMut(Way, &[u8]) -> Option<usize>,
    ) -> Result<Instant, PingSide> {
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
            // The direction towards `side`.
            let (way, dir) = match side {
                PingSide::Client => (Way::S2C, &mut self.s2c),
                PingSide::Server => (Way::C2S, &mut self.c2s),
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
            match write(way, frame) {
                Some(n) if n >= len => {}
                Some(n) => dir.queue(&frame[n..]),
                None => dir.queue(frame),
            }
        }
        let mut next = p.next_check();
        if busy {
            next = next.min(now + Duration::from_millis(50));
        }
        Ok(next.max(now + Duration::from_millis(1)))
    }

    /// `side` did not answer our ping (logged here): how the pipe ends, the direction
    /// from the silent side towards the live one, and — when that direction is at a frame
    /// boundary and still open — what is left to send the live side: what is in flight,
    /// then our close frame (1001 Going Away to the server, 1011 to the client).
    pub fn silent(&mut self, side: PingSide) -> (End, Way, Option<Vec<u8>>) {
        let every = self.ping.as_ref().map(|p| p.interval());
        tracing::info!(
            side = ?side,
            ws_ping = ?every,
            "websocket closed: a side did not answer Portico's ping within ws_ping"
        );
        let (end, way, frame) = match side {
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
        let dir = self.dir(way);
        if dir.close_sent || dir.shut || !dir.tracker.at_boundary() {
            return (end, way, None);
        }
        let mut out = dir.pending.split_off(dir.off.min(dir.pending.len()));
        out.extend_from_slice(&frame);
        (end, way, Some(out))
    }
}

/// Where a pipe starts: running (no close deadline), draining (closing with that deadline),
/// or already stopped.
pub(crate) fn closing_at(state: RunState) -> Result<Option<Instant>, End> {
    match state {
        RunState::Running => Ok(None),
        RunState::Draining(deadline) => Ok(Some(deadline)),
        RunState::Stopped => Err(End::Proxy),
    }
}

/// The closing deadline once a side broke the framing rules: [`CLOSE_LINGER`] from now,
/// or an earlier one already running.
pub(crate) fn linger_deadline(closing: Option<Instant>) -> Instant {
    let linger = Instant::now() + CLOSE_LINGER;
    closing.map_or(linger, |d| d.min(linger))
}

/// Sleep until `deadline`, or forever.
pub(crate) async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d.into()).await,
        None => std::future::pending().await,
    }
}

/// A masking key for our own client-to-server close frame (RFC 6455 wants it
/// unpredictable to the peer's intermediaries; a clock-derived key serves for one frame).
pub(crate) fn mask_from_clock() -> [u8; 4] {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0x5a5a_5a5a, |d| d.subsec_nanos());
    (nanos ^ 0x9e37_79b9).to_be_bytes()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::proto::ws_frame::client_ping_frame;

    /// A destination taking at most `room` bytes in all; what it took goes to `out`.
    fn dest(out: &mut Vec<u8>, room: usize) -> impl FnMut(&[u8]) -> io::Result<Option<usize>> {
        move |b| {
            let n = b.len().min(room.saturating_sub(out.len()));
            if n == 0 && !b.is_empty() {
                return Ok(None);
            }
            out.extend_from_slice(&b[..n]);
            Ok(Some(n))
        }
    }

    /// A masked text frame from the client.
    fn client_text(text: &[u8]) -> Vec<u8> {
        let mask = [1, 2, 3, 4];
        let mut f = vec![0x81, 0x80 | text.len() as u8];
        f.extend_from_slice(&mask);
        f.extend(text.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        f
    }

    fn state(ws_ping: Option<Duration>) -> WsState {
        WsState::new(Instant::now(), ws_ping, Bytes::new(), Bytes::new())
    }

    #[test]
    fn what_the_destination_does_not_take_is_queued_then_written_and_freed() {
        let mut dir = Dir::default();
        let frame = client_text(b"hello world");
        let mut out = Vec::new();
        let stop = dir
            .forward(&frame, None, false, &mut dest(&mut out, 5))
            .unwrap();
        assert!(stop, "a full destination stops reading");
        assert_eq!(dir.bytes, frame.len() as u64);
        assert_eq!(&dir.pending[dir.off..], &frame[5..]);
        let mut out2 = out.clone();
        let wrote = dir.write_pending(&mut dest(&mut out2, 1024)).unwrap();
        assert!(wrote && !dir.has_pending());
        assert_eq!(out2, frame);
        assert_eq!(
            dir.pending.capacity(),
            0,
            "an idle direction holds no buffer"
        );
    }

    #[test]
    fn closing_forwards_up_to_the_frame_boundary_only() {
        let mut dir = Dir::default();
        let (a, b) = (client_text(b"first"), client_text(b"second"));
        let both = [a.clone(), b].concat();
        let mut out = Vec::new();
        let stop = dir
            .forward(&both, None, true, &mut dest(&mut out, 1024))
            .unwrap();
        assert!(stop, "at the boundary while closing");
        assert_eq!(out, a, "nothing of the next frame");
        assert!(dir.tracker.at_boundary());
    }

    #[test]
    fn after_our_close_frame_bytes_are_counted_but_not_sent() {
        let mut dir = Dir {
            close_sent: true,
            ..Dir::default()
        };
        let mut out = Vec::new();
        let stop = dir
            .forward(b"abc", None, false, &mut dest(&mut out, 1024))
            .unwrap();
        assert!(!stop && out.is_empty());
        assert_eq!(dir.bytes, 3);
    }

    #[test]
    fn a_destination_taking_nothing_while_ready_is_an_error() {
        let mut dir = Dir::default();
        dir.queue(b"xyz");
        let err = dir.write_pending(&mut |_| Ok(Some(0))).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::WriteZero);
    }

    #[test]
    fn our_pong_is_swallowed_and_other_frames_pass() {
        let mut st = state(Some(Duration::from_secs(30)));
        let ours = st.ours().unwrap();
        let mut pong = client_ping_frame(&ours, [9, 8, 7, 6]).to_vec();
        pong[0] = 0x8A; // pong, same payload
        let text = client_text(b"hi");
        let data = [pong, text.clone()].concat();
        let mut out = Vec::new();
        st.c2s
            .forward(&data, Some(&ours), false, &mut dest(&mut out, 1024))
            .unwrap();
        assert_eq!(out, text);
        assert_eq!(st.c2s.bytes, data.len() as u64, "counted as read");
    }

    #[test]
    fn close_frames_go_at_frame_boundaries_once() {
        let mut st = state(None);
        // Mid-frame towards the server: no close yet.
        let frame = client_text(b"partial");
        st.c2s.tracker.feed(&frame[..4]);
        assert!(st.take_close(Way::C2S, [1, 2, 3, 4]).is_none());
        st.c2s.tracker.feed(&frame[4..]);
        let to_server = st.take_close(Way::C2S, [1, 2, 3, 4]).unwrap();
        assert_eq!(to_server.len(), 8, "masked towards the server");
        assert!(st.take_close(Way::C2S, [1, 2, 3, 4]).is_none(), "once");
        let to_client = st.take_close(Way::S2C, [0; 4]).unwrap();
        assert_eq!(to_client, server_close_frame(GOING_AWAY));
        assert_eq!(st.first_close, Some(End::Proxy));
    }

    #[test]
    fn a_silent_server_leaves_what_is_in_flight_then_1011_for_the_client() {
        let mut st = state(Some(Duration::from_secs(30)));
        st.s2c.queue(b"in flight");
        st.s2c.off = 3;
        let (end, way, out) = st.silent(PingSide::Server);
        assert_eq!(end, End::ServerSilent);
        assert!(matches!(way, Way::S2C));
        let mut want = b"flight".to_vec();
        want.extend_from_slice(&server_close_frame(INTERNAL_ERROR));
        assert_eq!(out.unwrap(), want);
        // Mid-frame, nothing can go.
        let mut st = state(Some(Duration::from_secs(30)));
        st.c2s.tracker = FrameTracker::default();
        st.c2s.tracker.feed(&client_text(b"abc")[..3]);
        assert!(st.silent(PingSide::Client).2.is_none());
    }

    #[test]
    fn the_first_close_is_who_ended_first() {
        let mut st = state(None);
        st.record(Way::S2C, true, true, true);
        st.record(Way::C2S, true, true, true);
        assert_eq!(st.first_close, Some(End::Server));
        st.c2s.eof = true;
        st.s2c.eof = true;
        st.c2s.shut = true;
        st.s2c.shut = true;
        assert_eq!(st.finished(), Some(End::Server));
    }
}
