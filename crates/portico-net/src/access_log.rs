//! The access-log writer both planes share: one writer thread per target in the process.
//!
//! The request path only formats its line into a per-call buffer ([`AccessLog::log_with`]:
//! each plane formats its own records) and hands it to a bounded channel (`try_send`: never
//! blocks, never takes a lock shared by all lines). A dedicated writer thread drains the
//! channel in batches and writes them to stdout, stderr or an append-mode file, flushing
//! after every batch — so a line reaches its target within milliseconds under light load and
//! writes are large under heavy load. When the channel is full the line is dropped and
//! counted; the writer warns about drops at most every 10 s.
//!
//! There is one writer per target in the process: every [`AccessLog::open`] of the same
//! target (the HTTP plane's, the stream plane's) shares it, so their lines are never
//! interleaved mid-line, go through the same file handle, and [`AccessLog::reopen`] (or
//! [`reopen_all`], for log rotation) moves all of them to the new file at once. Dropping the
//! last handle on a writer drains, flushes and joins it. [`Civil`] breaks a time into the
//! UTC fields the line formats print.

mod time;
mod writer;

use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use portico_config::{AccessLogFormat, AccessLogTarget};
use writer::{Msg, Sink};

pub use time::Civil;

/// Lines buffered between the request path and the writer thread.
const CHANNEL_LINES: usize = 16 * 1024;

/// Which target a writer serves (files by absolute path, so two spellings of one path share).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Key {
    Stdout,
    Stderr,
    File(PathBuf),
}

impl Key {
    /// `None` for `off`.
    fn of(target: &AccessLogTarget) -> Option<Key> {
        Some(match target {
            AccessLogTarget::Off => return None,
            AccessLogTarget::Stdout => Key::Stdout,
            AccessLogTarget::Stderr => Key::Stderr,
            AccessLogTarget::File(p) => {
                Key::File(std::path::absolute(p).unwrap_or_else(|_| p.clone()))
            }
        })
    }
}

/// One writer thread and the channel to it, shared by every handle on its target.
struct Writer {
    key: Key,
    tx: Option<SyncSender<Msg>>,
    dropped: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Writer {
    fn drop(&mut self) {
        // Closing the channel makes the writer drain, flush and exit.
        self.tx = None;
        if let Some(w) = self.thread.take() {
            let _ = w.join();
        }
    }
}

/// The writers alive in this process (at most one per target); dead entries are pruned on
/// open.
static WRITERS: Mutex<Vec<Weak<Writer>>> = Mutex::new(Vec::new());

fn writers() -> std::sync::MutexGuard<'static, Vec<Weak<Writer>>> {
    WRITERS.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Writer {
    /// The running writer of `key`, or a new one on `target`.
    fn for_target(target: &AccessLogTarget, key: Key) -> io::Result<Arc<Writer>> {
        let mut all = writers();
        all.retain(|w| w.strong_count() > 0);
        if let Some(w) = all.iter().filter_map(Weak::upgrade).find(|w| w.key == key) {
            return Ok(w);
        }
        let Some(sink) = Sink::open(target)? else {
            return Err(io::Error::other("the access log target is off"));
        };
        let (tx, rx) = sync_channel(CHANNEL_LINES);
        let dropped = Arc::new(AtomicU64::new(0));
        let counter = dropped.clone();
        let thread = std::thread::Builder::new()
            .name("portico-access-log".into())
            .spawn(move || writer::run(rx, sink, &counter))?;
        let w = Arc::new(Writer {
            key,
            tx: Some(tx),
            dropped,
            thread: Some(thread),
        });
        all.push(Arc::downgrade(&w));
        Ok(w)
    }

    fn send(&self, line: Vec<u8>) {
        let Some(tx) = &self.tx else { return };
        match tx.try_send(Msg::Line(line)) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    fn reopen(&self) {
        if let Some(tx) = &self.tx {
            // A full channel only delays the reopen: the writer is busy and reopen is rare,
            // so wait for room in the background rather than lose the request.
            if let Err(TrySendError::Full(m)) = tx.try_send(Msg::Reopen) {
                let tx = tx.clone();
                std::thread::spawn(move || tx.send(m));
            }
        }
    }
}

/// Reopen every file access log of the process (after log rotation moved the files away):
/// what [`AccessLog::reopen`] does, for all targets at once. Never blocks.
pub fn reopen_all() {
    let live: Vec<Arc<Writer>> = writers().iter().filter_map(Weak::upgrade).collect();
    for w in &live {
        w.reopen();
    }
}

/// A handle to the access log; cheap to clone, shared by all connections.
#[derive(Clone)]
pub struct AccessLog {
    format: AccessLogFormat,
    writer: Option<Arc<Writer>>,
}

impl std::fmt::Debug for AccessLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessLog")
            .field("enabled", &self.enabled())
            .field("format", &self.format)
            .finish()
    }
}

impl AccessLog {
    /// Open the target (a file is created if needed and appended to) and start its writer,
    /// or join the writer already running for that target in this process.
    pub fn open(target: &AccessLogTarget, format: AccessLogFormat) -> io::Result<AccessLog> {
        let Some(key) = Key::of(target) else {
            return Ok(AccessLog::off());
        };
        Ok(AccessLog {
            format,
            writer: Some(Writer::for_target(target, key)?),
        })
    }

    /// A log that records nothing.
    pub fn off() -> AccessLog {
        AccessLog {
            format: AccessLogFormat::Combined,
            writer: None,
        }
    }

    /// Whether lines are written at all (callers may skip building a record when not).
    pub fn enabled(&self) -> bool {
        self.writer.is_some()
    }

    /// The format lines are written in.
    pub fn format(&self) -> AccessLogFormat {
        self.format
    }

    /// Queue one line that `build` appends to an empty buffer, in the given format, with its
    /// trailing newline. `build` is not called when the log is off. Never blocks: the line is
    /// dropped (and counted) if the writer is behind.
    pub fn log_with(&self, build: impl FnOnce(AccessLogFormat, &mut String)) {
        let Some(w) = &self.writer else { return };
        let mut line = String::with_capacity(256);
        build(self.format, &mut line);
        w.send(line.into_bytes());
    }

    /// Lines dropped so far because the writer (shared by every handle on this target) could
    /// not keep up.
    pub fn dropped(&self) -> u64 {
        self.writer
            .as_ref()
            .map_or(0, |w| w.dropped.load(Ordering::Relaxed))
    }

    /// Reopen a file target (after log rotation moved it away), for every handle on it; lines
    /// queued before this call go to the old file. Never blocks; a failure is logged and the
    /// old file kept. No-op for stdout, stderr and off.
    pub fn reopen(&self) {
        if let Some(w) = &self.writer {
            w.reopen();
        }
    }

    /// Wait (blocking, up to `timeout`) until every line queued before this call is written.
    /// Returns false on timeout. Meant for shutdown and tests, not the request path.
    pub fn flush(&self, timeout: Duration) -> bool {
        let Some(tx) = self.writer.as_ref().and_then(|w| w.tx.as_ref()) else {
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn lines(path: &std::path::Path) -> Vec<String> {
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .map(String::from)
            .collect()
    }

    /// Two handles on one file (as the HTTP and stream planes open it) share one writer:
    /// one reopen moves both, and `reopen_all` does too.
    #[test]
    fn handles_on_one_target_share_the_writer_and_its_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.log");
        let target = AccessLogTarget::File(path.clone());
        let http = AccessLog::open(&target, AccessLogFormat::Combined).unwrap();
        let stream = AccessLog::open(&target, AccessLogFormat::Json).unwrap();
        assert!(Arc::ptr_eq(
            http.writer.as_ref().unwrap(),
            stream.writer.as_ref().unwrap()
        ));
        assert_eq!(stream.format(), AccessLogFormat::Json);
        // Another file is another writer.
        let other = AccessLog::open(
            &AccessLogTarget::File(dir.path().join("other.log")),
            AccessLogFormat::Combined,
        )
        .unwrap();
        assert!(!Arc::ptr_eq(
            http.writer.as_ref().unwrap(),
            other.writer.as_ref().unwrap()
        ));

        let line = |log: &AccessLog, text: &'static str| {
            log.log_with(|format, out| {
                out.push_str(&format!("{text} {format:?}\n"));
            });
        };
        line(&http, "h1");
        line(&stream, "s1");
        assert!(http.flush(Duration::from_secs(5)));
        std::fs::rename(&path, dir.path().join("access.log.1")).unwrap();
        // Reopening through the HTTP handle moves the stream handle's lines too.
        http.reopen();
        line(&stream, "s2");
        line(&http, "h2");
        assert!(stream.flush(Duration::from_secs(5)));
        assert_eq!(
            lines(&dir.path().join("access.log.1")),
            ["h1 Combined", "s1 Json"]
        );
        assert_eq!(lines(&path), ["s2 Json", "h2 Combined"]);

        std::fs::rename(&path, dir.path().join("access.log.2")).unwrap();
        reopen_all();
        line(&stream, "s3");
        assert!(stream.flush(Duration::from_secs(5)));
        assert_eq!(lines(&path), ["s3 Json"]);
        assert_eq!(http.dropped(), 0);
    }

    /// Once every handle is gone the writer is closed (its lines written) and forgotten: a
    /// new open starts a new one.
    #[test]
    fn last_handle_closes_the_writer() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.log");
        let target = AccessLogTarget::File(path.clone());
        let log = AccessLog::open(&target, AccessLogFormat::Combined).unwrap();
        let weak = Arc::downgrade(log.writer.as_ref().unwrap());
        log.log_with(|_, out| out.push_str("last\n"));
        drop(log);
        assert!(weak.upgrade().is_none());
        assert_eq!(lines(&path), ["last"]);
        let again = AccessLog::open(&target, AccessLogFormat::Combined).unwrap();
        assert!(again.enabled());
        assert!(
            !AccessLog::open(&AccessLogTarget::Off, AccessLogFormat::Json)
                .unwrap()
                .enabled()
        );
    }
}
