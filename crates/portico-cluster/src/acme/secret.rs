//! Encryption of private keys kept in etcd with `[cluster] secret_file`.
//!
//! The key is derived from the file's bytes with HKDF-SHA256 (fixed salt and info, so every
//! node with the same file derives the same key); each value is sealed with
//! ChaCha20-Poly1305 (ring) under a fresh random 96-bit nonce, with the etcd key it is
//! stored under as associated data (a sealed value copied to another key does not open).
//! Stored form: base64 of `nonce || ciphertext || tag`.

use std::path::Path;

use base64::Engine as _;
use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::hkdf;
use ring::rand::{SecureRandom, SystemRandom};

use crate::error::ClusterError;

/// The shortest accepted `secret_file`.
pub const MIN_SECRET_LEN: usize = 32;
const SALT: &[u8] = b"portico cluster secret_file v1";
const INFO: &[u8] = b"private keys in etcd";

/// The derived key.
pub struct Secret {
    key: LessSafeKey,
    rng: SystemRandom,
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// Sealing failed (no OS randomness).
#[derive(Debug, thiserror::Error)]
#[error("cannot encrypt: no randomness from the OS")]
pub struct SealError;

/// Why a sealed value does not open.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("not base64 or too short")]
    Malformed,
    #[error("does not decrypt: was it sealed with another secret_file?")]
    Mismatch,
}

impl Secret {
    /// Derive the key from `bytes` (at least [`MIN_SECRET_LEN`]).
    pub fn from_bytes(bytes: &[u8]) -> Option<Secret> {
        if bytes.len() < MIN_SECRET_LEN {
            return None;
        }
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, SALT).extract(bytes);
        let okm = prk.expand(&[INFO], &CHACHA20_POLY1305).ok()?;
        let key = UnboundKey::from(okm);
        Some(Secret {
            key: LessSafeKey::new(key),
            rng: SystemRandom::new(),
        })
    }

    /// Read and derive from `path`.
    pub fn from_file(path: &Path) -> Result<Secret, ClusterError> {
        let bytes = std::fs::read(path).map_err(|source| ClusterError::File {
            path: path.to_path_buf(),
            source,
        })?;
        Secret::from_bytes(&bytes).ok_or_else(|| ClusterError::BadFile {
            path: path.to_path_buf(),
            reason: format!(
                "holds {} bytes, at least {MIN_SECRET_LEN} are needed (head -c 32 /dev/urandom)",
                bytes.len()
            ),
        })
    }

    /// Seal `plain` for the etcd key `aad`. Fails only without OS randomness (no nonce is
    /// safe then).
    pub fn seal(&self, plain: &[u8], aad: &str) -> Result<String, SealError> {
        let mut nonce = [0u8; NONCE_LEN];
        self.rng.fill(&mut nonce).map_err(|_| SealError)?;
        let mut buf = plain.to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad.as_bytes()),
                &mut buf,
            )
            .map_err(|_| SealError)?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&buf);
        Ok(base64::engine::general_purpose::STANDARD.encode(out))
    }

    /// Open a value sealed for the etcd key `aad`.
    pub fn open(&self, sealed: &str, aad: &str) -> Result<Vec<u8>, OpenError> {
        let raw = base64::engine::general_purpose::STANDARD
            .decode(sealed)
            .map_err(|_| OpenError::Malformed)?;
        if raw.len() < NONCE_LEN + CHACHA20_POLY1305.tag_len() {
            return Err(OpenError::Malformed);
        }
        let (nonce, ct) = raw.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| OpenError::Malformed)?;
        let mut buf = ct.to_vec();
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(aad.as_bytes()), &mut buf)
            .map_err(|_| OpenError::Mismatch)?;
        Ok(plain.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seals_and_opens_with_the_same_file_only() {
        let a = Secret::from_bytes(&[7u8; 32]).unwrap();
        let same = Secret::from_bytes(&[7u8; 32]).unwrap();
        let other = Secret::from_bytes(&[8u8; 32]).unwrap();
        let sealed = a
            .seal(b"-----BEGIN PRIVATE KEY-----", "/p/certs/a")
            .unwrap();
        assert!(!sealed.contains("PRIVATE"));
        assert_ne!(
            sealed,
            a.seal(b"-----BEGIN PRIVATE KEY-----", "/p/certs/a")
                .unwrap(),
            "fresh nonce"
        );
        assert_eq!(
            same.open(&sealed, "/p/certs/a").unwrap(),
            b"-----BEGIN PRIVATE KEY-----"
        );
        assert!(matches!(
            other.open(&sealed, "/p/certs/a"),
            Err(OpenError::Mismatch)
        ));
        assert!(matches!(
            same.open(&sealed, "/p/certs/b"),
            Err(OpenError::Mismatch)
        ));
        assert!(matches!(
            same.open("!!", "/p/certs/a"),
            Err(OpenError::Malformed)
        ));
        assert!(Secret::from_bytes(&[1u8; 31]).is_none());
    }
}
