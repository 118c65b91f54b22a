//! `[[streams]]`: TCP (L4) services — listeners, the upstream (or SNI routes for TLS
//! passthrough), persistence, PROXY protocol both ways, idle timeout and TLS termination
//! (certificate files only: `tls = "acme"` needs names, which a stream does not have).

use std::time::Duration;

use toml::de::DeValue;

use crate::gate::Scope;
use crate::keys::Tbl;
use crate::model::{HostPattern, ProxyProtocolVersion, Stream};
use crate::site::{parse_host, site_tls};
use crate::walk::{Ctx, Span, Value};

/// Default `idle_timeout`.
pub const DEFAULT_STREAM_IDLE_TIMEOUT: Duration = Duration::from_secs(3600);

/// Where a stream's pieces are, for cross-checks after the walk.
#[derive(Debug, Default)]
pub(crate) struct StreamSpans {
    /// Span of the `listen` value (the header when absent).
    pub listen: Span,
}

pub(crate) fn stream(
    ctx: &mut Ctx<'_>,
    index: usize,
    v: &Value<'_>,
) -> Option<(Stream, StreamSpans)> {
    let DeValue::Table(t) = v.get_ref() else {
        ctx.wrong_type("streams", v, "an array of tables", "[[streams]]");
        return None;
    };
    let what = format!("stream #{}", index + 1);
    let header = v.span();
    let t = ctx.open(t, Scope::Stream, format!("[[streams]] ({what})"));
    let mut spans = StreamSpans {
        listen: header.clone(),
    };
    let listen = match ctx.listen_list(t, "listen") {
        Some((addrs, span)) => {
            if matches!(ctx.get(t, "listen").map(|v| v.get_ref()), Some(DeValue::Array(a)) if a.is_empty())
            {
                ctx.err(&span, format!("{what} has an empty `listen` list"), None);
            }
            spans.listen = span;
            addrs
        }
        None => {
            if !ctx.has(t, "listen") {
                ctx.err(
                    &header,
                    format!("{what} has no `listen`"),
                    Some("add listen = [\"0.0.0.0:6201\"] (an IP address and a port)".into()),
                );
            }
            Vec::new()
        }
    };
    let upstream = ctx.str(t, "upstream").map(|(name, span)| {
        ctx.upstream_refs.push((name.to_string(), span));
        name.to_string()
    });
    let persistence = ctx.duration(t, "persistence", Duration::ZERO);
    let proxy_protocol = ctx.choice(
        t,
        "proxy_protocol",
        &[
            ("off", None),
            ("v1", Some(ProxyProtocolVersion::V1)),
            ("v2", Some(ProxyProtocolVersion::V2)),
        ],
        None,
    );
    let accept_proxy_protocol = ctx.bool(t, "accept_proxy_protocol", false);
    let idle_timeout = ctx.positive_duration(t, "idle_timeout", DEFAULT_STREAM_IDLE_TIMEOUT);
    let tls = stream_tls(ctx, t, &what);
    let sni_routes = sni_routes(ctx, t, &what);
    if let (Some(k), Some(s)) = (ctx.key_span(t, "tls"), ctx.key_span(t, "sni_routes")) {
        let (first, second) = if k.start < s.start { (k, s) } else { (s, k) };
        ctx.err(
            &second,
            format!("{what} has both `tls` and `sni_routes`"),
            Some(format!(
                "`tls` terminates TLS, `sni_routes` passes it through by SNI; keep one (first at {})",
                ctx.location(first.start)
            )),
        );
    }
    let has_sni_routes = ctx.has(t, "sni_routes");
    let has_upstream = ctx.has(t, "upstream");
    match (&upstream, has_sni_routes) {
        (None, false) if !has_upstream => ctx.err(
            &header,
            format!("{what} has no `upstream`"),
            Some("add upstream = \"NAME\" naming an [upstreams.NAME]".into()),
        ),
        (Some(_), true) => {
            if let Some(span) = ctx.key_span(t, "upstream") {
                ctx.err(
                    &span,
                    format!("{what} has both `upstream` and `sni_routes`"),
                    Some(
                        "with `sni_routes`, route the default with \"*\" = \"UPSTREAM\" instead"
                            .into(),
                    ),
                );
            }
        }
        _ => {}
    }
    let stream = Stream {
        index,
        listen,
        upstream,
        persistence,
        proxy_protocol,
        accept_proxy_protocol,
        idle_timeout,
        tls,
        sni_routes,
    };
    Some((stream, spans))
}

/// SPEC: for an upstream of streams, active health checks default to `tcp`. An upstream
/// that only streams use (no site route proxies to it) and whose `health` table has no
/// `type` gets `HealthKind::Tcp` instead of the general default `http`.
pub(crate) fn health_defaults(root: &crate::walk::Table<'_>, config: &mut crate::Config) {
    use crate::model::{Action, HealthKind};
    let http_used: Vec<String> = config
        .sites
        .iter()
        .flat_map(|s| &s.routes)
        .filter_map(|r| match &r.action {
            Action::Proxy(p) => Some(p.upstream.clone()),
            _ => None,
        })
        .collect();
    let stream_used: Vec<String> = config
        .streams
        .iter()
        .flat_map(|s| s.upstream.iter().chain(s.sni_routes.iter().map(|(_, u)| u)))
        .cloned()
        .collect();
    for name in stream_used {
        if http_used.contains(&name) {
            continue;
        }
        let explicit =
            table_at(root, &["upstreams", &name, "health"]).is_some_and(|h| h.contains_key("type"));
        if explicit {
            continue;
        }
        if let Some(h) = config
            .upstreams
            .get_mut(&name)
            .and_then(|u| u.health.as_mut())
        {
            h.kind = HealthKind::Tcp;
        }
    }
}

fn table_at<'t, 'i>(
    root: &'t crate::walk::Table<'i>,
    path: &[&str],
) -> Option<&'t crate::walk::Table<'i>> {
    let mut t = root;
    for key in path {
        match t.get(*key)?.get_ref() {
            DeValue::Table(inner) => t = inner,
            _ => return None,
        }
    }
    Some(t)
}

/// `tls` on a stream: certificate files only. ACME issues a certificate for names, and a
/// stream has no `hosts` to take them from, so `tls = "acme"` is refused here (a deviation
/// from SPEC's "as for sites", documented in docs/configuration.md).
fn stream_tls(ctx: &mut Ctx<'_>, t: Tbl<'_, '_>, what: &str) -> Option<crate::model::SiteTls> {
    let tls = site_tls(ctx, t)?;
    if tls == crate::model::SiteTls::Acme {
        if let Some(v) = ctx.get(t, "tls") {
            ctx.err(
                &v.span(),
                format!("{what} has tls = \"acme\", but ACME on streams needs names (a stream has no `hosts`)"),
                Some(
                    "use a [[sites]] entry with `hosts` for ACME, or certificate files: \
                     tls = { cert = \"fullchain.pem\", key = \"key.pem\" }"
                        .into(),
                ),
            );
        }
        return None;
    }
    Some(tls)
}

/// `sni_routes = { "a.example.com" = "UPSTREAM", "*" = "UPSTREAM" }`.
fn sni_routes(ctx: &mut Ctx<'_>, t: Tbl<'_, '_>, what: &str) -> Vec<(HostPattern, String)> {
    let Some((routes, span)) = ctx.table(t, "sni_routes") else {
        return Vec::new();
    };
    if routes.is_empty() {
        ctx.err(
            &span,
            format!("{what} has an empty `sni_routes` table"),
            Some("sni_routes = { \"a.example.com\" = \"UPSTREAM\", \"*\" = \"UPSTREAM\" }".into()),
        );
    }
    let mut out: Vec<(HostPattern, String)> = Vec::new();
    for (k, v) in routes.iter() {
        let name: &str = k.get_ref();
        let pattern = match parse_host(name) {
            Ok(p) => p,
            Err(msg) => {
                ctx.err(
                    &k.span(),
                    format!("bad SNI pattern `{name}`: {msg}"),
                    Some(
                        "write a name (\"a.example.com\"), a wildcard (\"*.example.com\") or \"*\""
                            .into(),
                    ),
                );
                continue;
            }
        };
        let DeValue::String(up) = v.get_ref() else {
            ctx.wrong_type(name, v, "an upstream name", "\"UPSTREAM\"");
            continue;
        };
        ctx.upstream_refs.push((up.to_string(), v.span()));
        if out.iter().any(|(p, _)| *p == pattern) {
            ctx.err(
                &k.span(),
                format!("SNI pattern `{name}` is listed twice in {what}"),
                None,
            );
            continue;
        }
        out.push((pattern, up.to_string()));
    }
    out
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::model::ProxyProtocolVersion;

    fn parse(text: &str) -> Result<crate::Config, crate::ConfigError> {
        crate::parse(text, Path::new("t.toml"))
    }

    const UP: &str =
        "[upstreams.a]\nservers = [\"127.0.0.1:1\"]\n[upstreams.b]\nservers = [\"127.0.0.1:2\"]\n";

    #[test]
    fn defaults_and_values() {
        let c = parse(&format!(
            "{UP}[[streams]]\nlisten = [\"127.0.0.1:6201\"]\nupstream = \"a\"\n\
             [[streams]]\nlisten = \"127.0.0.1:6202\"\nupstream = \"b\"\npersistence = \"50s\"\n\
             proxy_protocol = \"v2\"\naccept_proxy_protocol = true\nidle_timeout = \"5m\"\n"
        ))
        .unwrap();
        let s = &c.streams[0];
        assert_eq!(s.upstream.as_deref(), Some("a"));
        assert_eq!(s.persistence, std::time::Duration::ZERO);
        assert_eq!(s.proxy_protocol, None);
        assert!(!s.accept_proxy_protocol);
        assert_eq!(s.idle_timeout, super::DEFAULT_STREAM_IDLE_TIMEOUT);
        let s = &c.streams[1];
        assert_eq!(s.index, 1);
        assert_eq!(s.persistence.as_secs(), 50);
        assert_eq!(s.proxy_protocol, Some(ProxyProtocolVersion::V2));
        assert!(s.accept_proxy_protocol);
        assert_eq!(s.idle_timeout.as_secs(), 300);
    }

    #[test]
    fn sni_routes_parse() {
        let c = parse(&format!(
            "{UP}[[streams]]\nlisten = [\"127.0.0.1:6201\"]\n\
             sni_routes = {{ \"a.example.com\" = \"a\", \"*.Example.com\" = \"b\", \"*\" = \"a\" }}\n"
        ))
        .unwrap();
        let s = &c.streams[0];
        assert_eq!(s.upstream, None);
        assert_eq!(s.sni_routes.len(), 3);
        let has = |p: crate::HostPattern, up: &str| s.sni_routes.contains(&(p, up.to_string()));
        assert!(has(crate::HostPattern::Suffix(".example.com".into()), "b"));
        assert!(has(crate::HostPattern::Exact("a.example.com".into()), "a"));
        assert!(has(crate::HostPattern::Any, "a"));
    }

    #[test]
    fn stream_upstreams_health_defaults_to_tcp() {
        let text = "[upstreams.s]\nservers = [\"127.0.0.1:1\"]\nhealth = { interval = \"1s\" }\n\
                    [upstreams.h]\nservers = [\"127.0.0.1:2\"]\nhealth = { interval = \"1s\" }\n\
                    [upstreams.x]\nservers = [\"127.0.0.1:3\"]\nhealth = { type = \"http\" }\n\
                    [[sites]]\nlisten = \"127.0.0.1:80\"\n[[sites.routes]]\npath = \"/\"\nproxy = \"h\"\n\
                    [[streams]]\nlisten = \"127.0.0.1:81\"\nupstream = \"s\"\n\
                    [[streams]]\nlisten = \"127.0.0.1:82\"\nupstream = \"h\"\n\
                    [[streams]]\nlisten = \"127.0.0.1:83\"\nupstream = \"x\"\n";
        let mut ctx = crate::walk::Ctx::new(text, Path::new("t.toml"));
        let root = toml::de::DeTable::parse(text).unwrap();
        let c = crate::walk_root(&mut ctx, root.get_ref());
        // `health` may still be gated ("not supported yet"); the model is built either way.
        let kind = |n: &str| c.upstreams[n].health.as_ref().unwrap().kind;
        assert_eq!(kind("s"), crate::HealthKind::Tcp, "only streams use it");
        assert_eq!(
            kind("h"),
            crate::HealthKind::Http,
            "a site proxies to it too"
        );
        assert_eq!(kind("x"), crate::HealthKind::Http, "explicit type");
    }

    #[test]
    fn tls_files_parse_and_acme_is_refused() {
        let c = parse(&format!(
            "{UP}[[streams]]\nlisten = \"127.0.0.1:6201\"\nupstream = \"a\"\n\
             tls = {{ cert = \"/etc/c.pem\", key = \"k.pem\" }}\n"
        ))
        .unwrap();
        let Some(crate::SiteTls::Files { cert, key }) = &c.streams[0].tls else {
            panic!("files expected: {:?}", c.streams[0].tls);
        };
        assert_eq!(cert, Path::new("/etc/c.pem"));
        assert!(key.ends_with("k.pem"), "{key:?}");
        // Line 6 (after the 4 lines of UP and 2 of the stream), column 7 (the value).
        let e = errors("[[streams]]\nlisten = \"127.0.0.1:1\"\nupstream = \"a\"\ntls = \"acme\"\n");
        assert_eq!(e.len(), 1, "{e:#?}");
        assert!(
            e[0].starts_with(
                "t.toml:8:7: stream #1 has tls = \"acme\", but ACME on streams needs names"
            ),
            "{}",
            e[0]
        );
        assert!(e[0].contains("hint: use a [[sites]] entry"), "{}", e[0]);
    }

    #[test]
    fn listen_conflicts() {
        let e = errors(
            "[[sites]]\nlisten = \"127.0.0.1:80\"\n[[sites.routes]]\npath = \"/\"\nrespond = \"x\"\n\
             [[streams]]\nlisten = \"127.0.0.1:80\"\nupstream = \"a\"\n\
             [[streams]]\nlisten = [\"127.0.0.1:81\", \"127.0.0.1:81\"]\nupstream = \"a\"\n\
             [[streams]]\nlisten = [\"127.0.0.1:81\", \"127.0.0.1:9900\"]\nupstream = \"a\"\n",
        );
        assert_eq!(e.len(), 4, "{e:#?}");
        assert!(e[0].contains("stream #1 listens on 127.0.0.1:80, which site #1 also uses"));
        assert!(e[1].contains("stream #2 lists 127.0.0.1:81 twice"));
        assert!(e[2].contains("stream #3 listens on 127.0.0.1:81, which stream #2 also uses"));
        assert!(e[3].contains("stream #3 listens on 127.0.0.1:9900, which is the admin API's"));
    }

    fn errors(text: &str) -> Vec<String> {
        parse(&format!("{UP}{text}"))
            .unwrap_err()
            .diagnostics()
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn bad_streams() {
        let e = errors("[[streams]]\nupstream = \"a\"\n");
        assert!(e[0].contains("stream #1 has no `listen`"), "{e:?}");
        let e = errors("[[streams]]\nlisten = \"127.0.0.1:1\"\n");
        assert!(e[0].contains("stream #1 has no `upstream`"), "{e:?}");
        let e = errors("[[streams]]\nlisten = \"127.0.0.1:1\"\nupstream = \"c\"\n");
        assert!(e[0].contains("unknown upstream `c`"), "{e:?}");
        let e = errors(
            "[[streams]]\nlisten = \"127.0.0.1:1\"\nupstream = \"a\"\nproxy_protocol = \"v3\"\n",
        );
        assert!(e[0].contains("unknown proxy_protocol `v3`"), "{e:?}");
        let e = errors(
            "[[streams]]\nlisten = \"127.0.0.1:1\"\nupstream = \"a\"\nidle_timeout = \"0s\"\n",
        );
        assert!(e[0].contains("`idle_timeout` must be more than 0"), "{e:?}");
        let e =
            errors("[[streams]]\nlisten = \"127.0.0.1:1\"\nsni_routes = { \"x.test\" = \"zz\" }\n");
        assert!(e[0].contains("unknown upstream `zz`"), "{e:?}");
        let e = errors(
            "[[streams]]\nlisten = \"127.0.0.1:1\"\nupstream = \"a\"\nsni_routes = { \"*\" = \"a\" }\n",
        );
        assert!(e[0].contains("both `upstream` and `sni_routes`"), "{e:?}");
        let e = errors("[[streams]]\nlisten = \"127.0.0.1:1\"\nsni_routes = { \"a b\" = \"a\" }\n");
        assert!(e[0].contains("bad SNI pattern `a b`"), "{e:?}");
        let e = errors(
            "[[streams]]\nlisten = \"127.0.0.1:1\"\nsni_routes = { \"*\" = \"a\" }\ntls = \"acme\"\n",
        );
        assert!(
            e.iter().any(|d| d.contains("both `tls` and `sni_routes`")),
            "{e:?}"
        );
    }
}
