//! `ws_ping`: when Portico pings each side of a WebSocket and when a side counts as silent.
//!
//! Per side (client, server), the pipe reports every byte heard from it ([`Pinger::heard`]). A side
//! heard from less than `interval` ago is left alone; past that, a ping frame goes to it
//! ([`Pinger::frame`]) as soon as the direction towards it is at a frame boundary. A side that
//! sends nothing at all (no pong, no data) for another `interval` after the ping is silent
//! ([`Pinger::silent`]): the pipe closes it and sends a close frame to the other side. Pongs
//! answering Portico's pings carry a per-connection payload ([`Pinger::payload`]) and are swallowed
//! by [`crate::proto::ws_frame::FrameTracker::filter`], so the peers never see Portico's keep-alive
//! traffic.
//!
//! Pure state over `Instant`s handed in by the caller (tests drive it with their own clock);
//! no timers, no I/O — the plain pipe and a TLS pipe can both use it.

use std::cell::Cell;
use std::time::{Duration, Instant};

use crate::proto::ws_frame::{PING_LEN, client_ping_frame, server_ping_frame};

/// One end of a proxied WebSocket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PingSide {
    Client,
    Server,
}

impl PingSide {
    fn index(self) -> usize {
        match self {
            PingSide::Client => 0,
            PingSide::Server => 1,
        }
    }
}

/// Ping frames are at most this long (masked, to the server).
pub(crate) const PING_FRAME_MAX: usize = 6 + PING_LEN;

/// The ping schedule of one WebSocket.
#[derive(Debug)]
pub(crate) struct Pinger {
    interval: Duration,
    payload: [u8; PING_LEN],
    /// Last byte heard from each side.
    heard: [Instant; 2],
    /// When our unanswered ping went to each side.
    pinged: [Option<Instant>; 2],
    /// A side that shut its write can no longer answer: it is neither pinged nor judged.
    retired: [bool; 2],
}

impl Pinger {
    pub fn new(interval: Duration, now: Instant) -> Pinger {
        Pinger {
            interval,
            payload: fresh_payload(),
            heard: [now; 2],
            pinged: [None; 2],
            retired: [false; 2],
        }
    }

    /// The payload of this connection's pings (what [`FrameTracker::filter`] swallows).
    ///
    /// [`FrameTracker::filter`]: crate::proto::ws_frame::FrameTracker::filter
    pub fn payload(&self) -> &[u8; PING_LEN] {
        &self.payload
    }

    /// The configured `ws_ping`.
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// Bytes came from `side`: it is alive.
    pub fn heard(&mut self, side: PingSide, now: Instant) {
        self.heard[side.index()] = now;
        self.pinged[side.index()] = None;
    }

    /// `side` shut its write (or the pipe stopped reading it): stop pinging it.
    pub fn retire(&mut self, side: PingSide) {
        self.retired[side.index()] = true;
    }

    /// Whether a ping should go to `side` now.
    pub fn due(&self, side: PingSide, now: Instant) -> bool {
        let i = side.index();
        !self.retired[i]
            && self.pinged[i].is_none()
            && now.saturating_duration_since(self.heard[i]) >= self.interval
    }

    /// The ping frame for `side` (unmasked to the client, masked to the server); marks the
    /// ping as sent. Returns the buffer and its used length.
    pub fn frame(&mut self, side: PingSide, now: Instant) -> ([u8; PING_FRAME_MAX], usize) {
        self.pinged[side.index()] = Some(now);
        let mut out = [0u8; PING_FRAME_MAX];
        let len = match side {
            PingSide::Client => {
                let f = server_ping_frame(&self.payload);
                out[..f.len()].copy_from_slice(&f);
                f.len()
            }
            PingSide::Server => {
                let f = client_ping_frame(&self.payload, mask_key());
                out[..f.len()].copy_from_slice(&f);
                f.len()
            }
        };
        (out, len)
    }

    /// A side that was pinged and has sent nothing for `interval` since.
    pub fn silent(&self, now: Instant) -> Option<PingSide> {
        [PingSide::Client, PingSide::Server].into_iter().find(|s| {
            let i = s.index();
            !self.retired[i]
                && self.pinged[i].is_some_and(|t| now.saturating_duration_since(t) >= self.interval)
        })
    }

    /// When something may next be due: a ping or a silence verdict. Deadlines only move
    /// later as bytes are heard, so a timer armed for this instant may fire early, never late.
    pub fn next_check(&self) -> Instant {
        let at = |i: usize| match self.pinged[i] {
            Some(t) => t + self.interval,
            None => self.heard[i] + self.interval,
        };
        match (self.retired[0], self.retired[1]) {
            (false, false) => at(0).min(at(1)),
            (false, true) => at(0),
            (true, false) => at(1),
            // Nothing left to watch: far away (the idle timeout ends the pipe first).
            (true, true) => self.heard[0].max(self.heard[1]) + self.interval * 1000,
        }
    }
}

thread_local! {
    static COUNTER: Cell<u64> = const { Cell::new(0) };
}

/// Mix of the clock and a per-thread counter through splitmix64: distinct per connection
/// and not guessable by a peer in advance (it only has to differ from the peers' own pongs).
fn splitmix() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let n = COUNTER.with(|c| {
        c.set(c.get().wrapping_add(1));
        c.get()
    });
    let mut z = nanos ^ n.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn fresh_payload() -> [u8; PING_LEN] {
    splitmix().to_be_bytes()
}

fn mask_key() -> [u8; 4] {
    (splitmix() as u32).to_be_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn pings_an_idle_side_once_then_judges_it() {
        let t0 = Instant::now();
        let mut p = Pinger::new(10 * S, t0);
        assert!(!p.due(PingSide::Client, t0 + 9 * S));
        assert_eq!(p.next_check(), t0 + 10 * S);
        assert!(p.due(PingSide::Client, t0 + 10 * S));
        let (f, len) = p.frame(PingSide::Client, t0 + 10 * S);
        assert_eq!(len, 2 + PING_LEN);
        assert_eq!(&f[2..len], p.payload());
        // One ping outstanding: no second one, not silent yet.
        assert!(!p.due(PingSide::Client, t0 + 15 * S));
        assert_eq!(p.silent(t0 + 19 * S), None);
        // The server side was idle too and is due on its own schedule.
        assert!(p.due(PingSide::Server, t0 + 15 * S));
        let (f, len) = p.frame(PingSide::Server, t0 + 15 * S);
        assert_eq!((len, f[1]), (6 + PING_LEN, 0x80 | PING_LEN as u8));
        assert_eq!(p.next_check(), t0 + 20 * S);
        assert_eq!(p.silent(t0 + 20 * S), Some(PingSide::Client));
        // The server answered in time.
        p.heard(PingSide::Server, t0 + 21 * S);
        assert_eq!(p.silent(t0 + 26 * S), Some(PingSide::Client));
        p.heard(PingSide::Client, t0 + 26 * S);
        assert_eq!(p.silent(t0 + 30 * S), None);
        assert_eq!(p.next_check(), t0 + 31 * S);
    }

    #[test]
    fn traffic_postpones_pings_and_retired_sides_are_left_alone() {
        let t0 = Instant::now();
        let mut p = Pinger::new(10 * S, t0);
        for k in 1..20 {
            p.heard(PingSide::Client, t0 + k * 5 * S);
            p.heard(PingSide::Server, t0 + k * 5 * S);
            assert!(!p.due(PingSide::Client, t0 + k * 5 * S + 9 * S));
        }
        p.retire(PingSide::Client);
        let later = t0 + 1000 * S;
        assert!(!p.due(PingSide::Client, later));
        assert!(p.due(PingSide::Server, later));
        p.frame(PingSide::Client, later);
        assert_eq!(p.silent(later + 100 * S), None);
    }

    #[test]
    fn payloads_differ_between_connections() {
        let t0 = Instant::now();
        let a = Pinger::new(S, t0);
        let b = Pinger::new(S, t0);
        assert_ne!(a.payload(), b.payload());
    }
}
