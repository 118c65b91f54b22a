//! Tests of the WebSocket frame tracker and filter.

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
