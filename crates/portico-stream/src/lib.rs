//! Portico's L4 data plane: `[[streams]]` — TCP load balancing over the same
//! `[upstreams.NAME]` pools (balancers, passive health, live state in the shared
//! `portico_balance::Registry`) as the HTTP side.
//!
//! Data comes in on the stream listeners and leaves to the upstream servers. Per
//! connection (see `conn.rs`): optional PROXY header from the client ([`proxy_protocol`]),
//! optional SNI peek for TLS passthrough ([`sni`]), source-IP persistence ([`persist`]),
//! connect with retries, optional PROXY header to the server, the byte pipe (`pipe.rs`:
//! no per-connection buffer while idle; bulk bursts go through splice(2), `splice.rs`), one
//! access-log line ([`log`]).
//!
//! The binary calls [`StreamServer::start`] and controls the returned [`RunningStreams`]
//! like `portico_proxy::RunningServer`.

#![cfg_attr(test, allow(clippy::unwrap_used))]

mod conn;
mod error;
pub mod log;
pub mod persist;
mod pipe;
pub mod proxy_protocol;
mod server;
mod snapshot;
pub mod sni;
mod splice;

pub use error::{ProxyHeaderError, SniError, StreamError};
pub use server::{RunningStreams, StreamServer};
