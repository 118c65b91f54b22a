//! Portico's plane plumbing: what the HTTP plane (`portico-proxy`) and the TCP stream plane
//! (`portico-stream`) share, so that the process behaves as one, whatever mix of sites and
//! streams it serves.
//!
//! - [`bind`]: listener sockets (`SO_REUSEPORT` groups, one socket per worker, refused when
//!   another process already listens on the address).
//! - [`inherit`]: listening sockets handed over by the previous process of a binary upgrade
//!   (adopted by `bind` instead of binding anew) and the variable that names them.
//! - [`workers`]: the `[server] threads` worker threads, each a single-threaded tokio runtime,
//!   that both planes run on.
//! - [`gate`]: the accept gate, one connection count for the process behind
//!   `[server] max_connections` (compare-and-swap: never past the limit).
//! - [`run_state`]: running, draining until a deadline, stopped.
//! - [`resolve`]: server names to every address they have, and connecting to the first that
//!   answers.
//! - [`access_log`]: the access-log writer (one thread per target for the whole process).
//! - [`proxy_protocol`]: the PROXY protocol v1/v2 decoder (client side, both planes) and
//!   encoder (toward stream servers).
//! - [`Plumbing`]: one of each of the above, built from `[server]` and handed to both planes.
//!
//! Floors: `plumbing` sits on top and imports the others; `bind` imports `inherit`; the
//! others import nothing of this crate. This crate imports only `portico-config` of Portico's crates: the planes import it,
//! never the other way round.

pub mod access_log;
pub mod bind;
pub mod gate;
pub mod inherit;
mod plumbing;
pub mod proxy_protocol;
pub mod resolve;
pub mod run_state;
pub mod workers;

pub use bind::{BACKLOG, bind_group, ensure_free};
pub use gate::{Gate, Permit};
pub use plumbing::{Plumbing, PlumbingError};
pub use resolve::Resolver;
pub use run_state::{Exited, RunState};
pub use workers::Workers;
