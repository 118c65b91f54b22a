//! Portico data plane: listeners, client connections, routing, the HTTP/1.1 and WebSocket
//! reverse proxy, static files and the access log.
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

mod accept;
pub mod access_log;
pub mod actions;
mod bodies;
pub mod body;
mod conn;
mod drain;
pub mod error;
mod forward;
mod framing;
mod handler;
mod https;
mod log;
mod pool;
mod reload;
mod route;
mod server;
mod snapshot;
mod tls;
mod tls_conn;
mod upstream;
mod websocket;
mod worker;
pub mod ws_frame;
mod ws_ping;
mod ws_pipe;
mod ws_tls_pipe;

pub use error::{ProxyError, Side};
pub use reload::{ReloadError, ReloadOutcome};
pub use server::{RunningServer, Server};
pub use tls::TlsContext;
