//! Portico data plane: listeners (plain and TLS), client connections (HTTP/1.1, HTTP/2 over
//! TLS), routing, the HTTP and WebSocket reverse proxy (plain or TLS to the servers), static
//! files and the access log.
//!
//! TLS: [`Server::start_with_tls`] takes a [`TlsContext`] from a running
//! `portico_tls::TlsRuntime` (certificates by SNI, HTTP-01 answers); see [`tls_conn`]
//! (handshake, ALPN), [`https`] (421, `http_redirect`, ACME HTTP-01, `hsts`), [`tls`]
//! (upstream TLS) and [`ws_tls_pipe`] (WebSockets with a TLS side).
//!
//! Data comes in as a validated [`portico_config::Config`] and the balance
//! [`portico_balance::Registry`] (live per-server state); [`Server::start`] compiles them
//! into a snapshot, binds the listeners and runs one worker thread per core. The request
//! path is composed in [`handler`]; each phase has its own module:
//! [`accept`] -> [`conn`] -> [`route`] -> [`forward`] / [`upstream`] / [`websocket`] ->
//! [`bodies`] -> [`log`].
//!
//! [`RunningServer::reload`] ([`reload`]) applies a new config to the running server: the
//! new snapshot is published through the same `ArcSwap`, listeners are diffed by address
//! (kept ones never re-bound), and only what disappeared is drained ([`drain`]: a removed
//! listener's connections, the WebSockets of a removed server).

pub mod access_log;
pub mod actions;
pub mod body;
mod client;
pub mod error;
mod exchange;
mod proto;
mod request;
mod server;
mod snapshot;
mod upstream;
mod websocket;
mod worker;

/// Internal parsers reachable by the fuzz targets (`fuzz/`) only; not an API.
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing {
    pub use crate::proto::framing::HeadScan;
}

pub use error::{ProxyError, Side};
pub use proto::ws_frame;
pub use server::reload::{ReloadError, ReloadOutcome};
pub use server::start::{RunningServer, Server};
pub use snapshot::tls::TlsContext;
