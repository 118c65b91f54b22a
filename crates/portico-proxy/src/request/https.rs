//! The HTTPS-specific answers of the request path, decided before routing:
//!
//! - ACME HTTP-01: on every plain listener, `/.well-known/acme-challenge/TOKEN` is answered
//!   with the pending key authorization (whatever the `Host`: the CA's validator sends
//!   `name:port`); unknown tokens fall through to the normal routes.
//! - `http_redirect`: a site whose `http_listen` this is answers `301` to
//!   `https://HOST[:PORT]/URI` (the port of its TLS listener unless 443).
//! - 421 Misdirected Request: on a TLS connection, a `Host` whose site serves another
//!   certificate than the site the SNI selected (a client reusing a connection for a name
//!   the certificate does not cover must open a new one).
//! - `hsts`: `Strict-Transport-Security` on every https response of the site.

use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode};
use portico_tls::acme::HTTP01_PREFIX;

use crate::body::Body;
use crate::error::ProxyError;
use crate::snapshot::{CompiledSite, ListenerSites, Snapshot};
use crate::worker::conn::ConnCtx;

/// An answer that replaces routing for this request, if any.
pub(crate) fn before_routing<B>(
    ctx: &ConnCtx,
    snap: &Snapshot,
    listener: &ListenerSites,
    site: usize,
    req: &Request<B>,
) -> Option<Response<Body>> {
    if ctx.https {
        return misdirected(ctx, snap, site).then(|| ProxyError::Misdirected.to_response());
    }
    let path = req.uri().path();
    if path.len() > HTTP01_PREFIX.len()
        && path.starts_with(HTTP01_PREFIX)
        && let Some(tls) = &ctx.worker.shared.tls
        && let Some(answer) = tls.http01.for_path(path)
    {
        tracing::info!(peer = %ctx.peer, path, "answered an ACME http-01 challenge");
        let mut resp = Response::new(Body::full(answer));
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/octet-stream"),
        );
        return Some(resp);
    }
    if listener.redirects(site) {
        let port = snap.sites[site].tls.as_ref().map_or(443, |t| t.https_port);
        return Some(to_https(req, port));
    }
    None
}

/// Whether the request's site has another certificate than the SNI's site.
fn misdirected(ctx: &ConnCtx, snap: &Snapshot, site: usize) -> bool {
    let Some(sni_site) = ctx.sni_site.get() else {
        return false;
    };
    if sni_site == site {
        return false;
    }
    let cert = |i: usize| {
        snap.sites
            .get(i)
            .and_then(|s| s.tls.as_ref())
            .map(|t| t.cert)
    };
    cert(sni_site) != cert(site)
}

/// `301` to `https://host[:port]/uri`.
fn to_https<B>(req: &Request<B>, port: u16) -> Response<Body> {
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri().authority().map(|a| a.as_str()));
    let Some(host) = host.filter(|h| !h.is_empty()) else {
        return ProxyError::BadRequest("no Host").to_response();
    };
    let name = strip_port(host);
    let uri = req.uri().path_and_query().map_or("/", |pq| pq.as_str());
    let location = if port == 443 {
        format!("https://{name}{uri}")
    } else {
        format!("https://{name}:{port}{uri}")
    };
    let Ok(value) = HeaderValue::from_str(&location) else {
        return ProxyError::BadRequest("bad Host").to_response();
    };
    crate::actions::redirect::redirect_response(StatusCode::MOVED_PERMANENTLY, &location, value)
}

/// `example.com:8080` -> `example.com`; `[::1]:80` -> `[::1]`.
fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return match host.find(']') {
            Some(end) => &host[..=end],
            None => host,
        };
    }
    match host.rfind(':') {
        Some(colon) => &host[..colon],
        None => host,
    }
}

/// Add `Strict-Transport-Security` to an https response of `site`.
pub(crate) fn add_hsts(ctx: &ConnCtx, site: &CompiledSite, headers: &mut http::HeaderMap) {
    if ctx.https
        && let Some(value) = site.tls.as_ref().and_then(|t| t.hsts.as_ref())
    {
        headers.insert(header::STRICT_TRANSPORT_SECURITY, value.clone());
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn parts(uri: &str, host: Option<&str>) -> Request<()> {
        let mut b = http::Request::builder().uri(uri);
        if let Some(h) = host {
            b = b.header("host", h);
        }
        b.body(()).unwrap()
    }

    fn location(r: &Response<Body>) -> &str {
        r.headers()[header::LOCATION].to_str().unwrap()
    }

    #[test]
    fn redirect_keeps_host_and_uri_and_names_non_default_ports() {
        let r = to_https(&parts("/a/b?x=1", Some("Example.test:8080")), 443);
        assert_eq!(r.status(), 301);
        assert_eq!(location(&r), "https://Example.test/a/b?x=1");
        let r = to_https(&parts("/", Some("example.test")), 8443);
        assert_eq!(location(&r), "https://example.test:8443/");
        let r = to_https(&parts("/p", Some("[::1]:80")), 8443);
        assert_eq!(location(&r), "https://[::1]:8443/p");
        let r = to_https(&parts("http://abs.test:80/q?z", None), 443);
        assert_eq!(location(&r), "https://abs.test/q?z");
        assert_eq!(to_https(&parts("/", None), 443).status(), 400);
    }
}
