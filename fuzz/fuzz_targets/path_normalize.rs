//! Fuzz request-path normalisation (`portico_proxy::fuzzing::{normalize, match_form}`).
//! Never a panic; a normalised path starts with `/`, has no empty, `.` or `..` segment and
//! no escape of an unreserved character, and normalising it again changes nothing; the
//! matcher's form of it has the same properties and no `;`; a path that does not start
//! with `/` is left alone.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portico_proxy::fuzzing::{match_form, normalize};

fn check_normal(p: &str) {
    assert!(p.starts_with('/'), "{p:?}");
    let segs: Vec<&str> = p[1..].split('/').collect();
    for (i, s) in segs.iter().enumerate() {
        let last = i + 1 == segs.len();
        assert!(!s.is_empty() || last, "empty segment in {p:?}");
        assert!(*s != "." && *s != "..", "dot segment in {p:?}");
    }
    let b = p.as_bytes();
    for w in b.windows(3) {
        if w[0] == b'%' {
            let hex = std::str::from_utf8(&w[1..])
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok());
            if let Some(d) = hex {
                assert!(
                    !(d.is_ascii_alphanumeric() || b"-._~".contains(&d)),
                    "unreserved escape left in {p:?}"
                );
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(path) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(normal) = normalize(path) else {
        return;
    };
    if !path.starts_with('/') {
        assert_eq!(normal, None, "{path:?}");
        return;
    }
    let normal = normal.unwrap_or_else(|| path.to_string());
    check_normal(&normal);
    assert_eq!(
        normalize(&normal),
        Ok(None),
        "not idempotent: {path:?} -> {normal:?}"
    );
    if let Ok(m) = match_form(&normal) {
        assert!(!m.contains(';'), "{m:?}");
        check_normal(&m);
    }
});
