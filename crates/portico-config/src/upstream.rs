//! `[upstreams.NAME]`: servers, balancing, timeouts, passive health, and (parsed, gated for
//! now) `tls` and `health`.

use std::collections::BTreeSet;
use std::time::Duration;

use toml::de::DeValue;

use crate::gate::Scope;
use crate::keys::Tbl;
use crate::model::{
    Balance, Discover, HashKey, HealthCheck, HealthKind, ServerAddr, ServerSpec, Upstream,
    UpstreamTls,
};
use crate::walk::{Ctx, Span, Table, Value};

/// One upstream; `span` is where its table starts (for "missing key" messages).
///
/// `has_cluster`: whether the file has a `[cluster]` section (`discover = "cluster"` needs it).
pub(crate) fn upstream(
    ctx: &mut Ctx<'_>,
    name: &str,
    name_span: &Span,
    t: &Table<'_>,
    has_cluster: bool,
) -> Upstream {
    let what = format!("[upstreams.{name}]");
    if name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b))
    {
        ctx.err(
            name_span,
            format!(
                "upstream name `{name}` has characters other than letters, digits, `_`, `-`, `.`"
            ),
            Some(
                "the name appears in admin API paths and metrics; rename it, e.g. `app_pool`"
                    .into(),
            ),
        );
    }
    let t = ctx.open(t, Scope::Upstream, what.as_str());
    let discover = ctx.choice(t, "discover", &[("cluster", Some(Discover::Cluster))], None);
    if discover.is_some()
        && !has_cluster
        && let Some(span) = ctx.key_span(t, "discover")
    {
        ctx.err(
            &span,
            "`discover = \"cluster\"` needs a [cluster] section (the etcd the servers register in)",
            Some(
                "add [cluster] with etcd = [\"http://127.0.0.1:2379\"], or remove `discover`"
                    .into(),
            ),
        );
    }
    let servers = servers(ctx, t, &what, name_span, discover.is_some());
    let balance = ctx.choice(
        t,
        "balance",
        &[
            ("round_robin", Balance::RoundRobin),
            ("least_conn", Balance::LeastConn),
            ("random_two", Balance::RandomTwo),
            ("ip_hash", Balance::IpHash),
            ("hash", Balance::Hash),
        ],
        Balance::RoundRobin,
    );
    let hash_key = match ctx.str(t, "hash_key") {
        None => HashKey::ClientIp,
        Some((s, span)) => parse_hash_key(s).unwrap_or_else(|msg| {
            ctx.err(
                &span,
                format!("bad `hash_key` `{s}`: {msg}"),
                Some("allowed: `client_ip`, `uri`, `path`, `header:NAME`, `cookie:NAME`, `query:NAME`".into()),
            );
            HashKey::ClientIp
        }),
    };
    let sticky_cookie = ctx.str(t, "sticky_cookie").and_then(|(s, span)| {
        if is_token(s) {
            Some(s.to_string())
        } else {
            ctx.err(
                &span,
                format!("`sticky_cookie` `{s}` is not a valid cookie name"),
                Some("use letters, digits and `-_.`, e.g. \"portico_srv\"".into()),
            );
            None
        }
    });
    let sticky_cookie_max_age = ctx
        .has(t, "sticky_cookie_max_age")
        .then(|| ctx.positive_duration(t, "sticky_cookie_max_age", Duration::from_secs(1)));
    if sticky_cookie.is_none()
        && !ctx.has(t, "sticky_cookie")
        && let Some(span) = ctx.key_span(t, "sticky_cookie_max_age")
    {
        ctx.err(
            &span,
            "`sticky_cookie_max_age` needs `sticky_cookie`",
            Some("name the cookie: sticky_cookie = \"portico_srv\"".into()),
        );
    }
    let slow_start = ctx.duration(t, "slow_start", Duration::ZERO);
    if !slow_start.is_zero()
        && matches!(balance, Balance::Hash | Balance::IpHash)
        && let Some(span) = ctx.key_span(t, "slow_start")
    {
        ctx.err(
            &span,
            "`slow_start` has no effect with `balance = \"hash\"` or `\"ip_hash\"`",
            Some(
                "a hash sends each key to its server whatever the weights, so a recovered \
                 server cannot ramp up; remove `slow_start`, or use round_robin, least_conn \
                 or random_two"
                    .into(),
            ),
        );
    }
    let tls = ctx
        .table(t, "tls")
        .map(|(tt, _)| upstream_tls(ctx, tt, &what));
    let health = ctx.table(t, "health").map(|(ht, _)| health(ctx, ht, &what));
    Upstream {
        name: name.to_string(),
        servers,
        balance,
        hash_key,
        sticky_cookie,
        sticky_cookie_max_age,
        connect_timeout: ctx.positive_duration(t, "connect_timeout", Duration::from_secs(5)),
        read_timeout: ctx.positive_duration(t, "read_timeout", Duration::from_secs(60)),
        send_timeout: ctx.positive_duration(t, "send_timeout", Duration::from_secs(60)),
        keepalive: ctx.int(t, "keepalive", 32, 0, 1 << 20) as usize,
        max_fails: ctx.int(t, "max_fails", 1, 0, i64::from(u32::MAX)) as u32,
        fail_timeout: ctx.positive_duration(t, "fail_timeout", Duration::from_secs(10)),
        retries: ctx.int(t, "retries", 1, 0, 1000) as u32,
        slow_start,
        tls,
        health,
        discover,
    }
}

fn servers(
    ctx: &mut Ctx<'_>,
    t: Tbl<'_, '_>,
    what: &str,
    name_span: &Span,
    discover: bool,
) -> Vec<ServerSpec> {
    let Some(v) = ctx.get(t, "servers") else {
        ctx.err(
            name_span,
            format!("{what} has no `servers`"),
            Some("add servers = [\"127.0.0.1:8080\"]".into()),
        );
        return Vec::new();
    };
    let DeValue::Array(items) = v.get_ref() else {
        ctx.wrong_type("servers", v, "a list", "[\"127.0.0.1:8080\"]");
        return Vec::new();
    };
    if items.is_empty() && !discover {
        ctx.err(
            &v.span(),
            format!("{what} has an empty `servers` list"),
            Some("list at least one server, e.g. servers = [\"127.0.0.1:8080\"]".into()),
        );
    }
    let mut out: Vec<ServerSpec> = Vec::new();
    let mut seen = BTreeSet::new();
    for item in items.iter() {
        let Some(spec) = server_entry(ctx, item, what) else {
            continue;
        };
        if !seen.insert(spec.addr.clone()) {
            ctx.err(
                &item.span(),
                format!("server `{}` is listed twice in {what}", spec.addr),
                Some("use `weight` to give a server a larger share".into()),
            );
            continue;
        }
        out.push(spec);
    }
    out
}

fn server_entry(ctx: &mut Ctx<'_>, item: &Value<'_>, what: &str) -> Option<ServerSpec> {
    let mut spec = ServerSpec {
        addr: ServerAddr {
            host: String::new(),
            port: 0,
        },
        weight: 1,
        backup: false,
        down: false,
        max_conns: 0,
    };
    let (addr_text, addr_span) = match item.get_ref() {
        DeValue::String(s) => (s.to_string(), item.span()),
        DeValue::Table(st) => {
            let st = ctx.open(st, Scope::ServerEntry, format!("a server of {what}"));
            // Every key is asked for before a missing or bad `addr` ends the entry.
            spec.weight = ctx.int(st, "weight", 1, 1, 1_000_000) as u32;
            spec.backup = ctx.bool(st, "backup", false);
            spec.down = ctx.bool(st, "down", false);
            spec.max_conns = ctx.int(st, "max_conns", 0, 0, i64::from(u32::MAX)) as u32;
            let Some((s, span)) = ctx.str(st, "addr") else {
                if !ctx.has(st, "addr") {
                    ctx.err(
                        &item.span(),
                        "server entry has no `addr`",
                        Some("write { addr = \"127.0.0.1:8080\", weight = 2 }".into()),
                    );
                }
                return None;
            };
            (s.to_string(), span)
        }
        _ => {
            ctx.wrong_type(
                "servers",
                item,
                "a list of \"host:port\" strings or tables",
                "[\"127.0.0.1:8080\"]",
            );
            return None;
        }
    };
    match parse_server_addr(&addr_text) {
        Ok(a) => spec.addr = a,
        Err((msg, hint)) => {
            ctx.err(
                &addr_span,
                format!("bad server address `{addr_text}`: {msg}"),
                Some(hint),
            );
            return None;
        }
    }
    Some(spec)
}

/// `host:port` with an optional bracketed IPv6 host.
pub(crate) fn parse_server_addr(s: &str) -> Result<ServerAddr, (String, String)> {
    let example =
        "write \"host:port\", e.g. \"127.0.0.1:8080\", \"backend.local:80\" or \"[::1]:8080\"";
    let Some((host, port)) = s.rsplit_once(':') else {
        return Err(("no port".into(), example.into()));
    };
    let host = if let Some(inner) = host.strip_prefix('[') {
        let Some(inner) = inner.strip_suffix(']') else {
            return Err(("unclosed `[`".into(), example.into()));
        };
        if inner.parse::<std::net::Ipv6Addr>().is_err() {
            return Err((format!("`{inner}` is not an IPv6 address"), example.into()));
        }
        inner
    } else if host.contains(':') {
        return Err((
            "IPv6 addresses need brackets".into(),
            format!("write \"[{host}]:{port}\""),
        ));
    } else {
        let valid = !host.is_empty()
            && host.len() <= 253
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b));
        if !valid {
            return Err((
                format!("`{host}` is not a host name or IP address"),
                example.into(),
            ));
        }
        host
    };
    match port.parse::<u16>() {
        Ok(p) if p != 0 => Ok(ServerAddr {
            host: host.to_ascii_lowercase(),
            port: p,
        }),
        _ => Err((format!("`{port}` is not a port (1-65535)"), example.into())),
    }
}

pub(crate) fn parse_hash_key(s: &str) -> Result<HashKey, String> {
    match s {
        "client_ip" => return Ok(HashKey::ClientIp),
        "uri" => return Ok(HashKey::Uri),
        "path" => return Ok(HashKey::Path),
        _ => {}
    }
    let Some((kind, name)) = s.split_once(':') else {
        return Err("unknown key kind".into());
    };
    if !is_token(name) {
        return Err(format!("`{name}` is not a valid name"));
    }
    match kind {
        "header" => Ok(HashKey::Header(name.to_ascii_lowercase())),
        "cookie" => Ok(HashKey::Cookie(name.to_string())),
        "query" => Ok(HashKey::Query(name.to_string())),
        other => Err(format!("unknown key kind `{other}`")),
    }
}

/// An RFC 7230 token (header names, cookie names).
pub(crate) fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

fn upstream_tls(ctx: &mut Ctx<'_>, t: &Table<'_>, what: &str) -> UpstreamTls {
    let t = ctx.open(t, Scope::UpstreamTls, format!("the `tls` of {what}"));
    let tls = UpstreamTls {
        server_name: ctx.str(t, "server_name").map(|(s, _)| s.to_string()),
        verify: ctx.bool(t, "verify", true),
        ca_file: ctx.path(t, "ca_file"),
        client_cert: ctx.path(t, "client_cert"),
        client_key: ctx.path(t, "client_key"),
    };
    if tls.client_cert.is_some() != tls.client_key.is_some() {
        let key = if tls.client_cert.is_some() {
            "client_cert"
        } else {
            "client_key"
        };
        if let Some(v) = ctx.get(t, key) {
            ctx.err(
                &v.span(),
                "`client_cert` and `client_key` go together",
                Some("set both, or neither".into()),
            );
        }
    }
    tls
}

fn health(ctx: &mut Ctx<'_>, t: &Table<'_>, what: &str) -> HealthCheck {
    let t = ctx.open(t, Scope::Health, format!("the `health` of {what}"));
    let kind = ctx.choice(
        t,
        "type",
        &[
            ("http", HealthKind::Http),
            ("tcp", HealthKind::Tcp),
            ("websocket", HealthKind::WebSocket),
        ],
        HealthKind::Http,
    );
    let expect_status = match ctx.str(t, "expect_status") {
        None => vec![(200, 399)],
        Some((s, span)) => parse_status_ranges(s).unwrap_or_else(|msg| {
            ctx.err(
                &span,
                format!("bad `expect_status` `{s}`: {msg}"),
                Some("write ranges of status codes, e.g. \"200-399\" or \"200,204\"".into()),
            );
            vec![(200, 399)]
        }),
    };
    let path = match ctx.str(t, "path") {
        None => "/".to_string(),
        Some((p, span)) => {
            if !p.starts_with('/') {
                ctx.err(
                    &span,
                    format!("health `path` `{p}` must start with `/`"),
                    None,
                );
            }
            p.to_string()
        }
    };
    HealthCheck {
        kind,
        path,
        host: ctx.str(t, "host").map(|(s, _)| s.to_string()),
        interval: ctx.positive_duration(t, "interval", Duration::from_secs(2)),
        timeout: ctx.positive_duration(t, "timeout", Duration::from_secs(1)),
        rise: ctx.int(t, "rise", 2, 1, 1000) as u32,
        fall: ctx.int(t, "fall", 3, 1, 1000) as u32,
        expect_status,
        expect_body: ctx.str(t, "expect_body").map(|(s, _)| s.to_string()),
    }
}

/// `"200-399"`, `"200"`, `"200,204,300-399"`.
pub(crate) fn parse_status_ranges(s: &str) -> Result<Vec<(u16, u16)>, String> {
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim) {
        let (lo, hi) = part.split_once('-').unwrap_or((part, part));
        let parse = |x: &str| match x.trim().parse::<u16>() {
            Ok(n) if (100..=599).contains(&n) => Ok(n),
            _ => Err(format!("`{x}` is not a status code 100-599")),
        };
        let (lo, hi) = (parse(lo)?, parse(hi)?);
        if lo > hi {
            return Err(format!("range `{part}` is backwards"));
        }
        out.push((lo, hi));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_addr_forms() {
        let a = parse_server_addr("LocalHost:8080").unwrap();
        assert_eq!((a.host.as_str(), a.port), ("localhost", 8080));
        let a = parse_server_addr("[2001:db8::1]:443").unwrap();
        assert_eq!(a.host, "2001:db8::1");
        assert_eq!(a.to_string(), "[2001:db8::1]:443");
        assert_eq!(
            parse_server_addr("10.0.0.1:80").unwrap().to_string(),
            "10.0.0.1:80"
        );
        for bad in [
            "", "host", ":80", "h:", "h:65536", "h:0", "[::1:80", "[zz]:80", "a b:80", "::1:80",
        ] {
            assert!(parse_server_addr(bad).is_err(), "{bad}");
        }
        assert_eq!(
            parse_server_addr("::1:80").unwrap_err().1,
            "write \"[::1]:80\""
        );
    }

    #[test]
    fn hash_keys() {
        assert_eq!(parse_hash_key("client_ip"), Ok(HashKey::ClientIp));
        assert_eq!(parse_hash_key("uri"), Ok(HashKey::Uri));
        assert_eq!(parse_hash_key("path"), Ok(HashKey::Path));
        assert_eq!(
            parse_hash_key("header:X-Id"),
            Ok(HashKey::Header("x-id".into()))
        );
        assert_eq!(
            parse_hash_key("cookie:SID"),
            Ok(HashKey::Cookie("SID".into()))
        );
        assert_eq!(parse_hash_key("query:u"), Ok(HashKey::Query("u".into())));
        for bad in ["", "ip", "header:", "header:a b", "body:x"] {
            assert!(parse_hash_key(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn status_ranges() {
        assert_eq!(parse_status_ranges("200-399"), Ok(vec![(200, 399)]));
        assert_eq!(
            parse_status_ranges("200, 204,300-302"),
            Ok(vec![(200, 200), (204, 204), (300, 302)])
        );
        for bad in ["", "99", "600", "300-200", "2xx"] {
            assert!(parse_status_ranges(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn tokens() {
        assert!(is_token("X-Forwarded-For") && is_token("a_b.c~"));
        assert!(!is_token("") && !is_token("a b") && !is_token("a:b") && !is_token("é"));
    }
}
