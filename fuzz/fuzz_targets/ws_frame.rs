//! Fuzz the WebSocket frame tracker (`portico_proxy::ws_frame::FrameTracker`), which walks
//! frame headers of untrusted client and upstream bytes. The stream is fed in chunks cut at
//! points chosen by the input, and after every call the tracker must agree with a plain
//! reference parser written here:
//!
//! - tracking mode (`feed`, `feed_to_boundary`): `at_boundary` exactly between two frames;
//!   `feed_to_boundary` stops right after the next frame end (or takes the whole chunk) and
//!   always makes progress; `saw_close` once a close frame's header is in; `feed` and a
//!   `feed_to_boundary` loop leave the same state;
//! - filter mode (`filtering` + `filter`, with and without `to_boundary`): what was emitted
//!   so far equals the stream so far minus exactly the complete pongs whose unmasked payload
//!   is `ours` (7-bit length 8) and minus the frame still held (a partial header, or a pong of
//!   length 8 whose payload is not all in); `swallowed` counts those pongs; `used` is the
//!   whole chunk, or with `to_boundary` ends right after the next frame; `at_boundary` holds
//!   between frames and while a frame is held (nothing of it went out).
//!
//! - a frame header whose 64-bit payload length has its top bit set (RFC 6455 §5.2: close
//!   1002): the checks above run on the stream before it; fed whole, the tracker reports
//!   `protocol_error`, filter mode having emitted exactly the bytes before it, tracking mode
//!   those and at most the part of its header that came in earlier chunks.
//!
//! Input: 8 bytes seeding the chunk sizes, 8 bytes of `ours`, a flag byte, then the stream
//! (flag bit 0: the rest is a recipe mixing raw bytes with pongs carrying `ours`, masked or
//! not, so swallowing is reached at once; `(flags >> 1) % 3`: filter never, always or now
//! and then `to_boundary`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use portico_proxy::ws_frame::{FrameTracker, PING_LEN};

/// One frame of the stream as the reference parser sees it. Offsets are u128 so that a
/// 64-bit payload length cannot overflow them; `u128::MAX` means "not within the stream".
struct Frame {
    start: usize,
    /// Where the header ends (MAX when even its first two bytes are not in the stream).
    hdr_end: u128,
    /// Where the frame ends (MAX when its header is incomplete).
    end: u128,
    opcode: u8,
    /// A pong with a 7-bit length of 8: filter mode holds it until its payload is in.
    candidate: bool,
    /// A complete candidate whose unmasked payload is `ours`: swallowed in filter mode.
    ours: bool,
}

/// Where the first frame whose (complete) header announces a 64-bit payload length with
/// its top bit set starts, if any.
fn first_invalid(s: &[u8]) -> Option<usize> {
    let mut pos = 0usize;
    while s.len() - pos >= 2 {
        let b1 = s[pos + 1];
        let hlen =
            2 + match b1 & 0x7f {
                126 => 2,
                127 => 8,
                _ => 0,
            } + if b1 & 0x80 != 0 { 4 } else { 0 };
        if pos + hlen > s.len() {
            return None;
        }
        let plen: u64 = match b1 & 0x7f {
            126 => u64::from(u16::from_be_bytes([s[pos + 2], s[pos + 3]])),
            127 => u64::from_be_bytes(s[pos + 2..pos + 10].try_into().unwrap()),
            n => u64::from(n),
        };
        if plen >> 63 != 0 {
            return Some(pos);
        }
        let end = (pos + hlen) as u128 + u128::from(plen);
        if end >= s.len() as u128 {
            return None;
        }
        pos = end as usize;
    }
    None
}

/// Fed the whole stream, which has an invalid frame at `at`: both modes report the protocol
/// error and pass on nothing of the frame beyond what tracking mode had passed of its
/// header before the header was complete.
fn check_invalid(s: &[u8], at: usize, r: &Reference, ours: &[u8; PING_LEN], seed: u64) {
    let mut t = FrameTracker::default();
    let mut cuts = Cuts(seed);
    let (mut o, mut passed) = (0, 0);
    while o < s.len() {
        let n = cuts.next(s.len() - o).max(1);
        passed += t.feed(&s[o..o + n]);
        o += n;
    }
    // Tracking mode passes header bytes on as they come: the start of the invalid header
    // may have gone with an earlier chunk (then the destination is mid-frame), never all of
    // it (at most 13 of its 14 bytes).
    assert!(
        passed >= at && passed < at + 14,
        "{passed} bytes passed on, the invalid frame starts at {at}"
    );
    assert!(t.protocol_error(), "invalid length not reported");
    assert_eq!(
        t.at_boundary(),
        passed == at,
        "clean only if none of it went"
    );
    let mut f = FrameTracker::filtering();
    let mut out = Vec::new();
    let mut cuts = Cuts(seed);
    let mut o = 0;
    while o < s.len() {
        let n = cuts.next(s.len() - o).max(1);
        f.filter(&s[o..o + n], ours, false, &mut |b: &[u8]| {
            out.extend_from_slice(b)
        });
        o += n;
    }
    assert_eq!(
        out, r.kept,
        "filter mode emits the stream before the invalid frame"
    );
    assert!(
        f.protocol_error() && f.at_boundary(),
        "filter mode: reported, clean"
    );
}

/// The reference: a straight walk over the whole stream, frame after frame (RFC 6455 §5.2).
fn parse(s: &[u8], ours: &[u8; PING_LEN]) -> Vec<Frame> {
    let mut frames = Vec::new();
    let mut pos = 0usize;
    while pos < s.len() {
        let mut f = Frame {
            start: pos,
            hdr_end: u128::MAX,
            end: u128::MAX,
            opcode: s[pos] & 0x0f,
            candidate: false,
            ours: false,
        };
        if s.len() - pos < 2 {
            frames.push(f);
            break;
        }
        let b1 = s[pos + 1];
        let ext = match b1 & 0x7f {
            126 => 2,
            127 => 8,
            _ => 0,
        };
        let masked = b1 & 0x80 != 0;
        let hlen = 2 + ext + if masked { 4 } else { 0 };
        f.hdr_end = (pos + hlen) as u128;
        f.candidate = f.opcode == 0xa && b1 & 0x7f == PING_LEN as u8;
        if pos + hlen > s.len() {
            frames.push(f);
            break;
        }
        let plen: u64 = match ext {
            2 => u64::from(u16::from_be_bytes([s[pos + 2], s[pos + 3]])),
            8 => u64::from_be_bytes(s[pos + 2..pos + 10].try_into().unwrap()),
            _ => u64::from(b1 & 0x7f),
        };
        f.end = f.hdr_end + u128::from(plen);
        if f.end > s.len() as u128 {
            frames.push(f);
            break;
        }
        if f.candidate {
            let p = pos + hlen;
            let mut plain = [0u8; PING_LEN];
            for k in 0..PING_LEN {
                let m = if masked { s[pos + hlen - 4 + k % 4] } else { 0 };
                plain[k] = s[p + k] ^ m;
            }
            f.ours = plain == *ours;
        }
        pos = f.end as usize;
        frames.push(f);
    }
    frames
}

/// What the tracker must report once the first `o` bytes of the stream are in.
struct Reference {
    frames: Vec<Frame>,
    /// The stream minus the pongs carrying `ours`: what filter mode emits in the end.
    kept: Vec<u8>,
    /// `kept_before[o]`: how many bytes of `kept` come from the first `o` bytes.
    kept_before: Vec<usize>,
    /// Where the first close frame's header ends (MAX: none).
    first_close: u128,
    /// Where the pongs carrying `ours` end, in order.
    ours_ends: Vec<u128>,
}

impl Reference {
    fn new(s: &[u8], ours: &[u8; PING_LEN]) -> Reference {
        let frames = parse(s, ours);
        let mut keep = vec![true; s.len()];
        for f in frames.iter().filter(|f| f.ours) {
            keep[f.start..f.end as usize].fill(false);
        }
        let mut kept = Vec::new();
        let mut kept_before = vec![0];
        for (b, k) in s.iter().zip(&keep) {
            if *k {
                kept.push(*b);
            }
            kept_before.push(kept.len());
        }
        let first_close = frames
            .iter()
            .filter(|f| f.opcode == 0x8)
            .map(|f| f.hdr_end)
            .next()
            .unwrap_or(u128::MAX);
        let ours_ends = frames.iter().filter(|f| f.ours).map(|f| f.end).collect();
        Reference {
            frames,
            kept,
            kept_before,
            first_close,
            ours_ends,
        }
    }

    /// The frame begun but not finished at `o`, if any.
    fn inside(&self, o: usize) -> Option<&Frame> {
        let i = self.frames.partition_point(|f| f.start < o);
        let f = self.frames.get(i.checked_sub(1)?)?;
        ((o as u128) < f.end).then_some(f)
    }

    /// Whether `o` lies between two frames.
    fn between(&self, o: usize) -> bool {
        self.inside(o).is_none()
    }

    /// Whether filter mode holds the frame begun at `o` (nothing of it emitted yet).
    fn held(&self, o: usize) -> Option<&Frame> {
        self.inside(o)
            .filter(|f| (o as u128) < f.hdr_end || f.candidate)
    }

    fn saw_close(&self, o: usize) -> bool {
        self.first_close <= o as u128
    }

    fn swallowed(&self, o: usize) -> u32 {
        self.ours_ends.partition_point(|&e| e <= o as u128) as u32
    }

    /// How many bytes a `*_to_boundary` call on `s[o..o + n]` consumes.
    fn to_boundary(&self, o: usize, n: usize) -> usize {
        let i = self.frames.partition_point(|f| f.end <= o as u128);
        match self.frames.get(i) {
            Some(f) if f.end <= (o + n) as u128 => f.end as usize - o,
            _ => n,
        }
    }

    /// How many bytes filter mode has emitted once `s[..o]` is in.
    fn emitted(&self, o: usize) -> usize {
        match self.held(o) {
            Some(f) => self.kept_before[f.start],
            None => self.kept_before[o],
        }
    }
}

/// Chunk sizes from a seed (xorshift): single bytes, small and large pieces, empty chunks.
struct Cuts(u64);

impl Cuts {
    fn next(&mut self, left: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        let r = (self.0 >> 8) as usize;
        let n = match self.0 % 8 {
            0 => 0,
            1 | 2 => 1,
            3 | 4 => 1 + r % 16,
            5 | 6 => 1 + r % 300,
            _ => left,
        };
        n.min(left)
    }

    fn flip(&mut self) -> bool {
        self.0 = self.0.rotate_left(1);
        self.0 & 1 != 0
    }
}

/// The recipe: a tag byte `t`; `t % 4 == 0`: a pong carrying `ours` (bit 2: masked with the
/// next 4 bytes; bit 3: FIN clear); otherwise the next `t >> 2` bytes as they are.
fn build(body: &[u8], ours: &[u8; PING_LEN]) -> Vec<u8> {
    let mut s = Vec::new();
    let mut i = 0;
    while i < body.len() {
        let t = body[i];
        i += 1;
        if t.is_multiple_of(4) {
            s.push(if t & 8 != 0 { 0x0a } else { 0x8a });
            if t & 4 != 0 && i + 4 <= body.len() {
                let mask = &body[i..i + 4];
                i += 4;
                s.push(0x80 | PING_LEN as u8);
                s.extend_from_slice(mask);
                s.extend(ours.iter().enumerate().map(|(k, b)| b ^ mask[k % 4]));
            } else {
                s.push(PING_LEN as u8);
                s.extend_from_slice(ours);
            }
        } else {
            let n = usize::from(t >> 2).min(body.len() - i);
            s.extend_from_slice(&body[i..i + n]);
            i += n;
        }
    }
    s
}

fn check_tracking(s: &[u8], r: &Reference, seed: u64) {
    let mut whole = FrameTracker::default();
    let mut stepped = FrameTracker::default();
    let mut cuts = Cuts(seed);
    let mut o = 0;
    assert!(whole.at_boundary());
    while o < s.len() {
        let n = cuts.next(s.len() - o);
        let chunk = &s[o..o + n];
        whole.feed(chunk);
        let mut at = 0;
        loop {
            let used = stepped.feed_to_boundary(&chunk[at..]);
            assert_eq!(
                used,
                r.to_boundary(o + at, n - at),
                "feed_to_boundary at {}",
                o + at
            );
            at += used;
            assert_eq!(
                stepped.at_boundary(),
                r.between(o + at),
                "at_boundary at {}",
                o + at
            );
            if at == n {
                break;
            }
            assert!(used > 0, "feed_to_boundary made no progress at {}", o + at);
        }
        o += n;
        assert_eq!(whole, stepped, "feed and feed_to_boundary disagree at {o}");
        assert_eq!(whole.at_boundary(), r.between(o), "at_boundary at {o}");
        assert_eq!(whole.saw_close(), r.saw_close(o), "saw_close at {o}");
    }
}

/// `mode` 0: never `to_boundary`, 1: always, else chosen per call (as a pipe switches).
fn check_filter(s: &[u8], r: &Reference, ours: &[u8; PING_LEN], seed: u64, mode: u8) {
    let mut t = FrameTracker::filtering();
    let mut out = Vec::new();
    let mut swallowed = 0;
    let mut cuts = Cuts(seed);
    let mut o = 0;
    assert!(t.at_boundary());
    while o < s.len() {
        let n = cuts.next(s.len() - o);
        let mut at = 0;
        loop {
            let chunk = &s[o + at..o + n];
            let before = out.len();
            let to_boundary = match mode {
                0 => false,
                1 => true,
                _ => cuts.flip(),
            };
            let f = t.filter(chunk, ours, to_boundary, &mut |b: &[u8]| {
                out.extend_from_slice(b)
            });
            let want = if to_boundary {
                r.to_boundary(o + at, chunk.len())
            } else {
                chunk.len()
            };
            assert_eq!(
                f.used,
                want,
                "used at {} (to_boundary {to_boundary})",
                o + at
            );
            at += f.used;
            swallowed += f.swallowed;
            let p = o + at;
            assert_eq!(out.len(), r.emitted(p), "emitted length at {p}");
            assert_eq!(
                out[before..],
                r.kept[before..out.len()],
                "emitted bytes at {p}"
            );
            assert_eq!(swallowed, r.swallowed(p), "swallowed at {p}");
            assert_eq!(
                t.at_boundary(),
                r.held(p).is_some() || r.between(p),
                "at_boundary at {p}"
            );
            assert_eq!(t.saw_close(), r.saw_close(p), "saw_close at {p}");
            if at == n {
                break;
            }
            assert!(f.used > 0, "filter made no progress at {p}");
        }
        o += n;
    }
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 17 {
        return;
    }
    let seed = u64::from_le_bytes(data[..8].try_into().unwrap()) | 1;
    let ours: [u8; PING_LEN] = data[8..16].try_into().unwrap();
    let flags = data[16];
    let body = &data[17..];
    let built;
    let s = if flags & 1 != 0 {
        built = build(body, &ours);
        &built[..]
    } else {
        body
    };
    let invalid = first_invalid(s);
    let valid = &s[..invalid.unwrap_or(s.len())];
    let r = Reference::new(valid, &ours);
    check_tracking(valid, &r, seed);
    check_filter(valid, &r, &ours, seed, (flags >> 1) % 3);
    if let Some(at) = invalid {
        check_invalid(s, at, &r, &ours, seed);
    }
});
