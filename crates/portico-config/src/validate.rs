//! Checks across sections, run after the walk: names that must exist, things that must be
//! unique. Each duplicate names both places.

use std::collections::HashMap;
use std::net::SocketAddr;

use crate::model::{Config, HostPattern};
use crate::site::SiteSpans;
use crate::stream::StreamSpans;
use crate::vrrp::VrrpSpans;
use crate::walk::{Ctx, Span, list, suggest};

pub(crate) fn cross_check(
    ctx: &mut Ctx<'_>,
    config: &Config,
    sites: &[SiteSpans],
    streams: &[StreamSpans],
    vrrp: &[VrrpSpans],
) {
    let names: Vec<&str> = config.upstreams.keys().map(String::as_str).collect();
    let refs = std::mem::take(&mut ctx.upstream_refs);
    for (name, span) in &refs {
        if !config.upstreams.contains_key(name) {
            unknown_upstream(ctx, name, span, &names);
        }
    }
    duplicate_sites(ctx, config, sites);
    proxy_protocol_listeners(ctx, config, sites);
    duplicate_vrrp(ctx, config, vrrp);
    stream_listeners(ctx, config, streams);
    if let Some(admin) = config.admin.listen
        && config.sites.iter().any(|s| s.listen.contains(&admin))
        && let Some(first) = config.sites.iter().position(|s| s.listen.contains(&admin))
        && let Some(spans) = sites.get(first)
    {
        ctx.err(
            &spans.header,
            format!(
                "site #{} listens on {admin}, which is the admin API's address",
                first + 1
            ),
            Some("move the site, or set [admin] listen to another port (or \"off\")".into()),
        );
    }
}

fn unknown_upstream(ctx: &mut Ctx<'_>, name: &str, span: &Span, names: &[&str]) {
    let hint = if names.is_empty() {
        format!("define it: [upstreams.{name}] with servers = [\"127.0.0.1:8080\"]")
    } else if let Some(close) = suggest(name, names.iter().copied()) {
        format!("did you mean `{close}`?")
    } else {
        format!("defined upstreams: {}", list(names))
    };
    ctx.err(span, format!("unknown upstream `{name}`"), Some(hint));
}

fn duplicate_sites(ctx: &mut Ctx<'_>, config: &Config, spans: &[SiteSpans]) {
    let mut seen: HashMap<(SocketAddr, &HostPattern), usize> = HashMap::new();
    for (site, sp) in config.sites.iter().zip(spans) {
        for addr in &site.listen {
            for (host, host_span) in site.hosts.iter().zip(&sp.hosts) {
                let Some(first) = seen.get(&(*addr, host)).copied() else {
                    seen.insert((*addr, host), site.index);
                    continue;
                };
                if first == site.index {
                    ctx.err(
                        host_span,
                        format!(
                            "host {} is listed twice in site #{}",
                            show(host),
                            site.index + 1
                        ),
                        None,
                    );
                    continue;
                }
                let first_span = spans
                    .iter()
                    .zip(&config.sites)
                    .find(|(_, s)| s.index == first)
                    .and_then(|(sp, s)| {
                        s.hosts
                            .iter()
                            .position(|h| h == host)
                            .and_then(|i| sp.hosts.get(i))
                    })
                    .map_or(0, |s| s.start);
                let at = ctx.location(first_span);
                ctx.err(
                    host_span,
                    format!(
                        "site #{} repeats host {} on {addr}, already served by site #{} at {at}",
                        site.index + 1,
                        show(host),
                        first + 1
                    ),
                    Some(
                        "merge the routes into one site, or change its `hosts` or `listen`".into(),
                    ),
                );
            }
        }
    }
}

/// The addresses a site's connections arrive on: `listen`, and `http_listen` when the site
/// redirects plain HTTP to https.
fn site_addrs(site: &crate::model::Site) -> impl Iterator<Item = &SocketAddr> {
    let redirect = site.tls.is_some() && site.http_redirect;
    site.listen
        .iter()
        .chain(site.http_listen.iter().filter(move |_| redirect))
}

/// Sites sharing a listen address agree on `accept_proxy_protocol`: a PROXY header is a
/// property of the connection, read before any Host is known.
fn proxy_protocol_listeners(ctx: &mut Ctx<'_>, config: &Config, spans: &[SiteSpans]) {
    let mut first: HashMap<SocketAddr, (usize, bool)> = HashMap::new();
    for (site, sp) in config.sites.iter().zip(spans) {
        for addr in site_addrs(site) {
            let (other, expects) = *first
                .entry(*addr)
                .or_insert((site.index, site.accept_proxy_protocol));
            if expects != site.accept_proxy_protocol {
                let (with, without) = if expects {
                    (other, site.index)
                } else {
                    (site.index, other)
                };
                ctx.err(
                    &sp.accept_proxy,
                    format!(
                        "site #{} expects PROXY headers on {addr} (`accept_proxy_protocol`) \
                         and site #{} shares that address without them",
                        with + 1,
                        without + 1
                    ),
                    Some(
                        "set `accept_proxy_protocol` the same on every site of the address, \
                         or give them different `listen` addresses"
                            .into(),
                    ),
                );
                break;
            }
        }
    }
}

/// A stream's listen address is its own: not a site's (HTTP or redirect side), not another
/// stream's, not the admin API's.
fn stream_listeners(ctx: &mut Ctx<'_>, config: &Config, spans: &[StreamSpans]) {
    let mut seen: HashMap<SocketAddr, usize> = HashMap::new();
    for (stream, sp) in config.streams.iter().zip(spans) {
        let what = format!("stream #{}", stream.index + 1);
        for addr in &stream.listen {
            if addr.port() == 0 {
                // Port 0: the system picks a free port per socket (tests).
                continue;
            }
            let site = config.sites.iter().find(|s| {
                s.listen.contains(addr)
                    || (s.tls.is_some() && s.http_redirect && s.http_listen.contains(addr))
            });
            if let Some(site) = site {
                ctx.err(
                    &sp.listen,
                    format!("{what} listens on {addr}, which site #{} also uses", site.index + 1),
                    Some("a port serves either HTTP (a site) or raw TCP (a stream); pick another port".into()),
                );
            }
            if config.admin.listen == Some(*addr) {
                ctx.err(
                    &sp.listen,
                    format!("{what} listens on {addr}, which is the admin API's address"),
                    Some(
                        "move the stream, or set [admin] listen to another port (or \"off\")"
                            .into(),
                    ),
                );
            }
            match seen.get(addr) {
                Some(&first) if first != stream.index => ctx.err(
                    &sp.listen,
                    format!(
                        "{what} listens on {addr}, which stream #{} also uses",
                        first + 1
                    ),
                    Some("each stream needs its own address".into()),
                ),
                Some(_) => ctx.err(&sp.listen, format!("{what} lists {addr} twice"), None),
                None => {
                    seen.insert(*addr, stream.index);
                }
            }
        }
    }
}

fn show(h: &HostPattern) -> String {
    match h {
        HostPattern::Any => "`*`".into(),
        HostPattern::Exact(n) => format!("`{n}`"),
        HostPattern::Suffix(s) => format!("`*{s}`"),
    }
}

fn duplicate_vrrp(ctx: &mut Ctx<'_>, config: &Config, spans: &[VrrpSpans]) {
    let mut names: HashMap<&str, usize> = HashMap::new();
    let mut groups: HashMap<(&str, u8), usize> = HashMap::new();
    for (i, (inst, sp)) in config.vrrp.iter().zip(spans).enumerate() {
        if let Some(&first) = names.get(inst.name.as_str()) {
            let at = spans.get(first).map_or(0, |s| s.name.start);
            let at = ctx.location(at);
            ctx.err(
                &sp.name,
                format!("vrrp instance name `{}` is already used at {at}", inst.name),
                Some("give each [[vrrp]] its own name".into()),
            );
        } else {
            names.insert(&inst.name, i);
        }
        let key = (inst.interface.as_str(), inst.vrid);
        if let Some(&first) = groups.get(&key) {
            let at = spans.get(first).map_or(0, |s| s.vrid.start);
            let at = ctx.location(at);
            ctx.err(
                &sp.vrid,
                format!(
                    "vrid {} on `{}` is already used at {at}",
                    inst.vrid, inst.interface
                ),
                Some("each instance on an interface needs its own vrid".into()),
            );
        } else {
            groups.insert(key, i);
        }
    }
}
