//! Crypto provider choice.
//!
//! Both rustls back ends are compiled in; every config this crate builds names its provider
//! explicitly (never the process-wide default), so the choice is made in one place:
//! [`default_provider`].
//!
//! The default is aws-lc-rs, chosen by measuring server-side CPU per full TLS 1.3 handshake
//! (resumption off) with `examples/handshake_bench.rs` (2-core VM, 2026-11-21, thread CPU
//! time, same ring/X25519 client for both):
//!
//! | server | ECDSA P-256 | RSA-2048 |
//! |---|---|---|
//! | ring | 131-136 µs | 679-701 µs |
//! | aws-lc-rs | 117-126 µs | 349-351 µs |
//!
//! aws-lc-rs is ~10% cheaper with ECDSA and half the cost with RSA-2048, and it also offers
//! the post-quantum hybrid X25519MLKEM768 that current browsers send (114 µs with ECDSA).

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
