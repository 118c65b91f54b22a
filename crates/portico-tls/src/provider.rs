//! Crypto provider choice.
//!
//! Both rustls back ends are compiled in; every config this crate builds names its provider
//! explicitly (never the process-wide default), so the choice is made in one place:
//! [`default_provider`]. The default was chosen by measuring server-side handshake CPU with
//! `examples/handshake_bench.rs` (see `docs/benchmarks.md` of the project).

use std::sync::Arc;

use rustls::crypto::CryptoProvider;

/// A rustls crypto back end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// `aws-lc-rs` (AWS-LC, assembly-optimised, FIPS-capable).
    AwsLcRs,
    /// `ring`.
    Ring,
}

impl Backend {
    /// The back end used when nothing else is asked for.
    pub const DEFAULT: Backend = Backend::AwsLcRs;

    /// The provider of this back end.
    pub fn provider(self) -> Arc<CryptoProvider> {
        match self {
            Backend::AwsLcRs => Arc::new(rustls::crypto::aws_lc_rs::default_provider()),
            Backend::Ring => Arc::new(rustls::crypto::ring::default_provider()),
        }
    }

    /// A short name for logs and benchmarks.
    pub fn name(self) -> &'static str {
        match self {
            Backend::AwsLcRs => "aws-lc-rs",
            Backend::Ring => "ring",
        }
    }
}

/// The provider every config of this crate uses unless told otherwise.
pub fn default_provider() -> Arc<CryptoProvider> {
    Backend::DEFAULT.provider()
}
