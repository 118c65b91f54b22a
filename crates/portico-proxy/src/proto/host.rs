//! `Host` header syntax, checked before a request is routed: a value that is not a host
//! name or IP literal with an optional port is refused (400) so that nothing of it reaches
//! routing, an upstream's logs or a `Location` header.
//!
//! Accepted: `name[:port]` where the name is letters, digits, `-`, `_` and `.` (no empty
//! label, one trailing `.` allowed), at most 253 characters; `[IPv6]` with hex digits, `:`
//! and `.` inside the brackets; a port is 1 to 5 digits. Refused: empty, `/`, `\`, `@`,
//! spaces, `..`, a leading `.`, anything else (nginx refuses the same shapes).

/// The longest host name (RFC 1035), not counting a trailing dot.
const MAX_NAME: usize = 253;

/// Whether `value` is a valid `Host` (see the module doc).
pub fn valid(value: &[u8]) -> bool {
    let (name, port) = if value.first() == Some(&b'[') {
        let Some(end) = value.iter().position(|&b| b == b']') else {
            return false;
        };
        let inside = &value[1..end];
        if inside.is_empty()
            || !inside
                .iter()
                .all(|&b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
        {
            return false;
        }
        match &value[end + 1..] {
            [] => (None, None),
            [b':', port @ ..] => (None, Some(port)),
            _ => return false,
        }
    } else {
        match value.iter().rposition(|&b| b == b':') {
            Some(colon) => (Some(&value[..colon]), Some(&value[colon + 1..])),
            None => (Some(value), None),
        }
    };
    let port_ok = |p: &[u8]| (1..=5).contains(&p.len()) && p.iter().all(u8::is_ascii_digit);
    if port.is_some_and(|p| !port_ok(p)) {
        return false;
    }
    match name {
        None => true,
        Some(name) => valid_name(name),
    }
}

fn valid_name(name: &[u8]) -> bool {
    let name = name.strip_suffix(b".").unwrap_or(name);
    !name.is_empty()
        && name.len() <= MAX_NAME
        && name.split(|&b| b == b'.').all(|label| {
            !label.is_empty()
                && label
                    .iter()
                    .all(|&b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_literals_and_ports() {
        for ok in [
            &b"example.com"[..],
            b"Example.COM:8080",
            b"a-b_c.d",
            b"example.com.",
            b"example.com.:443",
            b"localhost",
            b"127.0.0.1:80",
            b"[::1]",
            b"[::1]:8443",
            b"[fe80::1.2.3.4]",
        ] {
            assert!(valid(ok), "{}", String::from_utf8_lossy(ok));
        }
    }

    #[test]
    fn refused_shapes() {
        for bad in [
            &b""[..],
            b"/",
            b"a/b",
            b"a\\b",
            b"user@example.com",
            b"a b",
            b" a",
            b"a..b",
            b".a",
            b"..",
            b".",
            b"a:",
            b"a:123456",
            b"a:8x",
            b"[::1",
            b"[]",
            b"[::1]x",
            b"[::g]",
            b"a\tb",
            b"\xc3\xa9.com",
            b"a.com..",
        ] {
            assert!(!valid(bad), "{}", String::from_utf8_lossy(bad));
        }
        assert!(!valid(&[b'a'; 254]));
        assert!(valid(&[b'a'; 63]));
    }
}
