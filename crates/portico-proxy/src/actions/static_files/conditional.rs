//! Validators (ETag, Last-Modified), conditional requests (RFC 9110 §13) and `Range`.
//!
//! Pure functions over header values, so they are tested without files or sockets.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The validators of one file version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Validators {
    /// Strong ETag, nginx style: `"<mtime secs hex>-<len hex>"` (with quotes).
    pub etag: String,
    /// Modification time truncated to whole seconds (HTTP dates have no fractions).
    pub modified: SystemTime,
}

impl Validators {
    /// Validators for a file of `len` bytes last modified at `mtime`.
    pub fn new(mtime: SystemTime, len: u64) -> Validators {
        let secs = mtime.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        Validators {
            etag: format!("\"{secs:x}-{len:x}\""),
            modified: UNIX_EPOCH + Duration::from_secs(secs),
        }
    }

    /// The `Last-Modified` header value.
    pub fn last_modified(&self) -> String {
        httpdate::fmt_http_date(self.modified)
    }

    /// Whether a GET/HEAD with these condition headers should get 304 Not Modified.
    ///
    /// `If-None-Match` wins over `If-Modified-Since` when both are present.
    pub fn not_modified(
        &self,
        if_none_match: Option<&str>,
        if_modified_since: Option<&str>,
    ) -> bool {
        if let Some(inm) = if_none_match {
            return etag_list_matches_weak(inm, &self.etag);
        }
        if let Some(ims) = if_modified_since.and_then(|v| httpdate::parse_http_date(v.trim()).ok())
        {
            return self.modified <= ims;
        }
        false
    }

    /// Whether an `If-Range` value still designates this version (strong comparison).
    pub fn if_range_holds(&self, if_range: &str) -> bool {
        let v = if_range.trim();
        if v.starts_with('"') {
            return v == self.etag;
        }
        if v.starts_with("W/") {
            return false;
        }
        httpdate::parse_http_date(v).is_ok_and(|d| d == self.modified)
    }
}

/// `If-None-Match` comparison: `*` or any listed tag equal after dropping `W/` (weak compare).
fn etag_list_matches_weak(list: &str, etag: &str) -> bool {
    list.split(',').map(str::trim).any(|tag| {
        tag == "*"
            || tag.strip_prefix("W/").unwrap_or(tag) == etag.strip_prefix("W/").unwrap_or(etag)
    })
}

/// The outcome of a `Range` header for a representation of a given length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeOutcome {
    /// Serve the whole representation with 200 (no, multiple or malformed ranges).
    Full,
    /// Serve bytes `start..=end` with 206.
    Partial { start: u64, end: u64 },
    /// 416 Range Not Satisfiable.
    Unsatisfiable,
}

/// Interpret a `Range` header value for a body of `len` bytes.
///
/// Only one `bytes=` range is honoured; several ranges are answered with the whole body
/// (allowed by RFC 9110 §14.2 and cheaper than multipart/byteranges). A syntactically
/// invalid header is ignored, as the RFC requires.
pub fn parse_range(value: &str, len: u64) -> RangeOutcome {
    let Some(spec) = value.trim().strip_prefix("bytes=") else {
        return RangeOutcome::Full;
    };
    if spec.contains(',') {
        return RangeOutcome::Full;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return RangeOutcome::Full;
    };
    let (first, last) = (first.trim(), last.trim());
    let parse = |s: &str| -> Option<u64> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            None
        } else {
            s.parse().ok()
        }
    };
    if first.is_empty() {
        // Suffix range: the last N bytes.
        let Some(n) = parse(last) else {
            return RangeOutcome::Full;
        };
        if n == 0 || len == 0 {
            return RangeOutcome::Unsatisfiable;
        }
        let n = n.min(len);
        return RangeOutcome::Partial {
            start: len - n,
            end: len - 1,
        };
    }
    let Some(start) = parse(first) else {
        return RangeOutcome::Full;
    };
    let end = if last.is_empty() {
        None
    } else {
        match parse(last) {
            Some(e) if e >= start => Some(e),
            _ => return RangeOutcome::Full,
        }
    };
    if start >= len {
        return RangeOutcome::Unsatisfiable;
    }
    let end = end.map_or(len - 1, |e| e.min(len - 1));
    RangeOutcome::Partial { start, end }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v() -> Validators {
        Validators::new(UNIX_EPOCH + Duration::from_millis(1_700_000_000_500), 1234)
    }

    #[test]
    fn etag_is_nginx_style() {
        assert_eq!(v().etag, "\"6553f100-4d2\"");
        assert_eq!(v().last_modified(), "Tue, 14 Nov 2023 22:13:20 GMT");
    }

    #[test]
    fn if_none_match() {
        let v = v();
        assert!(v.not_modified(Some("\"6553f100-4d2\""), None));
        assert!(v.not_modified(Some("\"x\", W/\"6553f100-4d2\""), None));
        assert!(v.not_modified(Some("*"), None));
        assert!(!v.not_modified(Some("\"6553f100-4d3\""), None));
        // If-None-Match present and failing: If-Modified-Since is not consulted.
        assert!(!v.not_modified(Some("\"nope\""), Some("Tue, 14 Nov 2023 22:13:20 GMT")));
    }

    #[test]
    fn if_modified_since() {
        let v = v();
        assert!(v.not_modified(None, Some("Tue, 14 Nov 2023 22:13:20 GMT")));
        assert!(v.not_modified(None, Some("Wed, 15 Nov 2023 00:00:00 GMT")));
        assert!(!v.not_modified(None, Some("Tue, 14 Nov 2023 22:13:19 GMT")));
        assert!(!v.not_modified(None, Some("garbage")));
        assert!(!v.not_modified(None, None));
    }

    #[test]
    fn if_range() {
        let v = v();
        assert!(v.if_range_holds("\"6553f100-4d2\""));
        assert!(!v.if_range_holds("W/\"6553f100-4d2\""));
        assert!(!v.if_range_holds("\"other\""));
        assert!(v.if_range_holds("Tue, 14 Nov 2023 22:13:20 GMT"));
        assert!(!v.if_range_holds("Tue, 14 Nov 2023 22:13:21 GMT"));
    }

    #[test]
    fn ranges() {
        use RangeOutcome::*;
        assert_eq!(parse_range("bytes=0-9", 100), Partial { start: 0, end: 9 });
        assert_eq!(
            parse_range("bytes=90-", 100),
            Partial { start: 90, end: 99 }
        );
        assert_eq!(
            parse_range("bytes=90-500", 100),
            Partial { start: 90, end: 99 }
        );
        assert_eq!(
            parse_range("bytes=-10", 100),
            Partial { start: 90, end: 99 }
        );
        assert_eq!(
            parse_range("bytes=-500", 100),
            Partial { start: 0, end: 99 }
        );
        assert_eq!(parse_range("bytes=100-", 100), Unsatisfiable);
        assert_eq!(parse_range("bytes=-0", 100), Unsatisfiable);
        assert_eq!(parse_range("bytes=0-", 0), Unsatisfiable);
        assert_eq!(parse_range("bytes=0-1,5-6", 100), Full);
        assert_eq!(parse_range("bytes=5-1", 100), Full);
        assert_eq!(parse_range("items=0-1", 100), Full);
        assert_eq!(parse_range("bytes=a-b", 100), Full);
        assert_eq!(parse_range("bytes=+1-2", 100), Full);
    }
}
