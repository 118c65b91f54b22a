//! The byte pipe when either side speaks TLS (TLS termination, a `tls` upstream, or both):
//! decrypted bytes from one side to the other and back, with half-close, the stream's idle
//! timeout and the stop signal (same ends as `pipe.rs`).
//!
//! The loop (ends, idle timeout, stop) is `duplex.rs`', shared with `pipe.rs`; only the step
//! differs. `pipe.rs`' step waits for socket readiness and reads the sockets itself (or
//! splices), but TLS bytes must go through rustls' state. This step keeps its idea instead:
//! it *polls* the reads (`poll_read` on the TLS stream goes through rustls; it registers
//! interest and returns `Pending` when nothing is there) into one 16 KiB buffer per worker
//! thread, and writes what it got on at once. Only bytes the destination does not
//! take are copied into a buffer owned by the connection, freed once drained (and the
//! source is not read meanwhile: back-pressure). The thread buffer is only borrowed inside
//! synchronous poll calls, never across an await.
//!
//! Memory: an idle TLS stream holds no copy buffer, only the rustls connection state (its
//! own record buffers are emptied and freed when idle) and the boxed stream. splice(2) is
//! not possible (the kernel does not see plaintext). Measured RSS per idle connection (2000
//! connections, debug build): about 11.7 KB for a TLS stream, 3.1 KB for a plain one; a
//! version with two 8 KiB copy buffers per connection measured 32.7 KB.
//!
//! Client EOF without a TLS `close_notify` (common) counts as an ordinary close. When the
//! server closes, the client gets `close_notify` and a FIN; when the client closes, the
//! server gets a FIN; the other direction keeps flowing until it closes too.

use std::cell::RefCell;
use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::watch;

use crate::duplex::{self, PipeResult, Sides};

/// The largest TLS record's plaintext: one read from rustls never returns more.
const BUF_SIZE: usize = 16 * 1024;
/// Reads per direction and step before giving the other direction its turn (fairness).
const READS_PER_STEP: usize = 4;

thread_local! {
    static BUF: RefCell<Vec<u8>> = RefCell::new(vec![0; BUF_SIZE]);
}

/// One direction's state (the copy buffer is empty, with no capacity, when idle).
type Half = duplex::Half<Records>;

/// A TLS pipe direction's own state.
#[derive(Debug, Default)]
struct Records {
    /// Written bytes may sit in the destination's buffers (rustls records): flush them.
    needs_flush: bool,
}

/// The two sides, at least one of them TLS (each a TLS stream or a plain socket).
struct Tls<'a, C, S> {
    client: &'a mut C,
    server: &'a mut S,
}

impl<C, S> Sides for Tls<'_, C, S>
where
    C: AsyncRead + AsyncWrite + Unpin,
    S: AsyncRead + AsyncWrite + Unpin,
{
    type Extra = Records;
    const KIND: &'static str = "tls";

    /// Poll both directions ([`drive`]) until one moved something.
    async fn step(&mut self, up: &mut Half, down: &mut Half) -> io::Result<bool> {
        let (client, server) = (&mut *self.client, &mut *self.server);
        poll_fn(|cx| {
            let a = drive(cx, &mut *client, &mut *server, up);
            let b = drive(cx, &mut *server, &mut *client, down);
            match (a, b) {
                (Poll::Ready(Err(e)), _) | (_, Poll::Ready(Err(e))) => Poll::Ready(Err(e)),
                (Poll::Pending, Poll::Pending) => Poll::Pending,
                _ => Poll::Ready(Ok(true)),
            }
        })
        .await
    }
}

/// Copy both ways until both sides closed, one side failed, `idle` passed with no byte
/// moved, or `stop` turns true.
pub(crate) async fn tls_pipe<C, S>(
    client: &mut C,
    server: &mut S,
    idle: Duration,
    stop: watch::Receiver<bool>,
) -> PipeResult
where
    C: AsyncRead + AsyncWrite + Unpin,
    S: AsyncRead + AsyncWrite + Unpin,
{
    duplex::run(&mut Tls { client, server }, idle, stop).await
}

/// Move what can move from `src` to `dst` now. `Ready(Ok(()))` when something moved (bytes,
/// a flush, EOF); `Pending` when nothing can (interest registered with every blocked
/// operation, or this direction is finished).
fn drive<R, W>(cx: &mut Context<'_>, src: &mut R, dst: &mut W, h: &mut Half) -> Poll<io::Result<()>>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut moved = false;
    let progress = |moved: bool| {
        if moved {
            Poll::Ready(Ok(()))
        } else {
            Poll::Pending
        }
    };
    for _ in 0..READS_PER_STEP {
        if h.shut {
            return progress(moved);
        }
        // 1. What the destination did not take before.
        while h.offset < h.pending.len() {
            let rest = h.pending.get(h.offset..).unwrap_or_default();
            match Pin::new(&mut *dst).poll_write(cx, rest) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => {
                    h.offset += n;
                    h.extra.needs_flush = true;
                    moved = true;
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return progress(moved),
            }
        }
        if !h.pending.is_empty() {
            h.pending = Vec::new();
            h.offset = 0;
        }
        // 2. Records rustls holds for the socket.
        if h.extra.needs_flush {
            match Pin::new(&mut *dst).poll_flush(cx) {
                Poll::Ready(Ok(())) => h.extra.needs_flush = false,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return progress(moved),
            }
        }
        // 3. EOF passed on once everything before it was.
        if h.eof {
            return match Pin::new(&mut *dst).poll_shutdown(cx) {
                // The peer may already be gone; the other direction reports that.
                Poll::Ready(_) => {
                    h.shut = true;
                    Poll::Ready(Ok(()))
                }
                Poll::Pending => progress(moved),
            };
        }
        // 4. Read into the thread's buffer and write on at once.
        let read = BUF.with(|cell| {
            let mut buf = cell.borrow_mut();
            let mut rb = ReadBuf::new(&mut buf[..]);
            match Pin::new(&mut *src).poll_read(cx, &mut rb) {
                Poll::Pending => Poll::Pending,
                // A TLS peer that closes without close_notify: an ordinary close here.
                Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::UnexpectedEof => {
                    Poll::Ready(Ok(0))
                }
                Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
                Poll::Ready(Ok(())) => {
                    let data = rb.filled();
                    let n = data.len();
                    let mut off = 0;
                    while off < n {
                        let rest = data.get(off..).unwrap_or_default();
                        match Pin::new(&mut *dst).poll_write(cx, rest) {
                            Poll::Ready(Ok(0)) => {
                                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                            }
                            Poll::Ready(Ok(k)) => {
                                off += k;
                                h.extra.needs_flush = true;
                            }
                            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                            Poll::Pending => break,
                        }
                    }
                    if off < n {
                        h.pending
                            .extend_from_slice(data.get(off..).unwrap_or_default());
                        h.offset = 0;
                    }
                    Poll::Ready(Ok(n))
                }
            }
        });
        match read {
            Poll::Pending => return progress(moved),
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Ready(Ok(0)) => h.eof = true,
            Poll::Ready(Ok(n)) => h.bytes += n as u64,
        }
        moved = true;
    }
    // More may be readable: yield so the other direction and other tasks get a turn, and
    // come back at once.
    cx.waker().wake_by_ref();
    progress(moved)
}
