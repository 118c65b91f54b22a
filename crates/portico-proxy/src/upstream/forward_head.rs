//! Forward phase for Portico's own upstream client: the client's request head rewritten
//! straight into the bytes sent upstream.
//!
//! The result is what [`crate::upstream::forward::request`] followed by `proto::h1::encode_request`
//! (test-only) produce (a unit test holds the two to the same output), without editing the header
//! map first: the four forwarding headers are written, not inserted into the map (each insert
//! hashes a name, and replacing or removing one shifts the map).

use http::header::{
    CONNECTION, CONTENT_LENGTH, EXPECT, HOST, HeaderName, TE, TRAILER, TRANSFER_ENCODING, UPGRADE,
};
use http::{HeaderValue, Method};

use crate::snapshot::ProxyRoute;
use crate::upstream::forward::{
    self, KEEP_ALIVE, PROXY_CONNECTION, X_FORWARDED_FOR, X_FORWARDED_HOST, X_FORWARDED_PROTO,
    X_REAL_IP, X_REQUEST_ID, origin_form,
};

fn put(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// The upstream request head of a body-less request (see the module doc): `https` and
/// `upstream` as for [`crate::upstream::forward::request`]; `request_id`, an
/// `X-Request-Id` the header map does not carry, is written as if it were the map's last
/// header.
pub(crate) fn request_head(
    parts: &http::request::Parts,
    route: &ProxyRoute,
    real_ip: &HeaderValue,
    request_id: Option<&[u8]>,
    https: bool,
    upstream: &str,
) -> Vec<u8> {
    let headers = &parts.headers;
    // The target as the client sent it, or its origin form (HTTP/2 and absolute-form
    // requests, stripped prefixes) written from its parts: no URI is built for it.
    let rewritten = origin_form(&parts.uri, route.strip.as_deref());
    let as_sent = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
    let target_len = rewritten.map_or(as_sent.len(), |(p, q)| p.len() + 2 + q.map_or(0, str::len));
    let method = parts.method.as_str();

    // Headers the client's `Connection` names (rare: beyond close / keep-alive); `Host`
    // stays whatever `Connection` says.
    let mut named = forward::connection_named(headers);
    named.retain(|n| *n != HOST);
    let rules = &route.request_headers;
    let ruled = |name: &HeaderName| {
        rules.remove.iter().any(|n| n == name) || rules.set.iter().any(|(n, _)| n == name)
    };

    let mut len = method.len() + target_len + 160 + request_id.map_or(0, |id| id.len() + 16);
    for (name, value) in headers {
        len += name.as_str().len() + value.len() + 4;
    }
    let mut out = crate::proto::h1::head_buffer(len);
    out.extend_from_slice(method.as_bytes());
    out.push(b' ');
    match rewritten {
        None => out.extend_from_slice(as_sent.as_bytes()),
        Some((path, query)) => {
            if !path.starts_with('/') {
                out.push(b'/');
            }
            out.extend_from_slice(path.as_bytes());
            if let Some(q) = query {
                out.push(b'?');
                out.extend_from_slice(q.as_bytes());
            }
        }
    }
    out.extend_from_slice(b" HTTP/1.1\r\n");

    let mut host: Option<&HeaderValue> = None;
    let mut forwarded_for: Vec<&HeaderValue> = Vec::new();
    let mut has_length = false;
    for (name, value) in headers {
        if *name == HOST {
            host.get_or_insert(value);
        }
        if !named.is_empty() && named.contains(name) {
            continue;
        }
        if *name == X_FORWARDED_FOR {
            forwarded_for.push(value);
            continue;
        }
        if *name == CONNECTION
            || *name == KEEP_ALIVE
            || *name == PROXY_CONNECTION
            || *name == TE
            || *name == TRAILER
            || *name == TRANSFER_ENCODING
            || *name == UPGRADE
            || *name == EXPECT
            || *name == X_REAL_IP
            || *name == X_FORWARDED_PROTO
            || *name == X_FORWARDED_HOST
            || (!rules.is_empty() && ruled(name))
        {
            continue;
        }
        has_length |= *name == CONTENT_LENGTH;
        put(&mut out, name.as_str().as_bytes(), value.as_bytes());
    }

    // Host for a request that names no server: the URI's authority (HTTP/2, absolute form),
    // else the upstream's name; X-Forwarded-Host is the server the client named. Borrowed,
    // not copied into header values: a parsed authority is always a valid header value.
    let authority = parts.uri.authority().map(|a| a.as_str().as_bytes());
    let forwarded_host = match host {
        Some(h) => Some(h.as_bytes()),
        None => {
            let fallback = authority.or_else(|| {
                HeaderValue::from_str(upstream)
                    .is_ok()
                    .then_some(upstream.as_bytes())
            });
            if let Some(h) = fallback
                && (rules.is_empty() || !ruled(&HOST))
            {
                put(&mut out, b"host", h);
            }
            authority
        }
    };
    let mut extra = |name: &HeaderName, value: &[u8]| {
        if rules.is_empty() || !ruled(name) {
            put(&mut out, name.as_str().as_bytes(), value);
        }
    };
    if let Some(id) = request_id {
        extra(&X_REQUEST_ID, id);
    }
    if forwarded_for.is_empty() {
        extra(&X_FORWARDED_FOR, real_ip.as_bytes());
    } else {
        let mut joined = Vec::with_capacity(64);
        for v in &forwarded_for {
            joined.extend_from_slice(v.as_bytes());
            joined.extend_from_slice(b", ");
        }
        joined.extend_from_slice(real_ip.as_bytes());
        extra(&X_FORWARDED_FOR, &joined);
    }
    extra(&X_REAL_IP, real_ip.as_bytes());
    extra(&X_FORWARDED_PROTO, if https { b"https" } else { b"http" });
    if let Some(h) = forwarded_host {
        extra(&X_FORWARDED_HOST, h);
    }
    // The route's `set` rules; the last of two rules for one name wins, as in the map.
    for (i, (name, value)) in rules.set.iter().enumerate() {
        if !rules.set[i + 1..].iter().any(|(n, _)| n == name) {
            put(&mut out, name.as_str().as_bytes(), value.as_bytes());
            has_length |= *name == CONTENT_LENGTH;
        }
    }
    let needs_length = !matches!(
        parts.method,
        Method::GET | Method::HEAD | Method::DELETE | Method::OPTIONS | Method::TRACE
    ) && !has_length;
    if needs_length {
        out.extend_from_slice(b"content-length: 0\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::snapshot::CompiledRules;

    fn route(strip: Option<&str>, rules: CompiledRules) -> ProxyRoute {
        ProxyRoute {
            series: None,
            upstream: 0,
            strip: strip.map(str::to_string),
            websocket: true,
            read_timeout: std::time::Duration::from_secs(1),
            max_body: 0,
            request_headers: rules,
            response_headers: CompiledRules::default(),
            ws_ping: None,
        }
    }

    /// Request line, then the header lines sorted (the two paths may order them apart).
    fn normalized(head: &[u8]) -> (String, Vec<String>) {
        let text = String::from_utf8(head.to_vec()).unwrap();
        assert!(text.ends_with("\r\n\r\n"), "{text:?}");
        let mut lines = text.trim_end().split("\r\n").map(str::to_string);
        let first = lines.next().unwrap();
        let mut rest: Vec<String> = lines.collect();
        rest.sort();
        (first, rest)
    }

    #[test]
    fn same_head_as_forward_request_then_encode() {
        let n = |s: &'static str| HeaderName::from_static(s);
        let v = HeaderValue::from_static;
        let rule_sets = [
            CompiledRules::default(),
            CompiledRules {
                set: vec![
                    (n("x-set"), v("1")),
                    (n("x-real-ip"), v("fixed")),
                    (n("x-set"), v("2")),
                ],
                remove: vec![n("x-secret"), n("x-forwarded-proto"), n("x-request-id")],
            },
            CompiledRules {
                set: vec![(n("host"), v("rewritten")), (n("x-request-id"), v("set"))],
                remove: vec![n("x-forwarded-for")],
            },
        ];
        type Case<'a> = (&'a str, &'a str, Vec<(&'a str, &'a str)>);
        let requests: Vec<Case> = vec![
            ("GET", "/a?b=1", vec![("host", "example.com")]),
            (
                "GET",
                "/api/x",
                vec![
                    ("host", "h"),
                    ("x-forwarded-for", "10.0.0.1"),
                    ("x-forwarded-for", "10.0.0.2"),
                ],
            ),
            (
                "HEAD",
                "/",
                vec![
                    ("host", "h"),
                    ("connection", "keep-alive, x-hop"),
                    ("x-hop", "1"),
                    ("keep-alive", "5"),
                    ("te", "trailers"),
                    ("upgrade", "h2c"),
                    ("expect", "100-continue"),
                    ("x-secret", "s"),
                    ("x-real-ip", "spoofed"),
                    ("x-forwarded-host", "spoofed"),
                    ("x-forwarded-proto", "spoofed"),
                ],
            ),
            (
                "POST",
                "/p",
                vec![("host", "h"), ("cookie", "a=1"), ("cookie", "b=2")],
            ),
            ("PUT", "/p", vec![("host", "h"), ("content-length", "0")]),
            ("DELETE", "/d", vec![("host", "h")]),
            ("GET", "https://h2.test:8443/x?y", vec![]),
            ("GET", "https://h2.test/api/x?y=1", vec![]),
            ("GET", "https://h2.test/api", vec![("host", "other")]),
            ("OPTIONS", "*", vec![("host", "h")]),
            ("GET", "/apix?q", vec![("host", "h")]),
            ("GET", "/no-host", vec![]),
            // A kept X-Request-Id is in the map.
            ("GET", "/kept", vec![("host", "h"), ("x-request-id", "abc")]),
        ];
        // A made X-Request-Id is not in the map: written, or inserted for the reference.
        let made: &[u8] = b"0123456789abcdef0123456789abcdef";
        let ip = HeaderValue::from_static("127.0.0.1");
        for rules in &rule_sets {
            for strip in [None, Some("/api")] {
                for (https, request_id) in [(false, None), (true, None), (false, Some(made))] {
                    for (method, uri, headers) in &requests {
                        // A made ID and one in the map never meet (`request::id::ensure`
                        // removes the client's when it makes one).
                        if request_id.is_some() && headers.iter().any(|(n, _)| *n == "x-request-id")
                        {
                            continue;
                        }
                        let mut b = http::Request::builder().method(*method).uri(*uri);
                        for (name, value) in headers {
                            b = b.header(*name, *value);
                        }
                        let (parts, ()) = b.body(()).unwrap().into_parts();
                        let r = route(strip, rules.clone());
                        let fused = request_head(&parts, &r, &ip, request_id, https, "app");
                        let mut edited = parts.clone();
                        if let Some(id) = request_id {
                            edited
                                .headers
                                .insert(X_REQUEST_ID.clone(), HeaderValue::from_bytes(id).unwrap());
                        }
                        crate::upstream::forward::request(
                            &mut edited,
                            &r,
                            &ip,
                            false,
                            https,
                            "app",
                        );
                        let reference = crate::proto::h1::encode_request(&edited);
                        assert_eq!(
                            normalized(&fused),
                            normalized(&reference),
                            "{method} {uri} {headers:?} strip={strip:?} https={https} id={request_id:?} rules={rules:?}"
                        );
                    }
                }
            }
        }
    }
}
