//! The client side of TLS upstreams (`[upstreams.NAME].tls`), for both planes: one rustls
//! client config per upstream ([`crate::client_config`]: Mozilla roots or `ca_file`, optional
//! client certificate), the SNI / verified name per server (`server_name`, else the server's
//! host), and a tag per server naming its TLS identity (the HTTP plane keys its keep-alive
//! pool with it, so TLS connections are only reused for the same identity).
//!
//! ALPN: the HTTP plane offers `http/1.1` ([`Alpn::Http1`]); a TCP stream carries raw bytes
//! and offers nothing ([`Alpn::None`]).

use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use portico_config::UpstreamTls;
use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::error::TlsError;

/// What the client offers in ALPN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alpn {
    /// `http/1.1` (the HTTP plane).
    Http1,
    /// Nothing (TCP streams: raw bytes after the handshake).
    None,
}

/// Why a TLS handshake with an upstream server failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpstreamTlsError {
    /// One line, e.g. `certificate verify failed: unknown issuer (...)`.
    #[error("{0}")]
    Handshake(String),
    #[error("TLS handshake timed out")]
    Timeout,
}

/// The TLS side of one upstream: its connector and, per server (pool member order), the
/// name to send and verify and the identity tag.
pub struct UpstreamConnector {
    connector: TlsConnector,
    names: Vec<ServerName<'static>>,
    tags: Vec<u64>,
}

impl std::fmt::Debug for UpstreamConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamConnector")
            .field("names", &self.names)
            .finish()
    }
}

impl UpstreamConnector {
    /// Build the connector of an upstream whose servers' hosts are `hosts` (member order;
    /// IPv6 with or without brackets). Files are read now; relative paths against `base`.
    pub fn build<'a>(
        tls: &UpstreamTls,
        hosts: impl IntoIterator<Item = &'a str>,
        base: &Path,
        alpn: Alpn,
    ) -> Result<UpstreamConnector, TlsError> {
        let mut config = crate::client_config(tls, base)?;
        if alpn == Alpn::None {
            let mut plain = (*config).clone();
            plain.alpn_protocols.clear();
            config = Arc::new(plain);
        }
        let mut names = Vec::new();
        let mut tags = Vec::new();
        for host in hosts {
            let host = host.trim_start_matches('[').trim_end_matches(']');
            let server_name = crate::server_name(tls, host)?;
            let mut h = DefaultHasher::new();
            (format!("{tls:?}"), server_name.to_str().as_ref()).hash(&mut h);
            tags.push(h.finish() | 1);
            names.push(server_name);
        }
        Ok(UpstreamConnector {
            connector: TlsConnector::from(config),
            names,
            tags,
        })
    }

    /// The SNI / verified name of server `index`.
    pub fn name(&self, index: usize) -> Option<&ServerName<'static>> {
        self.names.get(index)
    }

    /// The TLS identity tag of server `index` (never 0, which callers use for plain TCP).
    pub fn tag(&self, index: usize) -> u64 {
        self.tags.get(index).copied().unwrap_or(1)
    }

    /// The TLS handshake with server `index` over `io`, bounded by `timeout`.
    pub async fn connect<IO>(
        &self,
        index: usize,
        io: IO,
        timeout: Duration,
    ) -> Result<TlsStream<IO>, UpstreamTlsError>
    where
        IO: AsyncRead + AsyncWrite + Unpin,
    {
        let Some(name) = self.names.get(index).cloned() else {
            return Err(UpstreamTlsError::Handshake(format!(
                "no server #{index} in this upstream"
            )));
        };
        match tokio::time::timeout(timeout, self.connector.connect(name, io)).await {
            Ok(Ok(stream)) => Ok(stream),
            Ok(Err(e)) => Err(UpstreamTlsError::Handshake(crate::failure_reason(&e))),
            Err(_) => Err(UpstreamTlsError::Timeout),
        }
    }
}
