//! Portico's admin API: what an operator uses to see into a running instance and act on it.
//!
//! - [`Admin`] (module `state`): the shared view. It reads live per-server state from
//!   `portico-balance`'s [`portico_balance::Registry`], what only the binary reaches
//!   (health checks, certificates, VRRP) through [`Sources`], and keeps the reload history
//!   the control loop records. API reloads travel to the control loop as
//!   [`ReloadRequest`]s, so they run exactly like SIGHUP ones.
//! - [`AdminServer`] (module `server`): the `[admin] listen` socket, served on a thread
//!   and runtime of its own so that a saturated data plane cannot starve it.
//! - Routes (module `api`): the dashboard (`GET /`, one compiled-in HTML page), `GET
//!   /metrics` (module [`metrics`], Prometheus text through `prometheus-client`), `GET
//!   /api/v1/status` (module [`status`]), `POST /api/v1/reload` and `POST
//!   /api/v1/upstreams/{name}/servers/{addr}/{drain|enable|disable}`, every POST behind the
//!   checks of module `auth` (bearer token, browser cross-origin protection).
//! - [`cluster`]: cluster mode (`[cluster]`): the members, etcd's reachability, shared
//!   server states and registered servers in the status, and `portico_cluster_*` metrics.
//! - [`client`] and [`table`]: what `portico status` and `portico reload` use to ask a
//!   running instance and print its answer.

mod api;
mod auth;
pub mod client;
pub mod cluster;
mod dataplane;
mod families;
pub mod metrics;
mod process;
mod server;
mod state;
pub mod status;
pub mod table;

pub use auth::read_token;
pub use server::{AdminServer, StartError};
pub use state::{
    Admin, CertView, ListenerView, ReloadRecord, ReloadRequest, ReloadRequests, ReloadResult,
    ShareFuture, Sources, TrackView, VrrpView,
};
