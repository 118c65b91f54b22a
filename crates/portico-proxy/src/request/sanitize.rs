//! Checks and rewrites of a request before it is routed: `Host` checked (one, valid, and
//! present on HTTP/1.1: [`crate::proto::host`]), and the path normalised
//! ([`crate::proto::path`]), so that routes match, and upstreams get, one spelling of
//! each path.
//!
//! A request that fails here gets 400 and is not routed.

use http::uri::{PathAndQuery, Uri};
use http::{Request, Version, header::HOST};

use crate::error::ProxyError;
use crate::proto::host;
use crate::proto::path::{self, PathError};

/// Check `req` and normalise its path in place.
pub(crate) fn request<B>(req: &mut Request<B>) -> Result<(), ProxyError> {
    check_host(req)?;
    normalize_path(req)
}

/// One valid `Host` (nginx: 400 for a second one, which an upstream might read instead of
/// the one Portico routed on); HTTP/1.1 requires it (RFC 9112 §3.2). The URI's authority
/// (HTTP/2, absolute form) must be a valid host too, and carry no user info.
fn check_host<B>(req: &Request<B>) -> Result<(), ProxyError> {
    let mut values = req.headers().get_all(HOST).iter();
    match (values.next(), values.next()) {
        (Some(_), Some(_)) => return Err(ProxyError::BadRequest("more than one Host header")),
        (Some(h), None) if !host::valid(h.as_bytes()) => {
            return Err(ProxyError::BadRequest("invalid Host header"));
        }
        (None, _) if req.version() == Version::HTTP_11 && req.uri().authority().is_none() => {
            return Err(ProxyError::BadRequest("HTTP/1.1 request without Host"));
        }
        _ => {}
    }
    if let Some(authority) = req.uri().authority()
        && !host::valid(authority.as_str().as_bytes())
    {
        return Err(ProxyError::BadRequest("invalid host in the request target"));
    }
    Ok(())
}

fn normalize_path<B>(req: &mut Request<B>) -> Result<(), ProxyError> {
    let normal = path::normalize(req.uri().path()).map_err(path_error)?;
    let Some(normal) = normal else {
        return Ok(());
    };
    let pq = match req.uri().query() {
        Some(q) => format!("{normal}?{q}"),
        None => normal,
    };
    let pq = PathAndQuery::try_from(pq)
        .map_err(|_| ProxyError::BadRequest("invalid normalised path"))?;
    let mut parts = req.uri().clone().into_parts();
    parts.path_and_query = Some(pq);
    *req.uri_mut() =
        Uri::from_parts(parts).map_err(|_| ProxyError::BadRequest("invalid normalised path"))?;
    Ok(())
}

fn path_error(e: PathError) -> ProxyError {
    match e {
        PathError::BadEscape => ProxyError::BadRequest("invalid percent-encoding in the path"),
        PathError::AboveRoot => ProxyError::BadRequest("path climbs above /"),
    }
}

/// The form of a normalised path the route matcher sees ([`path::match_form`]).
pub(crate) fn match_form(p: &str) -> Result<std::borrow::Cow<'_, str>, ProxyError> {
    path::match_form(p).map_err(path_error)
}
