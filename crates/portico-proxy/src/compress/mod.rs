//! Response compression (`compress`, `compress_types`, `compress_min_size`): which coding a
//! request accepts ([`RouteCompress::negotiate`], from `Accept-Encoding` with q-values),
//! whether a response is compressed and the header changes that go with it
//! ([`Accepted::decide`]), and the streaming compressor ([`encoder::Encoder`]) the response
//! body runs its bytes through (`exchange::response`): gzip and zstd on per-thread pools of
//! compressor states ([`gzip`], [`zstd_frame`], [`pool`]).
//!
//! Never compressed: `HEAD` requests, requests with `Range`, responses 1xx, 204, 206 and
//! 304, bodies already encoded (`Content-Encoding`), `Cache-Control: no-transform`, types
//! outside `compress_types`, bodies known to be smaller than `compress_min_size`, and
//! WebSocket upgrades (101). A compressed response loses `Content-Length` (the body is
//! streamed, chunked on HTTP/1.1) and `Accept-Ranges`, its strong `ETag` becomes weak (the
//! bytes differ from the uncompressed representation), and every eligible response, also
//! one sent uncompressed, carries `Vary: Accept-Encoding`.
//!
//! A route without `compress` has no [`RouteCompress`] (its `RoutePolicy` is `None`, or
//! holds `None` here): no header is looked at.
//!
//! Floor: beside `policy` (which holds the compiled [`RouteCompress`] of a route); imports
//! only the ground floor and `portico_config`.

pub(crate) mod encoder;
mod gzip;
mod pool;
mod zstd_frame;

use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, StatusCode};
use portico_config::{Coding, Compress};

/// The compression of one route, compiled.
#[derive(Debug)]
pub(crate) struct RouteCompress {
    /// In the route's order of preference.
    codings: Vec<Coding>,
    /// Lower-cased `type/subtype`, or `type/` for `type/*`.
    types: Vec<String>,
    min_size: u64,
}

/// What one request accepts, kept from its head until its response: the route and the
/// acceptable codings, best first.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Accepted<'a> {
    route: &'a RouteCompress,
    codings: [Option<Coding>; 3],
}

impl RouteCompress {
    pub fn compile(c: &Compress) -> RouteCompress {
        RouteCompress {
            codings: c.codings.clone(),
            types: c
                .types
                .iter()
                .map(|t| t.strip_suffix('*').unwrap_or(t).to_string())
                .collect(),
            min_size: c.min_size,
        }
    }

    /// The request's acceptable codings, or `None` when its response is never compressed
    /// (HEAD, a range request).
    pub fn negotiate<'a>(&'a self, method: &Method, headers: &HeaderMap) -> Option<Accepted<'a>> {
        if method == Method::HEAD || headers.contains_key(header::RANGE) {
            return None;
        }
        // At most three codings (the config refuses repeats): no allocation.
        let mut scored = [(0u16, 0usize, Coding::Gzip); 3];
        let mut n = 0;
        let values = headers.get_all(header::ACCEPT_ENCODING);
        for (rank, coding) in self.codings.iter().enumerate() {
            let q = values
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(','))
                .filter_map(parse_item)
                .fold((None, None), |(exact, star), (name, q)| {
                    if name.eq_ignore_ascii_case(coding.token())
                        || (*coding == Coding::Gzip && name.eq_ignore_ascii_case("x-gzip"))
                    {
                        (Some(exact.map_or(q, |e: u16| e.max(q))), star)
                    } else if name == "*" {
                        (exact, Some(q))
                    } else {
                        (exact, star)
                    }
                });
            let q = q.0.or(q.1).unwrap_or(0);
            if q > 0 && n < scored.len() {
                scored[n] = (q, rank, *coding);
                n += 1;
            }
        }
        // Highest q first; a tie goes to the route's order.
        let scored = &mut scored[..n];
        scored.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        let mut codings = [None; 3];
        for (slot, &(_, _, c)) in codings.iter_mut().zip(scored.iter()) {
            *slot = Some(c);
        }
        Some(Accepted {
            route: self,
            codings,
        })
    }

    fn type_matches(&self, content_type: &[u8]) -> bool {
        let Ok(ct) = std::str::from_utf8(content_type) else {
            return false;
        };
        let ct = ct.split(';').next().unwrap_or("").trim();
        self.types.iter().any(|t| {
            if t.ends_with('/') {
                ct.len() > t.len() && ct[..t.len()].eq_ignore_ascii_case(t)
            } else {
                ct.eq_ignore_ascii_case(t)
            }
        })
    }
}

/// `coding;q=0.5` -> (coding, q in thousandths); a malformed q is 0 (not acceptable).
fn parse_item(item: &str) -> Option<(&str, u16)> {
    let mut parts = item.split(';');
    let name = parts.next()?.trim();
    if name.is_empty() {
        return None;
    }
    let mut q = 1000;
    for p in parts {
        let Some((k, v)) = p.split_once('=') else {
            continue;
        };
        if k.trim().eq_ignore_ascii_case("q") {
            q = parse_q(v.trim()).unwrap_or(0);
        }
    }
    Some((name, q))
}

/// An RFC 9110 qvalue (`0`, `0.5`, `1.000`) in thousandths.
fn parse_q(v: &str) -> Option<u16> {
    let (int, frac) = v.split_once('.').unwrap_or((v, ""));
    if frac.len() > 3 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut thousandths: u16 = 0;
    for (i, b) in frac.bytes().enumerate() {
        thousandths += u16::from(b - b'0') * [100, 10, 1][i];
    }
    match int {
        "0" => Some(thousandths),
        "1" if thousandths == 0 => Some(1000),
        _ => None,
    }
}

impl Accepted<'_> {
    /// The acceptable codings, best first (empty: send uncompressed).
    pub fn codings(&self) -> impl Iterator<Item = Coding> + '_ {
        self.codings.iter().map_while(|c| *c)
    }

    /// Whether to compress a response of `status` with these headers and a body of
    /// `body_len` bytes (`None`: not known in advance), and with which coding. Edits the
    /// headers to match: `Vary: Accept-Encoding` on every eligible response; when
    /// compressing, `Content-Encoding`, no `Content-Length` nor `Accept-Ranges`, a weak
    /// `ETag`.
    pub fn decide(
        &self,
        status: StatusCode,
        headers: &mut HeaderMap,
        body_len: Option<u64>,
    ) -> Option<Coding> {
        let s = status.as_u16();
        if s < 200 || matches!(s, 204 | 206 | 304) {
            return None;
        }
        if headers.contains_key(header::CONTENT_ENCODING)
            || headers.contains_key(header::CONTENT_RANGE)
            || headers
                .get_all(header::CACHE_CONTROL)
                .iter()
                .any(|v| contains_token(v.as_bytes(), b"no-transform"))
        {
            return None;
        }
        let ct = headers.get(header::CONTENT_TYPE)?;
        if !self.route.type_matches(ct.as_bytes()) {
            return None;
        }
        let len = headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
            .or(body_len);
        if len.is_some_and(|n| n < self.route.min_size) {
            return None;
        }
        add_vary(headers);
        let coding = self.codings().next()?;
        headers.insert(
            header::CONTENT_ENCODING,
            HeaderValue::from_static(coding.token()),
        );
        headers.remove(header::CONTENT_LENGTH);
        headers.remove(header::ACCEPT_RANGES);
        if let Some(etag) = headers.get(header::ETAG)
            && etag.as_bytes().starts_with(b"\"")
            && let Ok(weak) = HeaderValue::from_bytes(&[b"W/", etag.as_bytes()].concat())
        {
            headers.insert(header::ETAG, weak);
        }
        Some(coding)
    }
}

/// `Vary: Accept-Encoding`, unless the response already varies on it (or on everything).
pub(crate) fn add_vary(headers: &mut HeaderMap) {
    let present = headers.get_all(header::VARY).iter().any(|v| {
        contains_token(v.as_bytes(), b"accept-encoding") || contains_token(v.as_bytes(), b"*")
    });
    if !present {
        headers.append(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    }
}

/// Whether a comma-separated header value lists `token` (ASCII case-insensitive; a token
/// may carry `=value`, as `no-transform` never does).
fn contains_token(value: &[u8], token: &[u8]) -> bool {
    value.split(|&b| b == b',').any(|item| {
        let item = item.trim_ascii();
        let name = item
            .split(|&b| b == b'=')
            .next()
            .unwrap_or(item)
            .trim_ascii();
        name.eq_ignore_ascii_case(token)
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn route(codings: &[Coding]) -> RouteCompress {
        RouteCompress::compile(&Compress {
            codings: codings.to_vec(),
            types: vec!["text/*".into(), "application/json".into()],
            min_size: 256,
        })
    }

    fn accepted(r: &RouteCompress, ae: &str) -> Vec<Coding> {
        let mut h = HeaderMap::new();
        h.insert(header::ACCEPT_ENCODING, HeaderValue::from_str(ae).unwrap());
        r.negotiate(&Method::GET, &h).unwrap().codings().collect()
    }

    #[test]
    fn q_values_choose_and_exclude() {
        use Coding::*;
        let r = route(&Coding::ALL);
        assert_eq!(accepted(&r, "gzip, deflate, br, zstd"), [Zstd, Br, Gzip]);
        assert_eq!(accepted(&r, "gzip;q=1, br;q=0.8"), [Gzip, Br]);
        assert_eq!(accepted(&r, "br;q=0, gzip"), [Gzip]);
        assert_eq!(accepted(&r, "*;q=0.5, zstd;q=0"), [Br, Gzip]);
        assert_eq!(accepted(&r, "identity"), []);
        assert_eq!(accepted(&r, "x-gzip"), [Gzip]);
        assert_eq!(accepted(&r, "gzip;q=0.001, br;q=0.0001"), [Gzip]);
        assert_eq!(accepted(&r, "GZIP;Q=0.5, Br"), [Br, Gzip]);
        // The route's own order breaks ties and limits the choice.
        assert_eq!(
            accepted(&route(&[Gzip, Zstd]), "zstd, gzip, br"),
            [Gzip, Zstd]
        );
        // No header: nothing acceptable (the response still gets Vary).
        let none = r.negotiate(&Method::GET, &HeaderMap::new()).unwrap();
        assert_eq!(none.codings().count(), 0);
        // HEAD and ranges: never.
        let mut h = HeaderMap::new();
        h.insert(header::ACCEPT_ENCODING, HeaderValue::from_static("gzip"));
        assert!(r.negotiate(&Method::HEAD, &h).is_none());
        h.insert(header::RANGE, HeaderValue::from_static("bytes=0-1"));
        assert!(r.negotiate(&Method::GET, &h).is_none());
    }

    #[test]
    fn decisions_and_header_changes() {
        let r = route(&Coding::ALL);
        let mut req = HeaderMap::new();
        req.insert(header::ACCEPT_ENCODING, HeaderValue::from_static("gzip"));
        let acc = r.negotiate(&Method::GET, &req).unwrap();
        let resp = |ct: &str, extra: &[(&str, &str)]| {
            let mut h = HeaderMap::new();
            h.insert(header::CONTENT_TYPE, HeaderValue::from_str(ct).unwrap());
            for (k, v) in extra {
                h.append(
                    http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                    HeaderValue::from_str(v).unwrap(),
                );
            }
            h
        };
        let mut h = resp(
            "text/html; charset=utf-8",
            &[
                ("content-length", "5000"),
                ("etag", "\"abc\""),
                ("accept-ranges", "bytes"),
            ],
        );
        assert_eq!(acc.decide(StatusCode::OK, &mut h, None), Some(Coding::Gzip));
        assert_eq!(h["content-encoding"], "gzip");
        assert_eq!(h["vary"], "Accept-Encoding");
        assert_eq!(h["etag"], "W/\"abc\"");
        assert!(!h.contains_key("content-length") && !h.contains_key("accept-ranges"));
        // Small, unknown type, encoded, no-transform, 206/304/204: left alone.
        for (status, mut h) in [
            (200, resp("text/plain", &[("content-length", "100")])),
            (200, resp("image/png", &[("content-length", "5000")])),
            (200, resp("text/plain", &[("content-encoding", "br")])),
            (
                200,
                resp("text/plain", &[("cache-control", "public, No-Transform")]),
            ),
            (206, resp("text/plain", &[])),
            (304, resp("text/plain", &[])),
            (204, resp("text/plain", &[])),
        ] {
            let status = StatusCode::from_u16(status).unwrap();
            assert_eq!(
                acc.decide(status, &mut h, Some(5000)),
                None,
                "{status} {h:?}"
            );
            assert!(!h.contains_key("content-encoding") || h["content-encoding"] == "br");
        }
        // Length unknown: compressed. Vary already there: not repeated.
        let mut h = resp("application/json", &[("vary", "Origin, accept-encoding")]);
        assert_eq!(
            acc.decide(StatusCode::NOT_FOUND, &mut h, None),
            Some(Coding::Gzip)
        );
        assert_eq!(h.get_all("vary").iter().count(), 1);
        // Nothing acceptable: uncompressed, but varies.
        let none = r.negotiate(&Method::GET, &HeaderMap::new()).unwrap();
        let mut h = resp("text/css", &[("content-length", "5000")]);
        assert_eq!(none.decide(StatusCode::OK, &mut h, None), None);
        assert_eq!(h["vary"], "Accept-Encoding");
        assert_eq!(h["content-length"], "5000");
    }
}
