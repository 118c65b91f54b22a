//! Request-path normalisation, as nginx does before matching locations: routes see (and
//! upstreams get) one spelling of each path, so `/public/../admin`, `//admin` or `/%61dmin`
//! cannot slip past a route written for `/admin`.
//!
//! [`normalize`] (the path routed on and forwarded):
//! - `%XX` of an unreserved character (`A-Z a-z 0-9 - . _ ~`, RFC 3986 §2.3) is decoded;
//!   other escapes stay, with upper-case hex digits; a `%` not followed by two hex digits
//!   is an error (400);
//! - runs of `/` become one;
//! - `.` and `..` segments are resolved (RFC 3986 §5.2.4); a `..` climbing above `/` is an
//!   error (400). A path ending in a removed segment keeps a trailing `/`.
//!
//! [`match_form`] is what the route matcher sees: the normalised path with each segment's
//! `;parameters` removed and `%2F` taken as `/`, then normalised again. Backends differ on
//! both (Tomcat and Jetty drop `;` parameters, some servers decode `%2F`), so the matcher
//! takes the reading that lands deepest: `/admin;x` and `/public/..;/admin` match `/admin`
//! routes. The forwarded path keeps `;` and `%2F` as sent.
//!
//! A path that does not start with `/` (`*`, an authority) is left alone.

use std::borrow::Cow;

/// Why a path is refused (both are 400).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathError {
    /// `%` not followed by two hex digits.
    BadEscape,
    /// A `..` segment above `/`.
    AboveRoot,
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// Whether `path` may need any work: the common path costs one byte scan.
fn needs_work(path: &[u8]) -> bool {
    path.first() == Some(&b'/')
        && path
            .windows(2)
            .any(|w| w[0] == b'%' || (w[0] == b'/' && (w[1] == b'/' || w[1] == b'.')))
        || path.last() == Some(&b'%')
}

/// The normalised path (see the module doc), `None` when `path` already is.
pub fn normalize(path: &str) -> Result<Option<String>, PathError> {
    let bytes = path.as_bytes();
    if !needs_work(bytes) {
        return Ok(None);
    }
    let decoded = decode_unreserved(bytes)?;
    let out = resolve(&decoded)?;
    Ok((out != path).then_some(out))
}

/// What the route matcher sees for an already normalised path (see the module doc).
pub fn match_form(path: &str) -> Result<Cow<'_, str>, PathError> {
    let bytes = path.as_bytes();
    let has_param = bytes.contains(&b';');
    let has_slash = bytes
        .windows(3)
        .any(|w| w[0] == b'%' && w[1] == b'2' && (w[2] == b'F' || w[2] == b'f'));
    if !path.starts_with('/') || (!has_param && !has_slash) {
        return Ok(Cow::Borrowed(path));
    }
    let mut out = String::with_capacity(path.len());
    let mut rest = path;
    while !rest.is_empty() {
        if let Some(after) = rest
            .strip_prefix("%2F")
            .or_else(|| rest.strip_prefix("%2f"))
        {
            out.push('/');
            rest = after;
            continue;
        }
        let c = rest.as_bytes()[0];
        if c == b';' {
            // Skip to the end of the segment.
            let end = rest.find('/').unwrap_or(rest.len());
            let end = rest[..end]
                .find("%2F")
                .or_else(|| rest[..end].find("%2f"))
                .unwrap_or(end);
            rest = &rest[end..];
            continue;
        }
        let ch = rest.chars().next().unwrap_or('/');
        out.push(ch);
        rest = &rest[ch.len_utf8()..];
    }
    resolve(&out).map(Cow::Owned)
}

/// Decode `%XX` of unreserved characters; upper-case the other escapes.
fn decode_unreserved(bytes: &[u8]) -> Result<String, PathError> {
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b != b'%' {
            out.push(b);
            i += 1;
            continue;
        }
        let (Some(hi), Some(lo)) = (
            bytes.get(i + 1).copied().and_then(hex),
            bytes.get(i + 2).copied().and_then(hex),
        ) else {
            return Err(PathError::BadEscape);
        };
        let d = hi << 4 | lo;
        if unreserved(d) {
            out.push(d);
        } else {
            out.push(b'%');
            out.push(bytes[i + 1].to_ascii_uppercase());
            out.push(bytes[i + 2].to_ascii_uppercase());
        }
        i += 3;
    }
    // Only ASCII bytes were added or replaced by ASCII: still UTF-8 when the input was.
    String::from_utf8(out).map_err(|_| PathError::BadEscape)
}

/// Merge slashes and resolve dot segments of a path starting with `/`.
fn resolve(path: &str) -> Result<String, PathError> {
    let mut segs: Vec<&str> = Vec::new();
    let mut trailing = false;
    for seg in path.split('/').skip(1) {
        trailing = true;
        match seg {
            "" | "." => {}
            ".." => {
                if segs.pop().is_none() {
                    return Err(PathError::AboveRoot);
                }
            }
            s => {
                segs.push(s);
                trailing = false;
            }
        }
    }
    let mut out = String::with_capacity(path.len());
    for s in &segs {
        out.push('/');
        out.push_str(s);
    }
    if trailing || segs.is_empty() {
        out.push('/');
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(p: &str) -> Result<String, PathError> {
        normalize(p).map(|o| o.unwrap_or_else(|| p.to_string()))
    }

    #[test]
    fn normal_paths_are_left_alone() {
        for p in ["/", "/a", "/a/b/", "/a.b/c..d/.e", "/a;b", "*", "/a?b"] {
            assert_eq!(normalize(p), Ok(None), "{p}");
        }
    }

    #[test]
    fn dots_slashes_and_unreserved_escapes() {
        for (input, want) in [
            ("/public/../admin", "/admin"),
            ("//admin", "/admin"),
            ("/%61dmin", "/admin"),
            ("/a/./b", "/a/b"),
            ("/a/.", "/a/"),
            ("/a/..", "/"),
            ("/a/b/../../c", "/c"),
            ("/a//b///", "/a/b/"),
            ("/x/%2e%2E/y/..", "/"),
            ("/a/%2e%2e/b", "/b"),
            ("/a%2fb", "/a%2Fb"),
            ("/%7e%41%5a", "/~AZ"),
            ("/x%20y", "/x%20y"),
            ("/é/./x", "/é/x"),
        ] {
            assert_eq!(norm(input).as_deref(), Ok(want), "{input}");
        }
    }

    #[test]
    fn climbing_above_root_and_bad_escapes_are_errors() {
        for p in ["/..", "/../a", "/a/../..", "/%2e%2e", "//..//a"] {
            assert_eq!(norm(p), Err(PathError::AboveRoot), "{p}");
        }
        for p in ["/%", "/%4", "/%zz", "/a%g1"] {
            assert_eq!(norm(p), Err(PathError::BadEscape), "{p}");
        }
    }

    #[test]
    fn the_matcher_sees_params_removed_and_encoded_slashes() {
        for (input, want) in [
            ("/admin;x", "/admin"),
            ("/admin;x/y", "/admin/y"),
            ("/public/..;/admin", "/admin"),
            ("/public%2F..%2Fadmin", "/admin"),
            ("/a;b;c/d;e", "/a/d"),
            ("/plain", "/plain"),
        ] {
            assert_eq!(match_form(input).as_deref(), Ok(want), "{input}");
        }
        assert_eq!(match_form("/..;/x"), Err(PathError::AboveRoot));
    }
}
