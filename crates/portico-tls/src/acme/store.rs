//! ACME state on disk, under `state_dir`:
//!
//! ```text
//! acme/<directory-id>/account.json     account credentials (private key), mode 0600
//! certs/<first-name>/fullchain.pem     issued chain, leaf first
//! certs/<first-name>/key.pem           its private key, mode 0600
//! ```
//!
//! Files are written to a temporary name in the same folder and renamed, so a crash never
//! leaves half a key behind.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::error::TlsError;

/// A stable, readable folder name for a directory URL: its host and port plus a hash.
pub fn directory_id(url: &str) -> String {
    let host: String = url
        .split("://")
        .nth(1)
        .unwrap_or(url)
        .split('/')
        .next()
        .unwrap_or_default()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    // FNV-1a 64: stable across builds and platforms.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in url.bytes() {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{host}-{:08x}", hash >> 32)
}

/// Paths of the ACME state.
#[derive(Debug, Clone)]
pub struct Store {
    state_dir: PathBuf,
}

impl Store {
    pub fn new(state_dir: &Path) -> Store {
        Store {
            state_dir: state_dir.to_path_buf(),
        }
    }

    pub fn account_path(&self, directory_url: &str) -> PathBuf {
        self.state_dir
            .join("acme")
            .join(directory_id(directory_url))
            .join("account.json")
    }

    /// `certs/<first-name>`; a wildcard's `*` is spelled `_wildcard_`.
    pub fn cert_dir(&self, first_name: &str) -> PathBuf {
        let safe: String = first_name
            .to_ascii_lowercase()
            .replace('*', "_wildcard_")
            .chars()
            .map(|c| if c == '/' || c == '\\' { '_' } else { c })
            .collect();
        self.state_dir.join("certs").join(safe)
    }

    pub fn chain_path(&self, first_name: &str) -> PathBuf {
        self.cert_dir(first_name).join("fullchain.pem")
    }

    pub fn key_path(&self, first_name: &str) -> PathBuf {
        self.cert_dir(first_name).join("key.pem")
    }
}

/// Write `data` to `path` atomically with `mode` (e.g. 0o600 for keys), creating folders
/// (mode 0700).
pub fn write_atomic(path: &Path, data: &[u8], mode: u32) -> Result<(), TlsError> {
    let dir = path
        .parent()
        .ok_or_else(|| TlsError::io(path, std::io::Error::other("no parent folder")))?;
    if !dir.exists() {
        std::fs::create_dir_all(dir).map_err(|e| TlsError::io(dir, e))?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| TlsError::io(dir, e))?;
    }
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let result = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)?;
        // `mode` applies only when the file is created; make sure of it either way.
        file.set_permissions(std::fs::Permissions::from_mode(mode))?;
        file.write_all(data)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    result.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        TlsError::io(path, e)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directory_ids_are_readable_and_distinct() {
        let a = directory_id("https://acme-v02.api.letsencrypt.org/directory");
        let b = directory_id("https://acme-staging-v02.api.letsencrypt.org/directory");
        let c = directory_id("https://127.0.0.1:14000/dir");
        assert!(a.starts_with("acme-v02.api.letsencrypt.org-"), "{a}");
        assert!(c.starts_with("127.0.0.1_14000-"), "{c}");
        assert_ne!(a, b);
        assert_eq!(
            a,
            directory_id("https://acme-v02.api.letsencrypt.org/directory")
        );
    }

    #[test]
    fn keys_are_written_0600_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path());
        let key = store.key_path("*.Example.test");
        assert!(key.ends_with("certs/_wildcard_.example.test/key.pem"));
        write_atomic(&key, b"secret", 0o600).unwrap();
        write_atomic(&key, b"secret2", 0o600).unwrap();
        let meta = std::fs::metadata(&key).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        assert_eq!(std::fs::read(&key).unwrap(), b"secret2");
        let folder = std::fs::metadata(key.parent().unwrap()).unwrap();
        assert_eq!(folder.permissions().mode() & 0o777, 0o700);
        assert_eq!(
            std::fs::read_dir(key.parent().unwrap()).unwrap().count(),
            1,
            "no temp file left"
        );
    }
}
