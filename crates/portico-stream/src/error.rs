//! Errors of the L4 data plane: start-up failures ([`StreamError`]) and the reasons one
//! connection's preamble is refused ([`SniError`]; a bad PROXY header is
//! `portico_net::proxy_protocol::ProxyHeaderError`).

use std::net::SocketAddr;

/// Start-up failures; the binary maps them to exit status 2.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    /// The cause is the error's `source()` (printed by the binary's error chain).
    #[error("cannot listen on {addr}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot resolve server {addr} of upstream {upstream}: {reason}")]
    Resolve {
        upstream: String,
        addr: String,
        reason: String,
    },
    #[error("stream #{stream} refers to upstream {upstream}, which is not defined")]
    UnknownUpstream { stream: usize, upstream: String },
    /// The certificate files of a stream's `tls` cannot be used (`stream` counts from 1,
    /// as `portico check` does).
    #[error("stream #{stream}: tls: {source}")]
    Tls {
        stream: usize,
        source: portico_tls::TlsError,
    },
    #[error(
        "stream #{stream}: tls = \"acme\" is not available on streams (no names to order a certificate for); use certificate files"
    )]
    TlsAcme { stream: usize },
    /// The TLS client side of an upstream with `tls` cannot be built (a `ca_file` or client
    /// certificate cannot be used, a bad `server_name`).
    #[error("upstream {upstream}: tls: {source}")]
    UpstreamTls {
        upstream: String,
        source: portico_tls::TlsError,
    },
    /// The worker threads or the access log of a stream plane started alone.
    #[error(transparent)]
    Plumbing(#[from] portico_net::PlumbingError),
}

/// Why a TLS ClientHello could not be routed by SNI.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SniError {
    #[error("not a TLS handshake")]
    NotTls,
    #[error("malformed ClientHello: {0}")]
    Malformed(&'static str),
    #[error("ClientHello larger than the peek limit")]
    TooLong,
}
