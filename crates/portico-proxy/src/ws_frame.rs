//! WebSocket frame boundaries without parsing payloads.
//!
//! The pipe forwards bytes untouched; this tracker walks only frame headers (RFC 6455 §5.2)
//! and counts payload lengths, so the proxy knows when a direction sits between two frames.
//! That is where a frame of its own (close 1001 on shutdown, later pings) may be inserted
//! without corrupting the stream. It also notes when a peer sent a close frame.

/// Close code 1001 "Going Away".
pub const GOING_AWAY: u16 = 1001;

const OPCODE_CLOSE: u8 = 0x8;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Collecting a header; `have` bytes of it are in `buf`.
    Header { buf: [u8; 14], have: u8 },
    /// Inside a payload.
    Payload { remaining: u64 },
}

/// Tracks frame boundaries of one direction of a WebSocket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameTracker {
    state: State,
    saw_close: bool,
}

impl Default for FrameTracker {
    fn default() -> Self {
        FrameTracker {
            state: State::Header {
                buf: [0; 14],
                have: 0,
            },
            saw_close: false,
        }
    }
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
    /// Account for `data`, the next bytes of this direction.
    pub fn feed(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            let n = self.feed_to_boundary(data);
            data = &data[n..];
        }
    }

    /// Account for the start of `data`, stopping right after the next frame boundary.
    /// Returns how many bytes were consumed (all of `data` when no frame ends in it).
    pub fn feed_to_boundary(&mut self, data: &[u8]) -> usize {
        let mut used = 0;
        while used < data.len() {
            let rest = &data[used..];
            match &mut self.state {
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
                    used += take;
                    if *have >= 2 && *have == header_len([buf[0], buf[1]]) {
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
            }
        }
        used
    }

    /// Between two frames: a frame of our own may be sent now.
    pub fn at_boundary(&self) -> bool {
        matches!(self.state, State::Header { have: 0, .. })
    }

    /// Whether a close frame started in this direction.
    pub fn saw_close(&self) -> bool {
        self.saw_close
    }
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
    fn notices_close_frames() {
        let mut t = FrameTracker::default();
        t.feed(&frame(0x1, false, 3));
        assert!(!t.saw_close());
        t.feed(&server_close_frame(GOING_AWAY));
        assert!(t.saw_close());
        assert!(t.at_boundary());
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
}
