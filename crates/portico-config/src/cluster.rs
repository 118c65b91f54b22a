//! `[cluster]`: the etcd cluster that nodes with the same section share (certificates, ACME
//! challenges, server admin states, members, registered servers).

use crate::gate::Scope;
use crate::model::ClusterConfig;
use crate::walk::{Ctx, Span, Table};

/// The default key prefix.
pub const DEFAULT_CLUSTER_PREFIX: &str = "/portico";

pub(crate) fn cluster(ctx: &mut Ctx<'_>, t: &Table<'_>, section: &Span) -> Option<ClusterConfig> {
    let t = ctx.open(t, Scope::Cluster, "[cluster]");
    let endpoints = ctx.str_list(t, "etcd");
    let prefix = ctx.str(t, "prefix");
    let node_name = ctx.str(t, "node_name");
    let ca_file = ctx.path(t, "ca_file");
    let cert = ctx.path(t, "cert");
    let cert_span = ctx.key_span(t, "cert");
    let key = ctx.path(t, "key");
    let key_span = ctx.key_span(t, "key");
    let username = ctx.str(t, "username");
    let password_file = ctx.path(t, "password_file");
    let password_span = ctx.key_span(t, "password_file");
    let secret_file = ctx.path(t, "secret_file");

    let mut etcd = Vec::new();
    match endpoints {
        None => ctx.err(
            section,
            "[cluster] needs `etcd`, the etcd endpoints",
            Some("etcd = [\"http://127.0.0.1:2379\"]".into()),
        ),
        Some((list, span)) => {
            if list.is_empty() {
                ctx.err(&span, "`etcd` must name at least one endpoint", None);
            }
            for (url, span) in list {
                match endpoint(&url) {
                    Ok(u) => etcd.push(u),
                    Err(msg) => ctx.err(
                        &span,
                        format!("bad etcd endpoint `{url}`: {msg}"),
                        Some("endpoints look like \"http://10.0.0.5:2379\" or \"https://etcd.internal:2379\"".into()),
                    ),
                }
            }
        }
    }
    let prefix = match prefix {
        None => DEFAULT_CLUSTER_PREFIX.to_string(),
        Some((p, span)) => {
            if !p.starts_with('/') || p.len() < 2 || p.ends_with('/') {
                ctx.err(
                    &span,
                    format!("bad `prefix` `{p}`: it must start with `/` and not end with `/`"),
                    Some("prefix = \"/portico\"".into()),
                );
            }
            p.to_string()
        }
    };
    let node_name = node_name.map(|(n, span)| {
        let ok = !n.is_empty()
            && n.len() <= 128
            && n.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !ok {
            ctx.err(
                &span,
                format!("bad `node_name` `{n}`: use 1-128 letters, digits, `-`, `_`, `.`"),
                None,
            );
        }
        n.to_string()
    });
    match (&cert, &key) {
        (Some(_), None) => {
            if let Some(span) = cert_span {
                ctx.err(&span, "`cert` needs `key` (client TLS to etcd)", None);
            }
        }
        (None, Some(_)) => {
            if let Some(span) = key_span {
                ctx.err(&span, "`key` needs `cert` (client TLS to etcd)", None);
            }
        }
        _ => {}
    }
    let username = username.map(|(u, _)| u.to_string());
    if username.is_some() != password_file.is_some() {
        let span = password_span.unwrap_or_else(|| section.clone());
        ctx.err(
            &span,
            "`username` and `password_file` go together (etcd authentication)",
            None,
        );
    }
    Some(ClusterConfig {
        etcd,
        prefix,
        node_name,
        ca_file,
        cert,
        key,
        username,
        password_file,
        secret_file,
    })
}

/// `http://host:port` or `https://host:port`; a bare `host:port` means `http://`.
fn endpoint(s: &str) -> Result<String, String> {
    let (scheme, rest) = match s.split_once("://") {
        Some((scheme @ ("http" | "https"), rest)) => (scheme, rest),
        Some((other, _)) => return Err(format!("scheme `{other}` (use http or https)")),
        None => ("http", s),
    };
    let rest = rest.trim_end_matches('/');
    if rest.is_empty() || rest.contains('/') || rest.contains('@') || rest.contains(' ') {
        return Err("expected HOST:PORT after the scheme".into());
    }
    let Some((host, port)) = rest.rsplit_once(':') else {
        return Err("the port is missing".into());
    };
    if host.is_empty() || port.parse::<u16>().map_or(true, |p| p == 0) {
        return Err("expected HOST:PORT with a port in 1-65535".into());
    }
    Ok(format!("{scheme}://{rest}"))
}

#[cfg(test)]
mod tests {
    use super::endpoint;

    #[test]
    fn endpoints() {
        assert_eq!(
            endpoint("127.0.0.1:2379").as_deref(),
            Ok("http://127.0.0.1:2379")
        );
        assert_eq!(
            endpoint("https://etcd.internal:2379/").as_deref(),
            Ok("https://etcd.internal:2379")
        );
        assert_eq!(
            endpoint("http://[::1]:2379").as_deref(),
            Ok("http://[::1]:2379")
        );
        assert!(endpoint("grpc://x:1").is_err());
        assert!(endpoint("http://x").is_err());
        assert!(endpoint("http://x:0").is_err());
        assert!(endpoint("http://u@x:1").is_err());
    }
}
