//! The HTTP access log: one line per request (or per WebSocket session), nginx `combined`
//! or JSON.
//!
//! The writer is the process's shared one (`portico_net::access_log`: one writer thread per
//! target, shared with the stream plane's lines, never blocking the request path, reopened
//! together on log rotation); this module adds the HTTP records ([`LogRecord`], [`WsLog`])
//! and their formats ([`format`](mod@format): see there for the exact `combined` layout).

pub mod format;

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use portico_config::{AccessLogFormat, AccessLogTarget};

pub use portico_net::access_log::reopen_all;

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
    /// `X-Request-Id` (made or kept by Portico, see `request::id`).
    pub request_id: Option<&'a str>,
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

/// A handle to the access log; cheap to clone, shared by all connections: the shared
/// writer's handle ([`portico_net::access_log::AccessLog`]) plus the HTTP record formats.
#[derive(Debug, Clone)]
pub struct AccessLog(portico_net::access_log::AccessLog);

impl From<portico_net::access_log::AccessLog> for AccessLog {
    fn from(log: portico_net::access_log::AccessLog) -> AccessLog {
        AccessLog(log)
    }
}

impl AccessLog {
    /// Open the target (a file is created if needed and appended to) and start its writer,
    /// or join the writer already running for that target in this process.
    pub fn open(target: &AccessLogTarget, format: AccessLogFormat) -> io::Result<AccessLog> {
        portico_net::access_log::AccessLog::open(target, format).map(AccessLog)
    }

    /// A log that records nothing.
    pub fn off() -> AccessLog {
        AccessLog(portico_net::access_log::AccessLog::off())
    }

    /// Whether lines are written at all (callers may skip building a record when not).
    pub fn enabled(&self) -> bool {
        self.0.enabled()
    }

    /// The format lines are written in.
    pub fn format(&self) -> AccessLogFormat {
        self.0.format()
    }

    /// Format and queue one line; never blocks. Dropped (and counted) if the writer is behind.
    pub fn log(&self, rec: &LogRecord<'_>) {
        self.0.log_with(|format, line| match format {
            AccessLogFormat::Combined => format::combined(rec, line),
            AccessLogFormat::Json => format::json(rec, line),
        });
    }

    /// Queue one line that `build` appends (see `portico_net::access_log::AccessLog::log_with`).
    pub fn log_with(&self, build: impl FnOnce(AccessLogFormat, &mut String)) {
        self.0.log_with(build);
    }

    /// Lines dropped so far because the shared writer could not keep up.
    pub fn dropped(&self) -> u64 {
        self.0.dropped()
    }

    /// Reopen a file target (after log rotation moved it away), for every handle on it.
    pub fn reopen(&self) {
        self.0.reopen();
    }

    /// Wait (blocking, up to `timeout`) until every line queued before this call is written.
    pub fn flush(&self, timeout: Duration) -> bool {
        self.0.flush(timeout)
    }
}
