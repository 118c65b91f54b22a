//! `http` and its `server` blocks -> `[[sites]]`. After each server is converted on its
//! own, the sites are put together as nginx would serve them: certbot/getssl sites become
//! `tls = "acme"` when asked, a plain server that only redirects to https is folded into
//! the TLS site's `http_listen`, `default_server` sites go first on their listeners, and a
//! host claimed twice on one listener stays with the first server (as nginx warns and does).

use super::inherit::Inherit;
use super::location::{self, RouteDraft, Srv};
use super::upstream::{self, Ctx};
use super::{Cx, policy, values};
use crate::out::{Field, Site, Table, inline, q, qlist};
use crate::report::Kind;
use crate::tree::Node;

/// A site before the sites are put together.
#[derive(Debug, Clone)]
struct Draft {
    origin: String,
    file: String,
    line: usize,
    listens: Vec<String>,
    ports: Vec<u16>,
    tls: bool,
    default: bool,
    /// `None`: no server_name (nginx's "" name).
    hosts: Option<Vec<String>>,
    cert: Option<String>,
    key: Option<String>,
    hsts: Option<String>,
    routes: Vec<RouteDraft>,
    http_listen: Vec<String>,
    acme: bool,
    /// `listen ... proxy_protocol`.
    proxy_protocol: bool,
    /// `error_page` carried over: status -> file.
    error_pages: Vec<(u16, String)>,
}

/// One `listen`: address, port, `proxy_protocol`.
type ListenAt = (String, u16, bool);

/// The inside of `http { }` (or a conf.d file).
pub(crate) fn http(cx: &mut Cx<'_>, nodes: &[Node]) {
    for n in nodes.iter().filter(|n| n.name == "upstream") {
        upstream::block(cx, n, Ctx::Http);
    }
    for n in nodes.iter().filter(|n| n.name == "map") {
        map(cx, n);
    }
    for n in nodes {
        let arg = n.arg(0).unwrap_or("");
        match n.name.as_str() {
            "keepalive_timeout" => match values::time(arg) {
                Some(t) if t != "0s" => {
                    cx.out.server.set("keepalive_timeout", q(&t));
                    n.mark();
                }
                _ => cx.notes.note(n, Kind::NotCarried, "Portico cannot turn client keep-alive off (keepalive_timeout must be more than 0)"),
            },
            "client_header_timeout" => match values::time(arg) {
                Some(t) if t != "0s" => {
                    cx.out.server.set("header_timeout", q(&t));
                    n.mark();
                }
                _ => cx.notes.note(n, Kind::NotCarried, "cannot read this time"),
            },
            _ => {}
        }
    }
    policy::zones(cx, nodes);
    let base = Inherit::default().child(cx, nodes);
    let mut drafts = Vec::new();
    for n in nodes.iter().filter(|n| n.name == "server") {
        server(cx, n, &base, &mut drafts);
    }
    finish(cx, drafts);
}

fn map(cx: &mut Cx<'_>, n: &Node) {
    if n.args == ["$http_upgrade", "$connection_upgrade"] {
        cx.notes.note(
            n,
            Kind::Dropped,
            "WebSocket idiom: Portico forwards upgrades itself (websocket = true on the route)",
        );
    } else {
        cx.notes.note(
            n,
            Kind::NotCarried,
            "Portico has no variables; what this map decides is not carried over",
        );
    }
}

fn server(cx: &mut Cx<'_>, n: &Node, base: &Inherit, drafts: &mut Vec<Draft>) {
    n.mark();
    let children = n.children();
    let mut plain: Vec<ListenAt> = Vec::new();
    let mut secure: Vec<ListenAt> = Vec::new();
    let mut default = false;
    let legacy_ssl = children
        .iter()
        .any(|d| d.name == "ssl" && d.arg(0) == Some("on"));
    for d in children.iter().filter(|d| d.name == "listen") {
        d.mark();
        let l = match values::listen(d.arg(0).unwrap_or("")) {
            Ok(l) => l,
            Err(why) => {
                cx.notes.note(d, Kind::NotCarried, why);
                continue;
            }
        };
        if let Some(why) = &l.note {
            cx.notes
                .note_part(d, &d.args[0], Kind::Approximated, why.clone());
        }
        let mut ssl = legacy_ssl;
        let mut pp = false;
        for p in &d.args[1..] {
            let k = p.split_once('=').map_or(p.as_str(), |(k, _)| k);
            match k {
                "ssl" => ssl = true,
                "default_server" | "default" => default = true,
                "http2" => cx.notes.note_part(
                    d,
                    p,
                    Kind::Dropped,
                    "Portico offers HTTP/2 on TLS listeners through ALPN by itself",
                ),
                "reuseport" => cx.notes.note_part(
                    d,
                    p,
                    Kind::Dropped,
                    "Portico always listens with SO_REUSEPORT",
                ),
                "proxy_protocol" => pp = true,
                "ipv6only" | "backlog" | "rcvbuf" | "sndbuf" | "deferred" | "bind"
                | "so_keepalive" | "fastopen" | "accept_filter" | "setfib" => {
                    cx.notes
                        .note_part(d, p, Kind::Dropped, "socket tuning Portico does not expose")
                }
                _ => cx
                    .notes
                    .note_part(d, p, Kind::NotCarried, "unknown listen parameter"),
            }
        }
        if ssl {
            secure.push((l.addr, l.port, pp))
        } else {
            plain.push((l.addr, l.port, pp))
        }
    }
    if children.iter().all(|d| d.name != "listen") {
        plain.push(("0.0.0.0:80".into(), 80, false));
    }
    let mut hosts: Option<Vec<String>> = None;
    for d in children.iter().filter(|d| d.name == "server_name") {
        d.mark();
        let list = hosts.get_or_insert_with(Vec::new);
        for name in &d.args {
            let name = name.to_ascii_lowercase();
            if name.is_empty() {
                continue;
            }
            if name.starts_with('~') {
                cx.notes.note_part(d, &name, Kind::NotCarried, "Portico matches host names exactly or by a leading `*.`; regular expressions are not carried over");
            } else if let Some(rest) = name.strip_prefix('.') {
                list.push(rest.to_string());
                list.push(format!("*.{rest}"));
            } else if name.ends_with(".*") || name[1..].contains('*') {
                cx.notes.note_part(
                    d,
                    &name,
                    Kind::NotCarried,
                    "Portico wildcards are leading `*.` only",
                );
            } else if !list.contains(&name) {
                list.push(name);
            }
        }
    }
    let first_name = hosts
        .as_ref()
        .and_then(|h| h.first().cloned())
        .filter(|h| !h.contains('*'));
    let mut variants: Vec<(Vec<ListenAt>, bool)> = Vec::new();
    if !plain.is_empty() {
        variants.push((plain, false));
    }
    if !secure.is_empty() {
        variants.push((secure, true));
    }
    // A server-level `return` (or the https `rewrite` idiom) answers every request.
    let srv0 = Srv {
        first_name: first_name.clone(),
        port: variants[0].0[0].1,
        tls: false,
    };
    let whole = children
        .iter()
        .find(|d| d.name == "return")
        .and_then(|d| location::return_action(cx, d, &srv0))
        .or_else(|| {
            children
                .iter()
                .filter(|d| d.name == "rewrite")
                .find_map(|d| location::rewrite_idiom(cx, d, &srv0))
        });
    cx.in_server = true;
    let inh = base.child(cx, children);
    cx.in_server = false;
    let origin = format!("{}:{} server", n.file, n.line);
    cx.zones.site.clone_from(&origin);
    let mut first_variant = true;
    for (listens, tls) in variants {
        let port = listens[0].1;
        let srv = Srv {
            first_name: first_name.clone(),
            port,
            tls,
        };
        let mut routes: Vec<RouteDraft> = Vec::new();
        if let Some((fields, https)) = whole.clone() {
            routes.push(RouteDraft {
                matcher: ("path", "/".into()),
                caret: false,
                acme: false,
                https_redirect: https,
                table: Table {
                    origin: format!("{}:{} server-level return", n.file, n.line),
                    fields,
                },
                root: None,
                policy: Vec::new(),
            });
            for d in children.iter().filter(|d| d.name == "location") {
                if first_variant {
                    cx.notes.note(
                        d,
                        Kind::Dropped,
                        "unreachable: the server's `return` answers every request, in nginx too",
                    );
                }
            }
        } else {
            // A server with plain and TLS listeners is converted twice; the report keeps
            // one copy of each note.
            for d in children.iter().filter(|d| d.name == "location") {
                location::location(cx, d, &inh, &srv, &mut routes);
            }
            if !routes
                .iter()
                .any(|r| r.matcher == ("path", "/".to_string()))
            {
                let mut t = Table::new(format!(
                    "{}:{} server: nginx serves requests no location matches from `root`",
                    n.file, n.line
                ));
                t.set(
                    "root",
                    q(&inh.root.clone().unwrap_or_else(|| cx.prefix_path("html"))),
                );
                if let Some(index) = &inh.index
                    && index.as_slice() != ["index.html"]
                {
                    t.set("index", qlist(index));
                }
                let root = inh.root.clone().unwrap_or_else(|| cx.prefix_path("html"));
                routes.push(RouteDraft {
                    matcher: ("path", "/".into()),
                    caret: false,
                    acme: false,
                    https_redirect: false,
                    table: t,
                    root: Some(root),
                    policy: inh.policy.fields(cx),
                });
            }
        }
        let hsts = inh
            .add_headers
            .iter()
            .flatten()
            .find(|h| h.name.eq_ignore_ascii_case("strict-transport-security"));
        if let Some(h) = hsts
            && !tls
        {
            cx.notes.note_at(&h.file, h.line, &h.text, Kind::Dropped, "browsers ignore Strict-Transport-Security over plain HTTP; Portico sends it on https only (`hsts`)");
        }
        if tls && (inh.cert.is_none() || inh.key.is_none()) {
            cx.notes.note_at(&n.file, n.line, "server", Kind::NotCarried, "a TLS listener without ssl_certificate and ssl_certificate_key: written as plain HTTP");
        }
        let tls = tls && inh.cert.is_some() && inh.key.is_some();
        let proxy_protocol = listens.iter().any(|l| l.2);
        if proxy_protocol && !listens.iter().all(|l| l.2) {
            cx.notes.note_at(&n.file, n.line, "server ... listen ... proxy_protocol", Kind::Approximated,
                "some of this server's listeners take PROXY headers and some not: Portico's site takes them on all its listeners (accept_proxy_protocol)");
        }
        let mut error_pages: Vec<(u16, String)> = Vec::new();
        for page in inh.policy.error_pages() {
            for (code, file) in page.resolve(cx, |uri| file_for(&routes, uri)) {
                if !error_pages.iter().any(|(c, _)| *c == code) {
                    error_pages.push((code, file));
                }
            }
        }
        drafts.push(Draft {
            origin: origin.clone(),
            file: n.file.to_string(),
            line: n.line,
            listens: listens.iter().map(|l| l.0.clone()).collect(),
            ports: listens.iter().map(|l| l.1).collect(),
            tls,
            default,
            hosts: hosts.clone(),
            cert: inh.cert.clone(),
            key: inh.key.clone(),
            hsts: hsts.filter(|_| tls).map(|h| h.value.clone()),
            routes,
            http_listen: Vec::new(),
            acme: false,
            proxy_protocol,
            error_pages,
        });
        first_variant = false;
    }
}

/// Whether a certificate path looks like certbot's, getssl's or acme.sh's.
fn acme_managed(cert: &str) -> bool {
    ["letsencrypt", "getssl", ".acme.sh", "certbot", "dehydrated"]
        .iter()
        .any(|m| cert.contains(m))
}

fn finish(cx: &mut Cx<'_>, mut drafts: Vec<Draft>) {
    acme(cx, &mut drafts);
    fold_redirects(cx, &mut drafts);
    // default_server first (stable): the first site on a listener answers unknown hosts.
    drafts.sort_by_key(|d| !d.default);
    finish_hosts(cx, &mut drafts);
    for mut d in drafts {
        caret_routes(cx, &mut d);
        let mut site = Site {
            table: Table::new(d.origin.clone()),
            routes: Vec::new(),
        };
        let t = &mut site.table;
        t.set("listen", qlist(&d.listens));
        t.set(
            "hosts",
            qlist(d.hosts.as_deref().unwrap_or(&["*".to_string()])),
        );
        if d.acme {
            t.set("tls", q("acme"));
        } else if let (true, Some(c), Some(k)) = (d.tls, &d.cert, &d.key) {
            t.set("tls", format!("{{ cert = {}, key = {} }}", q(c), q(k)));
        }
        if d.tls {
            if d.http_listen.is_empty() {
                t.set("http_redirect", "false".into());
            } else {
                t.set("http_listen", qlist(&d.http_listen));
            }
            if let Some(h) = &d.hsts {
                t.set("hsts", q(h));
            }
        }
        if d.proxy_protocol {
            t.set("accept_proxy_protocol", "true".into());
        }
        if !d.error_pages.is_empty() {
            let pages: Vec<Field> = d
                .error_pages
                .iter()
                .map(|(c, f)| (c.to_string(), q(f)))
                .collect();
            t.set("error_pages", inline(&pages));
        }
        let hoisted = hoist(&d.routes);
        for (k, v) in d.routes.first().map_or(&[][..], |r| &r.policy[..]) {
            if hoisted.contains(k) {
                t.set(k, v.clone());
            }
        }
        let mut seen: Vec<(&str, String)> = Vec::new();
        for r in &d.routes {
            if seen.contains(&(r.matcher.0, r.matcher.1.clone())) {
                cx.notes.note_at(
                    &d.file,
                    d.line,
                    &format!("location {}", r.matcher.1),
                    Kind::NotCarried,
                    "the same location twice in one server: the first one serves",
                );
                continue;
            }
            seen.push((r.matcher.0, r.matcher.1.clone()));
            site.routes.push(r.render(&hoisted));
        }
        cx.out.sites.push(site);
    }
}

/// `--acme-email`: certbot/getssl sites become `tls = "acme"`; without it, a hint.
fn acme(cx: &mut Cx<'_>, drafts: &mut [Draft]) {
    let serves_challenges = drafts.iter().any(|d| d.routes.iter().any(|r| r.acme));
    let managed = drafts
        .iter()
        .any(|d| d.tls && d.cert.as_deref().is_some_and(acme_managed));
    if !serves_challenges && !managed {
        return;
    }
    let Some(email) = cx.opts.acme_email.clone() else {
        let (file, line) = drafts
            .iter()
            .find(|d| {
                d.routes.iter().any(|r| r.acme) || d.cert.as_deref().is_some_and(acme_managed)
            })
            .map(|d| (d.file.clone(), d.line))
            .unwrap_or_default();
        cx.notes.note_at(&file, line, "server", Kind::Hint,
            "certificates from certbot/getssl (ACME): run the import again with --acme-email ADDRESS to let Portico obtain and renew them itself (tls = \"acme\"), with no cron job");
        return;
    };
    let mut any = false;
    for d in drafts.iter_mut() {
        let names_ok = d.hosts.as_ref().is_some_and(|h| {
            !h.is_empty()
                && h.iter()
                    .all(|n| !n.contains('*') && n != "_" && n.parse::<std::net::IpAddr>().is_err())
        });
        if d.tls && names_ok && (serves_challenges || d.cert.as_deref().is_some_and(acme_managed)) {
            d.acme = true;
            any = true;
            cx.notes.note_at(&d.file, d.line, "server ... ssl_certificate", Kind::Approximated,
                "certificate files replaced by tls = \"acme\": Portico obtains and renews the certificate itself (stop the certbot/getssl cron job)");
        } else if d.tls {
            cx.notes.note_at(&d.file, d.line, "server ... ssl_certificate", Kind::Hint,
                "kept the certificate files: tls = \"acme\" needs exact host names (no wildcard, `_` or address)");
        }
    }
    if !any {
        return;
    }
    for d in drafts.iter_mut() {
        let before = d.routes.len();
        d.routes.retain(|r| !r.acme);
        if d.routes.len() != before {
            cx.notes.note_at(
                &d.file,
                d.line,
                "location /.well-known/acme-challenge/",
                Kind::Dropped,
                "Portico answers ACME HTTP-01 challenges on every plain-HTTP listener itself",
            );
        }
        if d.routes.is_empty() {
            d.routes.push(RouteDraft {
                matcher: ("path", "/".into()),
                caret: false,
                acme: false,
                https_redirect: false,
                table: Table {
                    origin: "no other location".into(),
                    fields: vec![("respond".into(), q("")), ("status".into(), "404".into())],
                },
                root: None,
                policy: Vec::new(),
            });
        }
    }
    let mut t = Table::new("from --acme-email: the CA account for tls = \"acme\" sites");
    t.set("email", q(&email));
    cx.out.acme = Some(t);
}

/// A plain server that only redirects to `https://$host$request_uri` (and, in ACME mode,
/// answered challenges) becomes the `http_listen` of the TLS sites it serves, when those
/// listen on 443 (Portico's redirect then carries no port, as nginx's).
fn fold_redirects(cx: &mut Cx<'_>, drafts: &mut Vec<Draft>) {
    let mut i = 0;
    while i < drafts.len() {
        let p = &drafts[i];
        let pp = p.proxy_protocol;
        let only_redirect = !p.tls
            && p.routes.len() == 1
            && p.routes[0].https_redirect
            && p.routes[0].matcher == ("path", "/".to_string());
        if !only_redirect {
            i += 1;
            continue;
        }
        let catch_all = p
            .hosts
            .as_ref()
            .is_none_or(|h| h.iter().any(|n| n == "_" || n == "*"));
        let p_hosts = p.hosts.clone().unwrap_or_default();
        let targets: Vec<usize> = drafts
            .iter()
            .enumerate()
            .filter(|(_, t)| {
                t.tls && t.proxy_protocol == pp && t.ports.iter().all(|&port| port == 443)
            })
            .filter(|(_, t)| {
                catch_all
                    || t.hosts
                        .as_ref()
                        .is_some_and(|h| h.iter().all(|n| p_hosts.contains(n)))
            })
            .map(|(j, _)| j)
            .collect();
        let covered = catch_all
            || p_hosts.iter().all(|n| {
                targets
                    .iter()
                    .any(|&j| drafts[j].hosts.as_ref().is_some_and(|h| h.contains(n)))
            });
        if targets.is_empty() || !covered {
            i += 1;
            continue;
        }
        let listens = p.listens.clone();
        let (file, line) = (p.file.clone(), p.line);
        for &j in &targets {
            for l in &listens {
                if !drafts[j].http_listen.contains(l) {
                    drafts[j].http_listen.push(l.clone());
                }
            }
        }
        cx.notes.note_at(&file, line, "server (https redirect)", Kind::Dropped,
            "folded into the TLS site's http_listen: Portico answers plain HTTP there with a 301 to https (and ACME challenges)");
        drafts.remove(i);
    }
}

/// Hosts as Portico needs them: a server without server_name is `"*"` when it is the first
/// on its listeners, and unreachable (nginx's "" name) otherwise; a host claimed twice on
/// a listener stays with the first site.
fn finish_hosts(cx: &mut Cx<'_>, drafts: &mut Vec<Draft>) {
    let mut i = 0;
    while i < drafts.len() {
        let shares = |a: &Draft, b: &Draft| {
            a.listens.iter().any(|l| b.listens.contains(l))
                || a.listens.iter().any(|l| b.http_listen.contains(l))
        };
        if drafts[i].hosts.is_none() {
            let first = !drafts[..i].iter().any(|e| shares(e, &drafts[i]));
            if first {
                drafts[i].hosts = Some(vec!["*".into()]);
            } else {
                let d = drafts.remove(i);
                cx.notes.note_at(&d.file, d.line, "server", Kind::NotCarried,
                    "no server_name and not the first server on its listeners: nginx only reaches it for requests without Host");
                continue;
            }
        }
        let earlier: Vec<String> = drafts[..i]
            .iter()
            .filter(|e| shares(e, &drafts[i]))
            .flat_map(|e| e.hosts.clone().unwrap_or_default())
            .collect();
        let d = &mut drafts[i];
        let mut dropped = Vec::new();
        if let Some(h) = d.hosts.as_mut() {
            h.retain(|n| {
                let dup = earlier.contains(n);
                if dup {
                    dropped.push(n.clone());
                }
                !dup
            });
        }
        for n in &dropped {
            cx.notes.note_at(&d.file, d.line, &format!("server_name {n}"), Kind::NotCarried,
                "an earlier server on the same listener has this name: nginx serves it from that one");
        }
        if d.hosts.as_ref().is_some_and(Vec::is_empty) {
            let d = drafts.remove(i);
            cx.notes.note_at(
                &d.file,
                d.line,
                "server",
                Kind::NotCarried,
                "every name of this server is served by an earlier one",
            );
            continue;
        }
        i += 1;
    }
}

/// With regex routes in the site, `^~` prefixes become regexes placed first, so that they
/// still beat the other regexes.
fn caret_routes(cx: &mut Cx<'_>, d: &mut Draft) {
    if !d.routes.iter().any(|r| r.matcher.0 == "regex") {
        return;
    }
    let mut carets = Vec::new();
    d.routes.retain(|r| {
        if r.caret {
            carets.push(r.clone());
        }
        !r.caret
    });
    for mut r in carets.into_iter().rev() {
        cx.notes.note_at(&d.file, d.line, &format!("location ^~ {}", r.matcher.1), Kind::Approximated,
            "written as a regex placed before the other regexes, so that it still beats them (a longer plain prefix no longer beats it)");
        r.matcher = ("regex", format!("^{}", regex::escape(&r.matcher.1)));
        d.routes.insert(0, r);
    }
}

/// The file a static route of this server serves for `uri` (exact match first, then the
/// longest prefix), as nginx's internal redirect of an `error_page` would find it.
fn file_for(routes: &[RouteDraft], uri: &str) -> Option<String> {
    let exact = routes
        .iter()
        .find(|r| r.matcher.0 == "exact" && r.matcher.1 == uri);
    let prefix = || {
        routes
            .iter()
            .filter(|r| r.matcher.0 == "path" && uri.starts_with(&r.matcher.1))
            .max_by_key(|r| r.matcher.1.len())
    };
    let root = exact.or_else(prefix)?.root.as_ref()?;
    Some(format!("{}{uri}", root.trim_end_matches('/')))
}

/// The policy groups (`access`, `limit_rate`, `limit_conn`, `auth_basic`, and the
/// `compress` keys together) that every route of a site has alike: they go on the site,
/// whose routes inherit them (what nginx's server level did, usually).
fn hoist(routes: &[RouteDraft]) -> Vec<String> {
    let group = |k: &str| {
        if k.starts_with("compress") {
            "compress"
        } else {
            k
        }
        .to_string()
    };
    let pick = |r: &RouteDraft, g: &str| -> Vec<Field> {
        r.policy
            .iter()
            .filter(|(k, _)| group(k) == g)
            .cloned()
            .collect()
    };
    let Some(first) = routes.first() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (k, _) in &first.policy {
        let g = group(k);
        let mine = pick(first, &g);
        if routes.iter().all(|r| pick(r, &g) == mine) {
            out.push(k.clone());
        }
    }
    out
}
