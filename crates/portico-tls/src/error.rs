//! The crate's error type: every failure names the file, host or ACME step it concerns.

use std::path::PathBuf;

/// Errors of certificate loading, TLS configuration and ACME.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A PEM file held no usable certificate or key, or could not be parsed.
    #[error("{path}: {reason}")]
    Pem { path: PathBuf, reason: String },
    /// The private key does not belong to the certificate, or rustls refused it.
    #[error("{context}: {source}")]
    Rustls {
        context: String,
        #[source]
        source: rustls::Error,
    },
    /// A certificate could not be parsed as X.509.
    #[error("invalid certificate: {0}")]
    X509(String),
    /// A name could not be used as a TLS server name.
    #[error("invalid server name {0:?}")]
    ServerName(String),
    /// Certificate generation (rcgen) failed.
    #[error("certificate generation failed: {0}")]
    Rcgen(#[from] rcgen::Error),
    /// An ACME step failed.
    #[error("ACME {step}: {reason}")]
    Acme { step: &'static str, reason: String },
    /// The CA does not know the stored account (e.g. a test CA restarted): it is recreated.
    #[error("ACME {step}: the CA does not know this account: {reason}")]
    AcmeAccountUnknown { step: &'static str, reason: String },
    /// State shared with the other nodes of a cluster (etcd) could not be read or written.
    #[error("cluster state: {0}")]
    Shared(String),
}

impl TlsError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        TlsError::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn pem(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        TlsError::Pem {
            path: path.into(),
            reason: reason.into(),
        }
    }

    pub(crate) fn rustls(context: impl Into<String>, source: rustls::Error) -> Self {
        TlsError::Rustls {
            context: context.into(),
            source,
        }
    }

    pub(crate) fn acme(step: &'static str, reason: impl std::fmt::Display) -> Self {
        TlsError::Acme {
            step,
            reason: reason.to_string(),
        }
    }
}
