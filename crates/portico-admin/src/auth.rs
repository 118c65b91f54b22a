//! Who may change things: the checks every mutating call (`POST`) passes before it runs.
//!
//! 1. Browser protection, on every listener, loopback included: a page of another site must
//!    not be able to drain servers through a visitor's browser. So a mutating call must
//!    carry `Content-Type: application/json` or an `X-Portico` header (neither can be sent
//!    cross-origin without a CORS preflight, which this API never grants), and a request
//!    whose `Origin` is not this API's own (same host and port) or whose
//!    `Sec-Fetch-Site` says `cross-site` is refused. 403 otherwise.
//! 2. With `[admin] token_file`: `Authorization: Bearer TOKEN`, compared in constant time
//!    (SHA-1 digests of both sides compared with `subtle`, so neither content nor length
//!    leaks through timing). 401 otherwise. The file is read on every mutating call, so a
//!    rotated token applies at once; an unreadable or empty file refuses every mutating
//!    call (fails closed).
//!
//! Reads (`GET`: status, metrics, the dashboard) need neither: they change nothing.

use std::path::Path;

use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HOST, HeaderMap, ORIGIN};
use sha1::{Digest, Sha1};
use subtle::ConstantTimeEq;

/// Why a mutating call is refused: HTTP status and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refusal {
    pub status: u16,
    pub message: String,
}

fn refuse(status: u16, message: impl Into<String>) -> Refusal {
    Refusal {
        status,
        message: message.into(),
    }
}

/// Check a mutating request's headers; `token_file` is `[admin] token_file`.
pub(crate) fn check_mutating(
    headers: &HeaderMap,
    token_file: Option<&Path>,
) -> Result<(), Refusal> {
    check_browser(headers)?;
    if let Some(path) = token_file {
        check_token(headers, path)?;
    }
    Ok(())
}

fn header(headers: &HeaderMap, name: impl hyper::header::AsHeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn check_browser(headers: &HeaderMap) -> Result<(), Refusal> {
    if header(headers, "sec-fetch-site") == Some("cross-site") {
        return Err(refuse(403, "cross-site request refused"));
    }
    if let Some(origin) = headers.get(ORIGIN) {
        let origin = origin.to_str().unwrap_or("");
        let own = header(headers, HOST).is_some_and(|host| {
            origin
                .strip_prefix("http://")
                .or_else(|| origin.strip_prefix("https://"))
                .is_some_and(|o| o.eq_ignore_ascii_case(host))
        });
        if !own {
            return Err(refuse(
                403,
                format!(
                    "request from origin {origin:?} refused: only this API's own pages may change things"
                ),
            ));
        }
    }
    let json = header(headers, CONTENT_TYPE).is_some_and(|ct| {
        ct.split(';')
            .next()
            .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"))
    });
    if !json && !headers.contains_key("x-portico") {
        return Err(refuse(
            403,
            "a mutating call needs `Content-Type: application/json` or an `X-Portico: 1` header",
        ));
    }
    Ok(())
}

fn digest(bytes: &[u8]) -> [u8; 20] {
    Sha1::digest(bytes).into()
}

fn check_token(headers: &HeaderMap, path: &Path) -> Result<(), Refusal> {
    let expected = match std::fs::read_to_string(path) {
        Ok(s) if !s.trim().is_empty() => s.trim().to_string(),
        Ok(_) => {
            return Err(refuse(
                503,
                format!(
                    "token file {} is empty: mutating calls are refused",
                    path.display()
                ),
            ));
        }
        Err(e) => {
            return Err(refuse(
                503,
                format!(
                    "cannot read token file {}: {e}: mutating calls are refused",
                    path.display()
                ),
            ));
        }
    };
    let given = header(headers, AUTHORIZATION)
        .and_then(|v| {
            let (scheme, token) = v.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        })
        .unwrap_or("");
    let ok: bool = digest(given.as_bytes())
        .ct_eq(&digest(expected.as_bytes()))
        .into();
    if ok && !given.is_empty() {
        Ok(())
    } else {
        Err(refuse(
            401,
            "missing or wrong `Authorization: Bearer TOKEN`",
        ))
    }
}

/// Read a token file for a client (`portico reload`): the trimmed content.
pub fn read_token(path: &Path) -> std::io::Result<String> {
    Ok(std::fs::read_to_string(path)?.trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                *k,
                HeaderValue::from_str(v).unwrap_or_else(|e| panic!("{e}")),
            );
        }
        h
    }

    fn status(r: Result<(), Refusal>) -> u16 {
        r.err().map_or(200, |r| r.status)
    }

    #[test]
    fn a_plain_form_post_is_refused() {
        let h = headers(&[
            ("host", "127.0.0.1:9900"),
            ("content-type", "application/x-www-form-urlencoded"),
        ]);
        assert_eq!(status(check_mutating(&h, None)), 403);
        let h = headers(&[("host", "127.0.0.1:9900")]);
        assert_eq!(status(check_mutating(&h, None)), 403);
    }

    #[test]
    fn json_or_the_custom_header_passes_without_a_token() {
        let h = headers(&[
            ("host", "127.0.0.1:9900"),
            ("content-type", "application/json; charset=utf-8"),
        ]);
        assert_eq!(status(check_mutating(&h, None)), 200);
        let h = headers(&[("host", "127.0.0.1:9900"), ("x-portico", "1")]);
        assert_eq!(status(check_mutating(&h, None)), 200);
    }

    #[test]
    fn a_foreign_origin_is_refused_even_with_the_header() {
        let h = headers(&[
            ("host", "127.0.0.1:9900"),
            ("x-portico", "1"),
            ("origin", "https://evil.example"),
        ]);
        assert_eq!(status(check_mutating(&h, None)), 403);
        let h = headers(&[
            ("host", "127.0.0.1:9900"),
            ("x-portico", "1"),
            ("origin", "http://127.0.0.1:9901"),
        ]);
        assert_eq!(
            status(check_mutating(&h, None)),
            403,
            "another port is another origin"
        );
        let h = headers(&[
            ("host", "127.0.0.1:9900"),
            ("x-portico", "1"),
            ("sec-fetch-site", "cross-site"),
        ]);
        assert_eq!(status(check_mutating(&h, None)), 403);
        let h = headers(&[
            ("host", "127.0.0.1:9900"),
            ("x-portico", "1"),
            ("origin", "http://127.0.0.1:9900"),
        ]);
        assert_eq!(
            status(check_mutating(&h, None)),
            200,
            "the dashboard itself"
        );
    }

    #[test]
    fn the_token_is_required_and_compared() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("token");
        std::fs::write(&path, "s3cret-token\n").unwrap_or_else(|e| panic!("{e}"));
        let base = [("host", "h:1"), ("x-portico", "1")];
        let with = |auth: &'static str| {
            let mut pairs = base.to_vec();
            pairs.push(("authorization", auth));
            headers(&pairs)
        };
        assert_eq!(status(check_mutating(&headers(&base), Some(&path))), 401);
        assert_eq!(
            status(check_mutating(&with("Bearer wrong"), Some(&path))),
            401
        );
        assert_eq!(
            status(check_mutating(&with("Bearer s3cret-toke"), Some(&path))),
            401
        );
        assert_eq!(
            status(check_mutating(&with("Basic s3cret-token"), Some(&path))),
            401
        );
        assert_eq!(
            status(check_mutating(&with("Bearer s3cret-token"), Some(&path))),
            200
        );
        assert_eq!(
            status(check_mutating(&with("bearer s3cret-token"), Some(&path))),
            200
        );
        std::fs::write(&path, "\n").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            status(check_mutating(&with("Bearer "), Some(&path))),
            503,
            "empty file fails closed"
        );
        let missing = dir.path().join("nope");
        assert_eq!(
            status(check_mutating(&with("Bearer x"), Some(&missing))),
            503
        );
    }
}
