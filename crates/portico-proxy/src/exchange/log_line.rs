//! Access-log phase: what a request or WebSocket session records while it runs, written as
//! one line (through [`crate::access_log`]) when it ends.
//!
//! Built only when the access log is enabled, so a disabled log costs one branch.

use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};

use http::header::{HOST, REFERER, USER_AGENT};
use http::{HeaderValue, Method, Uri, Version};

use crate::access_log::{AccessLog, LogRecord, WsLog};

/// A log line in the making; written on drop.
pub(crate) struct LogCtx {
    log: AccessLog,
    client: SocketAddr,
    start: SystemTime,
    started: Instant,
    method: Method,
    uri: Uri,
    version: Version,
    host: Option<HeaderValue>,
    referer: Option<HeaderValue>,
    user_agent: Option<HeaderValue>,
    /// The request's `X-Request-Id` (set by the request path: a made ID is not in the
    /// request's header map).
    pub request_id: Option<HeaderValue>,
    pub status: u16,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    pub upstream_addr: Option<SocketAddr>,
    pub upstream_time: Option<Duration>,
    pub websocket: Option<WsLog>,
}

impl LogCtx {
    /// Start a record for `req` when logging is on.
    pub fn start<B>(
        log: &AccessLog,
        client: SocketAddr,
        req: &http::Request<B>,
    ) -> Option<Box<LogCtx>> {
        if !log.enabled() {
            return None;
        }
        let h = req.headers();
        Some(Box::new(LogCtx {
            log: log.clone(),
            client,
            start: SystemTime::now(),
            started: Instant::now(),
            method: req.method().clone(),
            uri: req.uri().clone(),
            version: req.version(),
            host: h.get(HOST).cloned(),
            referer: h.get(REFERER).cloned(),
            user_agent: h.get(USER_AGENT).cloned(),
            request_id: None,
            status: 0,
            bytes_sent: 0,
            bytes_received: 0,
            upstream_addr: None,
            upstream_time: None,
            websocket: None,
        }))
    }
}

fn text(v: &Option<HeaderValue>) -> Option<&str> {
    v.as_ref().and_then(|v| v.to_str().ok())
}

impl Drop for LogCtx {
    fn drop(&mut self) {
        let uri = self.uri.path_and_query().map_or("/", |pq| pq.as_str());
        let rec = LogRecord {
            client: self.client,
            start: self.start,
            method: self.method.as_str(),
            uri,
            version: self.version,
            host: text(&self.host).unwrap_or("-"),
            status: self.status,
            bytes_sent: self.bytes_sent,
            bytes_received: self.bytes_received,
            referer: text(&self.referer),
            user_agent: text(&self.user_agent),
            request_id: text(&self.request_id),
            upstream_addr: self.upstream_addr,
            upstream_time: self.upstream_time,
            request_time: self.started.elapsed(),
            websocket: self.websocket.take(),
        };
        self.log.log(&rec);
    }
}
