//! gzip for one response body, through a zlib state taken from a small per-thread pool.
//!
//! Setting up a zlib state costs more than compressing a few KiB with it: about 330 KiB to
//! allocate, of which 256 KiB (window, chains, hash heads) are cleared. A worker is a
//! single-threaded runtime, so each thread keeps up to [`POOL_MAX`] idle states
//! ([`super::pool`]) and a response takes one, and gives it back reset when its stream ends
//! (or the response is dropped): a reset clears only the 128 KiB of hash heads. Beyond
//! [`POOL_MAX`] responses compressing at once on one worker, the extra states are allocated
//! and freed as before.
//!
//! The backend is zlib-rs (through `flate2`): a Rust port of zlib-ng's deflate, about twice
//! as fast as miniz_oxide at level 6, with slightly smaller output (measured in
//! `docs/benchmarks.md`, "gzip and zstd per response").
//!
//! Each call returns what the state emitted as one exact-size [`Bytes`], copied out of a
//! scratch buffer that stays with the state (one allocation per emitted piece; a piece is
//! usually the whole compressed body of a small response).

use std::io;

use bytes::Bytes;
use flate2::{Compress, Compression, FlushCompress, Status};

use super::pool;

/// gzip level (zlib scale 0-9): zlib's default, nginx's usual `gzip_comp_level`.
const LEVEL: u32 = 6;
/// log2 of the window: zlib's default (32 KiB), as nginx for a body of unknown length.
const WINDOW_BITS: u8 = 15;
/// Idle states kept per thread (about 330 KiB each).
const POOL_MAX: usize = 4;

/// A zlib state (a handle: zlib-rs keeps the state itself on the heap) and its output
/// scratch buffer.
struct State {
    zlib: Compress,
    out: Vec<u8>,
}

thread_local! {
    /// This thread's idle states, ready for a new stream.
    static POOL: pool::Idle<State> = const { pool::Idle::new(Vec::new()) };
}

/// The gzip stream of one body.
pub(crate) struct Gzip {
    /// `None` once the stream is finished (the state went back to the pool) or failed.
    state: Option<State>,
}

impl Gzip {
    /// A new gzip stream, on an idle state of this thread's pool when there is one.
    pub fn new() -> Gzip {
        let state = pool::take(&POOL).unwrap_or_else(|| State {
            zlib: Compress::new_gzip(Compression::new(LEVEL), WINDOW_BITS),
            out: pool::scratch(),
        });
        Gzip { state: Some(state) }
    }

    /// Compress `data`; what zlib emitted so far (often nothing: it keeps input until a
    /// block is full).
    pub fn write(&mut self, data: &[u8]) -> io::Result<Bytes> {
        self.run(data, FlushCompress::None)
    }

    /// Everything compressed so far, decodable by the client now (a sync flush).
    pub fn flush(&mut self) -> io::Result<Bytes> {
        self.run(&[], FlushCompress::Sync)
    }

    /// The stream's last bytes (with the gzip trailer); the state goes back to the pool.
    pub fn finish(&mut self) -> io::Result<Bytes> {
        let out = self.run(&[], FlushCompress::Finish);
        self.release();
        out
    }

    /// Run zlib over `input` with `flush` until it has taken all the input and, for a
    /// flush, emitted everything (zlib's rule: done when it leaves output room unused), or
    /// for the finish, until the end of the stream.
    fn run(&mut self, mut input: &[u8], flush: FlushCompress) -> io::Result<Bytes> {
        let Some(s) = self.state.as_mut() else {
            return Err(io::Error::other("gzip stream already finished"));
        };
        s.out.clear();
        loop {
            pool::make_room(&mut s.out);
            let (in_before, out_before) = (s.zlib.total_in(), s.out.len());
            let status = match s.zlib.compress_vec(input, &mut s.out, flush) {
                Ok(status) => status,
                Err(e) => {
                    // Not given back to the pool: a failed state is dropped.
                    self.state = None;
                    return Err(io::Error::other(e));
                }
            };
            // zlib took at most `input.len()` bytes.
            let taken = usize::try_from(s.zlib.total_in() - in_before).unwrap_or(input.len());
            input = &input[taken.min(input.len())..];
            let room_left = s.out.len() < s.out.capacity();
            let done = match status {
                Status::StreamEnd => true,
                _ if flush == FlushCompress::Finish => false,
                Status::Ok | Status::BufError => input.is_empty() && room_left,
            };
            if done {
                break;
            }
            if status == Status::BufError && taken == 0 && s.out.len() == out_before && room_left {
                // No progress with input and output room: zlib refuses the call.
                self.state = None;
                return Err(io::Error::other("gzip made no progress"));
            }
        }
        Ok(pool::emitted(&s.out))
    }

    /// Reset the state and give it back to this thread's pool (dropped when the pool is
    /// full or the thread is ending).
    fn release(&mut self) {
        let Some(mut s) = self.state.take() else {
            return;
        };
        s.zlib.reset();
        pool::trim(&mut s.out);
        pool::give(&POOL, s, POOL_MAX);
    }
}

impl Drop for Gzip {
    fn drop(&mut self) {
        self.release();
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::io::Read;

    fn gunzip(data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(data)
            .read_to_end(&mut out)
            .unwrap();
        out
    }

    fn pooled() -> usize {
        pool::idle(&POOL)
    }

    /// A state given back after one stream compresses the next one from scratch: the
    /// second stream decodes on its own, with the same bytes as the first.
    #[test]
    fn reused_state_starts_a_fresh_stream() {
        let text: Vec<u8> = (0..4096).map(|i| b"gzip pool text, "[i % 16]).collect();
        let once = || {
            let mut g = Gzip::new();
            let mut out = g.write(&text).unwrap().to_vec();
            out.extend_from_slice(&g.finish().unwrap());
            out
        };
        let first = once();
        assert!(pooled() >= 1);
        let second = once();
        assert_eq!(gunzip(&second), text);
        assert_eq!(first, second);
    }

    /// A body larger than the scratch buffer, written in one call and flushed: the loop
    /// grows the buffer until zlib has emitted everything.
    #[test]
    fn large_incompressible_write_and_flush() {
        // A simple generator: bytes that do not compress.
        let mut x: u32 = 0x1234_5678;
        let data: Vec<u8> = (0..200_000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect();
        let mut g = Gzip::new();
        let mut out = g.write(&data).unwrap().to_vec();
        out.extend_from_slice(&g.flush().unwrap());
        // After a sync flush, everything written so far decodes.
        let mut partial = Vec::new();
        let _ = flate2::read::GzDecoder::new(&out[..]).read_to_end(&mut partial);
        assert_eq!(partial, data);
        out.extend_from_slice(&g.finish().unwrap());
        assert_eq!(gunzip(&out), data);
        assert!(g.write(b"more").is_err());
    }

    /// The pool holds at most `POOL_MAX` idle states; a stream dropped unfinished gives
    /// its state back too.
    #[test]
    fn pool_is_bounded() {
        let streams: Vec<Gzip> = (0..POOL_MAX + 3).map(|_| Gzip::new()).collect();
        drop(streams);
        assert_eq!(pooled(), POOL_MAX);
        let mut g = Gzip::new();
        assert_eq!(pooled(), POOL_MAX - 1);
        g.write(b"unfinished").unwrap();
        drop(g);
        assert_eq!(pooled(), POOL_MAX);
    }
}
