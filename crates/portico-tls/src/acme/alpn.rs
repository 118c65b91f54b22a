//! TLS-ALPN-01 (RFC 8737) challenge certificates: self-signed, the one identifier as SAN,
//! and the critical `id-pe-acmeIdentifier` extension holding SHA-256 of the key authorization.

use std::sync::Arc;

use rcgen::{CertificateParams, CustomExtension, KeyPair};
use rustls::crypto::CryptoProvider;
use rustls::sign::CertifiedKey;
use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::error::TlsError;

/// A challenge certificate: what the resolver serves, and its PEM (for other nodes).
pub struct ChallengeCert {
    pub key: Arc<CertifiedKey>,
    pub cert_pem: String,
    pub key_pem: String,
}

/// The challenge certificate for `name` with `digest` = SHA-256(key authorization).
pub fn challenge_cert(
    name: &str,
    digest: &[u8],
    provider: &CryptoProvider,
) -> Result<ChallengeCert, TlsError> {
    let mut params = CertificateParams::new(vec![name.to_string()])?;
    params.custom_extensions = vec![CustomExtension::new_acme_identifier(digest)];
    let key = KeyPair::generate()?;
    let cert = params.self_signed(&key)?;
    let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    Ok(ChallengeCert {
        key: certified(cert.der().clone(), der, provider)?,
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// A challenge certificate published by another node (PEM certificate and key).
pub fn challenge_from_pem(
    cert_pem: &[u8],
    key_pem: &[u8],
    provider: &CryptoProvider,
) -> Result<Arc<CertifiedKey>, TlsError> {
    let origin = std::path::Path::new("tls-alpn-01 challenge");
    let cert = crate::pem::parse_chain(cert_pem, origin)?
        .into_iter()
        .next()
        .ok_or_else(|| TlsError::acme("tls-alpn-01 challenge", "no certificate"))?;
    let key = crate::pem::parse_key(key_pem, origin)?;
    certified(cert, key, provider)
}

fn certified(
    cert: rustls_pki_types::CertificateDer<'static>,
    key: PrivateKeyDer<'static>,
    provider: &CryptoProvider,
) -> Result<Arc<CertifiedKey>, TlsError> {
    let signing = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| TlsError::rustls("tls-alpn-01 challenge key", e))?;
    // No `keys_match` check: webpki refuses to parse the critical acmeIdentifier extension,
    // and the key was generated with this very certificate.
    Ok(Arc::new(CertifiedKey::new(vec![cert], signing)))
}
