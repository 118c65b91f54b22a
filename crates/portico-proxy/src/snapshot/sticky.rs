//! `sticky_cookie`: pin a client to a server with a cookie every node can read.
//!
//! The cookie carries a server id derived from the config alone (SHA-256 of the upstream
//! name and the server address as written), so every Portico with the same config, and
//! the same process after a restart or reload, maps the cookie to the same server. With
//! `[server] secret_file`, the id is followed by an HMAC-SHA256 tag over the cookie name,
//! the upstream name and the id (`ID.TAG`, base64url): a cookie that does not verify is
//! ignored, like a missing one, and the client gets a fresh pick and a fresh cookie.
//!
//! All cookie values and `Set-Cookie` headers are computed when the snapshot is built;
//! the request path compares bytes and, when signed, verifies one tag.

use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::{HeaderMap, HeaderValue};
use ring::{digest, hmac};

use crate::error::ProxyError;

/// Bytes of SHA-256 kept as the server id (hex in the cookie): 64 bits, enough to tell
/// the servers of one upstream apart.
const ID_BYTES: usize = 8;

/// Shortest secret accepted (`head -c 32 /dev/urandom`).
pub(crate) const MIN_SECRET: usize = 32;

/// The compiled `sticky_cookie` of one upstream.
#[derive(Debug)]
pub(crate) struct Sticky {
    name: String,
    upstream: String,
    /// Hex server id per pool member (pool order).
    ids: Vec<String>,
    key: Option<hmac::Key>,
    /// `Set-Cookie` per member, for plain HTTP and for https (`Secure`).
    set_plain: Vec<HeaderValue>,
    set_secure: Vec<HeaderValue>,
}

/// The server-signing key of `[server] secret_file`: at least [`MIN_SECRET`] bytes.
pub(crate) fn read_secret(path: &Path) -> Result<hmac::Key, ProxyError> {
    let bytes = std::fs::read(path).map_err(|e| {
        ProxyError::Policy(format!("cannot read secret_file {}: {e}", path.display()))
    })?;
    if bytes.len() < MIN_SECRET {
        return Err(ProxyError::Policy(format!(
            "secret_file {} holds {} bytes; at least {MIN_SECRET} are needed \
             (e.g. head -c 32 /dev/urandom > FILE)",
            path.display(),
            bytes.len()
        )));
    }
    Ok(hmac::Key::new(hmac::HMAC_SHA256, &bytes))
}

impl Sticky {
    /// Compile the cookie `name` of `upstream` over the addresses (as written in the
    /// config) of its pool members, in pool order.
    pub fn build<'a>(
        name: &str,
        max_age: Option<std::time::Duration>,
        upstream: &str,
        members: impl ExactSizeIterator<Item = &'a str>,
        key: Option<hmac::Key>,
    ) -> Result<Sticky, ProxyError> {
        let mut sticky = Sticky {
            name: name.to_string(),
            upstream: upstream.to_string(),
            ids: Vec::with_capacity(members.len()),
            key,
            set_plain: Vec::with_capacity(members.len()),
            set_secure: Vec::with_capacity(members.len()),
        };
        for addr in members {
            let id = server_id(upstream, addr);
            let value = match &sticky.key {
                Some(key) => format!("{id}.{}", sticky.tag(key, &id)),
                None => id.clone(),
            };
            let mut cookie = format!("{name}={value}; Path=/; HttpOnly; SameSite=Lax");
            if let Some(age) = max_age {
                cookie.push_str(&format!("; Max-Age={}", age.as_secs().max(1)));
            }
            let bad = |_| ProxyError::Policy(format!("sticky_cookie `{name}`: bad header value"));
            sticky
                .set_plain
                .push(HeaderValue::from_str(&cookie).map_err(bad)?);
            sticky
                .set_secure
                .push(HeaderValue::from_str(&format!("{cookie}; Secure")).map_err(bad)?);
            sticky.ids.push(id);
        }
        Ok(sticky)
    }

    fn tag(&self, key: &hmac::Key, id: &str) -> String {
        URL_SAFE_NO_PAD.encode(hmac::sign(key, self.signed_bytes(id).as_slice()).as_ref())
    }

    fn signed_bytes(&self, id: &str) -> Vec<u8> {
        let mut msg = Vec::with_capacity(self.name.len() + self.upstream.len() + id.len() + 2);
        msg.extend_from_slice(self.name.as_bytes());
        msg.push(0);
        msg.extend_from_slice(self.upstream.as_bytes());
        msg.push(0);
        msg.extend_from_slice(id.as_bytes());
        msg
    }

    /// The pool member the request's cookie names, if the cookie is there, names a server
    /// of this config and (when signed) verifies.
    pub fn member(&self, headers: &HeaderMap) -> Option<usize> {
        let value = cookie_value(headers, self.name.as_bytes())?;
        let value = std::str::from_utf8(value).ok()?;
        let (id, tag) = match value.split_once('.') {
            Some((id, tag)) => (id, Some(tag)),
            None => (value, None),
        };
        let index = self.ids.iter().position(|known| known == id)?;
        match (&self.key, tag) {
            (None, None) => Some(index),
            (Some(key), Some(tag)) => {
                let tag = URL_SAFE_NO_PAD.decode(tag).ok()?;
                hmac::verify(key, &self.signed_bytes(id), &tag)
                    .ok()
                    .map(|()| index)
            }
            _ => None,
        }
    }

    /// The `Set-Cookie` value pinning a client to member `index`.
    pub fn set_cookie(&self, index: usize, https: bool) -> Option<&HeaderValue> {
        if https {
            self.set_secure.get(index)
        } else {
            self.set_plain.get(index)
        }
    }
}

/// The server id: hex of the first [`ID_BYTES`] of SHA-256(upstream NUL address).
fn server_id(upstream: &str, addr: &str) -> String {
    let mut ctx = digest::Context::new(&digest::SHA256);
    ctx.update(upstream.as_bytes());
    ctx.update(&[0]);
    ctx.update(addr.as_bytes());
    let d = ctx.finish();
    d.as_ref()[..ID_BYTES]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The value of cookie `name` in the request's `Cookie` headers (the first one found).
pub(crate) fn cookie_value<'h>(headers: &'h HeaderMap, name: &[u8]) -> Option<&'h [u8]> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b';'))
        .find_map(|pair| {
            let pair = pair.trim_ascii();
            let eq = pair.iter().position(|&b| b == b'=')?;
            let (k, v) = pair.split_at(eq);
            (k.trim_ascii() == name).then(|| v[1..].trim_ascii())
        })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn with_cookie(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(http::header::COOKIE, HeaderValue::from_str(v).unwrap());
        h
    }

    fn value(set: &HeaderValue) -> String {
        let s = set.to_str().unwrap();
        s.split(';').next().unwrap().to_string()
    }

    #[test]
    fn ids_depend_on_config_only_and_order_does_not_matter() {
        let a = Sticky::build(
            "srv",
            None,
            "app",
            ["10.0.0.1:80", "10.0.0.2:80"].into_iter(),
            None,
        )
        .unwrap();
        let b = Sticky::build(
            "srv",
            None,
            "app",
            ["10.0.0.2:80", "10.0.0.1:80"].into_iter(),
            None,
        )
        .unwrap();
        let cookie = value(a.set_cookie(0, false).unwrap());
        assert_eq!(a.member(&with_cookie(&cookie)), Some(0));
        assert_eq!(b.member(&with_cookie(&format!("x=1; {cookie}"))), Some(1));
        assert_eq!(a.member(&with_cookie("srv=0123456789abcdef")), None);
        let set = a.set_cookie(1, true).unwrap().to_str().unwrap();
        assert!(
            set.ends_with("; Path=/; HttpOnly; SameSite=Lax; Secure"),
            "{set}"
        );
    }

    #[test]
    fn signed_cookies_verify_and_tampering_is_ignored() {
        let key = || Some(hmac::Key::new(hmac::HMAC_SHA256, &[7u8; 32]));
        let m = ["10.0.0.1:80", "10.0.0.2:80"];
        let s = Sticky::build("srv", None, "app", m.into_iter(), key()).unwrap();
        let good = value(s.set_cookie(1, false).unwrap());
        assert_eq!(s.member(&with_cookie(&good)), Some(1));
        // Another id with the first one's tag, an unsigned id, a truncated tag.
        let other = value(s.set_cookie(0, false).unwrap());
        let (id0, _) = other.split_once('.').unwrap();
        let (_, tag1) = good.split_once('.').unwrap();
        assert_eq!(s.member(&with_cookie(&format!("{id0}.{tag1}"))), None);
        assert_eq!(s.member(&with_cookie(id0)), None);
        assert_eq!(s.member(&with_cookie(&good[..good.len() - 2])), None);
        // Another secret does not accept it.
        let other_key = Some(hmac::Key::new(hmac::HMAC_SHA256, &[8u8; 32]));
        let s2 = Sticky::build("srv", None, "app", m.into_iter(), other_key).unwrap();
        assert_eq!(s2.member(&with_cookie(&good)), None);
    }

    #[test]
    fn secrets_shorter_than_32_bytes_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let short = dir.path().join("short");
        std::fs::write(&short, [1u8; 31]).unwrap();
        let err = read_secret(&short).unwrap_err().to_string();
        assert!(err.contains("holds 31 bytes; at least 32"), "{err}");
        let missing = read_secret(&dir.path().join("none"))
            .unwrap_err()
            .to_string();
        assert!(missing.starts_with("cannot read secret_file"), "{missing}");
        let ok = dir.path().join("ok");
        std::fs::write(&ok, [1u8; 32]).unwrap();
        assert!(read_secret(&ok).is_ok());
    }
}
