//! Routing phase: the site by `Host`, then the route by path.
//!
//! Sites: the `Host` header (port stripped, lower-cased) is looked up as an exact name, then
//! as the longest matching `*.suffix` wildcard, then `*`; the first site on the listener
//! answers unknown hosts. Routes follow nginx's order: `exact`, then `regex` in file order,
//! then the longest `path` prefix.
//!
//! What a matched route does ([`RouteAction`]; a proxy route compiled for the hot path,
//! [`ProxyRoute`]) is defined here too, so the tables need nothing of the snapshot.

use std::collections::HashMap;
use std::time::Duration;

use http::{HeaderName, HeaderValue};
use portico_config::{
    HeaderRules, HostPattern, Matcher, RedirectAction, RespondAction, StaticAction,
};
use regex::Regex;

use crate::policy::RoutePolicy;

/// What a matched route does.
#[derive(Debug)]
pub(crate) enum RouteAction {
    Proxy(ProxyRoute),
    Static(StaticAction),
    Redirect(RedirectAction),
    Respond(RespondAction),
}

/// A `proxy = "NAME"` route, ready for the hot path.
#[derive(Debug)]
pub(crate) struct ProxyRoute {
    /// Index into the snapshot's `upstreams`.
    pub upstream: usize,
    /// The route's prefix when `strip_prefix = true`.
    pub strip: Option<String>,
    pub websocket: bool,
    /// Route override, else the upstream's.
    pub read_timeout: Duration,
    /// 0 = unlimited.
    pub max_body: u64,
    pub request_headers: CompiledRules,
    pub response_headers: CompiledRules,
    /// `ws_ping`: keep-alive pings on a WebSocket (see `websocket::ping`).
    pub ws_ping: Option<Duration>,
    /// The route's metrics series (`None` when metrics are off).
    pub series: Option<portico_metrics::SeriesId>,
}

/// Header set/remove rules as typed names and values.
#[derive(Debug, Default, Clone)]
pub(crate) struct CompiledRules {
    pub set: Vec<(HeaderName, HeaderValue)>,
    pub remove: Vec<HeaderName>,
}

impl CompiledRules {
    pub fn compile(rules: &HeaderRules) -> CompiledRules {
        let set = rules
            .set
            .iter()
            .filter_map(|(n, v)| {
                let name = HeaderName::from_bytes(n.as_bytes()).ok()?;
                let value = HeaderValue::from_str(v).ok()?;
                Some((name, value))
            })
            .collect();
        let remove = rules
            .remove
            .iter()
            .filter_map(|n| HeaderName::from_bytes(n.as_bytes()).ok())
            .collect();
        CompiledRules { set, remove }
    }

    pub fn is_empty(&self) -> bool {
        self.set.is_empty() && self.remove.is_empty()
    }

    /// Remove, then set.
    pub fn apply(&self, headers: &mut http::HeaderMap) {
        for name in &self.remove {
            headers.remove(name);
        }
        for (name, value) in &self.set {
            headers.insert(name.clone(), value.clone());
        }
    }
}

/// Host -> site index for one listener.
#[derive(Debug, Default)]
pub(crate) struct HostTable {
    exact: HashMap<String, usize>,
    /// `(".example.com", site)`, longest suffix first.
    suffixes: Vec<(String, usize)>,
    any: Option<usize>,
    /// The first site on the listener.
    default: usize,
    sites: usize,
}

impl HostTable {
    /// Register `site` (global index) with its host patterns; call in file order.
    pub fn add_site(&mut self, site: usize, hosts: &[HostPattern]) {
        if self.sites == 0 {
            self.default = site;
        }
        self.sites += 1;
        for pattern in hosts {
            match pattern {
                HostPattern::Any => {
                    self.any.get_or_insert(site);
                }
                HostPattern::Exact(name) => {
                    self.exact.entry(name.to_ascii_lowercase()).or_insert(site);
                }
                HostPattern::Suffix(suffix) => {
                    let suffix = suffix.to_ascii_lowercase();
                    if !self.suffixes.iter().any(|(s, _)| *s == suffix) {
                        self.suffixes.push((suffix, site));
                        // Stable sort keeps file order among equal lengths.
                        self.suffixes.sort_by_key(|s| std::cmp::Reverse(s.0.len()));
                    }
                }
            }
        }
    }

    /// The site for a `Host` header value (may carry a port, any case).
    pub fn select(&self, host: Option<&[u8]>) -> usize {
        if self.sites <= 1 {
            return self.default;
        }
        let Some(host) = host else {
            return self.any.unwrap_or(self.default);
        };
        // `example.com.` is `example.com` (the host was checked before routing).
        let host = match strip_port(host) {
            [name @ .., b'.'] if !name.is_empty() => name,
            name => name,
        };
        let mut lowered = [0u8; 256];
        let name: &[u8] = if host.iter().any(u8::is_ascii_uppercase) && host.len() <= 256 {
            let out = &mut lowered[..host.len()];
            out.copy_from_slice(host);
            out.make_ascii_lowercase();
            out
        } else {
            host
        };
        let Ok(name) = std::str::from_utf8(name) else {
            return self.any.unwrap_or(self.default);
        };
        if let Some(&site) = self.exact.get(name) {
            return site;
        }
        for (suffix, site) in &self.suffixes {
            if name.len() > suffix.len() && name.ends_with(suffix.as_str()) {
                return *site;
            }
        }
        self.any.unwrap_or(self.default)
    }
}

/// `example.com:8080` -> `example.com`; `[::1]:80` -> `[::1]`.
fn strip_port(host: &[u8]) -> &[u8] {
    if host.first() == Some(&b'[') {
        return match host.iter().position(|&b| b == b']') {
            Some(end) => &host[..=end],
            None => host,
        };
    }
    match host.iter().rposition(|&b| b == b':') {
        Some(colon) => &host[..colon],
        None => host,
    }
}

/// The routes of one site, compiled for nginx-order matching.
#[derive(Debug)]
pub(crate) struct RouteTable {
    actions: Vec<RouteAction>,
    /// Metrics series of each route (same order as `actions`); empty in unit tests.
    series: Vec<portico_metrics::SeriesId>,
    exact: HashMap<String, usize>,
    regexes: Vec<(Regex, usize)>,
    /// Longest first; file order among equal lengths.
    prefixes: Vec<(String, usize)>,
    /// The traffic policy of each route (same order as `actions`; empty when no route of
    /// the site has one).
    policies: Vec<Option<Box<RoutePolicy>>>,
}

impl RouteTable {
    /// Compile routes given in file order.
    pub fn new(routes: Vec<(Matcher, RouteAction)>) -> RouteTable {
        let mut table = RouteTable {
            actions: Vec::with_capacity(routes.len()),
            series: Vec::new(),
            exact: HashMap::new(),
            regexes: Vec::new(),
            prefixes: Vec::new(),
            policies: Vec::new(),
        };
        for (i, (matcher, action)) in routes.into_iter().enumerate() {
            table.actions.push(action);
            match matcher {
                Matcher::Exact(path) => {
                    table.exact.entry(path).or_insert(i);
                }
                Matcher::Regex(re) => table.regexes.push((re, i)),
                Matcher::Prefix(prefix) => table.prefixes.push((prefix, i)),
            }
        }
        table.prefixes.sort_by_key(|p| std::cmp::Reverse(p.0.len()));
        table
    }

    /// Give the routes (file order) their traffic policies.
    pub fn set_policies(&mut self, policies: Vec<Option<Box<RoutePolicy>>>) {
        self.policies = if policies.iter().any(Option::is_some) {
            policies
        } else {
            Vec::new()
        };
    }

    /// Set each route's metrics series (file order).
    pub fn set_series(&mut self, series: Vec<portico_metrics::SeriesId>) {
        self.series = series;
    }

    /// The route for `path` (the URI path, not decoded), if any.
    pub fn select(&self, path: &str) -> Option<&RouteAction> {
        self.actions.get(self.select_index(path)?)
    }

    /// The route for `path` with its traffic policy (if it has one) and its metrics series
    /// (`None` when metrics are off).
    pub fn select_full(
        &self,
        path: &str,
    ) -> Option<(
        &RouteAction,
        Option<&RoutePolicy>,
        Option<portico_metrics::SeriesId>,
    )> {
        let i = self.select_index(path)?;
        let policy = self.policies.get(i).and_then(Option::as_deref);
        Some((self.actions.get(i)?, policy, self.series.get(i).copied()))
    }

    /// The index of the route for `path` (the URI path, not decoded).
    fn select_index(&self, path: &str) -> Option<usize> {
        if !self.exact.is_empty()
            && let Some(&i) = self.exact.get(path)
        {
            return Some(i);
        }
        for (re, i) in &self.regexes {
            if re.is_match(path) {
                return Some(*i);
            }
        }
        self.prefixes
            .iter()
            .find(|(prefix, _)| path.starts_with(prefix.as_str()))
            .map(|(_, i)| *i)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use portico_config::RespondAction;

    fn respond(body: &str) -> RouteAction {
        RouteAction::Respond(RespondAction {
            body: body.to_string(),
            status: 200,
            content_type: "text/plain".to_string(),
        })
    }

    fn body_of(a: Option<&RouteAction>) -> &str {
        match a {
            Some(RouteAction::Respond(r)) => &r.body,
            _ => "none",
        }
    }

    #[test]
    fn nginx_order_exact_then_regex_then_longest_prefix() {
        let table = RouteTable::new(vec![
            (Matcher::Prefix("/".into()), respond("root")),
            (Matcher::Prefix("/api".into()), respond("api")),
            (Matcher::Prefix("/api/v2".into()), respond("api2")),
            (
                Matcher::Regex(Regex::new(r"\.png$").unwrap()),
                respond("png"),
            ),
            (
                Matcher::Regex(Regex::new(r"^/api/.*\.png$").unwrap()),
                respond("png2"),
            ),
            (Matcher::Exact("/api/v2/x.png".into()), respond("exact")),
        ]);
        assert_eq!(body_of(table.select("/api/v2/x.png")), "exact");
        assert_eq!(body_of(table.select("/api/v2/y.png")), "png");
        assert_eq!(body_of(table.select("/api/v2/y")), "api2");
        assert_eq!(body_of(table.select("/api/v1")), "api");
        assert_eq!(body_of(table.select("/other")), "root");
    }

    #[test]
    fn no_match_is_none() {
        let table = RouteTable::new(vec![(Matcher::Prefix("/a".into()), respond("a"))]);
        assert!(table.select("/b").is_none());
    }

    #[test]
    fn host_exact_then_wildcard_then_any_then_first_site() {
        let mut t = HostTable::default();
        t.add_site(0, &[HostPattern::Exact("a.example.com".into())]);
        t.add_site(1, &[HostPattern::Suffix(".example.com".into())]);
        t.add_site(2, &[HostPattern::Suffix(".b.example.com".into())]);
        assert_eq!(t.select(Some(b"a.example.com")), 0);
        assert_eq!(t.select(Some(b"A.Example.COM:8080")), 0);
        assert_eq!(t.select(Some(b"a.example.com.")), 0, "trailing dot");
        assert_eq!(t.select(Some(b"a.example.com.:80")), 0, "trailing dot");
        assert_eq!(t.select(Some(b"x.example.com")), 1);
        assert_eq!(t.select(Some(b"x.b.example.com")), 2);
        assert_eq!(t.select(Some(b"example.com")), 0, "unknown -> first site");
        assert_eq!(t.select(None), 0);
        t.add_site(3, &[HostPattern::Any]);
        assert_eq!(t.select(Some(b"other.org")), 3);
    }

    #[test]
    fn strips_ports_and_keeps_ipv6_literals() {
        assert_eq!(strip_port(b"example.com:80"), b"example.com");
        assert_eq!(strip_port(b"[::1]:80"), b"[::1]");
        assert_eq!(strip_port(b"example.com"), b"example.com");
    }
}
