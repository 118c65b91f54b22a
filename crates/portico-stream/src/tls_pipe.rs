//! The byte pipe after TLS termination: decrypted client bytes to the server and back, with
//! half-close, the stream's idle timeout and the stop signal (same ends as `pipe.rs`).
//!
//! Why not `pipe.rs`: its zero-idle-buffer design waits for socket readiness and reads the
//! socket directly (or splices), but TLS bytes must go through rustls' state, which owns its
//! own buffers. Here each direction is a plain copy loop with its own [`BUF_SIZE`] buffer,
//! allocated for the life of the connection. Memory per idle TLS stream is therefore about
//! 2 × 8 KiB of copy buffers plus rustls' connection state (its buffers are freed
//! when empty), against no buffer at all for a plain stream; see docs/configuration.md.
//!
//! Client EOF without a TLS `close_notify` (common) counts as an ordinary close. When the
//! server closes, the client gets `close_notify` and a FIN; when the client closes, the
//! server gets a FIN; the other direction keeps flowing until it closes too.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;

use crate::log::End;
use crate::pipe::PipeResult;
use crate::tls::ClientTls;

/// Copy buffer per direction. TLS records carry at most 16 KiB; 8 KiB reads keep idle memory
/// modest and still make large records.
pub(crate) const BUF_SIZE: usize = 8 * 1024;

/// Counters one direction updates while it runs (read even when the pipe is cut short).
#[derive(Debug, Default)]
struct Progress {
    bytes: AtomicU64,
    /// Milliseconds since the pipe started, at the last byte moved.
    last_ms: AtomicU64,
}

/// Copy both ways until both sides closed, one side failed, `idle` passed with no byte
/// moved, or `stop` turns true.
pub(crate) async fn tls_pipe(
    client: ClientTls,
    server: TcpStream,
    idle: Duration,
    mut stop: watch::Receiver<bool>,
) -> PipeResult {
    let started = Instant::now();
    let (mut cr, mut cw) = tokio::io::split(client);
    let (mut sr, mut sw) = server.into_split();
    let up_p = Progress::default();
    let down_p = Progress::default();
    let up = copy_half(&mut cr, &mut sw, &up_p, started);
    let down = copy_half(&mut sr, &mut cw, &down_p, started);
    tokio::pin!(up, down);
    let (mut up_done, mut down_done) = (false, false);
    let mut first_eof: Option<End> = None;
    let sleep = tokio::time::sleep(idle);
    tokio::pin!(sleep);
    let end = loop {
        if up_done && down_done {
            break first_eof.unwrap_or(End::ClientClosed);
        }
        if *stop.borrow_and_update() {
            break End::Shutdown;
        }
        let (result, side) = tokio::select! {
            r = &mut up, if !up_done => { up_done = true; (r, End::ClientClosed) }
            r = &mut down, if !down_done => { down_done = true; (r, End::ServerClosed) }
            () = &mut sleep => {
                let last = up_p.last_ms.load(Ordering::Relaxed).max(down_p.last_ms.load(Ordering::Relaxed));
                let deadline = started + Duration::from_millis(last) + idle;
                if Instant::now() >= deadline {
                    break End::IdleTimeout;
                }
                sleep.as_mut().reset(deadline.into());
                continue;
            }
            _ = stop.changed() => continue,
        };
        match result {
            Ok(()) => {
                first_eof.get_or_insert(side);
            }
            Err(e) => {
                tracing::debug!(error = %e, "stream TLS pipe error");
                break match e.kind() {
                    // A reset after one side closed normally still reads as that close.
                    io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe => {
                        first_eof.unwrap_or(End::Error)
                    }
                    _ => End::Error,
                };
            }
        }
    };
    PipeResult {
        sent: up_p.bytes.load(Ordering::Relaxed),
        received: down_p.bytes.load(Ordering::Relaxed),
        end,
    }
}

/// Copy `r` to `w` until EOF, then shut `w`'s write side down.
async fn copy_half<R, W>(r: &mut R, w: &mut W, p: &Progress, started: Instant) -> io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; BUF_SIZE];
    loop {
        let n = match r.read(&mut buf).await {
            Ok(n) => n,
            // A TLS peer that closes without close_notify: an ordinary close for a stream.
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => 0,
            Err(e) => return Err(e),
        };
        if n == 0 {
            // The peer may already be gone; the other direction reports that.
            let _ = w.shutdown().await;
            return Ok(());
        }
        let chunk = buf.get(..n).unwrap_or_default();
        w.write_all(chunk).await?;
        w.flush().await?;
        p.bytes.fetch_add(n as u64, Ordering::Relaxed);
        let ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        p.last_ms.store(ms, Ordering::Relaxed);
    }
}
