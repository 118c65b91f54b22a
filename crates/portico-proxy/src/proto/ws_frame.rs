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
mod tests {
    use super::*;

    fn frame(opcode: u8, masked: bool, len: usize) -> Vec<u8> {
        let mut f = vec![0x80 | opcode];
        let m = if masked { 0x80 } else { 0 };
        if len < 126 {
            f.push(m | len as u8);
        } else if len <= 0xffff {
            f.push(m | 126);
            f.extend_from_slice(&(len as u16).to_be_bytes());
        } else {
            f.push(m | 127);
            f.extend_from_slice(&(len as u64).to_be_bytes());
        }
        if masked {
            f.extend_from_slice(&[1, 2, 3, 4]);
        }
        f.extend(std::iter::repeat_n(0x5a, len));
        f
    }

    #[test]
    fn whole_frames_end_at_boundaries() {
        for (masked, len) in [
            (false, 0),
            (true, 5),
            (false, 125),
            (true, 126),
            (false, 70_000),
        ] {
            let mut t = FrameTracker::default();
            t.feed(&frame(0x2, masked, len));
            assert!(t.at_boundary(), "masked={masked} len={len}");
        }
    }

    #[test]
    fn byte_by_byte_tracks_inside_and_between() {
        let mut stream = frame(0x1, true, 300);
        stream.extend(frame(0x9, true, 0));
        stream.extend(frame(0x2, false, 65_536));
        let ends = [
            frame(0x1, true, 300).len(),
            frame(0x1, true, 300).len() + 6,
            stream.len(),
        ];
        let mut t = FrameTracker::default();
        for (i, b) in stream.iter().enumerate() {
            t.feed(std::slice::from_ref(b));
            assert_eq!(
                t.at_boundary(),
                ends.contains(&(i + 1)),
                "after byte {}",
                i + 1
            );
        }
    }

    #[test]
    fn split_anywhere_gives_the_same_result() {
        let mut stream = frame(0x2, true, 1000);
        stream.extend(frame(0x1, true, 10));
        for cut in 0..stream.len() {
            let mut t = FrameTracker::default();
            t.feed(&stream[..cut]);
            t.feed(&stream[cut..]);
            assert!(t.at_boundary());
        }
        let mut t = FrameTracker::default();
        t.feed(&stream[..stream.len() - 1]);
        assert!(!t.at_boundary());
    }

    #[test]
    fn feed_to_boundary_stops_after_each_frame() {
        let a = frame(0x1, true, 3);
        let b = frame(0x2, true, 200);
        let mut stream = a.clone();
        stream.extend(&b);
        let mut t = FrameTracker::default();
        assert_eq!(t.feed_to_boundary(&stream), a.len());
        assert!(t.at_boundary());
        assert_eq!(t.feed_to_boundary(&stream[a.len()..a.len() + 10]), 10);
        assert!(!t.at_boundary());
        assert_eq!(t.feed_to_boundary(&stream[a.len() + 10..]), b.len() - 10);
        assert!(t.at_boundary());
    }

    #[test]
    fn counts_data_messages_not_control_frames_nor_fragments() {
        // text, ping, a message in two fragments (FIN clear, then a FIN continuation),
        // binary, close: 3 messages.
        let mut first = frame(0x1, true, 5);
        first[0] &= 0x7f;
        let mut stream = frame(0x1, true, 3);
        stream.extend(frame(0x9, true, 4));
        stream.extend(first);
        stream.extend(frame(0x0, true, 300));
        stream.extend(frame(0x2, true, 70_000));
        stream.extend(frame(0x8, true, 2));
        for cut in [0, 1, 7, 20, 400, stream.len() - 1] {
            let mut t = FrameTracker::default();
            t.feed(&stream[..cut]);
            t.feed(&stream[cut..]);
            assert_eq!(t.messages(), 3, "cut at {cut}");
            let mut f = FrameTracker::filtering();
            let mut out = Vec::new();
            f.filter(&stream[..cut], &OURS, false, &mut |b| {
                out.extend_from_slice(b)
            });
            f.filter(&stream[cut..], &OURS, false, &mut |b| {
                out.extend_from_slice(b)
            });
            assert_eq!(f.messages(), 3, "filter mode, cut at {cut}");
        }
    }

    #[test]
    fn notices_close_frames() {
        let mut t = FrameTracker::default();
        t.feed(&frame(0x1, false, 3));
        assert!(!t.saw_close());
        t.feed(&server_close_frame(GOING_AWAY));
        assert!(t.saw_close());
        assert!(t.at_boundary());
    }

    /// A small deterministic generator (xorshift) for the stream tests.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: u64) -> usize {
            (self.next() % n) as usize
        }
    }

    const OURS: [u8; PING_LEN] = *b"pt\x01\x02\x03\x04\x05\x06";

    fn pong(payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
        let mut f = vec![0x8a];
        match mask {
            Some(m) => {
                f.push(0x80 | payload.len() as u8);
                f.extend_from_slice(&m);
                f.extend(payload.iter().enumerate().map(|(k, b)| b ^ m[k % 4]));
            }
            None => {
                f.push(payload.len() as u8);
                f.extend_from_slice(payload);
            }
        }
        f
    }

    /// A random stream of data frames, peers' pings and pongs (some as long as ours, one
    /// differing in a single byte) and pongs answering our pings; returns the stream, what
    /// must come out and how many pongs are ours.
    fn random_stream(rng: &mut Rng, masked: bool) -> (Vec<u8>, Vec<u8>, u32) {
        let (mut input, mut expected, mut ours) = (Vec::new(), Vec::new(), 0);
        for _ in 0..40 {
            let mask = masked.then(|| (rng.next() as u32).to_be_bytes());
            let f = match rng.below(6) {
                0 => {
                    ours += 1;
                    let f = pong(&OURS, mask);
                    input.extend(&f);
                    continue;
                }
                1 => {
                    let mut p = OURS;
                    p[rng.below(PING_LEN as u64)] ^= 0x40;
                    pong(&p, mask)
                }
                2 => pong(&OURS[..rng.below(PING_LEN as u64)], mask),
                3 => {
                    let mut f = frame(0x9, masked, PING_LEN);
                    f[2..].fill(0x42);
                    f
                }
                4 => frame(0x8, masked, 2),
                _ => frame(0x2, masked, rng.below(300)),
            };
            input.extend(&f);
            expected.extend(&f);
        }
        (input, expected, ours)
    }

    fn run_filter(t: &mut FrameTracker, chunk: &[u8], out: &mut Vec<u8>) -> u32 {
        let f = t.filter(chunk, &OURS, false, &mut |b| out.extend_from_slice(b));
        assert_eq!(f.used, chunk.len());
        f.swallowed
    }

    #[test]
    fn filter_swallows_only_our_pongs_however_the_stream_is_cut() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for round in 0..400 {
            let (input, expected, ours) = random_stream(&mut rng, round % 2 == 0);
            let mut t = FrameTracker::filtering();
            let (mut out, mut swallowed, mut at) = (Vec::new(), 0, 0);
            while at < input.len() {
                // Mostly small chunks, sometimes single bytes, sometimes big ones.
                let n = match rng.below(4) {
                    0 => 1,
                    1 => 1 + rng.below(16),
                    _ => 1 + rng.below(600),
                }
                .min(input.len() - at);
                swallowed += run_filter(&mut t, &input[at..at + n], &mut out);
                at += n;
            }
            assert!(t.at_boundary());
            assert_eq!(swallowed, ours, "round {round}");
            assert_eq!(out, expected, "round {round}");
        }
    }

    #[test]
    fn filter_holds_only_undecided_bytes() {
        let data = frame(0x2, false, 4);
        let our = pong(&OURS, None);
        let mut stream = data.clone();
        stream.extend(&our[..5]);
        let mut t = FrameTracker::filtering();
        let mut out = Vec::new();
        run_filter(&mut t, &stream, &mut out);
        // The data frame went out; the pong's first 5 bytes are held.
        assert_eq!(out, data);
        assert!(t.at_boundary(), "nothing of the held pong went out");
        let mut out = Vec::new();
        assert_eq!(run_filter(&mut t, &our[5..], &mut out), 1);
        assert!(out.is_empty());
        // A header split in two: nothing goes out until it is complete.
        let f = frame(0x1, true, 3);
        let mut out = Vec::new();
        run_filter(&mut t, &f[..1], &mut out);
        assert!(out.is_empty() && t.at_boundary());
        run_filter(&mut t, &f[1..], &mut out);
        assert_eq!(out, f);
    }

    #[test]
    fn filter_stops_at_a_boundary_when_asked() {
        let a = frame(0x1, false, 3);
        let mut stream = pong(&OURS, None);
        stream.extend(&a);
        stream.extend(frame(0x2, false, 9));
        let mut t = FrameTracker::filtering();
        let mut out = Vec::new();
        let f = t.filter(&stream, &OURS, true, &mut |b| out.extend_from_slice(b));
        assert_eq!((f.used, f.swallowed), (PING_LEN + 2, 1));
        assert!(out.is_empty());
        let f = t.filter(&stream[f.used..], &OURS, true, &mut |b| {
            out.extend_from_slice(b)
        });
        assert_eq!(f.used, a.len());
        assert_eq!(out, a);
    }

    #[test]
    fn ping_frames_are_well_formed() {
        let p = server_ping_frame(&OURS);
        assert_eq!(&p[..2], &[0x89, PING_LEN as u8]);
        assert_eq!(&p[2..], &OURS);
        let m = client_ping_frame(&OURS, [9, 8, 7, 6]);
        assert_eq!(&m[..6], &[0x89, 0x80 | PING_LEN as u8, 9, 8, 7, 6]);
        let mut t = FrameTracker::default();
        t.feed(&m);
        assert!(t.at_boundary());
        // The peer's answer (same payload) is swallowed, masked or not.
        let mut t = FrameTracker::filtering();
        let mut out = Vec::new();
        assert_eq!(
            run_filter(&mut t, &pong(&OURS, Some([1, 2, 3, 4])), &mut out),
            1
        );
        assert_eq!(run_filter(&mut t, &pong(&OURS, None), &mut out), 1);
        assert!(out.is_empty());
    }

    #[test]
    fn close_frames_encode_1001() {
        assert_eq!(server_close_frame(1001), [0x88, 0x02, 0x03, 0xe9]);
        let masked = client_close_frame(1001, [0xa, 0xb, 0xc, 0xd]);
        assert_eq!(masked[6] ^ 0xa, 0x03);
        assert_eq!(masked[7] ^ 0xb, 0xe9);
        let mut t = FrameTracker::default();
        t.feed(&masked);
        assert!(t.at_boundary() && t.saw_close());
    }

    /// A masked frame header announcing a 64-bit payload length `len` (no payload).
    fn long_header(len: u64) -> Vec<u8> {
        let mut f = vec![0x82, 0x80 | 127];
        f.extend_from_slice(&len.to_be_bytes());
        f.extend_from_slice(&[1, 2, 3, 4]);
        f
    }

    #[test]
    fn a_64_bit_length_with_the_top_bit_set_is_a_protocol_error() {
        let good = frame(0x1, true, 10);
        let bad = long_header(1 << 63);
        let stream = [good.clone(), bad.clone(), frame(0x1, true, 3)].concat();
        // In one chunk: only the good frame may go on; nothing more is taken.
        let mut t = FrameTracker::default();
        assert_eq!(t.feed(&stream), good.len());
        assert!(t.protocol_error());
        assert!(t.at_boundary(), "none of the bad header went on");
        assert_eq!(t.feed(b"more"), 0);
        assert_eq!(t.messages(), 1);
        // The bad header cut in two: its first part already went on, so the destination
        // is not at a frame boundary.
        let mut t = FrameTracker::default();
        assert_eq!(t.feed(&stream[..good.len() + 3]), good.len() + 3);
        assert!(!t.protocol_error());
        assert_eq!(t.feed(&stream[good.len() + 3..]), 0);
        assert!(t.protocol_error() && !t.at_boundary());
        // feed_to_boundary stops before it too.
        let mut t = FrameTracker::default();
        assert_eq!(t.feed_to_boundary(&bad), 0);
        assert!(t.protocol_error());
        // The largest valid length is tracked as a payload.
        let mut t = FrameTracker::default();
        assert_eq!(t.feed(&long_header(u64::MAX >> 1)), 14);
        assert!(!t.protocol_error() && !t.at_boundary());
    }

    #[test]
    fn filter_mode_stops_before_a_frame_with_an_invalid_length() {
        let good = frame(0x1, true, 10);
        let bad = long_header(u64::MAX);
        let stream = [good.clone(), bad.clone(), frame(0x1, true, 3)].concat();
        for cut in 0..stream.len() {
            let mut t = FrameTracker::filtering();
            let mut out = Vec::new();
            for part in [&stream[..cut], &stream[cut..]] {
                t.filter(part, &OURS, false, &mut |b| out.extend_from_slice(b));
            }
            assert_eq!(out, good, "cut at {cut}");
            assert!(t.protocol_error() && t.at_boundary(), "cut at {cut}");
        }
    }
}
