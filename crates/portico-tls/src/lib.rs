//! Portico TLS: everything about certificates and rustls, without sockets of its own.
//!
//! - [`CertResolver`]: the SNI resolver the TLS listeners use, a swappable map from host names
//!   to certificates (exact, `*.suffix`, default), also answering ACME TLS-ALPN-01 handshakes;
//!   [`ListenerResolver`] scopes it to one listener's sites and default.
//! - [`server_config`] / [`acceptor`]: rustls server configs (TLS 1.2 + 1.3, ALPN h2 and
//!   http/1.1, resumption) over a resolver.
//! - [`FileCerts`]: `tls = { cert, key }` pairs loaded into the resolver and reloaded when the
//!   files change, keeping the old pair when the new one is broken.
//! - [`client_config`]: rustls client configs for TLS upstreams, and [`failure_reason`] for
//!   the one-line log of a failed upstream handshake; [`UpstreamConnector`]: the connector
//!   of one TLS upstream (names, identity tags, handshake) both planes use.
//! - [`TlsRuntime`]: all of the above for a configuration's sites in one value, with reload.
//! - [`acme`]: the ACME manager (instant-acme + rcgen): accounts, orders, HTTP-01 and
//!   TLS-ALPN-01 challenges, renewal with backoff, live swaps into the resolver.
//!
//! Data comes from `portico-config`'s model (`SiteTls`, `UpstreamTls`) and from the files
//! and ACME servers named there; results go to the proxy's listeners as rustls configs.

#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod acme;
mod client;
mod error;
mod files;
pub mod pem;
mod provider;
mod resolver;
mod runtime;
mod server;
mod sites;
mod upstream;

pub use client::{
    NoVerification, client_config, client_config_with, failure_reason, roots, server_name,
};
pub use error::TlsError;
pub use files::FileCerts;
pub use provider::{Backend, default_provider};
pub use resolver::{ACME_TLS_ALPN, CertResolver, ListenerCerts, ListenerResolver, NamePattern};
pub use runtime::TlsRuntime;
pub use server::{ServerOptions, acceptor, is_acme_validation, listener_config, server_config};
pub use sites::{install_sites, site_id, site_resolver_id};
pub use upstream::{Alpn, UpstreamConnector, UpstreamTlsError};

/// Re-exports for callers that build their own connections.
pub use rustls;
pub use tokio_rustls;
