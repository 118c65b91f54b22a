//! The response body read straight off an upstream connection ([`RecvBody`]).
//!
//! Frames are slices of the connection's read buffer (no copy); a `Content-Length` body is
//! cut at its length, a chunked one is decoded (chunk extensions and trailers are read and
//! dropped: the client side re-frames the body itself). A body the server cuts short, or a
//! chunk that does not parse, is an error: the client connection is then aborted rather
//! than given a body that looks complete. The connection is handed back only after a
//! complete body with nothing after it ([`RecvBody::take_conn`]).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http_body::{Frame, SizeHint};

use super::{Framing, UpConn};
use crate::body::BodyError;

/// Longest chunk-size line (with extensions) accepted.
const MAX_CHUNK_LINE: usize = 4096;
/// Most trailer bytes accepted after the last chunk.
const MAX_TRAILERS: usize = 16 * 1024;
/// Largest single read asked for while a long body streams.
const MAX_READ: usize = 64 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// `Content-Length` bytes still to come.
    Length(u64),
    /// Until the server closes.
    Close,
    /// Chunked: expecting a chunk-size line.
    ChunkSize,
    /// Chunked: bytes of the current chunk still to come.
    ChunkData(u64),
    /// Chunked: the CRLF after a chunk's data.
    ChunkEnd,
    /// Chunked: trailer lines after the last chunk (`trailer_bytes` so far).
    Trailers(usize),
    /// The body is complete.
    Done,
    /// The body broke off (never reported as complete).
    Failed,
}

/// Why a body could not be read to its end.
#[derive(Debug, thiserror::Error)]
enum RecvError {
    #[error("upstream closed the connection before the end of the body")]
    Cut,
    #[error("malformed chunked body: {0}")]
    Chunk(&'static str),
    #[error("reading the upstream body failed: {0}")]
    Io(#[source] io::Error),
}

/// A response body streamed from an [`UpConn`].
pub(crate) struct RecvBody {
    conn: Option<UpConn>,
    state: State,
    keep_alive: bool,
    /// An error seen but not yet reported (see [`RecvBody::fail`]).
    failed: Option<RecvError>,
}

impl std::fmt::Debug for RecvBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecvBody")
            .field("state", &self.state)
            .finish()
    }
}

impl RecvBody {
    pub fn new(conn: UpConn, framing: Framing, keep_alive: bool) -> RecvBody {
        let state = match framing {
            Framing::Empty => State::Done,
            Framing::Length(n) => State::Length(n),
            Framing::Chunked => State::ChunkSize,
            Framing::Close => State::Close,
        };
        RecvBody {
            conn: Some(conn),
            state,
            keep_alive,
            failed: None,
        }
    }

    /// The connection, if the body is complete and it can carry another request.
    pub fn take_conn(&mut self) -> Option<UpConn> {
        if self.state != State::Done || !self.keep_alive {
            return None;
        }
        self.conn.take().filter(|c| c.buf.is_empty())
    }

    /// Break off the body. The error is reported on the next poll, not this one: the
    /// client side first gets a chance to flush the head and data it already has (hyper
    /// writes buffered output when a body is pending, and drops it when a body fails), so
    /// the client sees a cut body rather than nothing at all.
    fn fail(
        &mut self,
        e: RecvError,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        self.conn = None;
        self.state = State::Failed;
        self.keep_alive = false;
        self.failed = Some(e);
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

/// Hex chunk size of a chunk-size line (without its line end); extensions after `;` are
/// ignored.
pub(crate) fn chunk_size(line: &[u8]) -> Option<u64> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let digits = line
        .split(|&b| b == b';')
        .next()
        .map(<[u8]>::trim_ascii)
        .unwrap_or_default();
    if digits.is_empty() || digits.len() > 15 {
        return None;
    }
    let mut n = 0u64;
    for &d in digits {
        n = n * 16 + u64::from(char::from(d).to_digit(16)?);
    }
    Some(n)
}

impl http_body::Body for RecvBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = self.get_mut();
        if let Some(e) = this.failed.take() {
            return Poll::Ready(Some(Err(Box::new(e))));
        }
        loop {
            let Some(conn) = this.conn.as_mut() else {
                return Poll::Ready(None);
            };
            // What the current state needs from the buffer; `Some(want)` = read more.
            let need_read: Option<usize> = match this.state {
                State::Done | State::Failed => return Poll::Ready(None),
                State::Length(0) | State::ChunkData(0) => {
                    this.state = if this.state == State::Length(0) {
                        State::Done
                    } else {
                        State::ChunkEnd
                    };
                    continue;
                }
                State::Length(rem) | State::ChunkData(rem) => {
                    if conn.buf.is_empty() {
                        Some(usize::try_from(rem).unwrap_or(MAX_READ))
                    } else {
                        let n = conn
                            .buf
                            .len()
                            .min(usize::try_from(rem).unwrap_or(usize::MAX));
                        let data = conn.buf.split_to(n).freeze();
                        this.state = match this.state {
                            State::Length(_) => State::Length(rem - n as u64),
                            _ => State::ChunkData(rem - n as u64),
                        };
                        if this.state == State::Length(0) {
                            this.state = State::Done;
                        }
                        return Poll::Ready(Some(Ok(Frame::data(data))));
                    }
                }
                State::Close => {
                    if conn.buf.is_empty() {
                        Some(MAX_READ)
                    } else {
                        let data = conn.buf.split().freeze();
                        return Poll::Ready(Some(Ok(Frame::data(data))));
                    }
                }
                State::ChunkSize => match conn.buf.iter().position(|&b| b == b'\n') {
                    Some(end) => {
                        let line = conn.buf.split_to(end + 1);
                        match chunk_size(&line[..end]) {
                            Some(0) => this.state = State::Trailers(0),
                            Some(n) => this.state = State::ChunkData(n),
                            None => return this.fail(RecvError::Chunk("bad chunk size"), cx),
                        }
                        None
                    }
                    None if conn.buf.len() > MAX_CHUNK_LINE => {
                        return this.fail(RecvError::Chunk("chunk-size line too long"), cx);
                    }
                    None => Some(MAX_CHUNK_LINE),
                },
                State::ChunkEnd => {
                    if conn.buf.starts_with(b"\r\n") {
                        let _ = conn.buf.split_to(2);
                        this.state = State::ChunkSize;
                        None
                    } else if conn.buf.starts_with(b"\n") {
                        let _ = conn.buf.split_to(1);
                        this.state = State::ChunkSize;
                        None
                    } else if conn.buf.is_empty() || conn.buf[..] == b"\r"[..] {
                        Some(2)
                    } else {
                        return this.fail(RecvError::Chunk("no line end after chunk data"), cx);
                    }
                }
                State::Trailers(seen) => match conn.buf.iter().position(|&b| b == b'\n') {
                    Some(end) => {
                        let line = conn.buf.split_to(end + 1);
                        if line[..end]
                            .strip_suffix(b"\r")
                            .unwrap_or(&line[..end])
                            .is_empty()
                        {
                            this.state = State::Done;
                            return Poll::Ready(None);
                        }
                        if seen + line.len() > MAX_TRAILERS {
                            return this.fail(RecvError::Chunk("trailers too large"), cx);
                        }
                        this.state = State::Trailers(seen + line.len());
                        None
                    }
                    None if seen + conn.buf.len() > MAX_TRAILERS => {
                        return this.fail(RecvError::Chunk("trailers too large"), cx);
                    }
                    None => Some(MAX_CHUNK_LINE),
                },
            };
            let Some(want) = need_read else {
                continue;
            };
            match ready!(conn.poll_fill_at_least(cx, want.min(MAX_READ))) {
                Ok(0) if this.state == State::Close => {
                    this.state = State::Done;
                    this.keep_alive = false;
                    return Poll::Ready(None);
                }
                Ok(0) => return this.fail(RecvError::Cut, cx),
                Ok(_) => {}
                Err(e) => return this.fail(RecvError::Io(e), cx),
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.state == State::Done || self.state == State::Length(0)
    }

    fn size_hint(&self) -> SizeHint {
        match self.state {
            State::Done => SizeHint::with_exact(0),
            State::Length(n) => SizeHint::with_exact(n),
            _ => SizeHint::default(),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn chunk_sizes() {
        assert_eq!(chunk_size(b"5\r"), Some(5));
        assert_eq!(chunk_size(b"1a;ext=1\r"), Some(26));
        assert_eq!(chunk_size(b"0"), Some(0));
        assert_eq!(chunk_size(b"zz\r"), None);
        assert_eq!(chunk_size(b"\r"), None);
        assert_eq!(chunk_size(b"ffffffffffffffff\r"), None);
    }
}
