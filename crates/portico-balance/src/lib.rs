//! Portico upstream pools: balancing algorithms, passive and active health, and live
//! per-server state.
//!
//! # API (the contract `portico-proxy` compiles against)
//!
//! - [`Registry`]: live per-server state keyed by a stable [`ServerId`] (upstream name +
//!   server address as written). Lives for the whole process, outside any config snapshot,
//!   so health, fail counts and connection counts survive reloads.
//! - [`Pool`]: one upstream, built from a validated `portico_config::Upstream` and the
//!   registry. `Send + Sync`; picking a server takes no lock (atomics only).
//! - [`Pool::pick`] returns a [`Picked`]: the server index plus a guard that counts the
//!   connection/request as active until dropped (for `least_conn`, `random_two`,
//!   `max_conns`). It is `Send` and may be held across awaits (e.g. a WebSocket's life).
//! - The proxy reports outcomes with [`Pool::report_success`] / [`Pool::report_failure`]
//!   (passive health, nginx `max_fails` / `fail_timeout` semantics).
//! - [`HealthChecks`] (module [`active`]) runs the active health checks of
//!   `[upstreams.NAME.health]` on its own thread and records verdicts with
//!   [`ServerState::set_healthy`]; the binary starts it next to the proxy with the same
//!   [`Registry`] and calls [`HealthChecks::replace`] on reload.
//! - VRRP upstream tracking asks [`Pool::any_serving`] (passive health included); the admin API reads
//!   [`Pool::member_stats`] and sets [`ServerState::set_admin_state`] (drain / disable /
//!   enable); sticky cookies and stream persistence use [`Pool::pick_member`].
//!
//! # State model
//!
//! A [`ServerState`] (atomics only) holds active connections, picks, failures, the passive
//! failure window, the ejection deadline, the active-health verdict and the recovery time
//! for slow start. The [`Registry`] maps each [`ServerId`] to its `Arc<ServerState>`; a pool
//! built for a reloaded config gets the same `Arc`s, so nothing resets on reload. Each pool
//! keeps its own immutable tables (members, tiers, the round-robin period) plus two atomic
//! counters (round-robin ticket, random generator). The per-server request counters (active,
//! picks) and the random generators are sharded per thread on separate cache lines, so
//! workers picking at the same time do not write the same line (readers sum the shards);
//! the round-robin ticket is one counter per pool, alone on its line, so shares stay exact
//! across workers. All times are [`std::time::Instant`]s;
//! every time-dependent call has an `_at(now)` variant for tests with a virtual clock.
//!
//! # Which servers a pick may use
//!
//! A member is usable when it is not `down`, active health says healthy, the operator has
//! not drained or disabled it ([`AdminState`]), it is not in the request's `tried` list, it is below `max_conns` (0 = unlimited), and passive health has
//! not taken it out. Primary members are tried first; backup members only when no primary
//! is usable. When nothing is usable and passive health is the reason (all servers failed),
//! the pick runs again ignoring passive health, as nginx does: a pool never refuses traffic
//! just because every server failed recently. Active health is never ignored: when every
//! server fails its active checks, the pick fails (the proxy answers 503). See [`health`] for the passive rules and the
//! slow-start ramp (effective weight from 1/10 to full over `slow_start` after a recovery).
//!
//! # Algorithms (`balance`)
//!
//! - `round_robin`: nginx's smooth weighted round robin. One period of the sequence is
//!   precomputed (weights divided by their gcd, scaled down past 1024 slots) and walked with
//!   an atomic ticket: weights 5,1,1 give `a a b a c a a`. Unusable slots, and slots rejected
//!   by the slow-start ramp, are replaced by weighted random draws.
//! - `least_conn`: the lowest `active / weight`; ties broken in smooth-WRR order.
//! - `random_two`: two weighted random draws, the less loaded (`active / weight`) wins.
//! - `ip_hash`: nginx's hash of the IPv4 /24 or the whole IPv6 address over the weights;
//!   unusable -> rehash up to 20 times, then round robin.
//! - `hash`: weighted rendezvous hashing of the request's `hash_key` bytes (the client
//!   address when absent): removing one of n servers moves about 1/n of the keys, adding
//!   one about 1/(n+1). Ignores slow start (it would move keys back and forth).
//!
//! Slow start applies to `round_robin`, `least_conn` and `random_two`; `ip_hash` and `hash`
//! ignore it so that clients stay on their server.

pub mod active;
mod algo;
pub mod health;
mod pool;
mod state;

use std::net::IpAddr;
use std::sync::Arc;

use portico_config::ServerSpec;

pub use active::{CheckStatus, HealthChecks};
pub use pool::Pool;
pub use state::{ActiveGuard, AdminState, MemberStats, Registry, ServerState};

/// Stable identity of a server across reloads: upstream name + address as written.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServerId {
    pub upstream: Arc<str>,
    pub addr: Arc<str>,
}

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
    pub(crate) guard: ActiveGuard,
}

impl Picked {
    /// The chosen server's live state.
    pub fn state(&self) -> &Arc<ServerState> {
        self.guard.state()
    }
}

/// Why no server could be picked.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PickError {
    #[error("no usable server in upstream {0}")]
    NoServer(String),
}

#[cfg(test)]
mod control_tests;
#[cfg(test)]
mod pool_tests;
