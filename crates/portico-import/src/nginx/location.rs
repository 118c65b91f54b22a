//! `location` blocks -> `[[sites.routes]]`: the matcher (prefix, `=`, `~`, `~*`, `^~`), the
//! action (`return` -> redirect / respond, `proxy_pass` -> proxy, otherwise static files
//! from `root` / `alias`), its options and its policy keys (`policy.rs`). Nested locations are
//! flattened (Portico's routes are one list, matched in nginx's order).

use super::inherit::Inherit;
use super::upstream::{self, Ctx};
use super::{Cx, values};
use crate::out::{Field, Table, inline, q, qlist};
use crate::report::Kind;
use crate::tree::Node;

/// What a route needs to know about its server.
#[derive(Debug, Clone)]
pub(crate) struct Srv {
    pub first_name: Option<String>,
    pub port: u16,
    pub tls: bool,
}

/// A route before it is placed in a site.
#[derive(Debug, Clone)]
pub(crate) struct RouteDraft {
    /// `path`, `exact` or `regex`, and its value.
    pub matcher: (&'static str, String),
    /// nginx `^~`: a prefix that beats regexes.
    pub caret: bool,
    /// Serves `/.well-known/acme-challenge/` (certbot / getssl webroot).
    pub acme: bool,
    /// A redirect to `https://{host}{uri}` (status in the table).
    pub https_redirect: bool,
    pub table: Table,
    /// The folder a static route serves (to find the files of `error_page` URIs).
    pub root: Option<String>,
    /// The policy keys (`access`, `limit_rate`...), set on the site instead when every
    /// route of the site has the same.
    pub policy: Vec<Field>,
}

impl RouteDraft {
    /// The route as a table, matcher first, then its policy keys but the `hoisted` ones.
    pub fn render(&self, hoisted: &[String]) -> Table {
        let mut t = Table::new(self.table.origin.clone());
        t.set(self.matcher.0, q(&self.matcher.1));
        t.fields.extend(self.table.fields.iter().cloned());
        t.fields.extend(
            self.policy
                .iter()
                .filter(|(k, _)| !hoisted.contains(k))
                .cloned(),
        );
        t
    }
}

/// The matcher of `location ARGS`, or why not.
fn matcher(args: &[String]) -> Result<(&'static str, String, bool), String> {
    let (m, v) = match args {
        [v] => match v.as_str() {
            v if v.starts_with('@') => {
                return Err(
                    "named locations serve internal redirects, which Portico does not have".into(),
                );
            }
            v if v.starts_with("^~") && v.len() > 2 => ("^~", &v[2..]),
            v if v.starts_with("~*") && v.len() > 2 => ("~*", &v[2..]),
            v if v.starts_with('~') && v.len() > 1 => ("~", &v[1..]),
            v if v.starts_with('=') && v.len() > 1 => ("=", &v[1..]),
            v => ("", v),
        },
        [m, v] => (m.as_str(), v.as_str()),
        _ => return Err("cannot read this location".into()),
    };
    match m {
        "" | "^~" | "=" => {
            if !v.starts_with('/') {
                return Err("Portico paths start with `/`".into());
            }
            let key = if m == "=" { "exact" } else { "path" };
            Ok((key, v.to_string(), m == "^~"))
        }
        "~" | "~*" => {
            let r = if m == "~*" {
                format!("(?i){v}")
            } else {
                v.to_string()
            };
            regex::Regex::new(&r).map_err(|e| {
                format!(
                    "this regular expression does not compile in Portico (Rust regex, no look-around or back-references): {}",
                    e.to_string().lines().last().unwrap_or("invalid")
                )
            })?;
            Ok(("regex", r, false))
        }
        other => Err(format!("unknown location modifier `{other}`")),
    }
}

/// Convert one `location` (and the ones nested in it) into `out`.
pub(crate) fn location(
    cx: &mut Cx<'_>,
    n: &Node,
    parent: &Inherit,
    srv: &Srv,
    out: &mut Vec<RouteDraft>,
) {
    n.mark();
    let (key, value, caret) = match matcher(&n.args) {
        Ok(m) => m,
        Err(why) => return cx.notes.note(n, Kind::NotCarried, why),
    };
    let origin = format!("{}:{} location {}", n.file, n.line, n.args.join(" "));
    let children = n.children();
    let find = |name: &str| children.iter().find(|d| d.name == name);
    let ret = find("return");
    let proxy = find("proxy_pass");
    let alias = find("alias");
    for d in children.iter().filter(|d| d.name == "try_files") {
        try_files(cx, d);
    }
    let rewrite_redirect = if ret.is_none() {
        children
            .iter()
            .filter(|d| d.name == "rewrite")
            .find_map(|d| rewrite_idiom(cx, d, srv))
    } else {
        None
    };
    for d in [ret, proxy, alias].into_iter().flatten() {
        d.mark();
    }
    let nested: Vec<&Node> = children.iter().filter(|d| d.name == "location").collect();
    cx.in_location = true;
    let inh = parent.child(cx, children);
    cx.in_location = false;
    let acme = value.contains("/.well-known/acme-challenge");
    let mut table = Table::new(origin);
    let mut https_redirect = false;
    let mut root = None;
    if let Some(d) = ret {
        let Some((fields, https)) = return_action(cx, d, srv) else {
            return;
        };
        table.fields = fields;
        https_redirect = https;
        if let Some(p) = proxy {
            cx.notes.note(
                p,
                Kind::Dropped,
                "unreachable: the location's `return` answers first, in nginx too",
            );
        }
    } else if let Some((fields, https)) = rewrite_redirect {
        table.fields = fields;
        https_redirect = https;
    } else if let Some(p) = proxy {
        if !proxy_action(cx, p, &inh, key, &value, srv, &mut table) {
            return;
        }
    } else {
        root = Some(static_action(
            cx,
            alias,
            &inh,
            (key, &value),
            srv.tls,
            &mut table,
        ));
    }
    // nginx's `return` (and the rewrite module) answers before the access, limit and auth
    // phases: such a route carries no policy, as in nginx.
    let policy = if ret.is_some() || https_redirect || table.get("redirect").is_some() {
        Vec::new()
    } else {
        inh.policy.fields(cx)
    };
    out.push(RouteDraft {
        matcher: (key, value),
        caret,
        acme,
        https_redirect,
        table,
        root,
        policy,
    });
    for inner in nested {
        cx.notes.note_part(
            inner,
            &inner.args.join(" "),
            Kind::Approximated,
            "nested location flattened: Portico's routes are one list, matched exact, then regex, then longest prefix",
        );
        location(cx, inner, &inh, srv, out);
    }
}

/// `try_files $uri $uri/ =404` is what Portico's static serving does; other forms are not
/// carried over.
fn try_files(cx: &mut Cx<'_>, d: &Node) {
    let a: Vec<&str> = d.args.iter().map(String::as_str).collect();
    if matches!(a.as_slice(), ["$uri", "=404"] | ["$uri", "$uri/", "=404"]) {
        cx.notes.note(
            d,
            Kind::Dropped,
            "Portico serves the file, or the folder's index, else 404",
        );
    } else {
        cx.notes.note(
            d,
            Kind::NotCarried,
            "Portico serves the file or the folder's index, else 404; other fallbacks (e.g. a single-page app's /index.html) are not carried over",
        );
    }
}

/// `rewrite ^ https://$host$request_uri? permanent;` and `rewrite ^(.*)$ https://$host$1
/// permanent;`: a redirect of every request.
pub(crate) fn rewrite_idiom(cx: &mut Cx<'_>, d: &Node, srv: &Srv) -> Option<(Vec<Field>, bool)> {
    let (re, target, flag) = (d.arg(0)?, d.arg(1)?, d.arg(2)?);
    let status = match flag {
        "permanent" => 301,
        "redirect" => 302,
        _ => return None,
    };
    let whole = matches!(
        re,
        "^" | "^/" | "^(.*)$" | "^(.*)" | "(.*)" | "^/(.*)$" | "^/(.*)"
    );
    if !whole {
        return None;
    }
    let (target, keep_args) = match target.strip_suffix('?') {
        Some(t) => (t, false),
        None => (target, true),
    };
    let path_var = if re.starts_with("^/") && re.contains("(.*)") {
        "/$1"
    } else {
        "$1"
    };
    let t = target
        .replace(path_var, if keep_args { "$request_uri" } else { "$uri" })
        .replace("$1", "$uri");
    let tpl = values::template(&t, srv.first_name.as_deref(), srv.port).ok()?;
    let mut fields = vec![("redirect".into(), q(&tpl.text))];
    if status != 301 {
        fields.push(("status".into(), status.to_string()));
    }
    cx.notes.note(
        d,
        Kind::Approximated,
        "carried over as a `redirect` route (the rewrite redirects every request)",
    );
    let https = tpl.text == "https://{host}{uri}" && status == 301;
    Some((fields, https))
}

/// `return` -> `redirect` or `respond`. `None` when it cannot be carried over (noted).
pub(crate) fn return_action(cx: &mut Cx<'_>, d: &Node, srv: &Srv) -> Option<(Vec<Field>, bool)> {
    d.mark();
    let a0 = d.arg(0)?;
    let (code, text) = match a0.parse::<u16>() {
        Ok(c) => (c, d.arg(1)),
        Err(_) => (302, Some(a0)),
    };
    if code == 444 {
        cx.notes.note(
            d,
            Kind::NotCarried,
            "444 closes the connection without an answer; Portico has no such action",
        );
        return None;
    }
    let mut fields: Vec<Field> = Vec::new();
    if matches!(code, 301 | 302 | 303 | 307 | 308) && text.is_some() {
        let target = text.unwrap_or("");
        let mut tpl = match values::template(target, srv.first_name.as_deref(), srv.port) {
            Ok(t) => t,
            Err(why) => {
                cx.notes.note(d, Kind::NotCarried, why);
                return None;
            }
        };
        if tpl.text.starts_with('/') {
            tpl.text = format!("{{scheme}}://{{host}}{}", tpl.text);
            tpl.notes.push("a relative target is made absolute with the request's scheme and Host (nginx uses its listen port)".into());
        }
        for why in &tpl.notes {
            cx.notes
                .note_part(d, target, Kind::Approximated, why.clone());
        }
        let https = tpl.text == "https://{host}{uri}" && code == 301;
        fields.push(("redirect".into(), q(&tpl.text)));
        if code != 301 {
            fields.push(("status".into(), code.to_string()));
        }
        return Some((fields, https));
    }
    let body = text.unwrap_or("");
    if body.contains('$') {
        cx.notes.note(
            d,
            Kind::NotCarried,
            "Portico's `respond` text is literal: variables cannot be carried over",
        );
        return None;
    }
    if text.is_none() && code >= 400 {
        cx.notes.note(
            d,
            Kind::Approximated,
            "Portico answers this status with an empty body (nginx sends its HTML error page)",
        );
    }
    if !(100..=599).contains(&code) {
        cx.notes.note(
            d,
            Kind::NotCarried,
            "Portico answers with status codes 100-599",
        );
        return None;
    }
    fields.push(("respond".into(), q(body)));
    if code != 200 {
        fields.push(("status".into(), code.to_string()));
    }
    Some((fields, false))
}

/// `proxy_pass` -> `proxy = "UPSTREAM"` with its options. False when it cannot be carried.
fn proxy_action(
    cx: &mut Cx<'_>,
    p: &Node,
    inh: &Inherit,
    key: &str,
    path: &str,
    srv: &Srv,
    table: &mut Table,
) -> bool {
    let url = p.arg(0).unwrap_or("");
    let (tls, rest) = if let Some(r) = url.strip_prefix("http://") {
        (false, r)
    } else if let Some(r) = url.strip_prefix("https://") {
        (true, r)
    } else {
        cx.notes.note(
            p,
            Kind::NotCarried,
            "Portico proxies to http:// and https:// targets only",
        );
        return false;
    };
    let (host, uri) = match rest.find('/') {
        Some(i) => (&rest[..i], Some(&rest[i..])),
        None => (rest, None),
    };
    let origin = format!("{}:{}", p.file, p.line);
    let name = match upstream::target(cx, host, tls, Ctx::Http, &origin) {
        Ok(n) => n,
        Err(why) => {
            cx.notes.note(p, Kind::NotCarried, why);
            return false;
        }
    };
    table.set("proxy", q(&name));
    match uri {
        None => {}
        Some(u) if key == "path" && u == path => {}
        Some("/") if key == "path" && path != "/" => {
            table.set("strip_prefix", "true".into());
            if !path.ends_with('/') {
                cx.notes.note_part(p, url, Kind::Approximated, format!(
                    "written as strip_prefix: `{path}x` goes up as `/x` (nginx would send `//x` for `{path}/x`)"
                ));
            }
        }
        Some("/") if key == "path" => {}
        Some(u) => cx.notes.note_part(p, url, Kind::NotCarried, format!(
            "the URI part `{u}` is not applied: Portico sends the request path unchanged (or without the location prefix with strip_prefix)"
        )),
    }
    let headers = inh.set_headers.clone().unwrap_or_default();
    if !headers.websocket {
        table.set("websocket", "false".into());
    }
    if !headers.host {
        cx.notes.note_part(p, url, Kind::Approximated,
            "nginx sends `Host: <proxy_pass host>` unless `proxy_set_header Host` is set; Portico keeps the client's Host");
    }
    if let Some(t) = &inh.read_timeout {
        table.set("read_timeout", q(t));
    }
    if let Some(t) = &inh.send_timeout {
        upstream::set_field(cx, &name, "send_timeout", t, p);
    }
    if let Some(t) = &inh.connect_timeout {
        upstream::set_field(cx, &name, "connect_timeout", t, p);
    }
    if let Some(b) = &inh.max_body {
        table.set("max_body", q(b));
    }
    let mut req: Vec<Field> = Vec::new();
    if !headers.set.is_empty() {
        let set: Vec<Field> = headers.set.iter().map(|(k, v)| (k.clone(), q(v))).collect();
        req.push(("set".into(), inline(&set)));
    }
    if !headers.remove.is_empty() {
        req.push(("remove".into(), qlist(&headers.remove)));
    }
    if !req.is_empty() {
        table.set("request_headers", inline(&req));
    }
    let mut resp: Vec<Field> = Vec::new();
    let adds: Vec<Field> = inh
        .add_headers
        .iter()
        .flatten()
        .filter(|h| !(srv.tls && h.name.eq_ignore_ascii_case("strict-transport-security")))
        .map(|h| (h.name.to_ascii_lowercase(), q(&h.value)))
        .collect();
    if !adds.is_empty() {
        resp.push(("set".into(), inline(&adds)));
    }
    if !inh.hide_headers.is_empty() {
        resp.push(("remove".into(), qlist(&inh.hide_headers)));
    }
    if !resp.is_empty() {
        table.set("response_headers", inline(&resp));
    }
    if tls && (inh.proxy_ssl_verify || inh.proxy_ssl_name.is_some()) {
        let mut f: Vec<Field> = Vec::new();
        if let Some(n) = &inh.proxy_ssl_name {
            f.push(("server_name".into(), q(n)));
        }
        if !inh.proxy_ssl_verify {
            f.push(("verify".into(), "false".into()));
        } else if let Some(ca) = &inh.proxy_ssl_ca {
            f.push(("ca_file".into(), q(ca)));
        }
        if let Some(u) = cx.out.upstream_mut(&name) {
            u.table.set("tls", inline(&f));
        }
    }
    true
}

/// Static files: `root` (or `alias` when it maps onto a root) and `index`.
fn static_action(
    cx: &mut Cx<'_>,
    alias: Option<&Node>,
    inh: &Inherit,
    (key, path): (&str, &str),
    tls: bool,
    table: &mut Table,
) -> String {
    let mut root = inh.root.clone().unwrap_or_else(|| cx.prefix_path("html"));
    if let Some(a) = alias {
        let target = cx.prefix_path(a.arg(0).unwrap_or(""));
        let trimmed = path.trim_end_matches('/');
        let t = target.trim_end_matches('/');
        match t.strip_suffix(trimmed) {
            Some(base) if key == "path" && !trimmed.is_empty() => root = if base.is_empty() { "/".into() } else { base.to_string() },
            _ => cx.notes.note(
                a,
                Kind::NotCarried,
                format!("Portico serves DIR + the request path; this alias maps {path} elsewhere, so the route serves from {root}"),
            ),
        }
    }
    table.set("root", q(&root));
    if let Some(index) = &inh.index
        && index.as_slice() != ["index.html"]
    {
        let names: Vec<&String> = index.iter().filter(|i| !i.contains('$')).collect();
        table.set("index", qlist(&names));
    }
    for h in inh.add_headers.iter().flatten() {
        if tls && h.name.eq_ignore_ascii_case("strict-transport-security") {
            continue; // the site's `hsts`
        }
        let why = format!(
            "not set on the static files of location {path}: Portico sets response headers on proxy routes only"
        );
        cx.notes
            .note_at(&h.file, h.line, &h.text, Kind::NotCarried, why);
    }
    root
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(args: &[&str]) -> Result<(&'static str, String, bool), String> {
        matcher(&args.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn matchers() {
        assert_eq!(m(&["/"]).unwrap(), ("path", "/".into(), false));
        assert_eq!(m(&["=", "/x"]).unwrap(), ("exact", "/x".into(), false));
        assert_eq!(m(&["=/x"]).unwrap(), ("exact", "/x".into(), false));
        assert_eq!(m(&["^~", "/s/"]).unwrap(), ("path", "/s/".into(), true));
        assert_eq!(
            m(&["~*", "\\.png$"]).unwrap(),
            ("regex", "(?i)\\.png$".into(), false)
        );
        assert!(m(&["@fallback"]).is_err());
        assert!(m(&["~", "^/(?=x)"]).is_err());
    }
}
