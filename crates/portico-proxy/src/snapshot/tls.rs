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
//! Upstream TLS (`[upstreams.NAME].tls`): one rustls client config per upstream
//! (`portico_tls::client_config`: Mozilla roots or `ca_file`, optional client certificate,
//! ALPN `http/1.1`), the SNI / verified name per server (`server_name`, else the server's
//! host), and a pool tag per server so TLS connections are only reused for the same
//! upstream TLS identity.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use portico_balance::Pool;
use portico_config::UpstreamTls;
use portico_tls::acme::Http01Challenges;
use portico_tls::rustls::ServerConfig;
use portico_tls::rustls::pki_types::ServerName;
use portico_tls::tokio_rustls::client::TlsStream;
use portico_tls::tokio_rustls::{TlsAcceptor, TlsConnector};
use portico_tls::{CertResolver, ListenerCerts, ServerOptions, TlsRuntime};
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

/// The TLS side of one upstream.
pub(crate) struct UpstreamTlsCtx {
    pub connector: TlsConnector,
    /// SNI / verified name per pool member (same order as `Pool::members`).
    pub names: Vec<ServerName<'static>>,
    /// Keep-alive pool tag per member (never 0, which is plain TCP).
    pub tags: Vec<u64>,
}

impl std::fmt::Debug for UpstreamTlsCtx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamTlsCtx")
            .field("names", &self.names)
            .finish()
    }
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
        let err = |e: portico_tls::TlsError| ProxyError::Tls(format!("upstream {name}: {e}"));
        let config = portico_tls::client_config(tls, base).map_err(err)?;
        let mut names = Vec::new();
        let mut tags = Vec::new();
        for member in pool.members() {
            let host = member
                .spec
                .addr
                .host
                .trim_start_matches('[')
                .trim_end_matches(']');
            let server_name = portico_tls::server_name(tls, host).map_err(err)?;
            let mut h = DefaultHasher::new();
            (format!("{tls:?}"), server_name.to_str().as_ref()).hash(&mut h);
            tags.push(h.finish() | 1);
            names.push(server_name);
        }
        Ok(UpstreamTlsCtx {
            connector: TlsConnector::from(config),
            names,
            tags,
        })
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
        let name = self.names[index].clone();
        match tokio::time::timeout(timeout, self.connector.connect(name, tcp)).await {
            Ok(Ok(stream)) => Ok(stream),
            Ok(Err(e)) => {
                let reason = portico_tls::failure_reason(&e);
                tracing::warn!(server = %addr, sni = ?self.names[index], reason = %reason, "TLS handshake with upstream server failed");
                Err(ProxyError::UpstreamTls { addr, reason })
            }
            Err(_) => Err(ProxyError::ConnectTimeout { addr }),
        }
    }
}
