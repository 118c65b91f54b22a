//! Portico cluster mode: nodes with the same `[cluster]` share state in etcd (v3 API,
//! through `etcd-client`).
//!
//! - [`connect`]: an etcd client from the typed `[cluster]` section (endpoints, TLS,
//!   user/password), with bounded connect and request timeouts.
//! - [`keys`]: the key layout under `prefix`, in one place (documented in docs/cluster.md).
//! - [`error`]: the crate's error type, [`ClusterError`].
//! - [`node`]: a node's session with etcd: its membership under a lease, and the watched
//!   member list, server admin states and registered servers (degraded and retrying while
//!   etcd is unreachable).
//! - [`members`]: what a node publishes about itself, and the config hash.
//! - [`states`]: server admin states (drain / disable) shared through etcd.
//! - [`registry`]: servers registered by `portico register` (the register loop, and what
//!   nodes read for upstreams with `discover = "cluster"`).
//! - [`acme`]: certificates and ACME across the cluster ([`acme::EtcdAcme`], the etcd side
//!   of `portico_tls::acme::SharedAcme`).

#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod acme;
pub mod connect;
pub mod error;
pub mod keys;
pub mod members;
pub mod node;
pub mod registry;
pub mod states;

pub use connect::{Connection, connect, connect_each};
pub use error::ClusterError;
pub use keys::Keys;
pub use members::{MemberInfo, VrrpRole, config_hash};
pub use node::{Node, Snapshot};
pub use registry::{Registered, Registration};
