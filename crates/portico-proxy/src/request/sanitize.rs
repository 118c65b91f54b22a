//! Checks and rewrites of a request before it is routed: the path normalised
//! ([`crate::proto::path`]), so that routes match, and upstreams get, one spelling of
//! each path.
//!
//! A request that fails here gets 400 and is not routed.

use http::Request;
use http::uri::{PathAndQuery, Uri};

use crate::error::ProxyError;
use crate::proto::path::{self, PathError};

/// Check `req` and normalise its path in place.
pub(crate) fn request<B>(req: &mut Request<B>) -> Result<(), ProxyError> {
    normalize_path(req)
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
