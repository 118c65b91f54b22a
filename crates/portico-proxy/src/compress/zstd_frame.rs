//! zstd for one response body, through a compression context taken from a per-thread pool.
//!
//! A new zstd context at level 3 allocates and initialises about 1.3 MiB of tables on its
//! first call, which costs about four times the compression of a 4 KiB body (measured in
//! `docs/benchmarks.md`, "gzip and zstd per response"). Each worker thread keeps up to
//! [`POOL_MAX`] idle contexts ([`super::pool`]); a response takes one and gives it back
//! reset (a session reset: the tables stay allocated, the parameters stay set) when its
//! stream ends or the response is dropped.
//!
//! As for gzip, each call returns what zstd emitted as one exact-size [`Bytes`] copied out
//! of a scratch buffer kept with the context.

use std::io;

use bytes::Bytes;
use zstd::stream::raw::{Encoder, InBuffer, Operation, OutBuffer};

use super::pool;

/// zstd level: its default.
const LEVEL: i32 = 3;
/// Idle contexts kept per thread (about 1.3 MiB each).
const POOL_MAX: usize = 2;

/// A zstd context and its output scratch buffer.
struct State {
    zstd: Encoder<'static>,
    out: Vec<u8>,
}

thread_local! {
    /// This thread's idle contexts, ready for a new frame.
    static POOL: pool::Idle<State> = const { pool::Idle::new(Vec::new()) };
}

/// The zstd frame of one body.
pub(crate) struct Zstd {
    /// `None` once the frame is finished (the context went back to the pool) or failed.
    state: Option<State>,
}

/// What one call asks of zstd.
#[derive(Clone, Copy, PartialEq)]
enum Step {
    Write,
    Flush,
    Finish,
}

impl Zstd {
    /// A new zstd frame, on an idle context of this thread's pool when there is one.
    pub fn new() -> io::Result<Zstd> {
        let state = match pool::take(&POOL) {
            Some(state) => state,
            None => State {
                zstd: Encoder::new(LEVEL)?,
                out: pool::scratch(),
            },
        };
        Ok(Zstd { state: Some(state) })
    }

    /// Compress `data`; what zstd emitted so far (often nothing).
    pub fn write(&mut self, data: &[u8]) -> io::Result<Bytes> {
        self.run(data, Step::Write)
    }

    /// Everything compressed so far, decodable by the client now.
    pub fn flush(&mut self) -> io::Result<Bytes> {
        self.run(&[], Step::Flush)
    }

    /// The frame's last bytes; the context goes back to the pool.
    pub fn finish(&mut self) -> io::Result<Bytes> {
        let out = self.run(&[], Step::Finish);
        self.release();
        out
    }

    /// Run zstd until it has taken all of `input` and, for a flush or the finish, has
    /// nothing left to emit (it returns how many bytes it still holds).
    fn run(&mut self, input: &[u8], step: Step) -> io::Result<Bytes> {
        let Some(s) = self.state.as_mut() else {
            return Err(io::Error::other("zstd frame already finished"));
        };
        s.out.clear();
        let len = input.len();
        let mut input = InBuffer::around(input);
        let result = loop {
            pool::make_room(&mut s.out);
            let pos = s.out.len();
            let mut output = OutBuffer::around_pos(&mut s.out, pos);
            let left = match step {
                Step::Write => s.zstd.run(&mut input, &mut output).map(|_| 0),
                Step::Flush => s.zstd.flush(&mut output),
                Step::Finish => s.zstd.finish(&mut output, true),
            };
            match left {
                Ok(0) if input.pos() == len => break Ok(()),
                Ok(_) => {}
                Err(e) => break Err(e),
            }
        };
        if let Err(e) = result {
            // Not given back to the pool: a failed context is dropped.
            self.state = None;
            return Err(e);
        }
        Ok(pool::emitted(&s.out))
    }

    /// Reset the context and give it back to this thread's pool (dropped when the pool is
    /// full, or when the reset fails).
    fn release(&mut self) {
        let Some(mut s) = self.state.take() else {
            return;
        };
        if s.zstd.reinit().is_err() {
            return;
        }
        pool::trim(&mut s.out);
        pool::give(&POOL, s, POOL_MAX);
    }
}

impl Drop for Zstd {
    fn drop(&mut self) {
        self.release();
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// A context given back after one frame compresses the next from scratch (the same
    /// bytes), also after a frame dropped unfinished; the pool stays bounded.
    #[test]
    fn reused_context_starts_a_fresh_frame() {
        let text: Vec<u8> = (0..4096).map(|i| b"zstd pool text, "[i % 16]).collect();
        let once = || {
            let mut z = Zstd::new().unwrap();
            let mut out = z.write(&text).unwrap().to_vec();
            out.extend_from_slice(&z.finish().unwrap());
            out
        };
        let first = once();
        assert!(pool::idle(&POOL) >= 1);
        let mut unfinished = Zstd::new().unwrap();
        unfinished.write(b"left half way").unwrap();
        drop(unfinished);
        let second = once();
        assert_eq!(zstd::stream::decode_all(&second[..]).unwrap(), text);
        assert_eq!(first, second);
        let many: Vec<Zstd> = (0..POOL_MAX + 2).map(|_| Zstd::new().unwrap()).collect();
        drop(many);
        assert_eq!(pool::idle(&POOL), POOL_MAX);
    }

    /// A large incompressible write grows the scratch buffer; a flush makes everything
    /// so far decodable; after the finish, the frame is closed.
    #[test]
    fn large_write_flush_and_finish() {
        let mut x: u32 = 0x9e37_79b9;
        let data: Vec<u8> = (0..200_000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect();
        let mut z = Zstd::new().unwrap();
        let mut out = z.write(&data).unwrap().to_vec();
        out.extend_from_slice(&z.flush().unwrap());
        let mut partial = Vec::new();
        let mut dec = zstd::stream::read::Decoder::new(&out[..]).unwrap();
        let _ = io::Read::read_to_end(&mut dec, &mut partial);
        assert_eq!(partial, data);
        out.extend_from_slice(&z.finish().unwrap());
        assert_eq!(zstd::stream::decode_all(&out[..]).unwrap(), data);
        assert!(z.write(b"more").is_err());
    }
}
