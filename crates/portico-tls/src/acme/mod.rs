//! ACME: automatic certificates for `tls = "acme"` sites (instant-acme + rcgen).
//!
//! One [`AcmeManager`] per `[acme]` section. [`AcmeManager::manage`] starts a task per
//! certificate (a site's hosts): it installs the certificate kept in `state_dir` at once, or
//! orders one; then sleeps until renewal time (see [`schedule`]), orders again and swaps the
//! new certificate into the [`CertResolver`](crate::CertResolver) live: handshakes in flight and established
//! connections are not touched. A failed order is retried with exponential backoff and
//! jitter, never sooner than the CA's `Retry-After`; the old certificate keeps serving.
//!
//! Challenges: HTTP-01 key authorizations are published in [`Http01Challenges`], which the
//! plain-HTTP listener serves at `/.well-known/acme-challenge/TOKEN`; TLS-ALPN-01 certificates
//! go into the resolver, which answers `acme-tls/1` handshakes with them.
//!
//! The account is created once per directory and kept in
//! `state_dir/acme/<directory-id>/account.json` (mode 0600); see [`store`].
//!
//! Cluster mode: with a [`SharedAcme`] ([`AcmeManager::with_shared`]), the account, an order
//! lock per certificate, the challenge answers and the issued certificates are shared with
//! the other nodes; `state_dir` keeps a local copy of the certificates. See [`shared`].

mod alpn;
pub mod http;
mod manager;
mod order;
pub mod schedule;
pub mod shared;
mod shared_run;
pub mod store;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

pub use alpn::challenge_from_pem;
pub use manager::{AcmeManager, CertStatus, resolver_id};
pub use shared::{OrderLock, SharedAcme, SharedCert, SharedFuture, cert_id};

/// The path prefix of HTTP-01 challenges.
pub const HTTP01_PREFIX: &str = "/.well-known/acme-challenge/";

/// `directory = ...`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AcmeDirectory {
    LetsEncrypt,
    LetsEncryptStaging,
    Url(String),
}

impl AcmeDirectory {
    /// `letsencrypt`, `letsencrypt-staging`, or a URL.
    pub fn parse(s: &str) -> AcmeDirectory {
        match s {
            "letsencrypt" => AcmeDirectory::LetsEncrypt,
            "letsencrypt-staging" => AcmeDirectory::LetsEncryptStaging,
            url => AcmeDirectory::Url(url.to_string()),
        }
    }

    /// The directory URL.
    pub fn url(&self) -> &str {
        match self {
            AcmeDirectory::LetsEncrypt => instant_acme::LetsEncrypt::Production.url(),
            AcmeDirectory::LetsEncryptStaging => instant_acme::LetsEncrypt::Staging.url(),
            AcmeDirectory::Url(u) => u,
        }
    }
}

/// `challenge = ...`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChallengeKind {
    /// Served by the plain-HTTP listener (port 80).
    Http01,
    /// Served by the TLS listener (port 443) with ALPN `acme-tls/1`.
    TlsAlpn01,
}

impl ChallengeKind {
    /// `http-01` or `tls-alpn-01`.
    pub fn parse(s: &str) -> Option<ChallengeKind> {
        match s {
            "http-01" => Some(ChallengeKind::Http01),
            "tls-alpn-01" => Some(ChallengeKind::TlsAlpn01),
            _ => None,
        }
    }
}

/// `key_type = ...`: the key of issued certificates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyType {
    EcdsaP256,
    Rsa2048,
}

impl KeyType {
    /// `ecdsa-p256` or `rsa-2048`.
    pub fn parse(s: &str) -> Option<KeyType> {
        match s {
            "ecdsa-p256" => Some(KeyType::EcdsaP256),
            "rsa-2048" => Some(KeyType::Rsa2048),
            _ => None,
        }
    }
}

/// Timing knobs not in the config file (defaults suit real CAs; tests shorten them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcmeTuning {
    /// First retry delay after a failed order (doubles up to `retry_max`).
    pub retry_initial: Duration,
    pub retry_max: Duration,
    /// First poll of an order's state after answering the challenges (grows 1.5x per poll).
    pub poll_initial: Duration,
    /// Give up polling one order after this long (then retry with backoff).
    pub poll_timeout: Duration,
}

impl Default for AcmeTuning {
    fn default() -> Self {
        AcmeTuning {
            retry_initial: Duration::from_secs(10),
            retry_max: Duration::from_secs(6 * 3600),
            poll_initial: Duration::from_millis(20),
            poll_timeout: Duration::from_secs(120),
        }
    }
}

/// The `[acme]` section, plus `state_dir` from `[server]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcmeSettings {
    pub email: String,
    pub directory: AcmeDirectory,
    /// Extra root CA (PEM) trusted for the directory's own HTTPS.
    pub directory_ca: Option<PathBuf>,
    pub challenge: ChallengeKind,
    pub renew_before: Duration,
    pub key_type: KeyType,
    pub state_dir: PathBuf,
    pub tuning: AcmeTuning,
}

impl AcmeSettings {
    /// SPEC defaults: Let's Encrypt, HTTP-01, renew 30 days before expiry, ECDSA P-256.
    pub fn new(email: impl Into<String>, state_dir: impl Into<PathBuf>) -> AcmeSettings {
        AcmeSettings {
            email: email.into(),
            directory: AcmeDirectory::LetsEncrypt,
            directory_ca: None,
            challenge: ChallengeKind::Http01,
            renew_before: Duration::from_secs(30 * 86_400),
            key_type: KeyType::EcdsaP256,
            state_dir: state_dir.into(),
            tuning: AcmeTuning::default(),
        }
    }

    /// The settings of a config's `[acme]` section, `state_dir` from its `[server]` section;
    /// `None` without `[acme]`. This is what `portico run` passes to
    /// [`TlsRuntime::start`](crate::TlsRuntime::start):
    ///
    /// ```ignore
    /// TlsRuntime::start(&config.sites, &config.base_dir, AcmeSettings::for_config(&config), http01)
    /// ```
    pub fn for_config(config: &portico_config::Config) -> Option<AcmeSettings> {
        config
            .acme
            .as_ref()
            .map(|acme| AcmeSettings::from_config(acme, &config.server.state_dir))
    }

    /// The settings of one `[acme]` section (paths in it are already resolved against the
    /// config folder) with certificates and the account kept under `state_dir`. Default
    /// timing ([`AcmeTuning::default`]).
    pub fn from_config(acme: &portico_config::Acme, state_dir: &Path) -> AcmeSettings {
        use portico_config::{AcmeChallenge, AcmeKeyType};
        AcmeSettings {
            email: acme.email.clone(),
            directory: match &acme.directory {
                portico_config::AcmeDirectory::LetsEncrypt => AcmeDirectory::LetsEncrypt,
                portico_config::AcmeDirectory::LetsEncryptStaging => {
                    AcmeDirectory::LetsEncryptStaging
                }
                portico_config::AcmeDirectory::Url(url) => AcmeDirectory::Url(url.clone()),
            },
            directory_ca: acme.directory_ca.clone(),
            challenge: match acme.challenge {
                AcmeChallenge::Http01 => ChallengeKind::Http01,
                AcmeChallenge::TlsAlpn01 => ChallengeKind::TlsAlpn01,
            },
            renew_before: acme.renew_before,
            key_type: match acme.key_type {
                AcmeKeyType::EcdsaP256 => KeyType::EcdsaP256,
                AcmeKeyType::Rsa2048 => KeyType::Rsa2048,
            },
            state_dir: state_dir.to_path_buf(),
            tuning: AcmeTuning::default(),
        }
    }
}

/// Pending HTTP-01 challenges: token -> key authorization. Cheap to clone and share with the
/// plain-HTTP listeners.
#[derive(Debug, Clone, Default)]
pub struct Http01Challenges {
    tokens: Arc<RwLock<HashMap<String, String>>>,
}

impl Http01Challenges {
    pub fn new() -> Http01Challenges {
        Http01Challenges::default()
    }

    /// The key authorization to answer for `token` (the body of the 200 response,
    /// `Content-Type: application/octet-stream` or text/plain).
    pub fn get(&self, token: &str) -> Option<String> {
        self.tokens
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(token)
            .cloned()
    }

    /// The answer for a request path, when it is `/.well-known/acme-challenge/TOKEN` and the
    /// token is pending. Works whatever the `Host` (the CA's validator sends `name:port`).
    pub fn for_path(&self, path: &str) -> Option<String> {
        let token = path.strip_prefix(HTTP01_PREFIX)?;
        if token.is_empty() || token.contains('/') {
            return None;
        }
        self.get(token)
    }

    pub fn insert(&self, token: String, key_authorization: String) {
        self.tokens
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(token, key_authorization);
    }

    pub fn remove(&self, token: &str) {
        self.tokens
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(token);
    }

    /// Pending tokens.
    pub fn len(&self) -> usize {
        self.tokens
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http01_paths() {
        let c = Http01Challenges::new();
        c.insert("tok".into(), "tok.thumb".into());
        assert_eq!(
            c.for_path("/.well-known/acme-challenge/tok").as_deref(),
            Some("tok.thumb")
        );
        assert_eq!(c.for_path("/.well-known/acme-challenge/other"), None);
        assert_eq!(c.for_path("/.well-known/acme-challenge/"), None);
        assert_eq!(c.for_path("/x/.well-known/acme-challenge/tok"), None);
        c.remove("tok");
        assert!(c.is_empty());
    }

    #[test]
    fn spellings() {
        assert_eq!(ChallengeKind::parse("http-01"), Some(ChallengeKind::Http01));
        assert_eq!(
            ChallengeKind::parse("tls-alpn-01"),
            Some(ChallengeKind::TlsAlpn01)
        );
        assert_eq!(ChallengeKind::parse("dns-01"), None);
        assert_eq!(KeyType::parse("ecdsa-p256"), Some(KeyType::EcdsaP256));
        assert_eq!(KeyType::parse("rsa-2048"), Some(KeyType::Rsa2048));
        assert_eq!(KeyType::parse("rsa"), None);
    }

    #[test]
    fn settings_from_the_config_section() {
        let text = "[server]\nstate_dir = \"state\"\n[acme]\nemail = \"ops@example.test\"\n\
                    directory = \"https://127.0.0.1:14000/dir\"\ndirectory_ca = \"ca.pem\"\n\
                    challenge = \"tls-alpn-01\"\nrenew_before = \"10d\"\nkey_type = \"rsa-2048\"\n";
        let config = portico_config::parse(text, Path::new("/etc/portico/p.toml")).unwrap();
        let s = AcmeSettings::for_config(&config).unwrap();
        assert_eq!(s.email, "ops@example.test");
        assert_eq!(s.directory.url(), "https://127.0.0.1:14000/dir");
        assert_eq!(
            s.directory_ca.as_deref(),
            Some(Path::new("/etc/portico/ca.pem"))
        );
        assert_eq!(s.challenge, ChallengeKind::TlsAlpn01);
        assert_eq!(s.renew_before, Duration::from_secs(10 * 86_400));
        assert_eq!(s.key_type, KeyType::Rsa2048);
        assert_eq!(s.state_dir, Path::new("/etc/portico/state"));

        let text = "[acme]\nemail = \"ops@example.test\"\n";
        let config = portico_config::parse(text, Path::new("/etc/portico/p.toml")).unwrap();
        let s = AcmeSettings::for_config(&config).unwrap();
        let d = AcmeSettings::new("ops@example.test", "/etc/portico/portico-data");
        assert_eq!(
            (
                s.directory,
                s.directory_ca,
                s.challenge,
                s.renew_before,
                s.key_type,
                s.state_dir
            ),
            (
                d.directory,
                d.directory_ca,
                d.challenge,
                d.renew_before,
                d.key_type,
                d.state_dir
            )
        );
        let none = portico_config::parse("", Path::new("p.toml")).unwrap();
        assert!(AcmeSettings::for_config(&none).is_none());
    }

    #[test]
    fn directories() {
        assert!(
            AcmeDirectory::parse("letsencrypt")
                .url()
                .contains("acme-v02")
        );
        assert!(
            AcmeDirectory::parse("letsencrypt-staging")
                .url()
                .contains("staging")
        );
        assert_eq!(
            AcmeDirectory::parse("https://127.0.0.1:14000/dir").url(),
            "https://127.0.0.1:14000/dir"
        );
    }
}
