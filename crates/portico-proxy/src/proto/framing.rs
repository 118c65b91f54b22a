//! Request heads that frame their body twice: `Content-Length` together with
//! `Transfer-Encoding` get 400 and a close.
//!
//! hyper refuses the other smuggling shapes itself (differing or invalid `Content-Length`,
//! `Transfer-Encoding` not ending in `chunked` or on HTTP/1.0, obs-fold, bad chunk sizes:
//! 400 and a close), but for this one it follows RFC 9112 §6.3 leniently: it drops the
//! `Content-Length`, reads the body chunked and closes after the response. The request still
//! reaches the upstream, and the `Content-Length` is gone before Portico sees the headers.
//! [`HeadScan`] therefore watches the raw bytes of each request head as the client
//! connection reads them (`ClientIo`, in `worker::conn`) and notes whether both header names
//! appear; the connection's service then answers 400 instead of handling the request.
//!
//! The scan is a byte loop over the head only (it stops at the blank line), with its state
//! kept across reads so a head split anywhere is seen whole. Heads that hyper reads while a
//! request is still in service (pipelined) are not scanned; hyper's own handling above still
//! keeps them from smuggling anything.

const NAMES: [&[u8]; 2] = [b"content-length", b"transfer-encoding"];
const CL: u8 = 1;
const TE: u8 = 2;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum At {
    /// Before the request line: empty lines there are skipped (as httparse does), they do
    /// not end the head.
    Lead,
    /// At the start of a line.
    LineStart,
    /// At line start after a `\r`: a `\n` ends the head.
    BlankCr,
    /// Matching a header name: `pos` bytes matched, `cands` the names still possible.
    Name { pos: u8, cands: u8 },
    /// In a line that cannot matter: skip to its end.
    Skip,
    /// Past the head's blank line.
    Done,
}

/// Watches one request head for `Content-Length` and `Transfer-Encoding`.
#[derive(Debug, Clone, Copy)]
pub struct HeadScan {
    at: At,
    seen: u8,
}

impl Default for HeadScan {
    fn default() -> Self {
        HeadScan {
            at: At::Lead,
            seen: 0,
        }
    }
}

impl HeadScan {
    /// A new head starts.
    pub fn reset(&mut self) {
        *self = HeadScan::default();
    }

    /// Whether the head is complete (further bytes are a body or the next request).
    pub fn done(&self) -> bool {
        self.at == At::Done
    }

    /// Account for the next bytes of the head. Returns true once both names were seen.
    pub fn feed(&mut self, data: &[u8]) -> bool {
        let mut i = 0;
        while i < data.len() {
            let b = data[i];
            self.at = match self.at {
                At::Done => return self.both(),
                At::Skip => match data[i..].iter().position(|&c| c == b'\n') {
                    Some(n) => {
                        i += n;
                        At::LineStart
                    }
                    None => return self.both(),
                },
                At::Lead if b == b'\r' || b == b'\n' => At::Lead,
                At::LineStart | At::BlankCr if b == b'\n' => At::Done,
                At::LineStart if b == b'\r' => At::BlankCr,
                At::Lead | At::LineStart => {
                    let cands = starts(b);
                    if cands == 0 {
                        At::Skip
                    } else {
                        At::Name { pos: 1, cands }
                    }
                }
                At::BlankCr => At::Skip,
                At::Name { pos, cands } => {
                    let mut left = 0;
                    for (k, name) in NAMES.iter().enumerate() {
                        let bit = 1 << k;
                        if cands & bit == 0 {
                            continue;
                        }
                        let p = usize::from(pos);
                        if p == name.len() && b == b':' {
                            self.seen |= bit;
                        } else if p < name.len() && name[p].eq_ignore_ascii_case(&b) {
                            left |= bit;
                        }
                    }
                    if left == 0 {
                        // Seen (the colon) or no match: the rest of the line does not matter.
                        if b == b'\n' { At::LineStart } else { At::Skip }
                    } else {
                        // Names are shorter than 255 bytes.
                        At::Name {
                            pos: pos + 1,
                            cands: left,
                        }
                    }
                }
            };
            i += 1;
        }
        self.both()
    }

    fn both(&self) -> bool {
        self.seen == CL | TE
    }
}

fn starts(b: u8) -> u8 {
    let mut cands = 0;
    for (k, name) in NAMES.iter().enumerate() {
        if name[0].eq_ignore_ascii_case(&b) {
            cands |= 1 << k;
        }
    }
    cands
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan_all(head: &[u8]) -> bool {
        let mut s = HeadScan::default();
        s.feed(head)
    }

    const BOTH: &[u8] =
        b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n";

    #[test]
    fn finds_both_names_in_any_case_and_order() {
        assert!(scan_all(BOTH));
        assert!(scan_all(
            b"POST / HTTP/1.1\r\ntransfer-ENCODING: chunked\r\nhost: h\r\ncontent-length:4\r\n\r\n"
        ));
        assert!(scan_all(
            b"POST / HTTP/1.1\nContent-Length: 4\nTransfer-Encoding: chunked\n\n"
        ));
    }

    #[test]
    fn empty_lines_before_the_request_line_do_not_end_the_head() {
        // httparse skips them, so hyper would read this request with both framings.
        let mut lead = b"\r\n\n\r\n".to_vec();
        lead.extend_from_slice(BOTH);
        assert!(scan_all(&lead));
        let mut s = HeadScan::default();
        assert!(!s.feed(b"\r\n"));
        assert!(!s.done());
    }

    #[test]
    fn one_framing_or_lookalikes_are_fine() {
        for head in [
            &b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\n\r\n"[..],
            b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"POST / HTTP/1.1\r\nX-Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"POST / HTTP/1.1\r\nContent-Lengths: 4\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"POST / HTTP/1.1\r\nContent-Length: 4\r\nX: transfer-encoding: chunked\r\n\r\n",
            b"GET /content-length:transfer-encoding: HTTP/1.1\r\nHost: h\r\n\r\n",
        ] {
            assert!(!scan_all(head), "{}", String::from_utf8_lossy(head));
        }
    }

    #[test]
    fn stops_at_the_blank_line() {
        let mut s = HeadScan::default();
        assert!(!s.feed(b"POST / HTTP/1.1\r\nContent-Length: 30\r\n\r\nTransfer-Encoding: x\r\n"));
        assert!(s.done());
        s.reset();
        assert!(!s.done());
        assert!(!s.feed(b"GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n"));
    }

    #[test]
    fn split_anywhere_gives_the_same_answer() {
        for cut in 0..BOTH.len() {
            for cut2 in cut..BOTH.len() {
                let mut s = HeadScan::default();
                s.feed(&BOTH[..cut]);
                s.feed(&BOTH[cut..cut2]);
                assert!(s.feed(&BOTH[cut2..]), "cut at {cut}/{cut2}");
            }
        }
    }
}
