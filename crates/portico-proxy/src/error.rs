//! Proxy errors and the one mapping from error to HTTP status.
//!
//! Every failure on the data path is a [`ProxyError`]. It knows which side caused it
//! ([`Side`]), whether trying another server is safe ([`ProxyError::retry_safe`]) and which
//! status the client gets ([`ProxyError::status`]): connect refused/reset 502, timeout 504,
//! no usable server 503, body too large 413, bad request 400. Start-up failures (bind,
//! resolve, thread spawn) are errors too; the binary maps them to exit status 2.

use std::io;
use std::net::SocketAddr;

use http::{HeaderValue, Response, StatusCode, header};

use crate::body::Body;

/// Who caused an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The client sent something wrong or went away.
    Client,
    /// The upstream server refused, reset, timed out or is unusable.
    Upstream,
    /// Portico itself (start-up, resources).
    Internal,
}

/// Everything that can go wrong in the data plane.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// A listener address could not be bound (start-up).
    /// The cause is the error's `source()` (printed by the binary's error chain).
    #[error("cannot listen on {addr}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
    /// A server name did not resolve (start-up).
    #[error("cannot resolve server {addr} of upstream {upstream}: {reason}")]
    Resolve {
        upstream: String,
        addr: String,
        reason: String,
    },
    /// The access log target could not be opened.
    #[error("cannot open the access log: {0}")]
    AccessLog(#[source] io::Error),
    /// A worker thread or its runtime could not start.
    #[error("cannot start a worker: {0}")]
    Worker(#[source] io::Error),
    /// TLS could not be set up (start-up): an upstream's `tls`, a TLS listener without
    /// certificates, conflicting listener roles.
    #[error("TLS: {0}")]
    Tls(String),
    /// The TLS handshake with a server failed (certificate not trusted, wrong name, ...).
    #[error("TLS to {addr} failed: {reason}")]
    UpstreamTls { addr: SocketAddr, reason: String },
    /// The request's `Host` belongs to a site with another certificate than the one the
    /// TLS connection was made for (SNI).
    #[error("misdirected request")]
    Misdirected,
    /// Connecting to a server failed (refused, unreachable, reset).
    #[error("connect to {addr} failed: {source}")]
    Connect {
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
    /// Connecting to a server failed for lack of a local resource (`EMFILE`, `ENFILE`,
    /// `ENOBUFS`, `ENOMEM`): Portico's problem, not the server's (503, no passive-health
    /// failure, no retry).
    #[error("no local resources to connect to {addr}: {source}")]
    LocalResources {
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
    /// Connecting to a server took longer than `connect_timeout`.
    #[error("connect to {addr} timed out")]
    ConnectTimeout { addr: SocketAddr },
    /// The server did not answer within `read_timeout` / `send_timeout`.
    #[error("upstream {addr} timed out")]
    UpstreamTimeout { addr: SocketAddr },
    /// The server closed or reset the connection, or sent garbage.
    #[error("upstream {addr} failed: {reason}")]
    UpstreamBroken { addr: SocketAddr, reason: String },
    /// No server of the upstream can take the request.
    #[error("no usable server in upstream {0}")]
    NoServer(String),
    /// The request body is larger than the route's `max_body`.
    #[error("request body larger than {limit} bytes")]
    BodyTooLarge { limit: u64 },
    /// The request is malformed.
    #[error("bad request: {0}")]
    BadRequest(&'static str),
    /// The client's request body broke while it was forwarded.
    #[error("client request body failed")]
    ClientBody,
    /// The client's request body stalled (`send_timeout` between two reads) or did not
    /// finish within `read_timeout` of an early response it holds back (408; not the
    /// server's failure).
    #[error("client request body too slow")]
    ClientTimeout,
    /// No route matches the request.
    #[error("no route")]
    NoRoute,

    /// A traffic-policy setting could not be loaded (start-up, reload).
    #[error("{0}")]
    Policy(String),
}

impl ProxyError {
    /// The HTTP status the client gets for this error.
    pub fn status(&self) -> StatusCode {
        match self {
            ProxyError::Connect { .. }
            | ProxyError::UpstreamBroken { .. }
            | ProxyError::UpstreamTls { .. } => StatusCode::BAD_GATEWAY,
            ProxyError::Misdirected => StatusCode::MISDIRECTED_REQUEST,
            ProxyError::ConnectTimeout { .. } | ProxyError::UpstreamTimeout { .. } => {
                StatusCode::GATEWAY_TIMEOUT
            }
            ProxyError::NoServer(_) | ProxyError::LocalResources { .. } => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ProxyError::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ProxyError::BadRequest(_) | ProxyError::ClientBody => StatusCode::BAD_REQUEST,
            ProxyError::ClientTimeout => StatusCode::REQUEST_TIMEOUT,
            ProxyError::NoRoute => StatusCode::NOT_FOUND,
            ProxyError::Bind { .. }
            | ProxyError::Resolve { .. }
            | ProxyError::AccessLog(_)
            | ProxyError::Worker(_)
            | ProxyError::Tls(_)
            | ProxyError::Policy(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Which side caused the error.
    pub fn side(&self) -> Side {
        match self {
            ProxyError::Connect { .. }
            | ProxyError::ConnectTimeout { .. }
            | ProxyError::UpstreamTimeout { .. }
            | ProxyError::UpstreamBroken { .. }
            | ProxyError::UpstreamTls { .. }
            | ProxyError::NoServer(_) => Side::Upstream,
            ProxyError::Misdirected
            | ProxyError::BodyTooLarge { .. }
            | ProxyError::BadRequest(_)
            | ProxyError::ClientBody
            | ProxyError::ClientTimeout
            | ProxyError::NoRoute => Side::Client,
            ProxyError::Bind { .. }
            | ProxyError::Resolve { .. }
            | ProxyError::AccessLog(_)
            | ProxyError::Worker(_)
            | ProxyError::LocalResources { .. }
            | ProxyError::Tls(_)
            | ProxyError::Policy(_) => Side::Internal,
        }
    }

    /// Whether trying another server is safe for any request: the server never saw it.
    /// (Failures after the request was sent are retried only for idempotent requests
    /// without a body; the caller decides that.)
    pub fn retry_safe(&self) -> bool {
        matches!(
            self,
            ProxyError::Connect { .. }
                | ProxyError::ConnectTimeout { .. }
                | ProxyError::UpstreamTls { .. }
        )
    }

    /// Whether the failure counts against the server's passive health.
    pub fn is_server_failure(&self) -> bool {
        self.side() == Side::Upstream && !matches!(self, ProxyError::NoServer(_))
    }

    /// A failed connect: [`ProxyError::LocalResources`] when this process or host ran out of
    /// descriptors or buffers, else [`ProxyError::Connect`].
    pub fn connect(addr: SocketAddr, source: io::Error) -> ProxyError {
        let local = matches!(
            source.raw_os_error(),
            Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
        );
        if local {
            ProxyError::LocalResources { addr, source }
        } else {
            ProxyError::Connect { addr, source }
        }
    }

    /// The short plain-text response for this error.
    pub fn to_response(&self) -> Response<Body> {
        error_response(self.status())
    }
}

/// Marks a response as one of Portico's own errors (a site's `error_pages` may replace
/// its body).
#[derive(Debug, Clone, Copy)]
pub(crate) struct OwnError;

/// A short plain-text response with `status`: "502 Bad Gateway\n" and so on.
pub fn error_response(status: StatusCode) -> Response<Body> {
    let text: &'static str = match status.as_u16() {
        400 => "400 Bad Request\n",
        401 => "401 Unauthorized\n",
        403 => "403 Forbidden\n",
        404 => "404 Not Found\n",
        413 => "413 Payload Too Large\n",
        421 => "421 Misdirected Request\n",
        429 => "429 Too Many Requests\n",
        500 => "500 Internal Server Error\n",
        502 => "502 Bad Gateway\n",
        503 => "503 Service Unavailable\n",
        504 => "504 Gateway Timeout\n",
        _ => "error\n",
    };
    let mut resp = Response::new(Body::full(text));
    *resp.status_mut() = status;
    resp.extensions_mut().insert(OwnError);
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn one_mapping_from_error_to_status() {
        let addr: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let refused = ProxyError::Connect {
            addr,
            source: io::Error::from(io::ErrorKind::ConnectionRefused),
        };
        assert_eq!(refused.status(), StatusCode::BAD_GATEWAY);
        assert!(refused.retry_safe());
        assert_eq!(refused.side(), Side::Upstream);
        let timeout = ProxyError::UpstreamTimeout { addr };
        assert_eq!(timeout.status(), StatusCode::GATEWAY_TIMEOUT);
        assert!(!timeout.retry_safe());
        assert_eq!(ProxyError::NoServer("a".into()).status().as_u16(), 503);
        assert!(!ProxyError::NoServer("a".into()).is_server_failure());
        let addr: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let emfile = ProxyError::connect(addr, io::Error::from_raw_os_error(libc::EMFILE));
        assert!(matches!(emfile, ProxyError::LocalResources { .. }));
        assert!(!emfile.is_server_failure() && !emfile.retry_safe());
        assert_eq!(emfile.status(), StatusCode::SERVICE_UNAVAILABLE);
        let refused = ProxyError::connect(addr, io::Error::from_raw_os_error(libc::ECONNREFUSED));
        assert!(matches!(refused, ProxyError::Connect { .. }));
        assert!(refused.is_server_failure());
        let big = ProxyError::BodyTooLarge { limit: 1 };
        assert_eq!(big.status().as_u16(), 413);
        assert_eq!(big.side(), Side::Client);
        assert_eq!(ProxyError::BadRequest("x").status().as_u16(), 400);
    }

    #[test]
    fn error_bodies_are_short_plain_text() {
        let resp = error_response(StatusCode::BAD_GATEWAY);
        assert_eq!(resp.status(), 502);
        assert_eq!(
            resp.headers()[header::CONTENT_TYPE],
            "text/plain; charset=utf-8"
        );
    }
}
