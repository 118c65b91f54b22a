//! nginx's traffic-policy directives -> Portico's policy keys: `allow`/`deny` -> `access`,
//! `limit_req` (+ `limit_req_zone`) -> `limit_rate`, `limit_conn` (+ `limit_conn_zone`) ->
//! `limit_conn`, `auth_basic` + `auth_basic_user_file` -> `auth_basic`, `gzip*` ->
//! `compress*`, `error_page` -> the site's `error_pages` (`real_ip.rs` has
//! `set_real_ip_from` / `real_ip_header` -> `[server] trusted_proxies`).
//!
//! Inheritance is nginx's: `allow`/`deny`, `limit_req`, `limit_conn` and `error_page` are
//! array directives (a level that has its own replaces the whole inherited list, otherwise
//! it inherits it); `auth_basic`, `auth_basic_user_file`, the `*_status` directives and the
//! `gzip*` settings are merged one by one (a level's own value wins, each inherited alone).
//! [`Policy`] is the effective value at one level; [`Own`] collects a level's array
//! directives while it is read. `fields` renders what one route gets.

use std::collections::HashMap;
use std::net::IpAddr;

use super::Cx;
use super::values;
use crate::out::{Field, inline, q, qlist};
use crate::report::Kind;
use crate::tree::Node;

/// Where a directive came from, for notes written when a route uses it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Src {
    pub file: String,
    pub line: usize,
    pub text: String,
}

impl Src {
    pub(super) fn of(n: &Node) -> Src {
        Src {
            file: n.file.to_string(),
            line: n.line,
            text: n.text(),
        }
    }
}

/// The `limit_req_zone` / `limit_conn_zone` declarations of `http`: zone name -> its rate
/// (`"10r/s"`; empty for a connection zone), or why the zone cannot be carried over.
#[derive(Debug, Default)]
pub(crate) struct Zones {
    req: HashMap<String, Result<String, String>>,
    conn: HashMap<String, Result<(), String>>,
    /// Zone name -> where it is declared, and the sites (server origins) whose routes got
    /// a limit from it: nginx counts them together, Portico each site apart.
    users: HashMap<String, (Src, Vec<String>)>,
    /// The server whose routes are being converted.
    pub site: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LimitReq {
    zone: String,
    rate: String,
    burst: u32,
    src: Src,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LimitConn {
    zone: String,
    n: u32,
    src: Src,
}

/// One `error_page CODE... [=[RESP]] URI`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ErrorPage {
    codes: Vec<String>,
    /// `Some("")` for a bare `=`, `Some("200")` for `=200`.
    resp: Option<String>,
    uri: String,
    src: Src,
}

/// The effective policy at one level.
#[derive(Debug, Clone, Default)]
pub(crate) struct Policy {
    access: Option<Vec<String>>,
    limit_req: Option<Vec<LimitReq>>,
    limit_req_status: Option<u16>,
    limit_req_dry_run: Option<bool>,
    limit_conn: Option<Vec<LimitConn>>,
    limit_conn_status: Option<u16>,
    limit_conn_dry_run: Option<bool>,
    /// `Some(None)`: `auth_basic off`.
    auth_realm: Option<(Option<String>, Src)>,
    auth_file: Option<(String, Src)>,
    gzip: Option<bool>,
    gzip_types: Option<Vec<String>>,
    gzip_min_length: Option<String>,
    error_pages: Option<Vec<ErrorPage>>,
}

/// A level's own array directives, while it is read.
#[derive(Debug, Default)]
pub(crate) struct Own {
    access: Option<Vec<String>>,
    limit_req: Option<Vec<LimitReq>>,
    limit_conn: Option<Vec<LimitConn>>,
    error_pages: Option<Vec<ErrorPage>>,
}

/// Read `limit_req_zone` and `limit_conn_zone` (children of `http`).
pub(crate) fn zones(cx: &mut Cx<'_>, nodes: &[Node]) {
    for n in nodes {
        let (is_req, is_conn) = (n.name == "limit_req_zone", n.name == "limit_conn_zone");
        if !is_req && !is_conn {
            continue;
        }
        let key = n.arg(0).unwrap_or("");
        let name = n
            .args
            .iter()
            .find_map(|a| a.strip_prefix("zone="))
            .map(|z| z.split(':').next().unwrap_or(z).to_string());
        let Some(name) = name else {
            cx.notes.note(n, Kind::NotCarried, "no zone=NAME:SIZE");
            continue;
        };
        let keyed_ok = matches!(key, "$binary_remote_addr" | "$remote_addr");
        let why_key = format!(
            "Portico limits per client address only; a zone keyed on `{key}` is not carried over"
        );
        if is_conn {
            let v = if keyed_ok {
                n.mark();
                Ok(())
            } else {
                cx.notes.note(n, Kind::NotCarried, why_key.clone());
                Err(why_key)
            };
            cx.zones
                .users
                .insert(name.clone(), (Src::of(n), Vec::new()));
            cx.zones.conn.insert(name, v);
            continue;
        }
        let rate = n
            .args
            .iter()
            .find_map(|a| a.strip_prefix("rate="))
            .and_then(rate);
        let v = match (keyed_ok, rate) {
            (false, _) => Err(why_key),
            (true, None) => {
                Err("cannot read this rate (Portico takes whole `Nr/s` or `Nr/m`)".into())
            }
            (true, Some(r)) => Ok(r),
        };
        match &v {
            Ok(_) => n.mark(),
            Err(why) => cx.notes.note(n, Kind::NotCarried, why.clone()),
        }
        for extra in n.args.iter().filter(|a| a.as_str() == "sync") {
            cx.notes.note_part(
                n,
                extra,
                Kind::Approximated,
                "each Portico node counts for itself (nginx Plus `sync` shares the zone across a cluster)",
            );
        }
        cx.zones
            .users
            .insert(name.clone(), (Src::of(n), Vec::new()));
        cx.zones.req.insert(name, v);
    }
}

impl Zones {
    /// A route of the current site got a limit from `zone`.
    fn used(&mut self, zone: &str) {
        let site = self.site.clone();
        if let Some((_, sites)) = self.users.get_mut(zone)
            && !sites.contains(&site)
        {
            sites.push(site);
        }
    }
}

/// After the walk: a note on each zone that limits routes of more than one site.
pub(crate) fn finish_zones(cx: &mut Cx<'_>) {
    let mut shared: Vec<(Src, usize)> = cx
        .zones
        .users
        .values()
        .filter(|(_, sites)| sites.len() > 1)
        .map(|(src, sites)| (src.clone(), sites.len()))
        .collect();
    shared.sort_by_key(|(src, _)| src.line);
    for (src, n) in shared {
        cx.notes.note_at(&src.file, src.line, &src.text, Kind::Approximated, format!(
            "{n} servers use this zone: nginx counts their requests together, Portico counts each site apart (routes of one site with the same limit share a count)"));
    }
}

/// `10r/s` / `10r/m` with a whole number of at least 1.
fn rate(s: &str) -> Option<String> {
    let (n, unit) = s.split_once("r/")?;
    let n: u32 = n.parse().ok().filter(|n| *n >= 1)?;
    matches!(unit, "s" | "m").then(|| format!("{n}r/{unit}"))
}

/// An `allow`/`deny` address as Portico writes it (`all`, an address, or a CIDR with the
/// bits past the prefix cleared, as nginx does after its warning).
pub(super) fn net(s: &str) -> Option<String> {
    if s == "all" {
        return Some(s.to_string());
    }
    let (addr, bits) = match s.split_once('/') {
        Some((a, b)) => (a, Some(b.parse::<u8>().ok()?)),
        None => (s, None),
    };
    let ip: IpAddr = addr.parse().ok()?;
    let Some(bits) = bits else {
        return Some(ip.to_string());
    };
    let masked = match ip {
        IpAddr::V4(v4) if bits <= 32 => {
            let m = u32::MAX.checked_shl(32 - u32::from(bits)).unwrap_or(0);
            IpAddr::from((u32::from(v4) & m).to_be_bytes())
        }
        IpAddr::V6(v6) if bits <= 128 => {
            let m = u128::MAX.checked_shl(128 - u32::from(bits)).unwrap_or(0);
            IpAddr::from((u128::from(v6) & m).to_be_bytes())
        }
        _ => return None,
    };
    Some(format!("{masked}/{bits}"))
}

fn status(cx: &mut Cx<'_>, n: &Node) -> Option<u16> {
    match n.arg(0).and_then(|s| s.parse::<u16>().ok()) {
        Some(s) if (400..=599).contains(&s) => {
            n.mark();
            Some(s)
        }
        _ => {
            cx.notes
                .note(n, Kind::NotCarried, "cannot read this status (400-599)");
            None
        }
    }
}

pub(super) fn on_off(n: &Node) -> Option<bool> {
    match n.arg(0) {
        Some("on") => Some(true),
        Some("off") => Some(false),
        _ => None,
    }
}

impl Policy {
    /// Read one directive of this level; false when it is not a policy directive.
    pub fn read(&mut self, cx: &mut Cx<'_>, n: &Node, own: &mut Own) -> bool {
        let arg = n.arg(0).unwrap_or("");
        // An array directive makes this level's list its own (replacing the inherited one)
        // even when it cannot be carried over itself, as in nginx.
        match n.name.as_str() {
            "allow" | "deny" => drop(own.access.get_or_insert_with(Vec::new)),
            "limit_req" => drop(own.limit_req.get_or_insert_with(Vec::new)),
            "limit_conn" => drop(own.limit_conn.get_or_insert_with(Vec::new)),
            "error_page" => drop(own.error_pages.get_or_insert_with(Vec::new)),
            _ => {}
        }
        match n.name.as_str() {
            "allow" | "deny" => match net(arg) {
                Some(net) => {
                    own.access
                        .get_or_insert_with(Vec::new)
                        .push(format!("{} {net}", n.name));
                    n.mark();
                }
                None if arg.starts_with("unix:") => cx.notes.note(
                    n,
                    Kind::Dropped,
                    "Portico has no unix-socket listeners: this rule never matches",
                ),
                None => cx
                    .notes
                    .note(n, Kind::NotCarried, "cannot read this address"),
            },
            "limit_req" => self.limit_req(cx, n, own),
            "limit_req_status" => self.limit_req_status = status(cx, n),
            "limit_conn_status" => self.limit_conn_status = status(cx, n),
            "limit_req_dry_run" | "limit_conn_dry_run" => {
                let on = on_off(n) == Some(true);
                if on {
                    cx.notes.note(n, Kind::NotCarried, "Portico has no dry run: the limits of this level are not written (nginx does not enforce them either)");
                } else {
                    n.mark();
                }
                if n.name == "limit_req_dry_run" {
                    self.limit_req_dry_run = Some(on);
                } else {
                    self.limit_conn_dry_run = Some(on);
                }
            }
            "limit_req_log_level" | "limit_conn_log_level" => cx.notes.note(
                n,
                Kind::Dropped,
                "Portico logs every refused request in the access log (status 429)",
            ),
            "limit_conn" => {
                let zone = arg.to_string();
                let count = n.arg(1).and_then(|c| c.parse::<u32>().ok()).filter(|c| *c >= 1);
                match (cx.zones.conn.get(&zone), count) {
                    (_, None) => cx.notes.note(n, Kind::NotCarried, "cannot read the number"),
                    (None, _) => cx.notes.note(n, Kind::NotCarried, format!("no limit_conn_zone `{zone}` in http")),
                    (Some(Err(_)), _) => cx.notes.note(n, Kind::NotCarried, format!("its zone `{zone}` is not keyed on the client address (see limit_conn_zone)")),
                    (Some(Ok(())), Some(count)) => {
                        own.limit_conn.get_or_insert_with(Vec::new).push(LimitConn { zone, n: count, src: Src::of(n) });
                        n.mark();
                    }
                }
            }
            "auth_basic" => {
                let realm = (arg != "off").then(|| arg.to_string());
                self.auth_realm = Some((realm, Src::of(n)));
                n.mark();
            }
            "auth_basic_user_file" => {
                if arg.contains('$') {
                    cx.notes.note(
                        n,
                        Kind::NotCarried,
                        "Portico's users_file is one file: variables cannot be carried over",
                    );
                } else {
                    self.auth_file = Some((cx.conf_path(arg), Src::of(n)));
                    n.mark();
                }
            }
            "gzip" => match on_off(n) {
                Some(v) => {
                    self.gzip = Some(v);
                    n.mark();
                }
                None => cx.notes.note(n, Kind::NotCarried, "expected on or off"),
            },
            "gzip_types" => {
                self.gzip_types = Some(n.args.iter().map(|t| t.to_ascii_lowercase()).collect());
                n.mark();
            }
            "gzip_min_length" => match values::size(arg) {
                Some(s) => {
                    self.gzip_min_length = Some(s);
                    n.mark();
                }
                None => cx.notes.note(n, Kind::NotCarried, "cannot read this size"),
            },
            "gzip_comp_level" if arg == "6" => n.mark(),
            "gzip_comp_level" => cx.notes.note(
                n,
                Kind::Approximated,
                "Portico compresses at gzip level 6 (its fixed level for on-the-fly work)",
            ),
            "gzip_vary" if arg == "on" => cx.notes.note(
                n,
                Kind::Dropped,
                "Portico sends Vary: Accept-Encoding on every response it may compress",
            ),
            "gzip_vary" => cx.notes.note(
                n,
                Kind::Approximated,
                "Portico always sends Vary: Accept-Encoding on responses it may compress",
            ),
            "gzip_proxied" if n.args.iter().any(|a| a == "any") => cx.notes.note(
                n,
                Kind::Dropped,
                "Portico compresses whether or not the request came through a proxy (Via), as `any`",
            ),
            "gzip_proxied" => cx.notes.note(
                n,
                Kind::Approximated,
                "Portico compresses requests that came through a proxy (Via) like any other, as `gzip_proxied any`",
            ),
            "gzip_disable" => cx.notes.note(
                n,
                Kind::NotCarried,
                "Portico compresses for every client whose Accept-Encoding takes gzip; it singles out no User-Agent",
            ),
            "gzip_buffers" => cx.notes.note(
                n,
                Kind::Dropped,
                "Portico streams compressed bodies; there are no buffers to size",
            ),
            "gzip_http_version" if arg == "1.0" => n.mark(),
            "gzip_http_version" => cx.notes.note(
                n,
                Kind::Approximated,
                "Portico also compresses for HTTP/1.0 clients (as gzip_http_version 1.0)",
            ),
            "gzip_static" if arg == "off" => n.mark(),
            "gzip_static" => cx.notes.note(
                n,
                Kind::Approximated,
                "Portico serves precompressed siblings (.gz, .br, .zst) on root routes that have `compress` (written where gzip is on)",
            ),
            "error_page" => {
                self.error_page(cx, n, own);
            }
            _ => return false,
        }
        true
    }

    fn limit_req(&mut self, cx: &mut Cx<'_>, n: &Node, own: &mut Own) {
        let mut zone = None;
        let mut burst = 0u32;
        let mut nodelay = false;
        let mut delay = None;
        for a in &n.args {
            if let Some(z) = a.strip_prefix("zone=") {
                zone = Some(z.to_string());
            } else if let Some(b) = a.strip_prefix("burst=") {
                match b.parse() {
                    Ok(b) => burst = b,
                    Err(_) => return cx.notes.note(n, Kind::NotCarried, "cannot read burst="),
                }
            } else if a == "nodelay" {
                nodelay = true;
            } else if let Some(d) = a.strip_prefix("delay=") {
                delay = Some(d.to_string());
            } else {
                return cx
                    .notes
                    .note(n, Kind::NotCarried, format!("unknown parameter `{a}`"));
            }
        }
        let Some(zone) = zone else {
            return cx.notes.note(n, Kind::NotCarried, "no zone=NAME");
        };
        let rate = match cx.zones.req.get(&zone) {
            None => {
                return cx.notes.note(
                    n,
                    Kind::NotCarried,
                    format!("no limit_req_zone `{zone}` in http"),
                );
            }
            Some(Err(_)) => {
                return cx.notes.note(
                    n,
                    Kind::NotCarried,
                    format!("its zone `{zone}` cannot be carried over (see limit_req_zone)"),
                );
            }
            Some(Ok(r)) => r.clone(),
        };
        if burst > 0 && !nodelay {
            let why = match &delay {
                Some(d) => format!("nginx serves the first {d} requests past the rate at once and delays the rest of the burst; Portico serves the whole burst at once (nodelay) and refuses past it as nginx does"),
                None => "nginx delays the requests of the burst so that they reach the server at the rate; Portico serves them at once (nodelay) and refuses past the burst as nginx does".to_string(),
            };
            cx.notes
                .note_part(n, &format!("burst={burst}"), Kind::Approximated, why);
        }
        own.limit_req.get_or_insert_with(Vec::new).push(LimitReq {
            zone,
            rate,
            burst,
            src: Src::of(n),
        });
        n.mark();
    }

    fn error_page(&mut self, cx: &mut Cx<'_>, n: &Node, own: &mut Own) {
        let Some((uri, rest)) = n.args.split_last() else {
            return cx.notes.note(n, Kind::NotCarried, "no URI");
        };
        let mut codes = Vec::new();
        let mut resp = None;
        for a in rest {
            if let Some(r) = a.strip_prefix('=') {
                resp = Some(r.to_string());
            } else {
                codes.push(a.clone());
            }
        }
        // `error_page 404 = @x` splits `=` from the URI.
        own.error_pages
            .get_or_insert_with(Vec::new)
            .push(ErrorPage {
                codes,
                resp,
                uri: uri.clone(),
                src: Src::of(n),
            });
        if cx.in_location {
            cx.notes.note(n, Kind::NotCarried, "Portico's error_pages are per site: this location's pages are not carried over (the server's apply)");
        } else {
            n.mark();
        }
    }

    /// This level's array directives replace the inherited ones.
    pub fn finish(&mut self, own: Own) {
        if own.access.is_some() {
            self.access = own.access;
        }
        if own.limit_req.is_some() {
            self.limit_req = own.limit_req;
        }
        if own.limit_conn.is_some() {
            self.limit_conn = own.limit_conn;
        }
        if own.error_pages.is_some() {
            self.error_pages = own.error_pages;
        }
    }

    /// The policy keys of a route (or a site) at this level, with notes for what differs.
    pub fn fields(&self, cx: &mut Cx<'_>) -> Vec<Field> {
        let mut f: Vec<Field> = Vec::new();
        let mut access = self.access.clone().filter(|a| !a.is_empty());
        if let Some(reqs) = self
            .limit_req
            .as_ref()
            .filter(|_| self.limit_req_dry_run != Some(true))
            && let Some(first) = reqs.first()
        {
            cx.zones.used(&first.zone);
            let mut t = vec![("rate".to_string(), q(&first.rate))];
            if first.burst > 0 {
                t.push(("burst".into(), first.burst.to_string()));
            }
            f.push(("limit_rate".into(), inline(&t)));
            note_refusal(
                cx,
                &first.src,
                self.limit_req_status,
                "limit_req",
                "Retry-After",
            );
            note_after_first(
                cx,
                "limit_rate",
                "limit_req",
                &first.zone,
                reqs[1..].iter().map(|r| &r.src),
            );
        }
        if let Some(conns) = self
            .limit_conn
            .as_ref()
            .filter(|_| self.limit_conn_dry_run != Some(true))
            && let Some(first) = conns.first()
        {
            cx.zones.used(&first.zone);
            f.push(("limit_conn".into(), first.n.to_string()));
            note_refusal(
                cx,
                &first.src,
                self.limit_conn_status,
                "limit_conn",
                "Retry-After: 1",
            );
            note_after_first(
                cx,
                "limit_conn",
                "limit_conn",
                &first.zone,
                conns[1..].iter().map(|c| &c.src),
            );
        }
        match (&self.auth_realm, &self.auth_file) {
            (Some((Some(realm), _)), Some((file, fsrc))) => match users_file(file) {
                Ok(count) => {
                    let clean: String = realm
                        .chars()
                        .filter(|c| !matches!(c, '"' | '\\') && !c.is_control())
                        .collect();
                    let clean = if clean.is_empty() {
                        "Restricted".to_string()
                    } else {
                        clean
                    };
                    f.push((
                        "auth_basic".into(),
                        inline(&[("realm".into(), q(&clean)), ("users_file".into(), q(file))]),
                    ));
                    cx.notes.note_at(&fsrc.file, fsrc.line, &fsrc.text, Kind::Hint, format!(
                        "Portico reads bcrypt entries only (`htpasswd -B`); this file's {count} entries are bcrypt. Add new users with `htpasswd -B {file} USER`"));
                }
                Err(why) => {
                    cx.notes.note_at(&fsrc.file, fsrc.line, &fsrc.text, Kind::NotCarried, format!(
                        "{why}: Portico reads bcrypt entries only (`htpasswd -B`) and refuses a config whose users file it cannot read, so this location is written closed (access = [\"deny all\"], 403 to everyone); create the file with `htpasswd -B -c {file} USER`, then replace the access line with auth_basic = {{ realm = {}, users_file = {} }}",
                        q(realm), q(file)));
                    access = Some(vec!["deny all".to_string()]);
                }
            },
            (Some((Some(_), src)), None) => cx.notes.note_at(
                &src.file,
                src.line,
                &src.text,
                Kind::NotCarried,
                "no auth_basic_user_file here: nginx does not ask for credentials either",
            ),
            _ => {}
        }
        if let Some(a) = access {
            f.insert(0, ("access".into(), qlist(&a)));
        }
        if self.gzip == Some(true) {
            f.push(("compress".into(), qlist(&["gzip"])));
            let types = self.gzip_types.clone().unwrap_or_default();
            if !types.iter().any(|t| t == "*") {
                let mut list = vec!["text/html".to_string()];
                for t in types {
                    if !list.contains(&t) {
                        list.push(t);
                    }
                }
                f.push(("compress_types".into(), qlist(&list)));
            }
            let min = self.gzip_min_length.clone().unwrap_or_else(|| "20".into());
            f.push(("compress_min_size".into(), q(&min)));
        }
        f
    }

    /// The server-level `error_page`s (`None`: none at this level or above).
    pub fn error_pages(&self) -> &[ErrorPage] {
        self.error_pages.as_deref().unwrap_or(&[])
    }
}

impl ErrorPage {
    /// `(status, file)` pairs for the codes this page carries, with notes for the rest.
    /// `file_for` finds the file a URI is served from in this server.
    pub fn resolve(
        &self,
        cx: &mut Cx<'_>,
        file_for: impl Fn(&str) -> Option<String>,
    ) -> Vec<(u16, String)> {
        let s = &self.src;
        let not = |cx: &mut Cx<'_>, why: String| {
            cx.notes
                .note_at(&s.file, s.line, &s.text, Kind::NotCarried, why);
        };
        if self.uri.starts_with('@') {
            not(cx, "named locations serve internal redirects, which Portico does not have; its error_pages are files".into());
            return Vec::new();
        }
        if self.uri.contains("://") || self.uri.contains('$') {
            not(cx, "Portico's error_pages are files (nginx redirects to this URL or expands variables)".into());
            return Vec::new();
        }
        match self.resp.as_deref() {
            None => {}
            Some("") => {
                not(cx, "`=` takes the status from the page's own answer; Portico keeps the error status".into());
                return Vec::new();
            }
            Some(r) => cx.notes.note_at(
                &s.file,
                s.line,
                &s.text,
                Kind::Approximated,
                format!(
                    "the page is served with the error status: Portico does not change it to {r}"
                ),
            ),
        }
        let path = self.uri.split('?').next().unwrap_or(&self.uri);
        let Some(file) = file_for(path) else {
            not(
                cx,
                format!(
                    "no location of this server serves {path} from files; Portico's error_pages are files"
                ),
            );
            return Vec::new();
        };
        if !std::path::Path::new(&file).is_file() {
            let code = self.codes.first().map_or("CODE", String::as_str);
            not(
                cx,
                format!(
                    "{file} does not exist here, and Portico reads its error pages when it loads the config; create it, then add error_pages = {{ {code} = {} }} to the site",
                    q(&file)
                ),
            );
            return Vec::new();
        }
        let mut out = Vec::new();
        for c in &self.codes {
            match c.parse::<u16>() {
                Ok(code) if (400..=599).contains(&code) => out.push((code, file.clone())),
                _ => cx.notes.note_at(
                    &s.file,
                    s.line,
                    &format!("error_page ... {c}"),
                    Kind::NotCarried,
                    "Portico's error_pages take statuses 400-599",
                ),
            }
        }
        out
    }
}

/// Check an htpasswd file the way Portico reads it: the number of entries, or why not.
fn users_file(path: &str) -> Result<usize, String> {
    let text =
        std::fs::read_to_string(path).map_err(|e| format!("cannot read {path} here ({e})"))?;
    let mut count = 0;
    for (i, line) in text.lines().enumerate() {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let bcrypt = line.split_once(':').is_some_and(|(user, hash)| {
            !user.is_empty()
                && hash.len() == 60
                && ["$2y$", "$2b$", "$2a$"].iter().any(|p| hash.starts_with(p))
        });
        if !bcrypt {
            return Err(format!("{path}:{}: not a bcrypt entry", i + 1));
        }
        count += 1;
    }
    Ok(count)
}

/// nginx refuses past a limit with `{directive}_status` (503 when unset); Portico always with
/// 429 and `retry_after`: noted unless the two agree.
fn note_refusal(
    cx: &mut Cx<'_>,
    src: &Src,
    status: Option<u16>,
    directive: &str,
    retry_after: &str,
) {
    let nginx = match status {
        Some(429) => return,
        None => format!("503 (no {directive}_status)"),
        Some(s) => format!("{s} ({directive}_status)"),
    };
    cx.notes.note_at(
        &src.file,
        src.line,
        &src.text,
        Kind::Approximated,
        format!("nginx refuses with {nginx}; Portico with 429 and {retry_after}"),
    );
}

/// The limits of one level after its first: Portico has one `key` per route.
fn note_after_first<'a>(
    cx: &mut Cx<'_>,
    key: &str,
    directive: &str,
    zone: &str,
    rest: impl Iterator<Item = &'a Src>,
) {
    for src in rest {
        cx.notes.note_at(
            &src.file,
            src.line,
            &src.text,
            Kind::NotCarried,
            format!("Portico has one {key} per route: the first {directive} of this level (zone {zone}) is kept"),
        );
    }
}
