//! The byte pipe between a client and a server, both directions, with half-close, an idle
//! timeout and a stop signal.
//!
//! Memory: an idle connection holds no data buffer. Each direction waits for readiness
//! (`readable()`), then `try_read`s into one 64 KiB buffer per worker thread and
//! `try_write`s it on at once; only when the destination cannot take everything is the
//! remainder copied into a buffer owned by the connection, which is freed as soon as it
//! drains (and the source is not read meanwhile: back-pressure). No await happens while
//! the per-thread buffer is borrowed, so tasks moving between threads are fine.
//!
//! Bulk: after a read fills the whole 64 KiB buffer, that direction switches to splice(2)
//! through a kernel pipe (`splice.rs`) until the burst ends; `PORTICO_STREAM_SPLICE=0`
//! keeps the copy path (for comparison).
//!
//! The loop around the steps (ends, idle timeout, stop) is `duplex.rs`', shared with
//! `tls_pipe.rs`; this file is the plain sockets' step.

use std::cell::RefCell;
use std::io;
use std::net::Shutdown;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::sync::watch;

use crate::duplex::{self, PipeResult, Sides};
use crate::splice::KernelPipe;

const BUF_SIZE: usize = 64 * 1024;
/// Reads per readiness event before yielding to the other direction (fairness).
const READS_PER_WAKE: usize = 4;

thread_local! {
    static BUF: RefCell<Vec<u8>> = RefCell::new(vec![0; BUF_SIZE]);
}

/// One direction's state (the copy buffer is empty, with no capacity, in the common case).
type Half = duplex::Half<Bulk>;

/// A plain direction's own state.
#[derive(Debug, Default)]
struct Bulk {
    /// During a bulk burst: the kernel pipe bytes go through (see `splice.rs`).
    kpipe: Option<KernelPipe>,
}

impl Half {
    fn can_read(&self) -> bool {
        !self.eof && !self.has_pending()
    }

    fn has_pending(&self) -> bool {
        !self.pending.is_empty() || self.extra.kpipe.as_ref().is_some_and(|k| k.len > 0)
    }
}

/// Two plain sockets.
struct Plain<'a> {
    client: &'a TcpStream,
    server: &'a TcpStream,
}

impl Sides for Plain<'_> {
    type Extra = Bulk;
    const KIND: &'static str = "plain";

    /// Wait for the readiness a direction needs (readable while it may read, writable while
    /// it holds pending bytes), then read and write on, or flush.
    async fn step(&mut self, up: &mut Half, down: &mut Half) -> io::Result<bool> {
        let (client, server) = (self.client, self.server);
        tokio::select! {
            r = client.readable(), if up.can_read() => r.and_then(|()| read_side(client, server, up)),
            r = server.readable(), if down.can_read() => r.and_then(|()| read_side(server, client, down)),
            r = server.writable(), if up.has_pending() => r.and_then(|()| flush(server, up)),
            r = client.writable(), if down.has_pending() => r.and_then(|()| flush(client, down)),
            // Not reached: a direction that is not shut can read or has pending bytes.
            else => std::future::pending().await,
        }
    }
}

/// Copy both ways until both sides closed, one side failed, `idle` passed with no byte
/// moved, or `stop` turns true.
pub async fn pipe(
    client: &TcpStream,
    server: &TcpStream,
    idle: Duration,
    stop: watch::Receiver<bool>,
) -> PipeResult {
    duplex::run(&mut Plain { client, server }, idle, stop).await
}

/// Whether bulk bursts use splice(2) (`PORTICO_STREAM_SPLICE=0` turns it off, to compare).
fn splice_enabled() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    !SPLICE_UNSUPPORTED.load(std::sync::atomic::Ordering::Relaxed)
        && *ON.get_or_init(|| std::env::var("PORTICO_STREAM_SPLICE").map_or(true, |v| v != "0"))
}

/// Set when the kernel refuses splice(2) for sockets (EINVAL/ENOSYS, e.g. a sandbox): the
/// copy path is used from then on.
static SPLICE_UNSUPPORTED: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(false);

fn splice_refused(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EINVAL | libc::ENOSYS | libc::EOPNOTSUPP)
    )
}

/// Read what `src` has and pass it to `dst`. `Ok(true)` when bytes (or EOF) moved.
fn read_side(src: &TcpStream, dst: &TcpStream, half: &mut Half) -> io::Result<bool> {
    if half.extra.kpipe.is_some() {
        return splice_side(src, dst, half);
    }
    BUF.with(|cell| {
        let mut buf = cell.borrow_mut();
        let mut moved = false;
        for _ in 0..READS_PER_WAKE {
            let n = match src.try_read(&mut buf) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(moved),
                Err(e) => return Err(e),
            };
            moved = true;
            if n == 0 {
                half.eof = true;
                shut_write(dst, half);
                return Ok(true);
            }
            half.bytes += n as u64;
            let written = write_some(dst, &buf[..n])?;
            if written < n {
                half.pending.extend_from_slice(&buf[written..n]);
                half.offset = 0;
                return Ok(true);
            }
            if n < buf.len() {
                // The socket is most likely drained; let readiness say when there is more.
                return Ok(true);
            }
            if splice_enabled() {
                // A full buffer: a bulk burst. Splice the rest of it (no pipe if that fails).
                half.extra.kpipe = KernelPipe::new().ok();
                return Ok(true);
            }
        }
        Ok(moved)
    })
}

/// The bulk path: socket -> kernel pipe -> socket.
fn splice_side(src: &TcpStream, dst: &TcpStream, half: &mut Half) -> io::Result<bool> {
    let mut moved = false;
    for _ in 0..READS_PER_WAKE {
        let Some(kp) = half.extra.kpipe.as_mut() else {
            return Ok(moved);
        };
        let n = match kp.fill(src, BUF_SIZE) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(moved),
            Err(e) if splice_refused(&e) => {
                // Fall back to copying; the pipe is empty, nothing is lost.
                tracing::debug!(error = %e, "splice(2) refused; copying instead");
                SPLICE_UNSUPPORTED.store(true, std::sync::atomic::Ordering::Relaxed);
                half.extra.kpipe = None;
                return Ok(moved);
            }
            Err(e) => return Err(e),
        };
        moved = true;
        if n == 0 {
            half.extra.kpipe = None;
            half.eof = true;
            shut_write(dst, half);
            return Ok(true);
        }
        half.bytes += n as u64;
        drain_pipe(dst, half)?;
        if half.has_pending() {
            return Ok(true);
        }
        if n < BUF_SIZE / 2 {
            // The burst ended: give the two descriptors back.
            half.extra.kpipe = None;
            return Ok(true);
        }
    }
    Ok(moved)
}

/// Splice what the pipe holds into `dst`, as far as it takes.
fn drain_pipe(dst: &TcpStream, half: &mut Half) -> io::Result<usize> {
    let Some(kp) = half.extra.kpipe.as_mut() else {
        return Ok(0);
    };
    let mut total = 0;
    while kp.len > 0 {
        match kp.drain(dst) {
            Ok(n) => total += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) => return Err(e),
        }
    }
    Ok(total)
}

/// Write as much as `dst` takes now.
fn write_some(dst: &TcpStream, mut data: &[u8]) -> io::Result<usize> {
    let mut total = 0;
    while !data.is_empty() {
        match dst.try_write(data) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => {
                total += n;
                data = &data[n..];
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) => return Err(e),
        }
    }
    Ok(total)
}

/// Write pending bytes; free the buffer once empty.
fn flush(dst: &TcpStream, half: &mut Half) -> io::Result<bool> {
    if half.extra.kpipe.as_ref().is_some_and(|k| k.len > 0) {
        let n = drain_pipe(dst, half)?;
        return Ok(n > 0);
    }
    let n = write_some(dst, &half.pending[half.offset..])?;
    half.offset += n;
    if half.offset == half.pending.len() {
        half.pending = Vec::new();
        half.offset = 0;
        if half.eof {
            shut_write(dst, half);
        }
    }
    Ok(n > 0)
}

fn shut_write(dst: &TcpStream, half: &mut Half) {
    if !half.has_pending() && !half.shut {
        // The peer may already be gone; the other direction reports that.
        let _ = socket2::SockRef::from(dst).shutdown(Shutdown::Write);
        half.shut = true;
    }
}
