//! TLS on the data plane: what the server holds for its TLS listeners ([`TlsContext`]) and
//! the client side of TLS upstreams ([`UpstreamTlsCtx`]).
//!
//! Certificates live in `portico_tls`: one [`CertResolver`] (SNI -> certificate, swapped
//! live by the file poller and the ACME manager). Each TLS listener of a snapshot gets its
//! own acceptor ([`TlsShared::listener_acceptor`], built with the snapshot, so a reload that
//! reorders sites takes effect with it): the shared resolver restricted to the listener's
//! sites, with its first TLS site's certificate for handshakes without SNI or with a name no
//! site there serves (nginx's default server). All of them share one session cache and
//! ticket keys. The HTTP-01 answers the plain listeners serve come from the
//! same runtime ([`Http01Challenges`]). The proxy never loads certificate files itself.
//!
//! Upstream TLS (`[upstreams.NAME].tls`): `portico_tls::UpstreamConnector`, the connector
//! both planes use (one rustls client config per upstream: Mozilla roots or `ca_file`,
//! optional client certificate, here ALPN `http/1.1`; the SNI / verified name per server),
//! and its identity tag per server as the keep-alive pool tag, so TLS connections are only
//! reused for the same upstream TLS identity.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use portico_balance::Pool;
use portico_config::UpstreamTls;
use portico_tls::acme::Http01Challenges;
use portico_tls::rustls::ServerConfig;
use portico_tls::tokio_rustls::TlsAcceptor;
use portico_tls::tokio_rustls::client::TlsStream;
use portico_tls::{
    Alpn, CertResolver, ListenerCerts, ServerOptions, TlsRuntime, UpstreamConnector,
    UpstreamTlsError,
};
use tokio::net::TcpStream;

use crate::error::ProxyError;

/// What the data plane needs from the TLS runtime: the SNI resolver shared by every TLS
/// listener and the HTTP-01 answers for the plain listeners. Cheap to clone.
#[derive(Debug, Clone)]
pub struct TlsContext {
    pub resolver: Arc<CertResolver>,
    pub http01: Http01Challenges,
    pub options: ServerOptions,
}

impl TlsContext {
    /// The context of a running [`TlsRuntime`] (default listener options: h2 + http/1.1,
    /// resumption on).
    pub fn from_runtime(runtime: &TlsRuntime) -> TlsContext {
        TlsContext {
            resolver: runtime.resolver().clone(),
            http01: runtime.http01().clone(),
            options: ServerOptions::default(),
        }
    }
}

/// The server's TLS state, kept in the workers' shared state for its whole life (a reload
/// keeps it: the resolver is the same object; each snapshot derives its listeners'
/// acceptors from `config`).
#[derive(Clone)]
pub(crate) struct TlsShared {
    /// Over the whole resolver (global default): for a connection whose listener has no
    /// acceptor of its own in the snapshot (not expected; a safe fallback).
    pub acceptor: TlsAcceptor,
    /// The base config the listeners' configs are cloned from.
    config: Arc<ServerConfig>,
    pub http01: Http01Challenges,
    pub context: TlsContext,
}

impl std::fmt::Debug for TlsShared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsShared")
            .field("resolver", &self.context.resolver)
            .finish()
    }
}

impl TlsShared {
    pub fn new(context: TlsContext) -> Result<TlsShared, ProxyError> {
        let config = portico_tls::server_config(context.resolver.clone(), &context.options)
            .map_err(|e| ProxyError::Tls(e.to_string()))?;
        Ok(TlsShared {
            acceptor: TlsAcceptor::from(config.clone()),
            config,
            http01: context.http01.clone(),
            context,
        })
    }
}

impl TlsShared {
    /// The acceptor of a TLS listener whose sites' certificate entries are `ids` (file
    /// order, first = the listener's default). `None` when `ids` is empty.
    pub fn listener_acceptor(&self, ids: &[String]) -> Option<ListenerAcceptor> {
        let certs = ListenerCerts::new(ids)?;
        let config =
            portico_tls::listener_config(&self.config, self.context.resolver.clone(), certs);
        Some(ListenerAcceptor(TlsAcceptor::from(config)))
    }
}

/// One TLS listener's acceptor (see [`TlsShared::listener_acceptor`]).
#[derive(Clone)]
pub(crate) struct ListenerAcceptor(pub TlsAcceptor);

impl std::fmt::Debug for ListenerAcceptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ListenerAcceptor")
    }
}

/// The TLS side of one upstream: `portico_tls::UpstreamConnector` (shared with the stream
/// plane) with ALPN `http/1.1`.
#[derive(Debug)]
pub(crate) struct UpstreamTlsCtx {
    connector: UpstreamConnector,
    /// Keep-alive pool tag per member (never 0, which is plain TCP).
    pub tags: Vec<u64>,
}

impl UpstreamTlsCtx {
    /// Build the client config of upstream `name` (files read now; relative paths against
    /// `base`).
    pub fn build(
        name: &str,
        tls: &UpstreamTls,
        pool: &Pool,
        base: &Path,
    ) -> Result<UpstreamTlsCtx, ProxyError> {
        let hosts = pool.members().iter().map(|m| m.spec.addr.host.as_str());
        let connector = UpstreamConnector::build(tls, hosts, base, Alpn::Http1)
            .map_err(|e| ProxyError::Tls(format!("upstream {name}: {e}")))?;
        let tags = (0..pool.members().len())
            .map(|i| connector.tag(i))
            .collect();
        Ok(UpstreamTlsCtx { connector, tags })
    }

    /// TLS handshake with member `index` over `tcp`, bounded by `timeout`. A failure is
    /// logged once with its reason (certificate verify failed: ...).
    pub async fn connect(
        &self,
        index: usize,
        addr: SocketAddr,
        tcp: TcpStream,
        timeout: Duration,
    ) -> Result<TlsStream<TcpStream>, ProxyError> {
        match self.connector.connect(index, tcp, timeout).await {
            Ok(stream) => Ok(stream),
            Err(UpstreamTlsError::Handshake(reason)) => {
                tracing::warn!(server = %addr, sni = ?self.connector.name(index), reason = %reason, "TLS handshake with upstream server failed");
                Err(ProxyError::UpstreamTls { addr, reason })
            }
            Err(UpstreamTlsError::Timeout) => Err(ProxyError::ConnectTimeout { addr }),
        }
    }
}
