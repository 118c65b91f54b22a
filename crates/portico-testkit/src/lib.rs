//! Portico test support: real backends and an in-process proxy for tests, demos and
//! benchmarks.
//!
//! - [`certs`]: a test CA and leaf certificates (rcgen), shared by the TLS tests.
//! - [`etcd`]: real etcd members on loopback (1 or 3), [`etcd::EtcdCluster`].
//! - [`echo`]: the HTTP + WebSocket echo backend behind `portico echo` and `portico demo`.
//! - [`http`]: a parsed HTTP/1.1 response ([`http::Resp`]) for raw-socket test clients.
//! - [`pebble`]: the pebble (ACME test CA) harness, [`pebble::Pebble`].
//! - [`peers`]: the one rule for missing third-party peers, [`require_peer`]: a failure
//!   under CI (`CI=true` or `CI=1`), a visible skip elsewhere.
//! - [`process`]: the one process helper: spawn with logs, wait ready, stop by PID
//!   (SIGTERM, then SIGKILL), bounded runs.
//! - [`proxy`]: start the real proxy in-process on `127.0.0.1:0` from TOML text.
//! - [`eventually`]: poll-until-true assertions with a deadline (no sleeps in tests).

pub mod certs;
pub mod echo;
pub mod etcd;
pub mod eventually;
pub mod http;
pub mod pebble;
pub mod peers;
pub mod process;
pub mod proxy;

pub use peers::{is_ci, report, require, require_peer, require_peers, skip_or_fail};
