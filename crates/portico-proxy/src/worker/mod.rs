//! A worker thread's state, shared by every task on it: the [`state::Worker`] (snapshot
//! cache, run state and stop watches, counters) and the state all workers share
//! ([`state::Shared`]), the stop primitives ([`stop`]: run state, drain triggers), the
//! per-connection context ([`conn`]), the upstream keep-alive pool ([`pool`]) and the
//! registry of live WebSockets ([`websockets`]).
//!
//! May import: the floors below (`snapshot`, `proto`, the ground floor). The event loop
//! that drives a worker is not here: it belongs to the server (`server::worker_loop`).

pub(crate) mod conn;
pub(crate) mod pool;
pub(crate) mod state;
pub(crate) mod stop;
pub(crate) mod websockets;
