//! The access log: one line per request (or per WebSocket session), nginx `combined` or JSON.
//!
//! The request path only formats the line into a per-call buffer and hands it to a bounded
//! channel (`try_send`: never blocks, never takes a lock shared by all lines). A dedicated
//! writer thread drains the channel in batches and writes them to stdout, stderr or an
//! append-mode file, flushing after every batch — so a line reaches its target within
//! milliseconds under light load and writes are large under heavy load. When the channel is
//! full the line is dropped and counted; the writer warns about drops at most every 10 s.
//! Dropping the last clone of an [`AccessLog`] drains, flushes and joins the writer.
//!
//! Formats are in [`format`]: see there for the exact `combined` layout.

pub mod format;
mod writer;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError, sync_channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use portico_config::{AccessLogFormat, AccessLogTarget};
use writer::{Msg, Sink};

/// Lines buffered between the request path and the writer thread.
const CHANNEL_LINES: usize = 16 * 1024;

/// Everything logged about one request.
#[derive(Debug, Clone)]
pub struct LogRecord<'a> {
    pub client: SocketAddr,
    /// When the request head was received.
    pub start: SystemTime,
    pub method: &'a str,
    pub uri: &'a str,
    pub version: http::Version,
    pub host: &'a str,
    pub status: u16,
    /// Response body bytes sent to the client.
    pub bytes_sent: u64,
    /// Request body bytes received from the client.
    pub bytes_received: u64,
    pub referer: Option<&'a str>,
    pub user_agent: Option<&'a str>,
    pub upstream_addr: Option<SocketAddr>,
    /// Time until the upstream response head arrived.
    pub upstream_time: Option<Duration>,
    /// Time from `start` until the last byte was sent (for a WebSocket: until it closed).
    pub request_time: Duration,
    pub websocket: Option<WsLog>,
}

/// The WebSocket part of a record, logged when the session ends.
#[derive(Debug, Clone)]
pub struct WsLog {
    pub client_to_server: u64,
    pub server_to_client: u64,
    pub duration: Duration,
    /// Who closed: e.g. `"client"`, `"server"`, `"proxy"`, `"timeout"`.
    pub closed_by: &'static str,
}

struct Inner {
    format: AccessLogFormat,
    tx: Option<SyncSender<Msg>>,
    dropped: Arc<AtomicU64>,
    writer: Option<JoinHandle<()>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Closing the channel makes the writer drain, flush and exit.
        self.tx = None;
        if let Some(w) = self.writer.take() {
            let _ = w.join();
        }
    }
}

/// A handle to the access log; cheap to clone, shared by all connections.
#[derive(Clone)]
pub struct AccessLog {
    inner: Option<Arc<Inner>>,
}

impl std::fmt::Debug for AccessLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessLog")
            .field("enabled", &self.enabled())
            .finish()
    }
}

impl AccessLog {
    /// Open the target (a file is created if needed and appended to) and start the writer.
    pub fn open(target: &AccessLogTarget, format: AccessLogFormat) -> io::Result<AccessLog> {
        let Some(sink) = Sink::open(target)? else {
            return Ok(AccessLog::off());
        };
        let (tx, rx) = sync_channel(CHANNEL_LINES);
        let dropped = Arc::new(AtomicU64::new(0));
        let counter = dropped.clone();
        let writer = std::thread::Builder::new()
            .name("portico-access-log".into())
            .spawn(move || writer::run(rx, sink, &counter))?;
        Ok(AccessLog {
            inner: Some(Arc::new(Inner {
                format,
                tx: Some(tx),
                dropped,
                writer: Some(writer),
            })),
        })
    }

    /// A log that records nothing.
    pub fn off() -> AccessLog {
        AccessLog { inner: None }
    }

    /// Whether lines are written at all (callers may skip building a record when not).
    pub fn enabled(&self) -> bool {
        self.inner.is_some()
    }

    /// Format and queue one line; never blocks. Dropped (and counted) if the writer is behind.
    pub fn log(&self, rec: &LogRecord<'_>) {
        let Some(inner) = &self.inner else { return };
        let Some(tx) = &inner.tx else { return };
        let mut line = String::with_capacity(256);
        match inner.format {
            AccessLogFormat::Combined => format::combined(rec, &mut line),
            AccessLogFormat::Json => format::json(rec, &mut line),
        }
        match tx.try_send(Msg::Line(line.into_bytes())) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                inner.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Lines dropped so far because the writer could not keep up.
    pub fn dropped(&self) -> u64 {
        self.inner
            .as_ref()
            .map_or(0, |i| i.dropped.load(Ordering::Relaxed))
    }

    /// Reopen a file target (after log rotation moved it away); lines queued before this call
    /// go to the old file. Never blocks; a failure is logged and the old file kept. No-op for
    /// stdout, stderr and off.
    pub fn reopen(&self) {
        if let Some(tx) = self.inner.as_ref().and_then(|i| i.tx.as_ref()) {
            // A full channel only delays nothing: the writer is busy and reopen is rare, so
            // wait for room in the background rather than lose the request.
            if let Err(TrySendError::Full(m)) = tx.try_send(Msg::Reopen) {
                let tx = tx.clone();
                std::thread::spawn(move || tx.send(m));
            }
        }
    }

    /// Wait (blocking, up to `timeout`) until every line queued before this call is written.
    /// Returns false on timeout. Meant for shutdown and tests, not the request path.
    pub fn flush(&self, timeout: Duration) -> bool {
        let Some(tx) = self.inner.as_ref().and_then(|i| i.tx.as_ref()) else {
            return true;
        };
        let (done_tx, done_rx) = sync_channel(1);
        let deadline = Instant::now() + timeout;
        let mut msg = Msg::Flush(done_tx);
        loop {
            match tx.try_send(msg) {
                Ok(()) => break,
                Err(TrySendError::Full(m)) if Instant::now() < deadline => {
                    msg = m;
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err(_) => return false,
            }
        }
        done_rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .is_ok()
    }
}
