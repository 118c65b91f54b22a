//! Portico cluster mode: nodes with the same `[cluster]` share state in etcd (v3 API,
//! through `etcd-client`).
//!
//! - [`connect`]: an etcd client from the typed `[cluster]` section (endpoints, TLS,
//!   user/password), with bounded connect and request timeouts.
//! - [`keys`]: the key layout under `prefix`, in one place (documented in docs/cluster.md).
//! - [`error`]: the crate's error type, [`ClusterError`].
//! - [`acme`]: certificates and ACME across the cluster ([`acme::EtcdAcme`], the etcd side
//!   of `portico_tls::acme::SharedAcme`).

#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod acme;
pub mod connect;
pub mod error;
pub mod keys;

pub use connect::{Connection, connect};
pub use error::ClusterError;
pub use keys::Keys;
