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

use std::cell::Cell;

use http::HeaderValue;
use http::header::HeaderName;

/// `x-request-id`.
pub(crate) static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

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

/// The request's ID, kept for Portico's own error answers.
pub(crate) enum RequestId {
    Made([u8; 32]),
    Kept(HeaderValue),
}

impl RequestId {
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

/// Give `headers` their ID (kept or made, see the module doc) and return it.
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
    let id = source.make();
    let id = RequestId::Made(id);
    headers.insert(X_REQUEST_ID.clone(), id.value());
    id
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn made_ids_are_unique_hex_and_replace_untrusted_ones() {
        let src = IdSource::new();
        let mut h = http::HeaderMap::new();
        h.insert(X_REQUEST_ID.clone(), HeaderValue::from_static("forged"));
        ensure(&src, false, &mut h);
        let a = h
            .get(&X_REQUEST_ID)
            .map(|v| v.as_bytes().to_vec())
            .unwrap_or_default();
        assert_eq!(a.len(), 32);
        assert!(a.iter().all(|c| c.is_ascii_hexdigit()));
        let mut h2 = http::HeaderMap::new();
        ensure(&src, false, &mut h2);
        assert_ne!(
            h2.get(&X_REQUEST_ID).map(|v| v.as_bytes().to_vec()),
            Some(a)
        );
    }

    #[test]
    fn a_trusted_well_formed_id_is_kept() {
        let src = IdSource::new();
        let mut h = http::HeaderMap::new();
        h.insert(X_REQUEST_ID.clone(), HeaderValue::from_static("abc-123"));
        assert!(matches!(ensure(&src, true, &mut h), RequestId::Kept(_)));
        assert_eq!(
            h.get(&X_REQUEST_ID),
            Some(&HeaderValue::from_static("abc-123"))
        );
        h.insert(X_REQUEST_ID.clone(), HeaderValue::from_static("has space"));
        assert!(matches!(ensure(&src, true, &mut h), RequestId::Made(_)));
    }
}
