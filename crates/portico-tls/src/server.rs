//! Server-side rustls configuration for TLS listeners.
//!
//! TLS 1.3 and 1.2 with the provider's safe cipher suites, certificates from a
//! [`CertResolver`], ALPN `h2` + `http/1.1` (and `acme-tls/1`, answered by the resolver with a
//! challenge certificate), session resumption (tickets + a stateful cache) unless turned off.
//! [`listener_config`] derives one listener's config (its own default certificate) from it.

use std::sync::Arc;

use rustls::server::{NoServerSessionStorage, ServerSessionMemoryCache};
use rustls::{ServerConfig, ServerConnection};
use tokio_rustls::TlsAcceptor;

use crate::error::TlsError;
use crate::provider::Backend;
use crate::resolver::{ACME_TLS_ALPN, CertResolver, ListenerCerts, ListenerResolver};

/// Options of a TLS listener.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// Offer HTTP/2 (`h2`) before `http/1.1`.
    pub http2: bool,
    /// Session resumption (TLS 1.3 tickets, TLS 1.2 session ids and tickets). Turn it off to
    /// measure full handshakes.
    pub resumption: bool,
    /// Entries of the stateful session cache.
    pub session_cache_size: usize,
    /// The crypto back end ([`Backend::DEFAULT`] unless measuring).
    pub backend: Backend,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            http2: true,
            resumption: true,
            session_cache_size: 4096,
            backend: Backend::DEFAULT,
        }
    }
}

/// A rustls server config answering from `resolver`.
pub fn server_config(
    resolver: Arc<CertResolver>,
    options: &ServerOptions,
) -> Result<Arc<ServerConfig>, TlsError> {
    let provider = options.backend.provider();
    let ticketer = if options.resumption {
        Some(ticketer(options.backend)?)
    } else {
        None
    };
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| TlsError::rustls("TLS versions", e))?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    let mut alpn: Vec<Vec<u8>> = Vec::new();
    if options.http2 {
        alpn.push(b"h2".to_vec());
    }
    alpn.push(b"http/1.1".to_vec());
    alpn.push(ACME_TLS_ALPN.to_vec());
    config.alpn_protocols = alpn;
    if let Some(ticketer) = ticketer {
        config.session_storage = ServerSessionMemoryCache::new(options.session_cache_size);
        config.ticketer = ticketer;
    } else {
        config.session_storage = Arc::new(NoServerSessionStorage {});
        config.send_tls13_tickets = 0;
    }
    Ok(Arc::new(config))
}

fn ticketer(backend: Backend) -> Result<Arc<dyn rustls::server::ProducesTickets>, TlsError> {
    let made = match backend {
        Backend::Ring => rustls::crypto::ring::Ticketer::new(),
        Backend::AwsLcRs => rustls::crypto::aws_lc_rs::Ticketer::new(),
    };
    made.map_err(|e| TlsError::rustls("session ticketer", e))
}

/// The config of one TLS listener: `base` (from [`server_config`]) answering through a
/// [`ListenerResolver`] over `resolver` for the listener's `certs`. Everything else is shared
/// with `base`, session cache and ticket keys included, so building one per listener (and
/// again at each reload) is cheap and keeps resumption working.
pub fn listener_config(
    base: &ServerConfig,
    resolver: Arc<CertResolver>,
    certs: ListenerCerts,
) -> Arc<ServerConfig> {
    let mut config = base.clone();
    config.cert_resolver = Arc::new(ListenerResolver::new(resolver, certs));
    Arc::new(config)
}

/// A tokio-rustls acceptor over [`server_config`].
pub fn acceptor(
    resolver: Arc<CertResolver>,
    options: &ServerOptions,
) -> Result<TlsAcceptor, TlsError> {
    Ok(TlsAcceptor::from(server_config(resolver, options)?))
}

/// Whether a finished handshake was an ACME TLS-ALPN-01 validation (ALPN `acme-tls/1`): the
/// listener must close such a connection right away instead of serving HTTP on it.
pub fn is_acme_validation(conn: &ServerConnection) -> bool {
    conn.alpn_protocol() == Some(ACME_TLS_ALPN)
}
