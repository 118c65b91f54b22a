//! The compiled, immutable view of a [`Config`] that requests run against.
//!
//! Built once per config (start-up, later reload) and published through an
//! `arc_swap::ArcSwap`: listeners with their sites (compiled host tables and route tables,
//! see [`route`]), upstream pools (live state stays in the balance registry) with
//! their servers' resolved addresses, and header rules turned into typed header names and
//! values so the hot path never parses or formats them.
//!
//! Lives here: the [`Snapshot`] and its parts (this file), the host and route tables
//! ([`route`]), the TLS contexts built with it ([`tls`]: listener acceptors, upstream
//! connectors, and the server's [`tls::TlsContext`]) and the compiled `sticky_cookie` of
//! an upstream ([`sticky`]).
//!
//! May import: `policy` (the compiled traffic policies routes hold) and the ground floor
//! ([`crate::error`]): a snapshot knows no worker, connection or request.

pub(crate) mod error_pages;
pub(crate) mod route;
pub(crate) mod sticky;
pub(crate) mod tls;

pub(crate) use route::{CompiledRules, ProxyRoute, RouteAction};

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use http::HeaderValue;
use portico_balance::{Pool, Registry};
use portico_config::{Action, Config, ProxyAction, ServerConfig, Upstream};

use crate::error::ProxyError;
use crate::snapshot::route::{HostTable, RouteTable};
use portico_metrics::{ListenerId, SeriesId};

/// Everything a request needs, compiled from one config.
#[derive(Debug)]
pub(crate) struct Snapshot {
    /// One entry per distinct listen address, in first-seen order.
    pub listeners: Vec<ListenerSites>,
    /// Sites in file order; [`HostTable`] lookups return indexes into this.
    pub sites: Vec<CompiledSite>,
    /// Upstreams, indexed by [`ProxyRoute::upstream`].
    pub upstreams: Vec<UpstreamEntry>,
    pub server: ServerConfig,
    /// Data-plane metrics are counted (the admin API is on to read them).
    pub metrics: bool,
}

/// The sites sharing one listen address.
#[derive(Debug)]
pub(crate) struct ListenerSites {
    pub addr: SocketAddr,
    pub hosts: HostTable,
    /// A TLS listener: a site with `tls` listens here.
    pub tls: bool,
    /// Every connection starts with a PROXY v1/v2 header (`accept_proxy_protocol` on the
    /// sites here; validation makes them agree).
    pub proxy_protocol: bool,
    /// The certificate entries (`portico_tls::site_resolver_id`) of the TLS sites here, in
    /// file order, without repeats: the first is the certificate of handshakes without SNI
    /// or with a name no site here serves.
    pub cert_ids: Vec<String>,
    /// This listener's TLS acceptor (set by [`Snapshot::attach_tls`]).
    pub acceptor: Option<crate::snapshot::tls::ListenerAcceptor>,
    /// Sites (global indexes) that only answer 301 to https here: this address is their
    /// `http_listen`. Few per listener; a linear scan is cheaper than a set.
    pub redirect: Vec<usize>,
    /// Metrics series of its connections (`http` or `https`) and of its HTTP/2 ones;
    /// `None` when metrics are off.
    pub metrics: Option<(ListenerId, ListenerId)>,
}

impl ListenerSites {
    /// Whether `site` only redirects to https on this listener.
    pub fn redirects(&self, site: usize) -> bool {
        !self.redirect.is_empty() && self.redirect.contains(&site)
    }
}

/// One site, compiled.
#[derive(Debug)]
pub(crate) struct CompiledSite {
    pub routes: RouteTable,
    /// `error_pages` (`None`: Portico's short texts).
    pub error_pages: Option<Box<error_pages::ErrorPages>>,
    /// Metrics series of requests no route answered (https redirects, ACME answers, no
    /// match); `None` when metrics are off.
    pub unrouted: Option<SeriesId>,
    /// The TLS side of the site, when it has `tls`.
    pub tls: Option<SiteTlsInfo>,
}

/// What the data path needs to know about a TLS site.
#[derive(Debug)]
pub(crate) struct SiteTlsInfo {
    /// Certificate identity: two sites with the same value serve the same certificate (a
    /// request may move between them on one TLS connection; otherwise 421).
    pub cert: usize,
    /// `Strict-Transport-Security` value for https responses.
    pub hsts: Option<HeaderValue>,
    /// The site's first `listen` address as configured, and the port of its https side as
    /// bound (for the `http_redirect` Location; fixed up by [`Snapshot::set_bound`]).
    pub listen: SocketAddr,
    pub https_port: u16,
}

/// One upstream: its pool and its servers' resolved addresses.
#[derive(Debug)]
pub(crate) struct UpstreamEntry {
    pub pool: Pool,
    /// Resolved address per pool member, same order as [`Pool::members`] (the first address
    /// of a name; it also keys the keep-alive pool).
    pub addrs: Vec<SocketAddr>,
    /// Further addresses of each member's name (e.g. `localhost` -> `::1` and `127.0.0.1`),
    /// tried in order when connecting to the first fails.
    pub fallbacks: Vec<Vec<SocketAddr>>,
    pub config: Upstream,
    /// `tls = {..}`: how to talk TLS to the servers.
    pub tls: Option<crate::snapshot::tls::UpstreamTlsCtx>,
    /// `sticky_cookie`, compiled (`None`: the request path never looks at cookies).
    pub sticky: Option<sticky::Sticky>,
}

impl UpstreamEntry {
    /// The member the request's `sticky_cookie` pins it to (the cookie verified), if the
    /// upstream has one. One branch when it has none.
    #[inline]
    pub fn pinned(&self, headers: &http::HeaderMap) -> Option<usize> {
        self.sticky.as_ref()?.member(headers)
    }

    /// Take the pinned member if it can serve: not `down`, healthy, not failed by passive
    /// health, below `max_conns`, and enabled (a draining or disabled server gets no
    /// pinned clients: they are re-picked and re-pinned).
    pub fn pick_pinned(&self, pinned: Option<usize>) -> Option<portico_balance::Picked> {
        let index = pinned?;
        let member = self.pool.members().get(index)?;
        if member.state.admin_state() != portico_balance::AdminState::Enabled {
            return None;
        }
        self.pool.pick_member(index)
    }

    /// After member `index` answered: a `Set-Cookie` pinning the client to it, unless the
    /// request's cookie already named it.
    pub fn pin(
        &self,
        pinned: Option<usize>,
        index: usize,
        https: bool,
        headers: &mut http::HeaderMap,
    ) {
        if let Some(sticky) = &self.sticky
            && pinned != Some(index)
            && let Some(value) = sticky.set_cookie(index, https)
        {
            headers.append(http::header::SET_COOKIE, value.clone());
        }
    }
}

impl Snapshot {
    /// Index of the listener whose configured address is `id` (a listener's identity
    /// across reloads; a connection keeps it, not an index that a reload may shift).
    pub fn listener_index(&self, id: SocketAddr) -> Option<usize> {
        self.listeners.iter().position(|l| l.addr == id)
    }

    /// Compile `config`; resolves server names (blocking, start-up/reload only) with the
    /// system resolver.
    #[cfg(test)]
    pub fn build(config: &Arc<Config>, registry: &Registry) -> Result<Snapshot, ProxyError> {
        Snapshot::build_with(config, registry, &portico_net::Resolver::system())
    }

    /// [`Snapshot::build`] resolving names with `resolver` (the process's, from its
    /// plumbing: every address of a name, IPv4 first).
    pub fn build_with(
        config: &Arc<Config>,
        registry: &Registry,
        resolver: &portico_net::Resolver,
    ) -> Result<Snapshot, ProxyError> {
        let mut upstreams = Vec::with_capacity(config.upstreams.len());
        let mut upstream_index = HashMap::new();
        let secret = match &config.server.secret_file {
            Some(path) => Some(sticky::read_secret(path)?),
            None => None,
        };
        for (name, upstream) in &config.upstreams {
            let pool = Pool::new(upstream, registry);
            let resolved = pool
                .members()
                .iter()
                .map(|m| resolve(resolver, &upstream.name, &m.spec.addr))
                .collect::<Result<Vec<_>, _>>()?;
            let addrs = resolved.iter().map(|all| all[0]).collect();
            let fallbacks = resolved.into_iter().map(|all| all[1..].to_vec()).collect();
            let tls = match &upstream.tls {
                Some(tls) => Some(crate::snapshot::tls::UpstreamTlsCtx::build(
                    name,
                    tls,
                    &pool,
                    &config.base_dir,
                )?),
                None => None,
            };
            let sticky = match &upstream.sticky_cookie {
                Some(cookie) => Some(sticky::Sticky::build(
                    cookie,
                    upstream.sticky_cookie_max_age,
                    name,
                    pool.members().iter().map(|m| &*m.id.addr),
                    secret.clone(),
                )?),
                None => None,
            };
            upstream_index.insert(name.as_str(), upstreams.len());
            upstreams.push(UpstreamEntry {
                pool,
                addrs,
                fallbacks,
                config: upstream.clone(),
                tls,
                sticky,
            });
        }

        let metrics = config.admin.listen.is_some().then(portico_metrics::global);
        let mut listeners: Vec<ListenerSites> = Vec::new();
        let mut sites = Vec::with_capacity(config.sites.len());
        let mut certs: Vec<&portico_config::SiteTls> = Vec::new();
        for (site_index, site) in config.sites.iter().enumerate() {
            let mut routes = Vec::with_capacity(site.routes.len());
            let site_label = site
                .hosts
                .first()
                .map_or_else(|| "*".to_string(), host_label);
            let mut series = Vec::with_capacity(site.routes.len());
            for route in &site.routes {
                let upstream = match &route.action {
                    Action::Proxy(p) => p.upstream.as_str(),
                    _ => "",
                };
                let id =
                    metrics.map(|m| m.series(&site_label, &route_label(&route.matcher), upstream));
                series.extend(id);
                let action = match &route.action {
                    Action::Proxy(p) => RouteAction::Proxy(compile_proxy(
                        p,
                        route,
                        &upstream_index,
                        &upstreams,
                        id,
                    )?),
                    Action::Static(s) => RouteAction::Static(s.clone()),
                    Action::Redirect(r) => RouteAction::Redirect(r.clone()),
                    Action::Respond(r) => RouteAction::Respond(r.clone()),
                };
                routes.push((route.matcher.clone(), action));
            }
            let tls = site.tls.as_ref().map(|tls| {
                let cert = match certs.iter().position(|c| *c == tls) {
                    Some(i) => i,
                    None => {
                        certs.push(tls);
                        certs.len() - 1
                    }
                };
                let hsts = site.hsts.as_deref().and_then(|v| {
                    HeaderValue::from_str(v)
                        .map_err(|_| {
                            tracing::warn!(
                                site = site_index + 1,
                                "hsts value is not a valid header value; not sent"
                            )
                        })
                        .ok()
                });
                SiteTlsInfo {
                    cert,
                    hsts,
                    listen: site.listen[0],
                    https_port: site.listen[0].port(),
                }
            });
            let mut routes = RouteTable::new(routes);
            let mut tables = crate::policy::SiteTables::default();
            routes.set_policies(
                site.routes
                    .iter()
                    .map(|r| crate::policy::RoutePolicy::compile(&r.policy, &mut tables))
                    .collect(),
            );
            routes.set_series(series);
            sites.push(CompiledSite {
                routes,
                unrouted: metrics.map(|m| m.series(&site_label, "-", "")),
                tls,
                error_pages: error_pages::ErrorPages::compile(&site.error_pages),
            });
            for addr in &site.listen {
                let l = listener_at(&mut listeners, *addr);
                l.hosts.add_site(site_index, &site.hosts);
                l.tls |= site.tls.is_some();
                l.proxy_protocol |= site.accept_proxy_protocol;
                if let Some(id) = portico_tls::site_resolver_id(site)
                    && !l.cert_ids.contains(&id)
                {
                    l.cert_ids.push(id);
                }
            }
            if site.tls.is_some() && site.http_redirect {
                for addr in &site.http_listen {
                    let l = listener_at(&mut listeners, *addr);
                    l.hosts.add_site(site_index, &site.hosts);
                    l.redirect.push(site_index);
                    l.proxy_protocol |= site.accept_proxy_protocol;
                }
            }
        }
        for l in &listeners {
            if l.tls && !l.redirect.is_empty() {
                return Err(ProxyError::Tls(format!(
                    "{} is both a TLS `listen` address and an `http_listen` address",
                    l.addr
                )));
            }
        }
        if let Some(m) = metrics {
            for l in &mut listeners {
                let addr = l.addr.to_string();
                let protocol = if l.tls { "https" } else { "http" };
                l.metrics = Some((m.listener(&addr, protocol), m.listener(&addr, "h2")));
            }
        }
        Ok(Snapshot {
            listeners,
            sites,
            upstreams,
            server: config.server.clone(),
            metrics: metrics.is_some(),
        })
    }
}

/// The listener of `addr`, created (plain, no sites) on first use.
fn listener_at(listeners: &mut Vec<ListenerSites>, addr: SocketAddr) -> &mut ListenerSites {
    let idx = match listeners.iter().position(|l| l.addr == addr) {
        Some(i) => i,
        None => {
            listeners.push(ListenerSites {
                addr,
                hosts: HostTable::default(),
                tls: false,
                proxy_protocol: false,
                cert_ids: Vec::new(),
                acceptor: None,
                redirect: Vec::new(),
                metrics: None,
            });
            listeners.len() - 1
        }
    };
    &mut listeners[idx]
}

impl Snapshot {
    /// After binding: `bound` pairs (configured, actual) address; a site's https port for
    /// its redirects is the port its first `listen` address actually got (port 0 in tests).
    pub fn set_bound(&mut self, bound: &[(SocketAddr, SocketAddr)]) {
        for site in &mut self.sites {
            if let Some(tls) = &mut site.tls
                && let Some((_, actual)) = bound.iter().find(|(want, _)| *want == tls.listen)
            {
                tls.https_port = actual.port();
            }
        }
    }

    /// Give every TLS listener its acceptor (its own default certificate); before the
    /// snapshot is published.
    pub fn attach_tls(&mut self, tls: &crate::snapshot::tls::TlsShared) {
        for l in &mut self.listeners {
            if l.tls {
                l.acceptor = tls.listener_acceptor(&l.cert_ids);
            }
        }
    }

    /// The upstream a WebSocket upgrade for `host` and `path` on the listener `id` is
    /// proxied to, as the request handler routes it: `None` when the listener is gone, the
    /// site only redirects to https there, or the route is not a WebSocket proxy route.
    pub fn websocket_upstream(
        &self,
        id: SocketAddr,
        host: Option<&[u8]>,
        path: &str,
    ) -> Option<&UpstreamEntry> {
        let listener = &self.listeners[self.listener_index(id)?];
        let site = listener.hosts.select(host);
        if listener.redirects(site) {
            return None;
        }
        match self.sites.get(site)?.routes.select(path)? {
            RouteAction::Proxy(route) if route.websocket => self.upstreams.get(route.upstream),
            _ => None,
        }
    }

    /// Whether any listener or upstream needs TLS.
    pub fn needs_tls(&self) -> bool {
        self.listeners.iter().any(|l| l.tls)
    }
}

fn compile_proxy(
    p: &ProxyAction,
    route: &portico_config::Route,
    upstream_index: &HashMap<&str, usize>,
    upstreams: &[UpstreamEntry],
    series: Option<SeriesId>,
) -> Result<ProxyRoute, ProxyError> {
    let upstream = *upstream_index
        .get(p.upstream.as_str())
        .ok_or_else(|| ProxyError::NoServer(p.upstream.clone()))?;
    let strip = match (&route.matcher, p.strip_prefix) {
        (portico_config::Matcher::Prefix(prefix), true) => {
            Some(prefix.trim_end_matches('/').to_string())
        }
        _ => None,
    };
    Ok(ProxyRoute {
        upstream,
        strip,
        websocket: p.websocket,
        read_timeout: p
            .read_timeout
            .unwrap_or(upstreams[upstream].config.read_timeout),
        max_body: p.max_body,
        request_headers: CompiledRules::compile(&p.request_headers),
        response_headers: CompiledRules::compile(&p.response_headers),
        ws_ping: p.ws_ping,
        series,
    })
}

/// A site's metrics label: its first host as written.
fn host_label(h: &portico_config::HostPattern) -> String {
    match h {
        portico_config::HostPattern::Any => "*".to_string(),
        portico_config::HostPattern::Exact(name) => name.clone(),
        portico_config::HostPattern::Suffix(suffix) => format!("*{suffix}"),
    }
}

/// A route's metrics label: its matcher as written (`/api/`, `= /exact`, `~ regex`).
fn route_label(m: &portico_config::Matcher) -> String {
    match m {
        portico_config::Matcher::Prefix(p) => p.clone(),
        portico_config::Matcher::Exact(p) => format!("= {p}"),
        portico_config::Matcher::Regex(re) => format!("~ {}", re.as_str()),
    }
}

/// Resolve `host:port` once (names like `localhost` too): every address, IPv4 first, never
/// empty.
fn resolve(
    resolver: &portico_net::Resolver,
    upstream: &str,
    addr: &portico_config::ServerAddr,
) -> Result<Vec<SocketAddr>, ProxyError> {
    resolver.resolve(addr).map_err(|e| ProxyError::Resolve {
        upstream: upstream.to_string(),
        addr: addr.to_string(),
        reason: e.to_string(),
    })
}
