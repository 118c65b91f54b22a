//! Turning a request path into a safe relative path below a static root.
//!
//! The request path is percent-decoded exactly once, then split on `/`. Empty and `.`
//! segments are dropped; any `..` segment, NUL byte, backslash or non-UTF-8 sequence rejects
//! the request. Because decoding happens before splitting, `%2f..` and `%2e%2e` are caught as
//! well; a double-encoded `%252e%252e` decodes to the literal name `%2e%2e`, which is only a
//! file name. This is the *lexical* guard; symlinks are checked afterwards against the
//! canonical root (see the parent module).

use std::path::PathBuf;

/// Why a request path was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("path is not absolute")]
    NotAbsolute,
    #[error("path contains a NUL byte")]
    Nul,
    #[error("path is not valid UTF-8 after decoding")]
    NotUtf8,
    #[error("path contains a `..` segment")]
    DotDot,
    #[error("path contains a backslash")]
    Backslash,
}

/// The decoded, normalised relative path of a request (no leading `/`, no `.`/`..`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelPath {
    segments: Vec<String>,
}

impl RelPath {
    /// Decode and check the path part of a request URI.
    pub fn parse(raw: &str) -> Result<RelPath, PathError> {
        if !raw.starts_with('/') {
            return Err(PathError::NotAbsolute);
        }
        let bytes: Vec<u8> = percent_encoding::percent_decode_str(raw).collect();
        if bytes.contains(&0) {
            return Err(PathError::Nul);
        }
        let decoded = String::from_utf8(bytes).map_err(|_| PathError::NotUtf8)?;
        let mut segments = Vec::new();
        for seg in decoded.split('/') {
            match seg {
                "" | "." => {}
                ".." => return Err(PathError::DotDot),
                s if s.contains('\\') => return Err(PathError::Backslash),
                s => segments.push(s.to_owned()),
            }
        }
        Ok(RelPath { segments })
    }

    /// The path as a relative [`PathBuf`] (empty for the root itself).
    pub fn to_path_buf(&self) -> PathBuf {
        self.segments.iter().collect()
    }

    /// The segments, in order.
    pub fn segments(&self) -> &[String] {
        &self.segments
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segs(raw: &str) -> Vec<String> {
        RelPath::parse(raw).expect("valid path").segments().to_vec()
    }

    #[test]
    fn plain_paths_normalise() {
        assert_eq!(segs("/"), Vec::<String>::new());
        assert_eq!(segs("/a/b.txt"), vec!["a", "b.txt"]);
        assert_eq!(segs("//a/./b//"), vec!["a", "b"]);
        assert_eq!(segs("/with%20space"), vec!["with space"]);
        assert_eq!(segs("/caf%C3%A9"), vec!["café"]);
    }

    #[test]
    fn traversal_is_rejected() {
        for raw in [
            "/..",
            "/../etc/passwd",
            "/a/../../etc/passwd",
            "/%2e%2e/etc/passwd",
            "/%2E%2E/etc/passwd",
            "/.%2e/x",
            "/a%2f..%2f..%2fetc/passwd",
            "/a/%2F../x",
        ] {
            assert_eq!(RelPath::parse(raw), Err(PathError::DotDot), "{raw}");
        }
    }

    #[test]
    fn other_bad_input_is_rejected() {
        assert_eq!(RelPath::parse("/a%00b"), Err(PathError::Nul));
        assert_eq!(RelPath::parse("/..%5c..%5cetc"), Err(PathError::Backslash));
        assert_eq!(RelPath::parse("/a\\b"), Err(PathError::Backslash));
        assert_eq!(RelPath::parse("/%ff"), Err(PathError::NotUtf8));
        assert_eq!(RelPath::parse("a/b"), Err(PathError::NotAbsolute));
    }

    #[test]
    fn double_encoding_is_only_a_name() {
        assert_eq!(segs("/%252e%252e/x"), vec!["%2e%2e", "x"]);
    }

    /// Random paths built from dangerous pieces: whatever parses never climbs or hides.
    #[test]
    fn random_paths_never_escape() {
        const PIECES: [&str; 14] = [
            "/", ".", "..", "%2e", "%2E", "%2f", "%2F", "%5c", "\\", "%00", "%25", "a", "%c3%a9",
            "~",
        ];
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..50_000 {
            let mut raw = String::from("/");
            for _ in 0..(next() % 12) {
                raw.push_str(PIECES[(next() % PIECES.len() as u64) as usize]);
            }
            if let Ok(rel) = RelPath::parse(&raw) {
                for seg in rel.segments() {
                    assert!(
                        !seg.is_empty() && seg != "." && seg != "..",
                        "{raw:?} -> {seg:?}"
                    );
                    assert!(!seg.contains(['/', '\\', '\0']), "{raw:?} -> {seg:?}");
                }
                let p = rel.to_path_buf();
                assert!(p.is_relative(), "{raw:?}");
                assert!(
                    p.components()
                        .all(|c| matches!(c, std::path::Component::Normal(_))),
                    "{raw:?} -> {p:?}"
                );
            }
        }
    }
}
