//! The seam between the ACME manager and state that several nodes share (cluster mode).
//!
//! Without it (no `[cluster]`), the manager keeps everything in `state_dir` and orders on its
//! own. With an implementation of [`SharedAcme`] (etcd's lives in `portico-cluster`, which
//! depends on this crate, never the reverse):
//!
//! - the ACME account is loaded from shared state, or created once and stored there
//!   ([`SharedAcme::load_account`], [`SharedAcme::create_account`]);
//! - a certificate is ordered only under an [`OrderLock`] ([`SharedAcme::try_lock`]): a lease
//!   kept alive while this node works, released after, expiring on its own if the node dies;
//! - challenge answers are published through the lock ([`OrderLock::publish_http01`],
//!   [`OrderLock::publish_alpn01`]) before the CA is told to validate; the implementation
//!   feeds every node's [`Http01Challenges`] and resolver from them
//!   ([`SharedAcme::attach`]), so whichever node a validation reaches answers it;
//! - issued certificates go to shared state ([`SharedAcme::store_cert`]), every node reads
//!   them ([`SharedAcme::load_cert`]) when [`SharedAcme::changes`] ticks, and keeps a local
//!   copy in `state_dir` so it serves them also while the shared state is unreachable.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use super::Http01Challenges;
use crate::error::TlsError;
use crate::resolver::CertResolver;

/// What the shared-state calls return.
pub type SharedFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, TlsError>> + Send + 'a>>;

/// An issued certificate as kept in shared state: PEM chain (leaf first) and PEM key.
#[derive(Clone, PartialEq, Eq)]
pub struct SharedCert {
    pub chain_pem: String,
    pub key_pem: String,
}

impl std::fmt::Debug for SharedCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedCert")
            .field("chain_bytes", &self.chain_pem.len())
            .finish_non_exhaustive()
    }
}

/// The right to order one certificate, held by this node. Challenge answers published
/// through it live as long as it does: [`OrderLock::release`] withdraws them with the lock,
/// and when the node dies they expire with it.
pub trait OrderLock: Send + Sync {
    /// Publish an HTTP-01 key authorization for every node; returns once every node can be
    /// expected to answer it.
    fn publish_http01<'a>(
        &'a self,
        token: &'a str,
        key_authorization: &'a str,
    ) -> SharedFuture<'a, ()>;

    /// Publish a TLS-ALPN-01 challenge certificate (PEM) for `name` for every node; returns
    /// once every node can be expected to answer it.
    fn publish_alpn01<'a>(
        &'a self,
        name: &'a str,
        cert_pem: &'a str,
        key_pem: &'a str,
    ) -> SharedFuture<'a, ()>;

    /// Whether the lock is still held (its lease is kept alive).
    fn is_held(&self) -> bool;

    /// Release the lock and withdraw what was published through it. Best effort (logged):
    /// when the shared state is unreachable, the lock expires on its own.
    fn release(self: Box<Self>) -> Pin<Box<dyn Future<Output = ()> + Send>>;
}

/// State shared by the nodes of a cluster. See the module documentation.
pub trait SharedAcme: Send + Sync + 'static {
    /// Start feeding challenge answers published by any node into this node's HTTP-01
    /// answers and resolver. Called by every manager built on this shared state; only the
    /// first call starts anything (the resolver and answers outlive managers).
    fn attach(&self, http01: Http01Challenges, resolver: Arc<CertResolver>);

    /// The stored account credentials (instant-acme's JSON) for a directory.
    fn load_account<'a>(&'a self, directory_id: &'a str) -> SharedFuture<'a, Option<Vec<u8>>>;

    /// Store new account credentials unless another node stored some first; returns the
    /// credentials now stored (ours, or the winner's).
    fn create_account<'a>(
        &'a self,
        directory_id: &'a str,
        credentials: Vec<u8>,
    ) -> SharedFuture<'a, Vec<u8>>;

    /// Delete the stored account credentials if they are still `credentials` (the CA no
    /// longer knows that account; the next order creates and stores a new one).
    fn forget_account<'a>(
        &'a self,
        directory_id: &'a str,
        credentials: &'a [u8],
    ) -> SharedFuture<'a, ()>;

    /// Take the order lock of a certificate; `None` when another node holds it.
    fn try_lock<'a>(&'a self, cert_id: &'a str) -> SharedFuture<'a, Option<Box<dyn OrderLock>>>;

    /// Store an issued certificate for every node.
    fn store_cert<'a>(&'a self, cert_id: &'a str, cert: &'a SharedCert) -> SharedFuture<'a, ()>;

    /// The stored certificate, if any.
    fn load_cert<'a>(&'a self, cert_id: &'a str) -> SharedFuture<'a, Option<SharedCert>>;

    /// Ticks when stored certificates may have changed (or shared state came back after an
    /// outage): certificate tasks then read theirs again.
    fn changes(&self) -> tokio::sync::watch::Receiver<u64>;
}

/// The shared-state id of the certificate for `names`: its first name, lowercased.
pub fn cert_id(names: &[String]) -> String {
    names
        .first()
        .map(|n| n.trim_end_matches('.').to_ascii_lowercase())
        .unwrap_or_default()
}
