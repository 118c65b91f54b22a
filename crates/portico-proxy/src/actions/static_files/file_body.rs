//! A response body that streams a byte range of an open file in bounded chunks.
//!
//! At most [`CHUNK`] bytes are buffered per poll, so a large file never sits in memory.
//! The reads go through `tokio::fs::File` (the blocking pool).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Bytes, BytesMut};
use http_body::{Frame, SizeHint};
use tokio::io::{AsyncRead, ReadBuf};

/// Largest chunk read and sent at once.
pub const CHUNK: usize = 64 * 1024;

/// Streams `remaining` bytes from the file's current position.
pub struct FileBody {
    file: tokio::fs::File,
    remaining: u64,
    buf: BytesMut,
}

impl FileBody {
    /// A body of the next `len` bytes of `file` (already positioned).
    pub fn new(file: tokio::fs::File, len: u64) -> FileBody {
        FileBody {
            file,
            remaining: len,
            buf: BytesMut::new(),
        }
    }
}

impl http_body::Body for FileBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let this = self.get_mut();
        if this.remaining == 0 {
            return Poll::Ready(None);
        }
        // Bounded by CHUNK, so the cast cannot truncate.
        let want = this.remaining.min(CHUNK as u64) as usize;
        if this.buf.len() != want {
            this.buf.clear();
            this.buf.resize(want, 0);
        }
        let mut rb = ReadBuf::new(&mut this.buf[..]);
        ready!(Pin::new(&mut this.file).poll_read(cx, &mut rb))?;
        let n = rb.filled().len();
        if n == 0 {
            // The file shrank under us: the promised Content-Length cannot be met.
            this.remaining = 0;
            return Poll::Ready(Some(Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "file truncated while being sent",
            ))));
        }
        this.remaining -= n as u64;
        let mut chunk = std::mem::take(&mut this.buf);
        chunk.truncate(n);
        Poll::Ready(Some(Ok(Frame::data(chunk.freeze()))))
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}
