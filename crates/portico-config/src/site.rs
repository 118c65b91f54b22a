//! `[[sites]]`: listeners, host names, (parsed, gated for now) TLS, and the routes.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use toml::de::DeValue;

use crate::gate::Scope;
use crate::keys::Tbl;
use crate::model::{ErrorPage, HostPattern, Matcher, Route, Site, SiteTls};
use crate::route::route;
use crate::walk::{Ctx, Span, Value};

/// Where each site's pieces are, for cross-checks after the walk.
#[derive(Debug, Default)]
pub(crate) struct SiteSpans {
    /// Span of the site's table (its `[[sites]]` header).
    pub header: Span,
    /// Span of each host pattern (the site header when `hosts` is absent).
    pub hosts: Vec<Span>,
    /// Span of `accept_proxy_protocol` (the site header when absent).
    pub accept_proxy: Span,
}

pub(crate) fn site(ctx: &mut Ctx<'_>, index: usize, v: &Value<'_>) -> Option<(Site, SiteSpans)> {
    let DeValue::Table(t) = v.get_ref() else {
        ctx.wrong_type("sites", v, "an array of tables", "[[sites]]");
        return None;
    };
    let what = format!("site #{}", index + 1);
    let header = v.span();
    let t = ctx.open(t, Scope::Site, format!("[[sites]] ({what})"));
    let listen = match ctx.listen_list(t, "listen") {
        Some((addrs, span)) => {
            if matches!(ctx.get(t, "listen").map(|v| v.get_ref()), Some(DeValue::Array(a)) if a.is_empty())
            {
                ctx.err(
                    &span,
                    format!("{what} has an empty `listen` list"),
                    Some(listen_hint()),
                );
            }
            addrs
        }
        None => {
            if !ctx.has(t, "listen") {
                ctx.err(
                    &header,
                    format!("{what} has no `listen`"),
                    Some(listen_hint()),
                );
            }
            Vec::new()
        }
    };
    let mut spans = SiteSpans {
        header: header.clone(),
        ..SiteSpans::default()
    };
    let hosts = match ctx.str_list(t, "hosts") {
        None => {
            spans.hosts.push(header.clone());
            vec![HostPattern::Any]
        }
        Some((items, span)) => {
            if items.is_empty() {
                ctx.err(
                    &span,
                    format!("{what} has an empty `hosts` list"),
                    Some("leave `hosts` out to answer every name (\"*\")".into()),
                );
            }
            let mut out = Vec::new();
            for (h, hspan) in items {
                match parse_host(&h) {
                    Ok(p) => {
                        out.push(p);
                        spans.hosts.push(hspan);
                    }
                    Err(msg) => ctx.err(
                        &hspan,
                        format!("bad host `{h}`: {msg}"),
                        Some("write a name (\"example.com\"), a wildcard (\"*.example.com\") or \"*\"".into()),
                    ),
                }
            }
            out
        }
    };
    let tls = site_tls(ctx, t);
    let policy = crate::policy::policy(ctx, t);
    let http_redirect = ctx.bool(t, "http_redirect", tls.is_some());
    let http_listen = ctx
        .listen_list(t, "http_listen")
        .map(|(a, _)| a)
        .unwrap_or_else(|| vec![SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 80)]);
    if tls.is_some()
        && !http_redirect
        && let Some(span) = ctx.key_span(t, "http_listen")
    {
        ctx.err(
            &span,
            "`http_listen` has no effect with `http_redirect = false`",
            Some(
                "the plain-HTTP side only redirects to https (and answers ACME HTTP-01); \
                 remove `http_listen`, or set `http_redirect = true`. To serve plain HTTP too, \
                 add a site without `tls`"
                    .into(),
            ),
        );
    }
    let hsts = ctx.str(t, "hsts").map(|(s, _)| s.to_string());
    let accept_proxy_protocol = ctx.bool(t, "accept_proxy_protocol", false);
    spans.accept_proxy = ctx
        .key_span(t, "accept_proxy_protocol")
        .unwrap_or_else(|| header.clone());
    let error_pages = error_pages(ctx, t);
    if tls.is_none() && !ctx.has(t, "tls") {
        for key in ["hsts", "http_listen"] {
            if let Some(span) = ctx.key_span(t, key) {
                ctx.err(
                    &span,
                    format!("`{key}` needs `tls` on the site"),
                    Some("add tls = \"acme\" or tls = { cert = \"...\", key = \"...\" }".into()),
                );
            }
        }
        if http_redirect && let Some(span) = ctx.key_span(t, "http_redirect") {
            ctx.err(
                &span,
                "`http_redirect` needs `tls` on the site",
                Some("it redirects plain HTTP to the site's https side".into()),
            );
        }
    }
    let mut route_spans: Vec<(String, Span)> = Vec::new();
    let routes = match ctx.get(t, "routes") {
        None => {
            ctx.err(
                &header,
                format!("{what} has no routes"),
                Some(
                    "add a [[sites.routes]] table, e.g. path = \"/\" and proxy = \"UPSTREAM\""
                        .into(),
                ),
            );
            Vec::new()
        }
        Some(rv) => match rv.get_ref() {
            DeValue::Array(items) => {
                if items.is_empty() {
                    ctx.err(&rv.span(), format!("{what} has no routes"), None);
                }
                let mut out: Vec<Route> = Vec::new();
                let seen = &mut route_spans;
                for (i, item) in items.iter().enumerate() {
                    let Some((r, span)) = route(ctx, i, item, &what) else {
                        continue;
                    };
                    let key = matcher_key(&r.matcher);
                    if let Some((_, first)) = seen.iter().find(|(k, _)| *k == key) {
                        let at = ctx.location(first.start);
                        ctx.err(
                            &span,
                            format!("{what} has the same matcher twice ({key}), first at {at}"),
                            Some("the later route could never match; merge or remove one".into()),
                        );
                    }
                    seen.push((key, span));
                    out.push(r);
                }
                out
            }
            _ => {
                ctx.wrong_type("routes", rv, "an array of tables", "[[sites.routes]]");
                Vec::new()
            }
        },
    };
    let mut routes = routes;
    for (r, (_, span)) in routes.iter_mut().zip(&route_spans) {
        let own = r.policy.compress.clone();
        r.policy.inherit(&policy);
        if (own.types.is_some() || own.min_size.is_some()) && r.policy.compress.resolve().is_none()
        {
            ctx.err(
                span,
                format!("a route of {what} sets `compress_types` or `compress_min_size` but does not compress"),
                Some("add `compress = true` to the route or its site".into()),
            );
        }
    }
    let site_sets = policy.compress.types.is_some() || policy.compress.min_size.is_some();
    if site_sets
        && policy.compress.resolve().is_none()
        && !routes.iter().any(|r| r.policy.compress.resolve().is_some())
    {
        for key in ["compress_types", "compress_min_size"] {
            if let Some(span) = ctx.key_span(t, key) {
                ctx.err(
                    &span,
                    format!("`{key}` has no effect: neither {what} nor its routes compress"),
                    Some("add `compress = true` to the site or to a route".into()),
                );
            }
        }
    }
    let site = Site {
        index,
        listen,
        hosts,
        tls,
        http_redirect,
        http_listen,
        hsts,
        accept_proxy_protocol,
        routes,
        error_pages,
    };
    Some((site, spans))
}

/// `error_pages = { 502 = "errors/502.html", 404 = "errors/404.html" }`: each file read now.
fn error_pages(ctx: &mut Ctx<'_>, t: Tbl<'_, '_>) -> Vec<ErrorPage> {
    let Some((pages, _)) = ctx.table(t, "error_pages") else {
        return Vec::new();
    };
    let mut out: Vec<ErrorPage> = Vec::new();
    for (k, v) in pages.iter() {
        let code: &str = k.get_ref();
        let status = match code.parse::<u16>() {
            Ok(n) if (400..=599).contains(&n) => n,
            _ => {
                ctx.err(
                    &k.span(),
                    format!("bad `error_pages` status `{code}`"),
                    Some("an error status 400-599, e.g. 502 = \"errors/502.html\"".into()),
                );
                continue;
            }
        };
        let DeValue::String(path) = v.get_ref() else {
            ctx.wrong_type(code, v, "a file path", "\"errors/502.html\"");
            continue;
        };
        let file = ctx.resolve(path);
        match std::fs::read(&file) {
            Ok(body) => out.push(ErrorPage { status, file, body }),
            Err(e) => ctx.err(
                &v.span(),
                format!("cannot read error page {}: {e}", file.display()),
                None,
            ),
        }
    }
    out
}

fn listen_hint() -> String {
    "add listen = [\"0.0.0.0:80\"] (an IP address and a port)".into()
}

/// `tls` of a site or a stream (`t`).
pub(crate) fn site_tls(ctx: &mut Ctx<'_>, t: Tbl<'_, '_>) -> Option<SiteTls> {
    let v = ctx.get(t, "tls")?;
    match v.get_ref() {
        DeValue::String(s) if s == "acme" => Some(SiteTls::Acme),
        DeValue::Table(tt) => {
            let tt = ctx.open(tt, Scope::SiteTls, "a site's `tls`");
            let cert = ctx.path(tt, "cert");
            let key = ctx.path(tt, "key");
            match (cert, key) {
                (Some(cert), Some(key)) => Some(SiteTls::Files { cert, key }),
                _ => {
                    ctx.err(
                        &v.span(),
                        "`tls` needs both `cert` and `key`",
                        Some("tls = { cert = \"fullchain.pem\", key = \"key.pem\" }".into()),
                    );
                    None
                }
            }
        }
        _ => {
            ctx.err(
                &v.span(),
                "`tls` must be \"acme\" or { cert = \"...\", key = \"...\" }",
                Some("tls = \"acme\" gets certificates automatically".into()),
            );
            None
        }
    }
}

/// `"*"`, `"*.example.com"` or an exact name; lower-cased, without a port.
pub(crate) fn parse_host(h: &str) -> Result<HostPattern, String> {
    if h == "*" {
        return Ok(HostPattern::Any);
    }
    let lower = h.to_ascii_lowercase();
    let (name, wildcard) = match lower.strip_prefix("*.") {
        Some(rest) => (rest, true),
        None => (lower.as_str(), false),
    };
    if name.is_empty() {
        return Err("empty name".into());
    }
    if name.contains(':') && !(name.starts_with('[') && name.ends_with(']')) {
        return Err("a host pattern has no port (the site's `listen` decides the port)".into());
    }
    let ok_char = |b: u8| b.is_ascii_alphanumeric() || b"-._[]:".contains(&b);
    if !name.bytes().all(ok_char) {
        return Err("only letters, digits, `-`, `.` and a leading `*.` are allowed".into());
    }
    if wildcard {
        Ok(HostPattern::Suffix(format!(".{name}")))
    } else {
        Ok(HostPattern::Exact(name.to_string()))
    }
}

/// A matcher as written, to find duplicates within a site.
fn matcher_key(m: &Matcher) -> String {
    match m {
        Matcher::Prefix(p) => format!("path = \"{p}\""),
        Matcher::Exact(p) => format!("exact = \"{p}\""),
        Matcher::Regex(r) => format!("regex = '{}'", r.as_str()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_patterns() {
        assert_eq!(parse_host("*"), Ok(HostPattern::Any));
        assert_eq!(
            parse_host("WWW.Example.com"),
            Ok(HostPattern::Exact("www.example.com".into()))
        );
        assert_eq!(
            parse_host("*.Example.com"),
            Ok(HostPattern::Suffix(".example.com".into()))
        );
        assert_eq!(parse_host("[::1]"), Ok(HostPattern::Exact("[::1]".into())));
        for bad in ["", "*.", "example.com:80", "a b", "a/b"] {
            assert!(parse_host(bad).is_err(), "{bad}");
        }
    }
}
