//! TLS-ALPN-01 (RFC 8737) challenge certificates: self-signed, the one identifier as SAN,
//! and the critical `id-pe-acmeIdentifier` extension holding SHA-256 of the key authorization.

use std::sync::Arc;

use rcgen::{CertificateParams, CustomExtension, KeyPair};
use rustls::crypto::CryptoProvider;
use rustls::sign::CertifiedKey;
use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::error::TlsError;

/// The challenge certificate for `name` with `digest` = SHA-256(key authorization).
pub fn challenge_cert(
    name: &str,
    digest: &[u8],
    provider: &CryptoProvider,
) -> Result<Arc<CertifiedKey>, TlsError> {
    let mut params = CertificateParams::new(vec![name.to_string()])?;
    params.custom_extensions = vec![CustomExtension::new_acme_identifier(digest)];
    let key = KeyPair::generate()?;
    let cert = params.self_signed(&key)?;
    let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let signing = provider
        .key_provider
        .load_private_key(der)
        .map_err(|e| TlsError::rustls("tls-alpn-01 challenge key", e))?;
    // No `keys_match` check: webpki refuses to parse the critical acmeIdentifier extension,
    // and the key was generated with this very certificate.
    Ok(Arc::new(CertifiedKey::new(
        vec![cert.der().clone()],
        signing,
    )))
}
