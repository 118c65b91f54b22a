//! Portico upstream pools: balancing algorithms, passive health and live per-server state.
//!
//! CONTRACT (written by the lead; the balance helper implements it and may add to it, but
//! keeps these names and signatures, which `portico-proxy` compiles against):
//!
//! - [`Registry`]: live per-server state keyed by a stable [`ServerId`] (upstream name +
//!   server address as written). Lives for the whole process, outside any config snapshot,
//!   so health, fail counts and connection counts survive reloads.
//! - [`Pool`]: one upstream, built from a validated `portico_config::Upstream` and the
//!   registry. `Send + Sync`; picking a server takes no lock (atomics only).
//! - [`Pool::pick`] returns a [`Picked`]: the server index plus a guard that counts the
//!   connection/request as active until dropped (for `least_conn`, `random_two`,
//!   `max_conns`).
//! - The proxy reports outcomes with [`Pool::report_success`] / [`Pool::report_failure`]
//!   (passive health, nginx `max_fails` / `fail_timeout` semantics).

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use portico_config::{ServerSpec, Upstream};

/// Stable identity of a server across reloads: upstream name + address as written.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServerId {
    pub upstream: Arc<str>,
    pub addr: Arc<str>,
}

/// Live counters and health of one server; shared by every snapshot that has the server.
#[derive(Debug, Default)]
pub struct ServerState {
    // fields are the helper's choice (atomics)
}

/// Process-wide live state, keyed by [`ServerId`]. Cheap to clone (an `Arc` inside).
#[derive(Debug, Clone, Default)]
pub struct Registry {}

/// What the balancer may use to choose a server for one request or connection.
#[derive(Debug, Clone, Copy)]
pub struct PickKey<'a> {
    /// The client's address (used by `ip_hash` and `hash_key = "client_ip"`).
    pub client_ip: IpAddr,
    /// For `balance = "hash"`: the bytes of the configured `hash_key`, extracted by the proxy
    /// (`None` when the request has no such header/cookie/query: then `client_ip` is used).
    pub hash: Option<&'a [u8]>,
}

/// One member of a pool.
#[derive(Debug)]
pub struct Member {
    pub id: ServerId,
    pub spec: ServerSpec,
    pub state: Arc<ServerState>,
}

/// A chosen server; holding it counts one active connection/request on that server.
#[derive(Debug)]
pub struct Picked {
    /// Index into [`Pool::members`].
    pub index: usize,
}

/// Why no server could be picked.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PickError {
    #[error("no usable server in upstream {0}")]
    NoServer(String),
}

/// One upstream pool.
#[derive(Debug)]
pub struct Pool {}

impl Pool {
    /// Build the pool for `upstream`, reusing live state from `registry`.
    pub fn new(_upstream: &Upstream, _registry: &Registry) -> Pool {
        unimplemented!("balance helper")
    }

    pub fn name(&self) -> &str {
        unimplemented!("balance helper")
    }

    pub fn members(&self) -> &[Member] {
        unimplemented!("balance helper")
    }

    /// Choose a server, skipping the indexes in `tried` (earlier attempts of this request),
    /// `down` servers, servers failed by passive health, and servers at `max_conns`. Backup
    /// servers are used only when no primary is usable.
    pub fn pick(&self, _key: &PickKey<'_>, _tried: &[usize]) -> Result<Picked, PickError> {
        unimplemented!("balance helper")
    }

    /// A request/connection to server `index` succeeded.
    pub fn report_success(&self, _index: usize) {
        unimplemented!("balance helper")
    }

    /// A request/connection to server `index` failed (connect error, timeout, reset before a
    /// response). `max_fails` within `fail_timeout` takes it out for `fail_timeout`.
    pub fn report_failure(&self, _index: usize) {
        unimplemented!("balance helper")
    }

    /// Same as [`Pool::report_failure`] with an explicit clock, for tests.
    pub fn report_failure_at(&self, _index: usize, _now: Instant) {
        unimplemented!("balance helper")
    }
}
