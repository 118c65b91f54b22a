//! WebSocket frame boundaries without parsing payloads.
//!
//! The pipe forwards bytes untouched; this tracker walks only frame headers (RFC 6455 §5.2)
//! and counts payload lengths, so the proxy knows when a direction sits between two frames.
//! That is where a frame of its own (close 1001 on shutdown, `ws_ping` pings) may be inserted
//! without corrupting the stream. It also notes when a peer sent a close frame.
//!
//! With `ws_ping`, a direction runs in *filter* mode ([`FrameTracker::filtering`] and
//! [`FrameTracker::filter`]): a frame header is held back until it is complete, and a pong
//! whose payload is as long as Portico's ping payload is held back until its payload is in;
//! a pong carrying exactly Portico's payload is swallowed (it answers Portico's own ping),
//! everything else is passed on unchanged and in order. At most one header and one 8-byte
//! payload are held, inside the tracker (no allocation).
//!
//! A frame header whose 64-bit payload length has its most significant bit set breaks
//! RFC 6455 §5.2 (the bit MUST be 0): the tracker stops there ([`FrameTracker::protocol_error`])
//! and takes no more bytes; the pipe forwards nothing of that frame and closes with 1002.

/// Close code 1001 "Going Away".
pub const GOING_AWAY: u16 = 1001;

/// Close code 1002 "Protocol Error".
pub const PROTOCOL_ERROR: u16 = 1002;

const OPCODE_CLOSE: u8 = 0x8;
const OPCODE_PING: u8 = 0x9;
const OPCODE_PONG: u8 = 0xa;

/// Payload length of Portico's own ping frames.
pub const PING_LEN: usize = 8;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Collecting a header; `have` bytes of it are in `buf`.
    Header { buf: [u8; 14], have: u8 },
    /// Inside a payload.
    Payload { remaining: u64 },
    /// Filter mode: a pong that may answer Portico's ping, held back (header and payload).
    Pong {
        /// The header: 2 bytes, plus the 4-byte mask when masked (the mask bit says which).
        head: [u8; 6],
        payload: [u8; PING_LEN],
        have: u8,
    },
    /// A header broke the framing rules: nothing more is taken. `clean`: none of that
    /// header was handed on yet (it started in the chunk that completed it).
    Invalid { clean: bool },
}

// Every idle WebSocket holds two trackers: a held pong fits in the header variant's room,
// so filter mode costs no memory (the tracker stays at 24 bytes).
const _: () = assert!(std::mem::size_of::<State>() == 16);
const _: () = assert!(std::mem::size_of::<FrameTracker>() <= 24);

const FRESH: State = State::Header {
    buf: [0; 14],
    have: 0,
};

/// Tracks frame boundaries of one direction of a WebSocket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameTracker {
    state: State,
    saw_close: bool,
    /// Data messages whose last frame started (FIN set, a data or continuation opcode);
    /// saturates. 4 bytes: the tracker stays at 24.
    messages: u32,
    /// Filter mode: header bytes are held until the header is complete (see the module doc).
    filtering: bool,
}

impl Default for FrameTracker {
    fn default() -> Self {
        FrameTracker {
            state: FRESH,
            saw_close: false,
            messages: 0,
            filtering: false,
        }
    }
}

/// What [`FrameTracker::filter`] did with one chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Filtered {
    /// Bytes of the chunk consumed (all of it unless stopped at a boundary).
    pub used: usize,
    /// Pongs carrying Portico's payload that were swallowed.
    pub swallowed: u32,
}

/// Header length once the first two bytes are known.
fn header_len(b0_b1: [u8; 2]) -> u8 {
    let ext = match b0_b1[1] & 0x7f {
        126 => 2,
        127 => 8,
        _ => 0,
    };
    let mask = if b0_b1[1] & 0x80 != 0 { 4 } else { 0 };
    2 + ext + mask
}

/// Copy the start of `rest` into a frame header being gathered (`have` bytes so far).
/// Returns how many bytes were taken and, once the header is complete, its length.
fn gather_header(buf: &mut [u8; 14], have: &mut u8, rest: &[u8]) -> (usize, Option<u8>) {
    let need = if *have < 2 {
        2
    } else {
        header_len([buf[0], buf[1]])
    };
    let take = usize::from(need - *have).min(rest.len());
    let start = usize::from(*have);
    buf[start..start + take].copy_from_slice(&rest[..take]);
    // take <= 14.
    *have += take as u8;
    let hlen = header_len([buf[0], buf[1]]);
    (take, (*have >= 2 && *have == hlen).then_some(hlen))
}

/// Copy the start of `rest` into a held pong's payload (`have` bytes so far). Returns how
/// many bytes were taken and whether the payload is complete.
fn gather_pong(payload: &mut [u8; PING_LEN], have: &mut u8, rest: &[u8]) -> (usize, bool) {
    let start = usize::from(*have);
    let take = (PING_LEN - start).min(rest.len());
    payload[start..start + take].copy_from_slice(&rest[..take]);
    // take <= PING_LEN.
    *have += take as u8;
    (take, usize::from(*have) == PING_LEN)
}

/// A 64-bit payload length must have its most significant bit clear (RFC 6455 §5.2).
fn length_valid(len: u64) -> bool {
    len >> 63 == 0
}

fn payload_len(buf: &[u8]) -> u64 {
    match buf[1] & 0x7f {
        126 => u64::from(u16::from_be_bytes([buf[2], buf[3]])),
        127 => {
            let mut b = [0u8; 8];
            b.copy_from_slice(&buf[2..10]);
            u64::from_be_bytes(b)
        }
        n => u64::from(n),
    }
}

impl FrameTracker {
    /// Account for `data`, the next bytes of this direction. Returns how many of them may
    /// be passed on: all of them, unless a frame header in them breaks the framing rules
    /// ([`FrameTracker::protocol_error`]): then the bytes before that header.
    pub fn feed(&mut self, mut data: &[u8]) -> usize {
        let total = data.len();
        while !data.is_empty() {
            let n = self.feed_to_boundary(data);
            if self.protocol_error() {
                return total - data.len() + n;
            }
            data = &data[n..];
        }
        total
    }

    /// Account for the start of `data`, stopping right after the next frame boundary.
    /// Returns how many bytes were consumed (all of `data` when no frame ends in it); on a
    /// header that breaks the framing rules, the bytes before it (see [`FrameTracker::feed`]).
    pub fn feed_to_boundary(&mut self, data: &[u8]) -> usize {
        let mut used = 0;
        // Where the header being gathered started in `data`; None: in an earlier call.
        let mut frame_start = None;
        while used < data.len() {
            let rest = &data[used..];
            match &mut self.state {
                State::Invalid { .. } => return used,
                State::Payload { remaining } => {
                    let n = (*remaining).min(rest.len() as u64);
                    *remaining -= n;
                    // n <= rest.len(), so the cast is lossless.
                    used += n as usize;
                    if *remaining == 0 {
                        self.state = State::Header {
                            buf: [0; 14],
                            have: 0,
                        };
                        return used;
                    }
                }
                State::Header { buf, have } => {
                    if *have == 0 {
                        frame_start = Some(used);
                    }
                    let (take, complete) = gather_header(buf, have, rest);
                    used += take;
                    if complete.is_some() {
                        if !length_valid(payload_len(&buf[..])) {
                            self.state = State::Invalid {
                                clean: frame_start.is_some(),
                            };
                            // A header continued from an earlier call started this one.
                            return frame_start.unwrap_or(0);
                        }
                        count_message(&mut self.messages, buf[0]);
                        if buf[0] & 0x0f == OPCODE_CLOSE {
                            self.saw_close = true;
                        }
                        let len = payload_len(&buf[..]);
                        if len == 0 {
                            self.state = State::Header {
                                buf: [0; 14],
                                have: 0,
                            };
                            return used;
                        }
                        self.state = State::Payload { remaining: len };
                    }
                }
                // Only in filter mode; tracked here like any payload.
                State::Pong { payload, have, .. } => {
                    let (take, complete) = gather_pong(payload, have, rest);
                    used += take;
                    if complete {
                        self.state = FRESH;
                        return used;
                    }
                }
            }
        }
        used
    }

    /// Between two frames as the destination sees it: a frame of our own may be sent now.
    /// In filter mode that includes a held (not yet passed on) header or pong.
    pub fn at_boundary(&self) -> bool {
        match self.state {
            State::Header { have: 0, .. } | State::Invalid { clean: true } => true,
            State::Header { .. } | State::Pong { .. } | State::Invalid { clean: false } => {
                self.filtering
            }
            State::Payload { .. } => false,
        }
    }

    /// A tracker in filter mode, for [`FrameTracker::filter`].
    pub fn filtering() -> FrameTracker {
        FrameTracker {
            filtering: true,
            ..FrameTracker::default()
        }
    }

    /// Filter mode: account for `data` and hand what the destination must get, in order, to
    /// `emit` (runs of `data` and held bytes; consecutive frames of one chunk come as one
    /// run). Pongs whose unmasked payload equals `ours` are swallowed. With `to_boundary`,
    /// stop right after the next frame ends. Held bytes stay in the tracker for the next
    /// chunk.
    pub fn filter(
        &mut self,
        data: &[u8],
        ours: &[u8; PING_LEN],
        to_boundary: bool,
        emit: &mut impl FnMut(&[u8]),
    ) -> Filtered {
        debug_assert!(self.filtering, "filter() needs FrameTracker::filtering()");
        let mut out = Filtered::default();
        // Start of the bytes of `data` consumed but not yet emitted.
        let mut run = 0;
        // Where the current frame started in `data`; None: in an earlier chunk.
        let mut frame_start: Option<usize> = None;
        let mut i = 0;
        while i < data.len() {
            let rest = &data[i..];
            match &mut self.state {
                State::Invalid { .. } => break,
                State::Payload { remaining } => {
                    let n = (*remaining).min(rest.len() as u64);
                    *remaining -= n;
                    // n <= rest.len(), so the cast is lossless.
                    i += n as usize;
                    if *remaining == 0 {
                        self.state = FRESH;
                        if to_boundary {
                            break;
                        }
                    }
                }
                State::Header { buf, have } => {
                    if *have == 0 {
                        frame_start = Some(i);
                    }
                    let (take, complete) = gather_header(buf, have, rest);
                    i += take;
                    let Some(hlen) = complete else {
                        continue;
                    };
                    let head = *buf;
                    if !length_valid(payload_len(&head[..])) {
                        // Held, so none of it went on: what precedes it does.
                        self.state = State::Invalid { clean: true };
                        break;
                    }
                    let opcode = head[0] & 0x0f;
                    if opcode == OPCODE_PONG && usize::from(head[1] & 0x7f) == PING_LEN {
                        // Maybe ours: hold it until its payload is in.
                        let mut h = [0u8; 6];
                        h[..usize::from(hlen)].copy_from_slice(&head[..usize::from(hlen)]);
                        self.state = State::Pong {
                            head: h,
                            payload: [0; PING_LEN],
                            have: 0,
                        };
                        continue;
                    }
                    count_message(&mut self.messages, head[0]);
                    if opcode == OPCODE_CLOSE {
                        self.saw_close = true;
                    }
                    if frame_start.is_none() {
                        // Held since an earlier chunk: the whole header goes out first.
                        emit(&head[..usize::from(hlen)]);
                        run = i;
                    }
                    let len = payload_len(&head[..]);
                    if len == 0 {
                        self.state = FRESH;
                        if to_boundary {
                            break;
                        }
                    } else {
                        self.state = State::Payload { remaining: len };
                    }
                }
                State::Pong {
                    head,
                    payload,
                    have,
                } => {
                    let (take, complete) = gather_pong(payload, have, rest);
                    i += take;
                    if !complete {
                        continue;
                    }
                    let mut plain = *payload;
                    if head[1] & 0x80 != 0 {
                        for (k, b) in plain.iter_mut().enumerate() {
                            *b ^= head[2 + k % 4];
                        }
                    }
                    match (plain == *ours, frame_start) {
                        (true, from) => {
                            out.swallowed += 1;
                            if let Some(from) = from {
                                emit_run(&data[run..from], emit);
                            }
                            run = i;
                        }
                        // Not ours, all in this chunk: it stays in the run.
                        (false, Some(_)) => {}
                        (false, None) => {
                            emit(&head[..header_len([head[0], head[1]]).into()]);
                            emit(&payload[..]);
                            run = i;
                        }
                    }
                    self.state = FRESH;
                    if to_boundary {
                        break;
                    }
                }
            }
        }
        // Forward what was consumed, except a frame still held.
        let end = match (self.state, frame_start) {
            (State::Header { have: 0, .. } | State::Payload { .. }, _) => i,
            (_, Some(from)) => from,
            (_, None) => run,
        };
        emit_run(&data[run..end], emit);
        out.used = i;
        out
    }

    /// Whether a frame header broke the framing rules (a 64-bit payload length with its
    /// most significant bit set, RFC 6455 §5.2): the direction must be closed with 1002.
    pub fn protocol_error(&self) -> bool {
        matches!(self.state, State::Invalid { .. })
    }

    /// Whether a close frame started in this direction.
    pub fn saw_close(&self) -> bool {
        self.saw_close
    }

    /// Data messages seen so far: frames with FIN set and a data opcode (text, binary,
    /// or the continuation ending a fragmented message); control frames are not messages.
    pub fn messages(&self) -> u32 {
        self.messages
    }
}

/// Count a message when a complete frame header's first byte `b0` has FIN and a data
/// opcode (continuation, text, binary; not the control frames 0x8 and up).
fn count_message(messages: &mut u32, b0: u8) {
    if b0 & 0x80 != 0 && b0 & 0x0f < 0x8 {
        *messages = messages.saturating_add(1);
    }
}

fn emit_run(run: &[u8], emit: &mut impl FnMut(&[u8])) {
    if !run.is_empty() {
        emit(run);
    }
}

/// A ping frame as a server sends it (unmasked), e.g. to the client.
pub fn server_ping_frame(payload: &[u8; PING_LEN]) -> [u8; 2 + PING_LEN] {
    let mut f = [0u8; 2 + PING_LEN];
    f[0] = 0x80 | OPCODE_PING;
    // PING_LEN < 126.
    f[1] = PING_LEN as u8;
    f[2..].copy_from_slice(payload);
    f
}

/// A ping frame as a client sends it (masked with `mask`), e.g. to the upstream.
pub fn client_ping_frame(payload: &[u8; PING_LEN], mask: [u8; 4]) -> [u8; 6 + PING_LEN] {
    let mut f = [0u8; 6 + PING_LEN];
    f[0] = 0x80 | OPCODE_PING;
    // PING_LEN < 126.
    f[1] = 0x80 | PING_LEN as u8;
    f[2..6].copy_from_slice(&mask);
    for (k, b) in payload.iter().enumerate() {
        f[6 + k] = b ^ mask[k % 4];
    }
    f
}

/// A close frame as a server sends it (unmasked), e.g. to the client.
pub fn server_close_frame(code: u16) -> [u8; 4] {
    let c = code.to_be_bytes();
    [0x88, 0x02, c[0], c[1]]
}

/// A close frame as a client sends it (masked with `mask`), e.g. to the upstream.
pub fn client_close_frame(code: u16, mask: [u8; 4]) -> [u8; 8] {
    let c = code.to_be_bytes();
    [
        0x88,
        0x82,
        mask[0],
        mask[1],
        mask[2],
        mask[3],
        c[0] ^ mask[0],
        c[1] ^ mask[1],
    ]
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
#[path = "ws_frame_tests.rs"]
mod tests;
