//! `auth_basic`: HTTP Basic authentication (RFC 7617) against the bcrypt entries of an
//! htpasswd file (read by the config loader; a reload reads it again).
//!
//! bcrypt is slow on purpose (about a millisecond at `htpasswd -B`'s cost 5) and runs on the
//! worker thread, so credentials that verified are remembered, as SHA-256 of
//! `user NUL password` (never the password), in a bounded set: a client sending the same
//! `Authorization` on every request pays the bcrypt cost once. Wrong credentials are
//! verified every time (as nginx does). The password is never logged.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use http::{HeaderMap, HeaderValue, header};
use portico_config::AuthBasic;
use ring::digest;

/// Verified credentials remembered per `auth_basic` (cleared when full).
const REMEMBERED: usize = 4096;

/// One route's `auth_basic`.
pub(crate) struct BasicAuth {
    users: HashMap<String, String>,
    /// `WWW-Authenticate` of a 401.
    challenge: HeaderValue,
    forward: bool,
    verified: Mutex<HashSet<[u8; 32]>>,
}

impl std::fmt::Debug for BasicAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BasicAuth")
            .field("users", &self.users.len())
            .field("forward", &self.forward)
            .finish()
    }
}

impl BasicAuth {
    pub fn new(cfg: &AuthBasic) -> BasicAuth {
        let challenge =
            HeaderValue::from_str(&format!("Basic realm=\"{}\", charset=\"UTF-8\"", cfg.realm))
                .unwrap_or_else(|_| HeaderValue::from_static("Basic realm=\"Restricted\""));
        BasicAuth {
            users: cfg.users.iter().cloned().collect(),
            challenge,
            forward: cfg.forward_auth,
            verified: Mutex::new(HashSet::new()),
        }
    }

    /// The `WWW-Authenticate` value of the 401 for this route.
    pub fn challenge(&self) -> &HeaderValue {
        &self.challenge
    }

    /// Whether the request's `Authorization` names a user of the file with the right
    /// password. A request that passes has its `Authorization` removed unless
    /// `forward_auth`.
    pub fn admit(&self, headers: &mut HeaderMap) -> bool {
        let ok = headers
            .get(header::AUTHORIZATION)
            .is_some_and(|v| self.verify(v.as_bytes()));
        if ok && !self.forward {
            headers.remove(header::AUTHORIZATION);
        }
        ok
    }

    fn verify(&self, value: &[u8]) -> bool {
        let Some(b64) = strip_scheme(value) else {
            return false;
        };
        let Ok(decoded) = STANDARD.decode(b64.trim_ascii()) else {
            return false;
        };
        let Some(colon) = decoded.iter().position(|&b| b == b':') else {
            return false;
        };
        let (user, password) = (&decoded[..colon], &decoded[colon + 1..]);
        let Some(hash) = std::str::from_utf8(user)
            .ok()
            .and_then(|u| self.users.get(u))
        else {
            return false;
        };
        let mut ctx = digest::Context::new(&digest::SHA256);
        ctx.update(user);
        ctx.update(&[0]);
        ctx.update(password);
        let mut key = [0u8; 32];
        key.copy_from_slice(ctx.finish().as_ref());
        let mut verified = self.verified.lock().unwrap_or_else(|e| e.into_inner());
        if verified.contains(&key) {
            return true;
        }
        drop(verified);
        if !bcrypt::verify(password, hash).unwrap_or(false) {
            return false;
        }
        verified = self.verified.lock().unwrap_or_else(|e| e.into_inner());
        if verified.len() >= REMEMBERED {
            verified.clear();
        }
        verified.insert(key);
        true
    }
}

/// The credentials after `Basic ` (scheme case-insensitive).
fn strip_scheme(value: &[u8]) -> Option<&[u8]> {
    let (scheme, rest) = value.split_at_checked(6)?;
    scheme.eq_ignore_ascii_case(b"basic ").then_some(rest)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn auth(forward: bool) -> BasicAuth {
        let hash = bcrypt::hash("s3cret", 4).unwrap();
        BasicAuth::new(&AuthBasic {
            realm: "staff".into(),
            users_file: "htpasswd".into(),
            users: vec![("alice".into(), hash)],
            forward_auth: forward,
        })
    }

    fn with(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, HeaderValue::from_str(value).unwrap());
        h
    }

    #[test]
    fn basic_credentials() {
        let a = auth(false);
        let good = format!("Basic {}", STANDARD.encode("alice:s3cret"));
        let mut h = with(&good);
        assert!(a.admit(&mut h));
        assert!(h.get(header::AUTHORIZATION).is_none(), "not forwarded");
        assert!(a.admit(&mut with(&good)), "remembered");
        assert!(a.admit(&mut with(&format!(
            "basic {}",
            STANDARD.encode("alice:s3cret")
        ))));
        for bad in [
            format!("Basic {}", STANDARD.encode("alice:wrong")),
            format!("Basic {}", STANDARD.encode("bob:s3cret")),
            format!("Basic {}", STANDARD.encode("alice")),
            "Basic !!!".to_string(),
            format!("Bearer {}", STANDARD.encode("alice:s3cret")),
        ] {
            let mut h = with(&bad);
            assert!(!a.admit(&mut h), "{bad}");
            assert!(h.get(header::AUTHORIZATION).is_some());
        }
        assert!(!a.admit(&mut HeaderMap::new()));
        let mut h = with(&good);
        assert!(auth(true).admit(&mut h));
        assert!(h.get(header::AUTHORIZATION).is_some(), "forward_auth");
        assert_eq!(a.challenge(), "Basic realm=\"staff\", charset=\"UTF-8\"");
    }
}
