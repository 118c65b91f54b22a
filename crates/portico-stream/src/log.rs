//! The stream access log: one line per connection, written when it ends, to
//! `[server] access_log` in `access_log_format` (text for `combined`, or JSON).
//!
//! Lines go through the process's shared writer (`portico_net::access_log::AccessLog`, the
//! HTTP plane's too): one writer thread per target in the process, so HTTP and stream lines
//! share one file handle, are never interleaved mid-line, never block a connection task, and
//! follow a reopen (log rotation) together.
//!
//! Text: `CLIENT [TIME] stream#N LISTEN -> UPSTREAM SERVER sent=N received=N duration=S end=REASON`
//! (`-` for an unknown upstream or server). JSON keys: `time client stream listen upstream
//! server sent received duration_ms end`.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use portico_config::AccessLogFormat;
use portico_net::access_log::Civil;

/// How a connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    ClientClosed,
    ServerClosed,
    IdleTimeout,
    ConnectFailed,
    /// Connecting to the server failed for lack of a local resource (descriptors, buffers):
    /// Portico's shortage, not the server's.
    LocalResources,
    NoServer,
    BadProxyHeader,
    /// `accept_proxy_protocol` with `[server] trusted_proxies` set, and the peer is not in
    /// it: its PROXY header is not believed, the connection is closed unread.
    UntrustedProxy,
    NoSniRoute,
    /// The TLS handshake failed or timed out (streams with `tls`).
    TlsFailed,
    Shutdown,
    Error,
}

impl End {
    pub fn as_str(self) -> &'static str {
        match self {
            End::ClientClosed => "client_closed",
            End::ServerClosed => "server_closed",
            End::IdleTimeout => "idle_timeout",
            End::ConnectFailed => "connect_failed",
            End::LocalResources => "local_resources",
            End::NoServer => "no_server",
            End::BadProxyHeader => "bad_proxy_header",
            End::UntrustedProxy => "untrusted_proxy",
            End::NoSniRoute => "no_sni_route",
            End::TlsFailed => "tls_failed",
            End::Shutdown => "shutdown",
            End::Error => "error",
        }
    }
}

/// One connection's record.
#[derive(Debug, Clone)]
pub struct Record {
    pub client: SocketAddr,
    pub stream: usize,
    pub listen: SocketAddr,
    pub upstream: Option<String>,
    pub server: Option<SocketAddr>,
    /// Client -> server bytes.
    pub sent: u64,
    /// Server -> client bytes.
    pub received: u64,
    pub duration: Duration,
    pub end: End,
}

pub use portico_net::access_log::AccessLog;

/// Queue `r`'s line on `log` (timestamped now); never blocks.
pub fn write(log: &AccessLog, r: &Record) {
    log.log_with(|format, out| push_record(r, format, SystemTime::now(), out));
}

/// The line for `r` (newline included).
pub fn format_record(r: &Record, format: AccessLogFormat, now: SystemTime) -> String {
    let mut out = String::with_capacity(160);
    push_record(r, format, now, &mut out);
    out
}

/// Append the line for `r` (newline included) to `out`.
fn push_record(r: &Record, format: AccessLogFormat, now: SystemTime, out: &mut String) {
    let time = rfc3339(now);
    let upstream = r.upstream.as_deref().unwrap_or("-");
    let server = r.server.map_or_else(|| "-".to_string(), |s| s.to_string());
    match format {
        AccessLogFormat::Combined => {
            let _ = writeln!(
                out,
                "{} [{time}] stream#{} {} -> {upstream} {server} sent={} received={} duration={:.3} end={}",
                r.client,
                r.stream,
                r.listen,
                r.sent,
                r.received,
                r.duration.as_secs_f64(),
                r.end.as_str()
            );
        }
        AccessLogFormat::Json => {
            // Every value is an address, a number or a fixed word, except the upstream name
            // (letters, digits, `_-.` by validation): nothing needs escaping.
            let _ = writeln!(
                out,
                "{{\"time\":\"{time}\",\"client\":\"{}\",\"stream\":{},\"listen\":\"{}\",\"upstream\":\"{upstream}\",\"server\":\"{server}\",\"sent\":{},\"received\":{},\"duration_ms\":{},\"end\":\"{}\"}}",
                r.client,
                r.stream,
                r.listen,
                r.sent,
                r.received,
                r.duration.as_millis(),
                r.end.as_str()
            );
        }
    }
}

/// `2026-11-21T06:30:00Z` (UTC, whole seconds), from the HTTP access log's calendar fields.
fn rfc3339(t: SystemTime) -> String {
    let c = Civil::from_system(t);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        c.year, c.month, c.day, c.hour, c.minute, c.second
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    #[test]
    fn dates() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        let t = UNIX_EPOCH + Duration::from_secs(1_795_242_600); // 2026-11-21T06:30:00Z
        assert_eq!(rfc3339(t), "2026-11-21T06:30:00Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(rfc3339(leap), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn lines() {
        let r = Record {
            client: "127.0.0.2:5000".parse().unwrap(),
            stream: 0,
            listen: "0.0.0.0:6201".parse().unwrap(),
            upstream: Some("local_http".into()),
            server: Some("127.0.0.1:6101".parse().unwrap()),
            sent: 78,
            received: 1520,
            duration: Duration::from_millis(12),
            end: End::ClientClosed,
        };
        let t = UNIX_EPOCH + Duration::from_secs(1_795_242_600);
        assert_eq!(
            format_record(&r, AccessLogFormat::Combined, t),
            "127.0.0.2:5000 [2026-11-21T06:30:00Z] stream#0 0.0.0.0:6201 -> local_http 127.0.0.1:6101 sent=78 received=1520 duration=0.012 end=client_closed\n"
        );
        let j = format_record(&r, AccessLogFormat::Json, t);
        assert!(j.starts_with("{\"time\":\"2026-11-21T06:30:00Z\",\"client\":\"127.0.0.2:5000\""));
        assert!(
            j.ends_with("\"duration_ms\":12,\"end\":\"client_closed\"}\n"),
            "{j}"
        );
        let none = Record {
            upstream: None,
            server: None,
            end: End::NoSniRoute,
            ..r
        };
        assert!(format_record(&none, AccessLogFormat::Combined, t).contains("-> - - sent=78"));
    }
}
