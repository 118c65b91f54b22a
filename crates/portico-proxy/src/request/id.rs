//! Request IDs: every request gets an `X-Request-Id` before anything else sees it, so the
//! upstream request, the access-log line (both formats) and Portico's own error answers
//! carry the same value, and one WebSocket session can be followed across logs.
//!
//! Kept or made: an incoming `X-Request-Id` is kept when the client is on a loopback address
//! (a TLS terminator or sidecar on the same host) and the value is 1 to 128 visible ASCII
//! characters; any other is replaced. (With `[server] trusted_proxies`, the trusted
//! addresses will take the loopback rule's place.) A made ID is 32 lower-case hex digits: a
//! random 64-bit prefix chosen per worker thread at start, then the worker's request counter,
//! so IDs are unique without coordination and cost no system call.
//!
//! A made ID is not inserted into the request's header map (hyper sizes the map exactly, so
//! an insert reallocates it, and the value would be a heap copy of the 32 bytes): it stays
//! in the [`RequestId`], and the forward step puts it into the upstream request, written
//! straight into the upstream head on Portico's own client
//! ([`crate::upstream::forward_head`]), inserted into the map only for a request whose
//! body streams through hyper's client or a WebSocket upgrade ([`RequestId::insert_into`]).

use std::cell::Cell;

use http::HeaderValue;

pub(crate) use crate::upstream::forward::X_REQUEST_ID;

/// A worker's ID source.
#[derive(Debug)]
pub(crate) struct IdSource {
    prefix: u64,
    next: Cell<u64>,
}

impl IdSource {
    pub(crate) fn new() -> IdSource {
        IdSource {
            prefix: rand::random(),
            next: Cell::new(0),
        }
    }

    fn make(&self) -> [u8; 32] {
        let n = self.next.get();
        self.next.set(n.wrapping_add(1));
        let mut out = [0u8; 32];
        hex(self.prefix, &mut out[..16]);
        hex(n, &mut out[16..]);
        out
    }
}

fn hex(v: u64, out: &mut [u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for (i, b) in out.iter_mut().enumerate() {
        *b = DIGITS[((v >> (60 - 4 * i)) & 0xf) as usize];
    }
}

fn acceptable(v: &HeaderValue) -> bool {
    let b = v.as_bytes();
    !b.is_empty() && b.len() <= 128 && b.iter().all(|c| c.is_ascii_graphic())
}

/// The request's ID: for the upstream request, the access log and Portico's own error
/// answers.
pub(crate) enum RequestId {
    /// Made here; not in the request's header map (see the module doc).
    Made([u8; 32]),
    /// The client's, kept in the request's header map.
    Kept(HeaderValue),
}

impl RequestId {
    /// The ID's bytes when the header map does not carry it (a made ID): the forward step
    /// writes them into the upstream request.
    pub(crate) fn unmapped(&self) -> Option<&[u8]> {
        match self {
            RequestId::Made(b) => Some(b),
            RequestId::Kept(_) => None,
        }
    }

    /// Put a made ID into `headers` (a kept one is there already): for the upstream paths
    /// that forward the header map itself.
    pub(crate) fn insert_into(&self, headers: &mut http::HeaderMap) {
        if let RequestId::Made(_) = self {
            headers.insert(X_REQUEST_ID.clone(), self.value());
        }
    }

    pub(crate) fn value(&self) -> HeaderValue {
        match self {
            RequestId::Kept(v) => v.clone(),
            RequestId::Made(b) => {
                // Hex digits are a valid header value.
                HeaderValue::from_bytes(b).unwrap_or_else(|_| HeaderValue::from_static("-"))
            }
        }
    }
}

thread_local! {
    /// The calling worker's ID source.
    static SOURCE: IdSource = IdSource::new();
}

/// [`ensure`] with the calling worker thread's ID source.
pub(crate) fn ensure_here(trusted_client: bool, headers: &mut http::HeaderMap) -> RequestId {
    SOURCE.with(|s| ensure(s, trusted_client, headers))
}

/// The ID of the request with `headers` (kept or made, see the module doc); an incoming ID
/// that is not kept is removed from `headers`.
pub(crate) fn ensure(
    source: &IdSource,
    trusted_client: bool,
    headers: &mut http::HeaderMap,
) -> RequestId {
    if trusted_client
        && let Some(v) = headers.get(&X_REQUEST_ID)
        && acceptable(v)
        && headers.get_all(&X_REQUEST_ID).iter().count() == 1
    {
        return RequestId::Kept(v.clone());
    }
    // Nothing to remove (the usual case) costs one lookup, as the insert did.
    if headers.contains_key(&X_REQUEST_ID) {
        headers.remove(&X_REQUEST_ID);
    }
    RequestId::Made(source.make())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn made_ids_are_unique_hex_and_replace_untrusted_ones() {
        let src = IdSource::new();
        let mut h = http::HeaderMap::new();
        h.insert(X_REQUEST_ID.clone(), HeaderValue::from_static("forged"));
        let id = ensure(&src, false, &mut h);
        // The forged one is gone; the made one is not in the map until inserted.
        assert!(h.get(&X_REQUEST_ID).is_none());
        let a = id.unmapped().map(<[u8]>::to_vec).unwrap_or_default();
        assert_eq!(a.len(), 32);
        assert!(a.iter().all(|c| c.is_ascii_hexdigit()));
        id.insert_into(&mut h);
        assert_eq!(h.get(&X_REQUEST_ID).map(|v| v.as_bytes()), Some(&a[..]));
        let mut h2 = http::HeaderMap::new();
        let id2 = ensure(&src, false, &mut h2);
        assert_ne!(id2.unmapped(), Some(&a[..]));
    }

    #[test]
    fn a_trusted_well_formed_id_is_kept() {
        let src = IdSource::new();
        let mut h = http::HeaderMap::new();
        h.insert(X_REQUEST_ID.clone(), HeaderValue::from_static("abc-123"));
        let kept = ensure(&src, true, &mut h);
        assert!(matches!(kept, RequestId::Kept(_)));
        assert_eq!(kept.unmapped(), None);
        kept.insert_into(&mut h);
        assert_eq!(h.get_all(&X_REQUEST_ID).iter().count(), 1);
        assert_eq!(
            h.get(&X_REQUEST_ID),
            Some(&HeaderValue::from_static("abc-123"))
        );
        h.insert(X_REQUEST_ID.clone(), HeaderValue::from_static("has space"));
        assert!(matches!(ensure(&src, true, &mut h), RequestId::Made(_)));
        assert!(h.get(&X_REQUEST_ID).is_none());
    }
}
