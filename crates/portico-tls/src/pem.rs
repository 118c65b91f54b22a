//! PEM loading: certificate chains and private keys (PKCS#8, SEC1, PKCS#1 RSA) into a rustls
//! [`CertifiedKey`], plus the facts logged and scheduled on (names, validity).

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls::crypto::CryptoProvider;
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use x509_parser::extensions::GeneralName;

use crate::error::TlsError;

/// Facts about a leaf certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    /// DNS names of the subjectAltName extension.
    pub names: Vec<String>,
    pub not_before: SystemTime,
    pub not_after: SystemTime,
}

impl CertInfo {
    /// Parse the leaf (first) certificate of a chain.
    pub fn from_der(der: &[u8]) -> Result<CertInfo, TlsError> {
        let (_, cert) =
            x509_parser::parse_x509_certificate(der).map_err(|e| TlsError::X509(e.to_string()))?;
        let names = match cert.subject_alternative_name() {
            Ok(Some(san)) => san
                .value
                .general_names
                .iter()
                .filter_map(|n| match n {
                    GeneralName::DNSName(s) => Some(s.to_string()),
                    _ => None,
                })
                .collect(),
            Ok(None) => Vec::new(),
            Err(e) => return Err(TlsError::X509(e.to_string())),
        };
        let validity = cert.validity();
        Ok(CertInfo {
            names,
            not_before: unix_to_system(validity.not_before.timestamp()),
            not_after: unix_to_system(validity.not_after.timestamp()),
        })
    }

    /// Total validity period.
    pub fn lifetime(&self) -> Duration {
        self.not_after
            .duration_since(self.not_before)
            .unwrap_or_default()
    }

    /// Time left until `notAfter` (zero when expired).
    pub fn remaining(&self, now: SystemTime) -> Duration {
        self.not_after.duration_since(now).unwrap_or_default()
    }
}

fn unix_to_system(secs: i64) -> SystemTime {
    if secs >= 0 {
        UNIX_EPOCH + Duration::from_secs(secs.unsigned_abs())
    } else {
        UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs())
    }
}

/// Parse every certificate of a PEM chain. `origin` names the source in errors.
pub fn parse_chain(pem: &[u8], origin: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let chain = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::pem(origin, format!("bad certificate PEM: {e}")))?;
    if chain.is_empty() {
        return Err(TlsError::pem(origin, "no CERTIFICATE block found"));
    }
    Ok(chain)
}

/// Parse the first private key (PKCS#8, SEC1 EC or PKCS#1 RSA) of a PEM file.
pub fn parse_key(pem: &[u8], origin: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| match e {
        rustls_pki_types::pem::Error::NoItemsFound => TlsError::pem(
            origin,
            "no PRIVATE KEY block found (PKCS#8, EC or RSA expected)",
        ),
        other => TlsError::pem(origin, format!("bad private key PEM: {other}")),
    })
}

/// A certificate chain and its key, checked to belong together, ready for the resolver.
#[derive(Debug, Clone)]
pub struct LoadedCert {
    pub key: Arc<CertifiedKey>,
    pub info: CertInfo,
}

/// Build a [`LoadedCert`] from PEM bytes. The key must match the leaf certificate.
pub fn certified_key_from_pem(
    chain_pem: &[u8],
    key_pem: &[u8],
    origin: &Path,
    provider: &CryptoProvider,
) -> Result<LoadedCert, TlsError> {
    let chain = parse_chain(chain_pem, origin)?;
    let key = parse_key(key_pem, origin)?;
    certified_key_from_der(chain, key, origin, provider)
}

/// Build a [`LoadedCert`] from DER parts. The key must match the leaf certificate.
pub fn certified_key_from_der(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    origin: &Path,
    provider: &CryptoProvider,
) -> Result<LoadedCert, TlsError> {
    let leaf = chain
        .first()
        .ok_or_else(|| TlsError::pem(origin, "empty certificate chain"))?;
    let info = CertInfo::from_der(leaf)?;
    let signing = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| TlsError::rustls(format!("{}: private key", origin.display()), e))?;
    let certified = CertifiedKey::new(chain, signing);
    certified.keys_match().map_err(|e| {
        TlsError::rustls(
            format!("{}: key does not match the certificate", origin.display()),
            e,
        )
    })?;
    Ok(LoadedCert {
        key: Arc::new(certified),
        info,
    })
}

/// Read and check a `{ cert, key }` pair of files.
pub fn load_pair(
    cert_path: &Path,
    key_path: &Path,
    provider: &CryptoProvider,
) -> Result<LoadedCert, TlsError> {
    let chain_pem = std::fs::read(cert_path).map_err(|e| TlsError::io(cert_path, e))?;
    let key_pem = std::fs::read(key_path).map_err(|e| TlsError::io(key_path, e))?;
    let chain = parse_chain(&chain_pem, cert_path)?;
    let key = parse_key(&key_pem, key_path)?;
    certified_key_from_der(chain, key, cert_path, provider)
}

/// Days (rounded down) from `now` to `not_after`; negative when expired.
pub fn days_left(info: &CertInfo, now: SystemTime) -> i64 {
    match info.not_after.duration_since(now) {
        Ok(d) => i64::try_from(d.as_secs() / 86_400).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_secs() / 86_400).unwrap_or(i64::MAX) - 1,
    }
}

/// Log a freshly loaded certificate: its names and expiry; a warning when near or past it.
pub fn log_loaded(source: &str, info: &CertInfo) {
    let now = SystemTime::now();
    let days = days_left(info, now);
    let not_after = httpdate_like(info.not_after);
    if days < 0 {
        tracing::warn!(source, names = ?info.names, %not_after, "certificate loaded but EXPIRED");
    } else if days < 7 {
        tracing::warn!(source, names = ?info.names, %not_after, days_left = days, "certificate loaded; expires soon");
    } else {
        tracing::info!(source, names = ?info.names, %not_after, days_left = days, "certificate loaded");
    }
}

/// RFC 3339-ish UTC rendering of a time, for log lines.
pub fn httpdate_like(t: SystemTime) -> String {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => x509_parser::time::ASN1Time::from_timestamp(
            i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        )
        .map(|a| a.to_string())
        .unwrap_or_else(|_| format!("@{}", d.as_secs())),
        Err(_) => "before 1970".to_string(),
    }
}
