//! Forward phase: turn a client request into the upstream request and an upstream response
//! into the client response (header rewriting only; bodies stream untouched).
//!
//! Request: the URI becomes origin-form (optionally with the route prefix stripped), `Host`
//! is kept, hop-by-hop headers (RFC 9110 §7.6.1: `Connection` and the headers it names,
//! `Keep-Alive`, `Proxy-Connection`, `TE`, `Trailer`, `Transfer-Encoding`, `Upgrade`) and
//! `Expect` (hyper answers `100 Continue` itself when the body is read; dropped with the
//! hop-by-hop headers) are dropped,
//! `X-Real-IP`, `X-Forwarded-For` (appended), `X-Forwarded-Proto` and `X-Forwarded-Host` are
//! added, then the route's `request_headers` rules apply. For a WebSocket upgrade,
//! `Upgrade` and `Connection: upgrade` are kept. Response: the same hop-by-hop cleanup
//! (kept for `101 Switching Protocols`), then `response_headers` rules.

use http::header::{CONNECTION, EXPECT, HOST, HeaderName, TE, TRAILER, TRANSFER_ENCODING, UPGRADE};
use http::uri::PathAndQuery;
use http::{HeaderMap, HeaderValue, Uri, Version};

use crate::snapshot::ProxyRoute;

pub(crate) static X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");
pub(crate) static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub(crate) static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub(crate) static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
/// `x-request-id` (see `request::id`).
pub(crate) static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
pub(crate) static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
pub(crate) static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// Whether the request asks for a WebSocket upgrade (`Upgrade: websocket` and
/// `Connection: upgrade`, any case).
pub(crate) fn is_websocket_upgrade(headers: &HeaderMap) -> bool {
    let upgrade = headers
        .get(UPGRADE)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket"));
    upgrade
        && headers
            .get_all(CONNECTION)
            .iter()
            .any(|v| has_token(v.as_bytes(), b"upgrade"))
}

fn has_token(list: &[u8], token: &[u8]) -> bool {
    list.split(|&b| b == b',')
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token))
}

// Hop-by-hop headers as bits, so one pass over the names tells which are present.
const H_CONNECTION: u8 = 1;
const H_TE: u8 = 1 << 1;
const H_TRAILER: u8 = 1 << 2;
const H_TRANSFER_ENCODING: u8 = 1 << 3;
const H_UPGRADE: u8 = 1 << 4;
const H_KEEP_ALIVE: u8 = 1 << 5;
const H_PROXY_CONNECTION: u8 = 1 << 6;
const H_EXPECT: u8 = 1 << 7;

/// Which hop-by-hop headers are present: one pass over the names, no hashing, so the
/// common cases (none, or only `Connection`) cost a few compares per header.
fn hop_by_hop_present(headers: &HeaderMap) -> u8 {
    let mut present = 0;
    for name in headers.keys() {
        present |= if *name == CONNECTION {
            H_CONNECTION
        } else if *name == TE {
            H_TE
        } else if *name == TRAILER {
            H_TRAILER
        } else if *name == TRANSFER_ENCODING {
            H_TRANSFER_ENCODING
        } else if *name == UPGRADE {
            H_UPGRADE
        } else if *name == KEEP_ALIVE {
            H_KEEP_ALIVE
        } else if *name == PROXY_CONNECTION {
            H_PROXY_CONNECTION
        } else if *name == EXPECT {
            H_EXPECT
        } else {
            0
        };
    }
    present
}

/// The headers a `Connection` field names besides its own options (`close`,
/// `keep-alive`, `upgrade`): hop-by-hop too, so not forwarded. Empty in the usual case.
pub(crate) fn connection_named(headers: &HeaderMap) -> Vec<HeaderName> {
    let mut named = Vec::new();
    for value in headers.get_all(CONNECTION) {
        for token in value.as_bytes().split(|&b| b == b',') {
            let token = token.trim_ascii();
            if token.is_empty()
                || token.eq_ignore_ascii_case(b"close")
                || token.eq_ignore_ascii_case(b"keep-alive")
                || token.eq_ignore_ascii_case(b"upgrade")
            {
                continue;
            }
            if let Ok(name) = HeaderName::from_bytes(token) {
                named.push(name);
            }
        }
    }
    named
}

/// Remove hop-by-hop headers (and the ones `Connection` names). With `keep_upgrade`,
/// `Upgrade` stays and `Connection` becomes `upgrade`. Only the headers present are
/// removed (each removal hashes the name).
pub(crate) fn drop_hop_by_hop(headers: &mut HeaderMap, keep_upgrade: bool) {
    let present = hop_by_hop_present(headers);
    if !keep_upgrade && present == 0 {
        return;
    }
    if present & H_CONNECTION != 0 {
        for name in connection_named(headers) {
            if name != HOST && !(keep_upgrade && name == UPGRADE) {
                headers.remove(name);
            }
        }
        headers.remove(CONNECTION);
    }
    if present & H_KEEP_ALIVE != 0 {
        headers.remove(&KEEP_ALIVE);
    }
    if present & H_PROXY_CONNECTION != 0 {
        headers.remove(&PROXY_CONNECTION);
    }
    if present & H_TE != 0 {
        headers.remove(TE);
    }
    if present & H_TRAILER != 0 {
        headers.remove(TRAILER);
    }
    if present & H_TRANSFER_ENCODING != 0 {
        headers.remove(TRANSFER_ENCODING);
    }
    if present & H_EXPECT != 0 {
        headers.remove(EXPECT);
    }
    if keep_upgrade {
        headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
    } else if present & H_UPGRADE != 0 {
        headers.remove(UPGRADE);
    }
}

/// Rewrite a client request's head into the upstream request's head. `https`: the client
/// came over TLS (`X-Forwarded-Proto: https`); `upstream`: the upstream's name, the `Host` of
/// a request that names no server.
pub(crate) fn request(
    parts: &mut http::request::Parts,
    route: &ProxyRoute,
    real_ip: &HeaderValue,
    websocket: bool,
    https: bool,
    upstream: &str,
) {
    parts.version = Version::HTTP_11;
    // HTTP/2 (and absolute-form HTTP/1) requests name the server in the URI's authority,
    // which the origin-form rewrite drops: keep it for `Host` (no cost for origin-form).
    let authority = parts.uri.authority().cloned();
    if let Some(uri) = upstream_uri(&parts.uri, route.strip.as_deref()) {
        parts.uri = uri;
    }
    let headers = &mut parts.headers;
    drop_hop_by_hop(headers, websocket);
    // Room for the four X-* headers at once instead of growing the map step by step.
    headers.reserve(4);

    // X-Forwarded-For: append to what the client sent.
    let xff = match headers.get(&X_FORWARDED_FOR) {
        None => real_ip.clone(),
        Some(_) => {
            let mut joined = Vec::with_capacity(64);
            for v in headers.get_all(&X_FORWARDED_FOR) {
                if !joined.is_empty() {
                    joined.extend_from_slice(b", ");
                }
                joined.extend_from_slice(v.as_bytes());
            }
            joined.extend_from_slice(b", ");
            joined.extend_from_slice(real_ip.as_bytes());
            HeaderValue::from_bytes(&joined).unwrap_or_else(|_| real_ip.clone())
        }
    };
    headers.insert(X_FORWARDED_FOR.clone(), xff);
    headers.insert(X_REAL_IP.clone(), real_ip.clone());
    let proto = if https { "https" } else { "http" };
    headers.insert(X_FORWARDED_PROTO.clone(), HeaderValue::from_static(proto));
    if let Some(host) = headers.get(HOST).cloned() {
        headers.insert(X_FORWARDED_HOST.clone(), host);
    } else if let Some(authority) = authority {
        // HTTP/2, or HTTP/1.0 without Host: the server named in the request's authority.
        if let Ok(v) = HeaderValue::from_str(authority.as_str()) {
            headers.insert(HOST, v.clone());
            headers.insert(X_FORWARDED_HOST.clone(), v);
        }
    } else if let Ok(v) = HeaderValue::from_str(upstream) {
        // A request naming no server at all (HTTP/1.0 without Host): the upstream's name,
        // as nginx's default `proxy_set_header Host $proxy_host` sends; an HTTP/1.1 server
        // must answer 400 to a request without one.
        headers.insert(HOST, v);
    }
    if !route.request_headers.is_empty() {
        route.request_headers.apply(headers);
    }
}

/// The origin-form target for the upstream as its path and query, `None` when the client's
/// URI can go as it is. The path gets a leading `/` when it has none ([`upstream_uri`]
/// builds the URI, `forward_head` writes the two straight into the head).
pub(crate) fn origin_form<'a>(
    uri: &'a Uri,
    strip: Option<&str>,
) -> Option<(&'a str, Option<&'a str>)> {
    let absolute = uri.scheme().is_some() || uri.authority().is_some();
    let stripped = strip.and_then(|prefix| uri.path().strip_prefix(prefix));
    if !absolute && stripped.is_none() {
        return None;
    }
    Some((stripped.unwrap_or(uri.path()), uri.query()))
}

/// Origin-form URI for the upstream, `None` when the client's URI can go as it is.
pub(crate) fn upstream_uri(uri: &Uri, strip: Option<&str>) -> Option<Uri> {
    let (path, query) = origin_form(uri, strip)?;
    let mut pq = String::with_capacity(path.len() + 1 + query.map_or(0, str::len) + 1);
    if !path.starts_with('/') {
        pq.push('/');
    }
    pq.push_str(path);
    if let Some(q) = query {
        pq.push('?');
        pq.push_str(q);
    }
    PathAndQuery::try_from(pq).ok().map(Uri::from)
}

/// Rewrite an upstream response's head for the client.
pub(crate) fn response(parts: &mut http::response::Parts, route: &ProxyRoute) {
    let switching = parts.status == http::StatusCode::SWITCHING_PROTOCOLS;
    // hyper's client reads a body framed by both `Transfer-Encoding` and `Content-Length`
    // by the coding and keeps the length: dropped here (RFC 9112 §6.3 item 3), else the
    // client side would frame the decoded body by it and cut it short.
    if parts.headers.contains_key(TRANSFER_ENCODING) {
        parts.headers.remove(http::header::CONTENT_LENGTH);
    }
    drop_hop_by_hop(&mut parts.headers, switching);
    if !route.response_headers.is_empty() {
        route.response_headers.apply(&mut parts.headers);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::snapshot::CompiledRules;

    fn route(strip: Option<&str>) -> ProxyRoute {
        ProxyRoute {
            series: None,
            upstream: 0,
            strip: strip.map(str::to_string),
            websocket: true,
            read_timeout: std::time::Duration::from_secs(1),
            max_body: 0,
            request_headers: CompiledRules {
                set: vec![(
                    HeaderName::from_static("x-set"),
                    HeaderValue::from_static("v"),
                )],
                remove: vec![HeaderName::from_static("x-secret")],
            },
            response_headers: CompiledRules::default(),
            ws_ping: None,
        }
    }

    fn parts(uri: &str, headers: &[(&str, &str)]) -> http::request::Parts {
        let mut b = http::Request::builder().uri(uri);
        for (n, v) in headers {
            b = b.header(*n, *v);
        }
        b.body(()).unwrap().into_parts().0
    }

    #[test]
    fn adds_forwarding_headers_and_drops_hop_by_hop() {
        let mut p = parts(
            "/a?b=1",
            &[
                ("host", "example.com"),
                ("connection", "keep-alive, x-hop"),
                ("x-hop", "1"),
                ("keep-alive", "timeout=5"),
                ("te", "trailers"),
                ("upgrade", "h2c"),
                ("x-forwarded-for", "10.0.0.1"),
                ("x-secret", "s"),
                ("expect", "100-continue"),
            ],
        );
        let ip = HeaderValue::from_static("127.0.0.1");
        request(&mut p, &route(None), &ip, false, false, "app");
        let h = &p.headers;
        for gone in [
            "connection",
            "x-hop",
            "keep-alive",
            "te",
            "upgrade",
            "x-secret",
            "expect",
        ] {
            assert!(!h.contains_key(gone), "{gone} must be dropped");
        }
        assert_eq!(h["host"], "example.com");
        assert_eq!(h["x-forwarded-for"], "10.0.0.1, 127.0.0.1");
        assert_eq!(h["x-real-ip"], "127.0.0.1");
        assert_eq!(h["x-forwarded-proto"], "http");
        assert_eq!(h["x-forwarded-host"], "example.com");
        assert_eq!(h["x-set"], "v");
        assert_eq!(p.uri, "/a?b=1");
    }

    #[test]
    fn response_drops_connection_and_the_headers_it_names_only() {
        let mut h = HeaderMap::new();
        h.insert(CONNECTION, HeaderValue::from_static("keep-alive, x-hop"));
        h.insert("x-hop", HeaderValue::from_static("1"));
        h.insert("content-length", HeaderValue::from_static("5"));
        h.insert("transfer-encoding", HeaderValue::from_static("chunked"));
        drop_hop_by_hop(&mut h, false);
        assert_eq!(h.len(), 1, "{h:?}");
        assert_eq!(h["content-length"], "5");

        let mut h = HeaderMap::new();
        h.insert(UPGRADE, HeaderValue::from_static("websocket"));
        drop_hop_by_hop(&mut h, true);
        assert_eq!(h[UPGRADE], "websocket");
        assert_eq!(h[CONNECTION], "upgrade");
    }

    #[test]
    fn websocket_keeps_upgrade() {
        let mut p = parts(
            "/ws",
            &[
                ("host", "h"),
                ("connection", "Upgrade"),
                ("upgrade", "websocket"),
            ],
        );
        assert!(is_websocket_upgrade(&p.headers));
        request(
            &mut p,
            &route(None),
            &HeaderValue::from_static("::1"),
            true,
            true,
            "app",
        );
        assert_eq!(p.headers["x-forwarded-proto"], "https");
        assert_eq!(p.headers["upgrade"], "websocket");
        assert_eq!(p.headers["connection"], "upgrade");
    }

    #[test]
    fn http2_authority_becomes_host() {
        let mut p = parts("https://h2.test:8443/x?y", &[]);
        let ip = HeaderValue::from_static("127.0.0.1");
        request(&mut p, &route(None), &ip, false, true, "app");
        assert_eq!(p.uri, "/x?y");
        assert_eq!(p.headers["host"], "h2.test:8443");
        assert_eq!(p.headers["x-forwarded-host"], "h2.test:8443");
        assert_eq!(p.headers["x-forwarded-proto"], "https");
    }

    #[test]
    fn strips_prefix_and_makes_origin_form() {
        assert_eq!(
            upstream_uri(&"/api/x?q".parse().unwrap(), Some("/api")).unwrap(),
            "/x?q"
        );
        assert_eq!(
            upstream_uri(&"/api".parse().unwrap(), Some("/api")).unwrap(),
            "/"
        );
        assert_eq!(
            upstream_uri(&"http://h/p?q".parse().unwrap(), None).unwrap(),
            "/p?q"
        );
        assert!(upstream_uri(&"/p".parse().unwrap(), None).is_none());
    }
}
