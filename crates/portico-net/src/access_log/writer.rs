//! The access log's writer thread: drains the channel in batches into the sink.
//!
//! One `write` + `flush` per batch; a batch is whatever is queued when the first line
//! arrives (capped at [`BATCH_BYTES`]), so latency stays low when idle and syscalls stay few
//! under load. Every [`TICK`] without lines it checks the drop counter and warns, at most
//! every [`WARN_EVERY`].

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender};
use std::time::{Duration, Instant};

use portico_config::AccessLogTarget;

/// A batch is written once it reaches this size (or the channel is empty).
const BATCH_BYTES: usize = 256 * 1024;
/// How long the writer waits for a line before checking its drop counter.
const TICK: Duration = Duration::from_millis(100);
/// Least time between two "lines dropped" warnings.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// What the request path sends to the writer.
pub(super) enum Msg {
    Line(Vec<u8>),
    /// Ack once everything queued before is written.
    Flush(SyncSender<()>),
    /// Reopen a file target (log rotation).
    Reopen,
}

/// Where lines go.
pub(super) enum Sink {
    Stdout,
    Stderr,
    File(PathBuf, File),
}

fn open_append(path: &PathBuf) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

impl Sink {
    /// `None` for `off`.
    pub(super) fn open(target: &AccessLogTarget) -> io::Result<Option<Sink>> {
        Ok(Some(match target {
            AccessLogTarget::Off => return Ok(None),
            AccessLogTarget::Stdout => Sink::Stdout,
            AccessLogTarget::Stderr => Sink::Stderr,
            AccessLogTarget::File(path) => Sink::File(path.clone(), open_append(path)?),
        }))
    }

    fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        match self {
            Sink::Stdout => {
                let mut out = io::stdout().lock();
                out.write_all(data).and_then(|()| out.flush())
            }
            Sink::Stderr => io::stderr().lock().write_all(data),
            Sink::File(_, f) => f.write_all(data),
        }
    }

    fn reopen(&mut self) {
        if let Sink::File(path, file) = self {
            match open_append(path) {
                Ok(f) => *file = f,
                Err(e) => tracing::warn!(
                    path = %path.display(), error = %e,
                    "access log: reopen failed; still writing to the old file"
                ),
            }
        }
    }
}

struct Writer {
    sink: Sink,
    batch: Vec<u8>,
    acks: Vec<SyncSender<()>>,
    failing: bool,
}

/// The thread body: runs until every sender is gone, then writes what is left.
pub(super) fn run(rx: Receiver<Msg>, sink: Sink, dropped: &AtomicU64) {
    let mut w = Writer {
        sink,
        batch: Vec::with_capacity(BATCH_BYTES),
        acks: Vec::new(),
        failing: false,
    };
    let mut reported = 0u64;
    let mut last_warn: Option<Instant> = None;
    loop {
        match rx.recv_timeout(TICK) {
            Ok(first) => {
                w.take(first);
                while w.batch.len() < BATCH_BYTES {
                    match rx.try_recv() {
                        Ok(m) => w.take(m),
                        Err(_) => break,
                    }
                }
                w.write_batch();
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
        let now_dropped = dropped.load(Ordering::Relaxed);
        if now_dropped > reported && last_warn.is_none_or(|t| t.elapsed() >= WARN_EVERY) {
            tracing::warn!(
                dropped = now_dropped - reported,
                total = now_dropped,
                "access log: writer behind, lines dropped"
            );
            reported = now_dropped;
            last_warn = Some(Instant::now());
        }
    }
    w.write_batch();
}

impl Writer {
    fn take(&mut self, m: Msg) {
        match m {
            Msg::Line(l) => self.batch.extend_from_slice(&l),
            Msg::Flush(ack) => self.acks.push(ack),
            Msg::Reopen => {
                self.write_batch();
                self.sink.reopen();
            }
        }
    }

    /// Write the batch, then acknowledge pending flushes.
    fn write_batch(&mut self) {
        if !self.batch.is_empty() {
            let res = self.sink.write_all(&self.batch);
            self.batch.clear();
            match res {
                Ok(()) => self.failing = false,
                Err(e) => {
                    if !self.failing {
                        tracing::warn!(error = %e, "access log: write failed; lines are lost until it works again");
                    }
                    self.failing = true;
                }
            }
        }
        for ack in self.acks.drain(..) {
            let _ = ack.try_send(());
        }
    }
}
