//! Fuzz the request-head scanner (`portico_proxy::fuzzing::HeadScan`), which watches raw
//! client bytes for a head carrying both `Content-Length` and `Transfer-Encoding`. It must
//! never panic, and its verdict (`feed`'s answer) and `done()` must be the same whether the
//! bytes come at once, one by one or in chunks cut at points chosen by the input, and equal
//! those of a plain reference written here, which reads the head as hyper (httparse) does:
//! empty lines before the request line are skipped; the head ends at the next empty line
//! (`\n` or `\r\n`); a line of it counts for a name when it starts with the name (any case)
//! followed by `:`. Once `feed` said yes it keeps saying yes, and `reset` starts afresh.
//!
//! Input: 8 bytes seeding the chunk sizes, then the bytes (flag bit 0 of the first seed byte:
//! the rest is a recipe of lines, so both names are reached at once).
#![no_main]

use libfuzzer_sys::fuzz_target;
use portico_proxy::fuzzing::HeadScan;

const NAMES: [&[u8]; 2] = [b"content-length", b"transfer-encoding"];

/// The reference: (both names seen, head complete).
fn reference(data: &[u8]) -> (bool, bool) {
    let mut seen = [false; 2];
    // httparse skips `\r`/`\n` before the request line (a lone `\r` is an error there,
    // whatever the scan says).
    let lead = data
        .iter()
        .take_while(|&&b| b == b'\r' || b == b'\n')
        .count();
    let data = &data[lead..];
    let mut lines = data.split(|&b| b == b'\n').peekable();
    while let Some(line) = lines.next() {
        let complete = lines.peek().is_some();
        if complete && (line.is_empty() || line == b"\r") {
            return (seen == [true; 2], true);
        }
        for (k, name) in NAMES.iter().enumerate() {
            if line.len() > name.len()
                && line[..name.len()].eq_ignore_ascii_case(name)
                && line[name.len()] == b':'
            {
                seen[k] = true;
            }
        }
    }
    (seen == [true; 2], false)
}

/// Chunk sizes from a seed (xorshift): single bytes, small and large pieces, empty chunks.
struct Cuts(u64);

impl Cuts {
    fn next(&mut self, left: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        let r = (self.0 >> 8) as usize;
        let n = match self.0 % 6 {
            0 => 0,
            1 | 2 => 1,
            3 | 4 => 1 + r % 24,
            _ => left,
        };
        n.min(left)
    }
}

/// The recipe: a tag byte `t`; `t % 8` picks a line start (either name with a colon, in
/// mixed case, a lookalike, CR LF, LF), then the next `t >> 3` bytes as they are.
fn build(body: &[u8]) -> Vec<u8> {
    const STARTS: [&[u8]; 8] = [
        b"Content-Length:",
        b"transfer-ENCODING:",
        b"Content-Length :",
        b"X-Content-Length:",
        b"\r\n",
        b"\n",
        b"Transfer-Encoding",
        b"",
    ];
    let mut s = Vec::new();
    let mut i = 0;
    while i < body.len() {
        let t = body[i];
        i += 1;
        s.extend_from_slice(STARTS[usize::from(t % 8)]);
        let n = usize::from(t >> 3).min(body.len() - i);
        s.extend_from_slice(&body[i..i + n]);
        i += n;
    }
    s
}

fn scan_chunks(data: &[u8], seed: u64) -> (bool, bool) {
    let mut s = HeadScan::default();
    let mut cuts = Cuts(seed);
    let (mut o, mut said) = (0, false);
    loop {
        let n = cuts.next(data.len() - o);
        let yes = s.feed(&data[o..o + n]);
        assert!(yes || !said, "feed said yes, then no, at {o}");
        said = yes;
        o += n;
        if o == data.len() {
            break;
        }
    }
    (said, s.done())
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 8 {
        return;
    }
    let seed = u64::from_le_bytes(data[..8].try_into().unwrap()) | 1;
    let built;
    let head = if data[0] & 1 != 0 {
        built = build(&data[8..]);
        &built[..]
    } else {
        &data[8..]
    };
    let want = reference(head);

    let mut whole = HeadScan::default();
    let got = (whole.feed(head), whole.done());
    assert_eq!(got, want, "all at once");

    let mut bytes = HeadScan::default();
    let mut said = false;
    for b in head {
        let yes = bytes.feed(std::slice::from_ref(b));
        assert!(yes || !said, "feed said yes, then no");
        said = yes;
    }
    assert_eq!((said, bytes.done()), want, "byte by byte");

    assert_eq!(scan_chunks(head, seed), want, "in chunks");

    // After a reset the same scanner answers as a fresh one.
    bytes.reset();
    assert_eq!((bytes.feed(head), bytes.done()), want, "after reset");
});
