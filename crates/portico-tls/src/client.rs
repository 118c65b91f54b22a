//! Client-side rustls configuration for TLS upstreams (`[upstreams.NAME].tls`).
//!
//! Servers are verified against the Mozilla roots (`webpki-roots`) or, when `ca_file` is set,
//! against that file only. `verify = false` installs [`NoVerification`], which still checks
//! handshake signatures but accepts any certificate. An optional client certificate
//! authenticates Portico to the server. ALPN is `http/1.1`. [`failure_reason`] turns a failed
//! handshake into one line for the 502 log entry.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use portico_config::UpstreamTls;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

use crate::error::TlsError;
use crate::pem::{parse_chain, parse_key};
use crate::provider::default_provider;

fn resolve(base: &Path, p: &Path) -> PathBuf {
    base.join(p)
}

/// Build the client config of an upstream. Relative paths resolve against `base`.
pub fn client_config(tls: &UpstreamTls, base: &Path) -> Result<Arc<ClientConfig>, TlsError> {
    client_config_with(tls, base, default_provider())
}

/// [`client_config`] with an explicit provider.
pub fn client_config_with(
    tls: &UpstreamTls,
    base: &Path,
    provider: Arc<CryptoProvider>,
) -> Result<Arc<ClientConfig>, TlsError> {
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| TlsError::rustls("TLS versions", e))?;
    let builder = if tls.verify {
        builder.with_root_certificates(roots(tls.ca_file.as_deref().map(|p| resolve(base, p)))?)
    } else {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerification(provider)))
    };
    let mut config = match (&tls.client_cert, &tls.client_key) {
        (Some(cert), Some(key)) => {
            let (cert, key) = (resolve(base, cert), resolve(base, key));
            let chain_pem = std::fs::read(&cert).map_err(|e| TlsError::io(&cert, e))?;
            let key_pem = std::fs::read(&key).map_err(|e| TlsError::io(&key, e))?;
            builder
                .with_client_auth_cert(parse_chain(&chain_pem, &cert)?, parse_key(&key_pem, &key)?)
                .map_err(|e| {
                    TlsError::rustls(format!("{}: client certificate", cert.display()), e)
                })?
        }
        (None, None) => builder.with_no_client_auth(),
        _ => {
            return Err(TlsError::pem(
                tls.client_cert
                    .clone()
                    .or_else(|| tls.client_key.clone())
                    .unwrap_or_default(),
                "client_cert and client_key must be given together",
            ));
        }
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The roots: `ca_file` alone when given, else the Mozilla roots.
pub fn roots(ca_file: Option<PathBuf>) -> Result<RootCertStore, TlsError> {
    let mut store = RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let pem = std::fs::read(&path).map_err(|e| TlsError::io(&path, e))?;
            for cert in parse_chain(&pem, &path)? {
                store.add(cert).map_err(|e| {
                    TlsError::rustls(format!("{}: CA certificate", path.display()), e)
                })?;
            }
        }
        None => store.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    Ok(store)
}

/// The SNI / verified name for an upstream: `server_name` if set, else the server's host.
pub fn server_name(tls: &UpstreamTls, host: &str) -> Result<ServerName<'static>, TlsError> {
    let name = tls.server_name.as_deref().unwrap_or(host);
    ServerName::try_from(name.to_string()).map_err(|_| TlsError::ServerName(name.to_string()))
}

/// One line saying why a TLS connection to an upstream failed, e.g.
/// `certificate verify failed: invalid peer certificate: UnknownIssuer`.
pub fn failure_reason(err: &std::io::Error) -> String {
    let Some(tls) = err
        .get_ref()
        .and_then(|e| e.downcast_ref::<rustls::Error>())
    else {
        return format!("TLS handshake failed: {err}");
    };
    match tls {
        rustls::Error::InvalidCertificate(cert) => {
            let why = match cert {
                rustls::CertificateError::UnknownIssuer => {
                    "unknown issuer (not signed by a trusted root: check ca_file)".to_string()
                }
                other => other.to_string(),
            };
            format!("certificate verify failed: {why}")
        }
        rustls::Error::AlertReceived(alert) => format!("server refused the handshake: {alert:?}"),
        other => format!("TLS handshake failed: {other}"),
    }
}

/// A verifier for `verify = false`: accepts any server certificate (DANGEROUS: no protection
/// against an attacker in the middle), but still checks the handshake signatures so the
/// session keys belong to the presented certificate.
#[derive(Debug)]
pub struct NoVerification(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
