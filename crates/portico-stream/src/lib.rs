//! Portico's L4 data plane: `[[streams]]` — TCP load balancing over the same
//! `[upstreams.NAME]` pools (balancers, passive health, live state in the shared
//! `portico_balance::Registry`) as the HTTP side.
//!
//! Data comes in on the stream listeners and leaves to the upstream servers. Per
//! connection (see `conn.rs`): optional PROXY header from the client ([`proxy_protocol`]),
//! optional SNI peek for TLS passthrough ([`sni`]) or the TLS handshake when the stream terminates TLS (`tls.rs`: `portico-tls`' resolver
//! and certificate-file poller, no ALPN), source-IP persistence ([`persist`]), connect with
//! retries, optional PROXY header to the server, the byte pipe (`pipe.rs`: no
//! per-connection buffer while idle; bulk bursts go through splice(2), `splice.rs`; after
//! TLS termination a buffered copy, `tls_pipe.rs`; the loop both share, `duplex.rs`), one access-log line ([`log`]).
//!
//! The binary calls [`StreamServer::start_on`] with the process's `portico_net::Plumbing`
//! (the worker threads, the `max_connections` gate, the access log and the resolver, shared
//! with the HTTP plane) and controls the returned [`RunningStreams`] like the HTTP plane's
//! handle (also [`RunningStreams::reload`]: listeners diffed by address, see `reload.rs`);
//! [`StreamServer::start`] / [`StreamServer::start_with`] start the plane alone, on plumbing
//! of its own; [`StreamOptions`] are knobs that are not config keys (e.g. the
//! certificate-file poll interval for tests).
//!
//! Floors, imports only downward: `shared` (options, per-plane state) < `snapshot` (compiled
//! streams) < `conn` (one connection) < `listeners` (accept loops, the plane's main task) <
//! `running` (the control handle) < `reload` (prepare/commit) < `server` (start). The byte
//! pipes, PROXY protocol, SNI, TLS, persistence and log modules are leaves below `conn`.
//! This crate imports `portico-net`, `portico-tls`, `portico-balance` and `portico-config`,
//! never `portico-proxy`.

#![cfg_attr(test, allow(clippy::unwrap_used))]

mod conn;
mod duplex;
mod error;
mod listeners;
pub mod log;
pub mod persist;
mod pipe;
mod reload;
mod running;
mod server;
mod shared;
mod snapshot;
pub mod sni;
mod splice;
mod tls;
mod tls_pipe;

pub use error::{SniError, StreamError};
/// The PROXY protocol codec, shared with the HTTP plane (it lives in `portico-net`).
pub use portico_net::proxy_protocol;
pub use reload::{PreparedStreams, StreamReload};
pub use running::RunningStreams;
pub use server::StreamServer;
pub use shared::StreamOptions;
