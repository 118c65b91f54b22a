//! `redirect = "https://{host}{uri}"` routes: expand the template and answer with `Location`.
//!
//! Placeholders: `{scheme}` (`http`/`https`, as the listener says), `{host}` (the `Host`
//! header as sent, port included; else the request URI's authority; else empty), `{uri}`
//! (path plus `?query` when there is one), `{path}`, `{query}` (without `?`). Expansion is a
//! single pass: text coming from the request is never re-expanded. Unknown `{...}` text is
//! copied as is (the config validator rejects unknown placeholders up front).

use http::header::{self, HeaderValue};
use http::{Response, StatusCode};
use portico_config::RedirectAction;

use crate::body::Body;

/// Answer `action.status` with the expanded `Location`.
pub fn redirect(
    parts: &http::request::Parts,
    scheme: &str,
    action: &RedirectAction,
) -> Response<Body> {
    let location = expand(&action.template, parts, scheme);
    let status = StatusCode::from_u16(action.status).unwrap_or(StatusCode::MOVED_PERMANENTLY);
    let Ok(value) = HeaderValue::from_str(&location) else {
        // Request-derived parts are valid header text already; this guards odd templates.
        tracing::warn!(
            location,
            "redirect: expanded Location is not a valid header value"
        );
        let mut r = Response::new(Body::full("500 Internal Server Error\n"));
        *r.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
        return r;
    };
    redirect_response(status, &location, value)
}

/// A redirect: `status` with `Location: value` and a short plain-text body naming
/// `location` (`value` is `location` as a header value). Also `http_redirect`'s answer.
pub(crate) fn redirect_response(
    status: StatusCode,
    location: &str,
    value: HeaderValue,
) -> Response<Body> {
    let body = format!(
        "{} {}\n{}\n",
        status.as_str(),
        status.canonical_reason().unwrap_or("Redirect"),
        location
    );
    let mut resp = Response::new(Body::full(body));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(header::LOCATION, value);
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

/// The host as the client sent it.
fn host(parts: &http::request::Parts) -> &str {
    parts
        .headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| parts.uri.authority().map(|a| a.as_str()))
        .unwrap_or("")
}

/// Expand the template placeholders against a request.
pub fn expand(template: &str, parts: &http::request::Parts, scheme: &str) -> String {
    let path = parts.uri.path();
    let query = parts.uri.query();
    let mut out = String::with_capacity(template.len() + path.len() + 32);
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open..];
        let Some(close) = after.find('}') else {
            rest = after;
            break;
        };
        match &after[1..close] {
            "scheme" => out.push_str(scheme),
            "host" => out.push_str(host(parts)),
            "path" => out.push_str(path),
            "query" => out.push_str(query.unwrap_or("")),
            "uri" => {
                out.push_str(path);
                if let Some(q) = query {
                    out.push('?');
                    out.push_str(q);
                }
            }
            _ => out.push_str(&after[..=close]),
        }
        rest = &after[close + 1..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(uri: &str, host: Option<&str>) -> http::request::Parts {
        let mut b = http::Request::builder().uri(uri);
        if let Some(h) = host {
            b = b.header("host", h);
        }
        b.body(()).expect("request").into_parts().0
    }

    fn action(t: &str, status: u16) -> RedirectAction {
        RedirectAction {
            template: t.into(),
            status,
        }
    }

    #[test]
    fn https_upgrade_keeps_host_port_and_query() {
        let p = parts("/a/b?x=1&y=2", Some("example.com:8080"));
        let r = redirect(&p, "http", &action("https://{host}{uri}", 301));
        assert_eq!(r.status(), StatusCode::MOVED_PERMANENTLY);
        assert_eq!(
            r.headers()[header::LOCATION],
            "https://example.com:8080/a/b?x=1&y=2"
        );
    }

    #[test]
    fn every_placeholder() {
        let p = parts("/p?q=1", Some("h"));
        let s = expand("{scheme}|{host}|{uri}|{path}|{query}", &p, "https");
        assert_eq!(s, "https|h|/p?q=1|/p|q=1");
        let p = parts("/p", Some("h"));
        assert_eq!(expand("{uri}|{query}|", &p, "http"), "/p||");
    }

    #[test]
    fn host_from_authority_when_no_header() {
        let p = parts("http://auth.example:81/x", None);
        assert_eq!(expand("{host}", &p, "http"), "auth.example:81");
        let p = parts("/x", None);
        assert_eq!(expand("[{host}]", &p, "http"), "[]");
    }

    #[test]
    fn request_text_is_not_re_expanded_and_unknown_kept() {
        let p = parts("/%7Bhost%7D?{scheme}", Some("h"));
        assert_eq!(expand("{uri}", &p, "http"), "/%7Bhost%7D?{scheme}");
        assert_eq!(expand("{nope}/{host", &p, "http"), "{nope}/{host");
    }

    #[test]
    fn status_and_body() {
        let p = parts("/", Some("h"));
        let r = redirect(&p, "http", &action("/new", 308));
        assert_eq!(r.status(), StatusCode::PERMANENT_REDIRECT);
        assert_eq!(r.headers()[header::LOCATION], "/new");
        assert!(!http_body::Body::is_end_stream(r.body()));
    }
}
