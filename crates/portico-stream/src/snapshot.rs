//! The compiled form of `[[streams]]`: per stream its targets (an upstream pool with its
//! servers' resolved addresses, plus that stream's persistence table for it) and the SNI
//! routes, the TLS acceptor of a stream that terminates TLS, and the TLS connector of an
//! upstream with `tls`. Built at start-up and by each reload; names are resolved
//! (`portico_net::Resolver`: every address of a name, as the HTTP plane) and certificate
//! files loaded here (blocking), never per connection.
//!
//! Floor: above `shared` (options), `tls` and `persist`; below `conn` and `listeners`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use portico_balance::{Pool, Registry};
use portico_config::{Config, HostPattern, ProxyProtocolVersion, Stream};
use portico_net::Resolver;
use portico_tls::{Alpn, UpstreamConnector};

use crate::error::StreamError;
use crate::persist::Persistence;
use crate::shared::StreamOptions;

/// One upstream as the streams use it (shared by every stream that names it).
#[derive(Debug)]
pub(crate) struct UpstreamRt {
    pub name: String,
    pub pool: Pool,
    /// Every resolved address of each pool member, by member index: the first is the
    /// member's address, the others are tried in order when connecting to it fails.
    pub addrs: Vec<Vec<SocketAddr>>,
    pub connect_timeout: Duration,
    pub retries: u32,
    /// `tls = {..}`: the servers speak TLS (no ALPN offered: the stream is raw bytes).
    pub tls: Option<UpstreamConnector>,
}

/// Where a stream's connections can go: an upstream and this stream's persistence table
/// for it.
#[derive(Debug)]
pub(crate) struct Target {
    pub upstream: Arc<UpstreamRt>,
    pub persistence: Option<Persistence>,
}

/// One `[[streams]]` entry, compiled.
#[derive(Debug)]
pub(crate) struct StreamRt {
    pub index: usize,
    pub proxy_protocol: Option<ProxyProtocolVersion>,
    pub accept_proxy_protocol: bool,
    pub idle_timeout: Duration,
    /// Index into `targets` when `upstream` is set.
    pub default: Option<usize>,
    /// `sni_routes` with target indexes; empty unless passthrough.
    pub sni_routes: Vec<(HostPattern, String)>,
    pub targets: Vec<(String, Target)>,
    /// TLS termination (`tls = { cert, key }`).
    pub tls: Option<Arc<portico_tls::rustls::ServerConfig>>,
}

impl StreamRt {
    pub(crate) fn target(&self, upstream: &str) -> Option<&Target> {
        self.targets
            .iter()
            .find(|(n, _)| n == upstream)
            .map(|(_, t)| t)
    }
}

/// Every stream, compiled.
#[derive(Debug)]
pub(crate) struct Snapshot {
    pub streams: Vec<Arc<StreamRt>>,
    /// Certificate-file pollers of the TLS streams (with their index in `streams`), to
    /// spawn on the workers.
    pub cert_files: Vec<(usize, portico_tls::FileCerts)>,
}

impl Snapshot {
    pub(crate) fn build(
        config: &Config,
        registry: &Registry,
        options: &StreamOptions,
        resolver: &Resolver,
    ) -> Result<Snapshot, StreamError> {
        let mut upstreams: BTreeMap<String, Arc<UpstreamRt>> = BTreeMap::new();
        let mut streams = Vec::with_capacity(config.streams.len());
        let mut cert_files = Vec::new();
        for s in &config.streams {
            let tls = match crate::tls::build(s, &config.base_dir, options.cert_poll_interval)? {
                Some((config, files)) => {
                    cert_files.push((streams.len(), files));
                    Some(config)
                }
                None => None,
            };
            let mut names: Vec<&str> = s.sni_routes.iter().map(|(_, u)| u.as_str()).collect();
            names.extend(s.upstream.as_deref());
            names.sort_unstable();
            names.dedup();
            let mut targets = Vec::with_capacity(names.len());
            for name in names {
                let up = match upstreams.get(name) {
                    Some(up) => Arc::clone(up),
                    None => {
                        let up = Arc::new(upstream(config, s, name, registry, resolver)?);
                        upstreams.insert(name.to_string(), Arc::clone(&up));
                        up
                    }
                };
                let persistence =
                    (!s.persistence.is_zero()).then(|| Persistence::new(s.persistence));
                targets.push((
                    name.to_string(),
                    Target {
                        upstream: up,
                        persistence,
                    },
                ));
            }
            let default = s
                .upstream
                .as_deref()
                .and_then(|u| targets.iter().position(|(n, _)| n == u));
            streams.push(Arc::new(StreamRt {
                index: s.index,
                proxy_protocol: s.proxy_protocol,
                accept_proxy_protocol: s.accept_proxy_protocol,
                idle_timeout: s.idle_timeout,
                default,
                sni_routes: s.sni_routes.clone(),
                targets,
                tls,
            }));
        }
        Ok(Snapshot {
            streams,
            cert_files,
        })
    }
}

fn upstream(
    config: &Config,
    stream: &Stream,
    name: &str,
    registry: &Registry,
    resolver: &Resolver,
) -> Result<UpstreamRt, StreamError> {
    let Some(up) = config.upstreams.get(name) else {
        return Err(StreamError::UnknownUpstream {
            stream: stream.index,
            upstream: name.to_string(),
        });
    };
    let pool = Pool::new(up, registry);
    let addrs = pool
        .members()
        .iter()
        .map(|m| {
            resolver
                .resolve(&m.spec.addr)
                .map_err(|e| StreamError::Resolve {
                    upstream: name.to_string(),
                    addr: m.spec.addr.to_string(),
                    reason: e.to_string(),
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let tls = match &up.tls {
        Some(tls) => Some(
            UpstreamConnector::build(
                tls,
                pool.members().iter().map(|m| m.spec.addr.host.as_str()),
                &config.base_dir,
                Alpn::None,
            )
            .map_err(|source| StreamError::UpstreamTls {
                upstream: name.to_string(),
                source,
            })?,
        ),
        None => None,
    };
    Ok(UpstreamRt {
        name: name.to_string(),
        pool,
        addrs,
        connect_timeout: up.connect_timeout,
        retries: up.retries,
        tls,
    })
}
