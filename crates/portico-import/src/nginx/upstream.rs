//! `upstream` blocks (http and stream) -> `[upstreams.NAME]`, and the pools Portico needs
//! for `proxy_pass http://host:port` (nginx connects to an address directly; Portico always
//! goes through an upstream).

use std::collections::HashMap;

use super::Cx;
use super::values::{self, server_addr, upstream_name};
use crate::out::{Field, Table, Upstream, inline, q};
use crate::report::Kind;
use crate::tree::Node;

/// nginx's passive-health defaults, which are also Portico's.
const DEFAULT_MAX_FAILS: &str = "1";
const DEFAULT_FAIL_TIMEOUT: &str = "10s";

/// Which `proxy_pass` context an upstream belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ctx {
    Http,
    Stream,
}

/// A Portico upstream name not used yet, close to `wanted`.
fn fresh_name(cx: &Cx<'_>, wanted: &str) -> String {
    let base = upstream_name(wanted);
    let mut name = base.clone();
    let mut i = 2;
    while cx.out.upstream(&name).is_some() {
        name = format!("{base}_{i}");
        i += 1;
    }
    name
}

/// Convert one `upstream NAME { ... }` block.
pub(crate) fn block(cx: &mut Cx<'_>, n: &Node, ctx: Ctx) {
    n.mark();
    let Some(nginx_name) = n.arg(0) else {
        return cx
            .notes
            .note(n, Kind::NotCarried, "an upstream without a name");
    };
    let name = fresh_name(cx, nginx_name);
    if name != nginx_name {
        let why = format!(
            "named `{name}` in Portico (upstream names use letters, digits, `_`, `-`, `.`; each is unique)"
        );
        cx.notes.note_part(n, nginx_name, Kind::Approximated, why);
    }
    let default_port = if ctx == Ctx::Http { 80 } else { 0 };
    let mut table = Table::new(format!("{}:{} upstream {nginx_name}", n.file, n.line));
    let mut servers = Vec::new();
    let mut addrs: Vec<String> = Vec::new();
    // Per-server passive health (nginx) -> per-upstream (Portico): (value, node) lists.
    let mut max_fails: Vec<(String, &Node)> = Vec::new();
    let mut fail_timeouts: Vec<(String, &Node)> = Vec::new();
    for d in n.children() {
        match d.name.as_str() {
            "server" => {
                let Some(entry) = server_entry(cx, d, default_port, &mut table) else {
                    continue;
                };
                if addrs.contains(&entry.addr) {
                    cx.notes.note(
                        d,
                        Kind::NotCarried,
                        "the same address is listed twice; Portico keys server state by address, so it is listed once (raise its weight instead)",
                    );
                    continue;
                }
                max_fails.push((entry.max_fails.clone(), d));
                fail_timeouts.push((entry.fail_timeout.clone(), d));
                addrs.push(entry.addr.clone());
                servers.push(entry.render());
                d.mark();
            }
            "ip_hash" => {
                table.set("balance", q("ip_hash"));
                d.mark();
            }
            "least_conn" => {
                table.set("balance", q("least_conn"));
                d.mark();
            }
            "hash" => hash(cx, d, &mut table),
            "random" => {
                table.set("balance", q("random_two"));
                if d.arg(0) == Some("two") {
                    d.mark();
                } else {
                    cx.notes.note(d, Kind::Approximated, "written as random_two (two random picks, the less loaded wins)");
                }
            }
            "keepalive" => match d.arg(0).and_then(|k| k.parse::<u32>().ok()) {
                Some(k) => {
                    table.set("keepalive", k.to_string());
                    d.mark();
                }
                None => cx.notes.note(d, Kind::NotCarried, "cannot read the number"),
            },
            "keepalive_timeout" | "keepalive_requests" | "keepalive_time" => cx.notes.note(
                d,
                Kind::Dropped,
                "Portico closes idle upstream connections after 55-60 s and reuses them without a request limit",
            ),
            "zone" => cx.notes.note(
                d,
                Kind::Dropped,
                "Portico shares upstream state between its threads (and keeps it across reloads) by itself",
            ),
            "sticky" if ctx == Ctx::Http => sticky(cx, d, &mut table),
            "sticky" => cx.notes.note(
                d,
                Kind::NotCarried,
                "Portico's sticky_cookie is for HTTP upstreams; TCP streams use `persistence`",
            ),
            _ => {}
        }
    }
    passive(
        cx,
        &mut table,
        "max_fails",
        DEFAULT_MAX_FAILS,
        &max_fails,
        false,
    );
    passive(
        cx,
        &mut table,
        "fail_timeout",
        DEFAULT_FAIL_TIMEOUT,
        &fail_timeouts,
        true,
    );
    if servers.is_empty() {
        return cx.notes.note(
            n,
            Kind::NotCarried,
            "no server of this upstream could be carried over, so neither could the upstream",
        );
    }
    let map = match ctx {
        Ctx::Http => &mut cx.http_upstreams,
        Ctx::Stream => &mut cx.stream_upstreams,
    };
    map.insert(nginx_name.to_string(), name.clone());
    cx.out.upstreams.push(Upstream {
        name,
        table,
        servers,
        health: Vec::new(),
    });
}

/// nginx's per-server `max_fails` / `fail_timeout` as one per-upstream value.
fn passive(
    cx: &mut Cx<'_>,
    table: &mut Table,
    key: &str,
    default: &str,
    values: &[(String, &Node)],
    quoted: bool,
) {
    let Some((first, _)) = values.first() else {
        return;
    };
    if first != default {
        table.set(key, if quoted { q(first) } else { first.clone() });
    }
    for (v, d) in values {
        if v != first {
            let why = format!(
                "Portico sets {key} per upstream: kept {first} from the first server, not {v}"
            );
            cx.notes.note_part(d, key, Kind::Approximated, why);
        }
    }
}

struct Entry {
    addr: String,
    fields: Vec<Field>,
    max_fails: String,
    fail_timeout: String,
}

impl Entry {
    fn render(&self) -> String {
        if self.fields.is_empty() {
            q(&self.addr)
        } else {
            let mut f = vec![("addr".to_string(), q(&self.addr))];
            f.extend(self.fields.iter().cloned());
            inline(&f)
        }
    }
}

fn server_entry(cx: &mut Cx<'_>, d: &Node, default_port: u16, table: &mut Table) -> Option<Entry> {
    let Some(spec) = d.arg(0) else {
        cx.notes
            .note(d, Kind::NotCarried, "a server without an address");
        return None;
    };
    if default_port == 0 && !spec.contains(':') {
        cx.notes
            .note(d, Kind::NotCarried, "a stream server needs a port");
        return None;
    }
    let addr = match server_addr(spec, default_port) {
        Ok(a) => a,
        Err(why) => {
            cx.notes.note(d, Kind::NotCarried, why);
            return None;
        }
    };
    let mut e = Entry {
        addr,
        fields: Vec::new(),
        max_fails: DEFAULT_MAX_FAILS.into(),
        fail_timeout: DEFAULT_FAIL_TIMEOUT.into(),
    };
    for p in &d.args[1..] {
        let (k, v) = p.split_once('=').unwrap_or((p.as_str(), ""));
        match k {
            "weight" if v.parse::<u32>().is_ok_and(|w| w >= 1) => {
                if v != "1" {
                    e.fields.push(("weight".into(), v.into()));
                }
            }
            "max_fails" if v.parse::<u32>().is_ok() => e.max_fails = v.into(),
            "fail_timeout" => match values::time(v) {
                Some(t) => e.fail_timeout = t,
                None => cx.notes.note_part(d, p, Kind::NotCarried, "cannot read this time"),
            },
            "backup" => e.fields.push(("backup".into(), "true".into())),
            "down" => e.fields.push(("down".into(), "true".into())),
            "max_conns" if v.parse::<u32>().is_ok() => {
                if v != "0" {
                    e.fields.push(("max_conns".into(), v.into()));
                }
            }
            "slow_start" => match values::time(v) {
                Some(t) => table.set("slow_start", q(&t)),
                None => cx.notes.note_part(d, p, Kind::NotCarried, "cannot read this time"),
            },
            "resolve" => cx.notes.note_part(
                d,
                p,
                Kind::Approximated,
                "Portico resolves server names when the configuration is loaded (start and reload), not continuously",
            ),
            _ => cx.notes.note_part(d, p, Kind::NotCarried, "unknown server parameter"),
        }
    }
    Some(e)
}

fn hash(cx: &mut Cx<'_>, d: &Node, table: &mut Table) {
    let Some(key) = d.arg(0) else {
        return cx.notes.note(d, Kind::NotCarried, "hash without a key");
    };
    let portico_key = match key {
        "$remote_addr" | "$binary_remote_addr" => Some("client_ip".to_string()),
        "$request_uri" => Some("uri".to_string()),
        "$uri" | "$document_uri" => Some("path".to_string()),
        k => {
            if let Some(c) = k.strip_prefix("$cookie_") {
                Some(format!("cookie:{c}"))
            } else if let Some(h) = k.strip_prefix("$http_") {
                Some(format!("header:{}", h.replace('_', "-")))
            } else {
                k.strip_prefix("$arg_").map(|a| format!("query:{a}"))
            }
        }
    };
    let Some(pk) = portico_key else {
        return cx.notes.note(
            d,
            Kind::NotCarried,
            "Portico hashes on client_ip, uri, path, header:NAME, cookie:NAME or query:NAME only",
        );
    };
    table.set("balance", q("hash"));
    if pk != "client_ip" {
        table.set("hash_key", q(&pk));
    }
    if d.arg(1) == Some("consistent") {
        d.mark();
    } else {
        cx.notes.note(
            d,
            Kind::Approximated,
            "Portico's hash is always consistent (rendezvous hashing): the same key still reaches the same server, but not the server nginx's plain hash picks",
        );
    }
}

/// The Portico upstream `proxy_pass` names: an `upstream` block, or an address for which a
/// pool of one server is made (`tls` for https:// targets). `Err` says why not.
pub(crate) fn target(
    cx: &mut Cx<'_>,
    host: &str,
    tls: bool,
    ctx: Ctx,
    origin: &str,
) -> Result<String, String> {
    let map: &HashMap<String, String> = match ctx {
        Ctx::Http => &cx.http_upstreams,
        Ctx::Stream => &cx.stream_upstreams,
    };
    if let Some(name) = map.get(host) {
        if tls {
            // The upstream block is shared; mark its servers TLS.
            let name = name.clone();
            if let Some(u) = cx.out.upstream_mut(&name)
                && u.table.get("tls").is_none()
            {
                u.table
                    .set("tls", inline(&[("verify".into(), "false".into())]));
            }
            return Ok(name);
        }
        return Ok(name.clone());
    }
    if host.contains('$') {
        return Err("proxy_pass with variables cannot be carried over".into());
    }
    let default_port = match (ctx, tls) {
        (Ctx::Stream, _) => 0,
        (Ctx::Http, true) => 443,
        (Ctx::Http, false) => 80,
    };
    if default_port == 0 && !host.contains(':') {
        return Err(format!("`{host}` is neither an upstream nor host:port"));
    }
    let addr = server_addr(host, default_port)?;
    let host_part = addr.replace([':', '[', ']', '.'], "_");
    let wanted = format!(
        "backend_{}{}",
        host_part.trim_matches('_'),
        if tls { "_tls" } else { "" }
    );
    // One pool per address (and scheme), shared by every proxy_pass naming it.
    let existing = cx.out.upstreams.iter().find(|u| {
        u.servers.len() == 1
            && u.servers[0] == q(&addr)
            && u.table.origin.starts_with("made for")
            && u.table.get("tls").is_some() == tls
    });
    if let Some(u) = existing {
        return Ok(u.name.clone());
    }
    let name = fresh_name(cx, &wanted);
    let mut table = Table::new(format!("made for proxy_pass {host} at {origin}"));
    if tls {
        // nginx does not verify upstream certificates unless proxy_ssl_verify is on.
        table.set("tls", inline(&[("verify".into(), "false".into())]));
    }
    cx.out.upstreams.push(Upstream {
        name: name.clone(),
        table,
        servers: vec![q(&addr)],
        health: Vec::new(),
    });
    Ok(name)
}

/// Set an upstream-wide `key` coming from a location (`proxy_connect_timeout`...): the
/// first location wins, a different value elsewhere is reported.
pub(crate) fn set_field(cx: &mut Cx<'_>, upstream: &str, key: &str, value: &str, node: &Node) {
    let Some(u) = cx.out.upstream_mut(upstream) else {
        return;
    };
    match u.table.get(key) {
        None => u.table.set(key, q(value)),
        Some(v) if *v == q(value) => {}
        Some(v) => {
            let why = format!(
                "Portico sets {key} per upstream: `{upstream}` keeps {v} from an earlier location"
            );
            cx.notes.note_part(node, value, Kind::Approximated, why);
        }
    }
}

/// `sticky cookie NAME [expires=] [path=] ...` (nginx Plus) or `sticky [name=NAME] ...`
/// (the nginx-sticky-module-ng) -> `sticky_cookie` (+ `sticky_cookie_max_age`).
fn sticky(cx: &mut Cx<'_>, d: &Node, table: &mut Table) {
    let (name, params): (String, &[String]) = match d.arg(0) {
        Some("cookie") => match d.arg(1) {
            Some(n) => (n.to_string(), &d.args[2..]),
            None => return cx.notes.note(d, Kind::NotCarried, "no cookie name"),
        },
        Some("route" | "learn") => {
            return cx.notes.note(
                d,
                Kind::NotCarried,
                "Portico pins clients with its own cookie (sticky_cookie); route and learn affinity are not carried over",
            );
        }
        _ => {
            let name = d
                .args
                .iter()
                .find_map(|a| a.strip_prefix("name="))
                .unwrap_or("route");
            (name.to_string(), &d.args[..])
        }
    };
    let cookie_ok = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    if !cookie_ok {
        return cx
            .notes
            .note(d, Kind::NotCarried, "not a valid cookie name");
    }
    table.set("sticky_cookie", q(&name));
    d.mark();
    for p in params {
        let (k, v) = p.split_once('=').unwrap_or((p.as_str(), ""));
        match k {
            "name" => {}
            "expires" if v == "max" => cx.notes.note_part(d, p, Kind::Approximated,
                "written as sticky_cookie_max_age = \"3650d\" (nginx's `max` sets a date in 2037)"),
            "expires" => match values::time(v) {
                Some(t) if t != "0s" => table.set("sticky_cookie_max_age", q(&t)),
                _ => cx.notes.note_part(d, p, Kind::NotCarried, "cannot read this time"),
            },
            "path" if v == "/" => {}
            "path" => cx.notes.note_part(d, p, Kind::Approximated, "Portico's sticky cookie has Path=/"),
            "domain" => cx.notes.note_part(d, p, Kind::NotCarried, "Portico's sticky cookie has no Domain: it goes back to the host that set it only"),
            "httponly" | "secure" => cx.notes.note_part(d, p, Kind::Dropped,
                "Portico's sticky cookie is always HttpOnly, and Secure on https"),
            "samesite" if v.eq_ignore_ascii_case("lax") => {}
            "samesite" => cx.notes.note_part(d, p, Kind::Approximated, "Portico's sticky cookie has SameSite=Lax"),
            "hash" | "no_fallback" | "transfer" => cx.notes.note_part(d, p, Kind::Approximated,
                "Portico's cookie value names the server by an id derived from the upstream and its address (signed with [server] secret_file if set); a cookie naming an unusable server is ignored and replaced"),
            _ => cx.notes.note_part(d, p, Kind::NotCarried, "unknown sticky parameter"),
        }
        if k == "expires" && v == "max" {
            table.set("sticky_cookie_max_age", q("3650d"));
        }
    }
}
