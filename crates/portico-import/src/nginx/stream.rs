//! `stream { }` -> `[[streams]]`: `listen` (with `ssl`, `proxy_protocol`), `proxy_pass` to
//! an upstream or an address, `proxy_timeout`, `proxy_protocol on`, TLS termination with
//! `ssl_certificate`, and TLS passthrough by SNI (`ssl_preread on` with a `map` of
//! `$ssl_preread_server_name` -> `sni_routes`).

use std::collections::HashMap;

use super::upstream::{self, Ctx};
use super::{Cx, values};
use crate::out::{Table, key, q, qlist};
use crate::report::Kind;
use crate::tree::Node;

/// Settings a stream `server` inherits from `stream`.
#[derive(Debug, Clone, Default)]
struct StreamInherit {
    idle_timeout: Option<String>,
    connect_timeout: Option<String>,
    proxy_protocol: bool,
    cert: Option<String>,
    key: Option<String>,
}

impl StreamInherit {
    fn read(&mut self, cx: &mut Cx<'_>, n: &Node) {
        let arg = n.arg(0).unwrap_or("");
        match n.name.as_str() {
            "proxy_timeout" => match values::time(arg) {
                Some(t) => {
                    self.idle_timeout = Some(t);
                    n.mark();
                }
                None => cx.notes.note(n, Kind::NotCarried, "cannot read this time"),
            },
            "proxy_connect_timeout" => match values::time(arg) {
                Some(t) => {
                    self.connect_timeout = Some(t);
                    n.mark();
                }
                None => cx.notes.note(n, Kind::NotCarried, "cannot read this time"),
            },
            "proxy_protocol" => {
                self.proxy_protocol = arg == "on";
                n.mark();
            }
            "ssl_certificate" => {
                self.cert = Some(cx.conf_path(arg));
                n.mark();
            }
            "ssl_certificate_key" => {
                self.key = Some(cx.conf_path(arg));
                n.mark();
            }
            "access_log" => cx.access_log(n),
            "ssl_preread" => n.mark(),
            "proxy_next_upstream" | "proxy_next_upstream_tries" | "proxy_next_upstream_timeout" => cx.notes.note(
                n,
                Kind::Approximated,
                "Portico tries another server when connecting fails (upstream `retries`)",
            ),
            "preread_timeout" | "proxy_buffer_size" | "tcp_nodelay" | "proxy_socket_keepalive"
            | "error_log" | "log_format" | "resolver" | "resolver_timeout" | "proxy_download_rate"
            | "proxy_upload_rate" | "proxy_responses" | "proxy_requests" | "proxy_half_close" => cx.notes.note(
                n,
                Kind::Dropped,
                "no Portico setting: Portico's fixed behaviour covers this (the TLS/SNI read is bounded by [server] header_timeout)",
            ),
            "ssl_protocols" | "ssl_ciphers" | "ssl_prefer_server_ciphers" | "ssl_session_cache"
            | "ssl_session_timeout" | "ssl_handshake_timeout" => cx.notes.note(
                n,
                Kind::Dropped,
                "Portico offers TLS 1.3 and 1.2 with safe suites and session resumption (rustls)",
            ),
            "allow" | "deny" => cx.notes.note(
                n,
                Kind::NotCarried,
                "Portico has no access rules on streams (sites have `access`); every client is allowed",
            ),
            "limit_conn" | "limit_conn_zone" => cx.notes.note(
                n,
                Kind::NotCarried,
                "Portico has no per-client limits on streams; [server] max_connections applies",
            ),
            _ => {}
        }
    }
}

pub(crate) fn stream(cx: &mut Cx<'_>, n: &Node) {
    let nodes = n.children();
    for u in nodes.iter().filter(|u| u.name == "upstream") {
        upstream::block(cx, u, Ctx::Stream);
    }
    // `map $ssl_preread_server_name $var { name target; default target; }`.
    let mut sni_maps: HashMap<String, Vec<(String, String, &Node)>> = HashMap::new();
    for m in nodes.iter().filter(|m| m.name == "map") {
        if m.arg(0) == Some("$ssl_preread_server_name")
            && let Some(var) = m.arg(1)
        {
            m.mark();
            let entries = m
                .children()
                .iter()
                .filter_map(|e| Some((e.name.clone(), e.arg(0)?.to_string(), e)))
                .collect();
            sni_maps.insert(var.to_string(), entries);
        } else {
            cx.notes.note(
                m,
                Kind::NotCarried,
                "Portico has no variables; what this map decides is not carried over",
            );
        }
    }
    let mut base = StreamInherit::default();
    for d in nodes {
        base.read(cx, d);
    }
    for s in nodes.iter().filter(|s| s.name == "server") {
        server(cx, s, &base, &sni_maps);
    }
}

fn server(
    cx: &mut Cx<'_>,
    s: &Node,
    base: &StreamInherit,
    sni_maps: &HashMap<String, Vec<(String, String, &Node)>>,
) {
    s.mark();
    let mut inh = base.clone();
    for d in s.children() {
        inh.read(cx, d);
    }
    let mut t = Table::new(format!("{}:{} stream server", s.file, s.line));
    let mut listens = Vec::new();
    let mut tls = false;
    let mut accept_pp = false;
    for d in s.children().iter().filter(|d| d.name == "listen") {
        d.mark();
        if d.args.iter().any(|a| a == "udp") {
            cx.notes
                .note(d, Kind::NotCarried, "Portico streams are TCP only");
            continue;
        }
        match values::listen(d.arg(0).unwrap_or("")) {
            Ok(l) => {
                if let Some(why) = l.note {
                    cx.notes.note_part(d, &d.args[0], Kind::Approximated, why);
                }
                listens.push(l.addr);
            }
            Err(why) => {
                cx.notes.note(d, Kind::NotCarried, why);
                continue;
            }
        }
        for p in &d.args[1..] {
            match p.split_once('=').map_or(p.as_str(), |(k, _)| k) {
                "ssl" => tls = true,
                "proxy_protocol" => accept_pp = true,
                "reuseport" => cx.notes.note_part(
                    d,
                    p,
                    Kind::Dropped,
                    "Portico always listens with SO_REUSEPORT",
                ),
                "backlog" | "rcvbuf" | "sndbuf" | "bind" | "ipv6only" | "so_keepalive"
                | "fastopen" => {
                    cx.notes
                        .note_part(d, p, Kind::Dropped, "socket tuning Portico does not expose")
                }
                _ => cx
                    .notes
                    .note_part(d, p, Kind::NotCarried, "unknown listen parameter"),
            }
        }
    }
    if listens.is_empty() {
        return cx.notes.note(
            s,
            Kind::NotCarried,
            "no listen address could be carried over, so neither could this server",
        );
    }
    t.set("listen", qlist(&listens));
    let Some(pass) = s.children().iter().find(|d| d.name == "proxy_pass") else {
        return cx
            .notes
            .note(s, Kind::NotCarried, "a stream server without proxy_pass");
    };
    pass.mark();
    let target = pass.arg(0).unwrap_or("");
    let origin = format!("{}:{}", pass.file, pass.line);
    if let Some(entries) = sni_maps.get(target) {
        let mut routes = Vec::new();
        for (name, to, e) in entries {
            let up = match upstream::target(cx, to, false, Ctx::Stream, &origin) {
                Ok(u) => u,
                Err(why) => {
                    cx.notes.note(e, Kind::NotCarried, why);
                    continue;
                }
            };
            e.mark();
            let name = if name == "default" {
                "*".to_string()
            } else {
                name.to_ascii_lowercase()
            };
            routes.push(format!("{} = {}", key(&name), q(&up)));
        }
        if tls {
            cx.notes.note(
                pass,
                Kind::NotCarried,
                "SNI routing passes TLS through; it cannot also terminate TLS (listen ... ssl)",
            );
            return;
        }
        t.set("sni_routes", format!("{{ {} }}", routes.join(", ")));
    } else {
        match upstream::target(cx, target, false, Ctx::Stream, &origin) {
            Ok(u) => {
                if let Some(c) = &inh.connect_timeout {
                    upstream::set_field(cx, &u, "connect_timeout", c, pass);
                }
                t.set("upstream", q(&u));
            }
            Err(why) => return cx.notes.note(pass, Kind::NotCarried, why),
        }
    }
    if tls {
        match (&inh.cert, &inh.key) {
            (Some(c), Some(k)) => t.set("tls", format!("{{ cert = {}, key = {} }}", q(c), q(k))),
            _ => cx.notes.note_at(&s.file, s.line, "server", Kind::NotCarried, "listen ... ssl without ssl_certificate and ssl_certificate_key: written as plain TCP"),
        }
    }
    if accept_pp {
        t.set("accept_proxy_protocol", "true".into());
    }
    if inh.proxy_protocol {
        t.set("proxy_protocol", q("v1"));
    }
    if let Some(i) = &inh.idle_timeout {
        t.set("idle_timeout", q(i));
    }
    cx.out.streams.push(t);
}
