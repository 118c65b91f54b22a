//! Certificates and ACME across the cluster: the etcd implementation of
//! `portico_tls::acme::SharedAcme`.
//!
//! - the account: `PREFIX/acme/account/DIRECTORY-ID`, created once (a transaction that puts
//!   only if absent; a node that loses the race uses the winner's);
//! - order locks: `PREFIX/acme/locks/CERT-ID` = the holder's node name, under a lease of
//!   [`LOCK_TTL`] kept alive while the node works ([`lock`]);
//! - challenge answers: `PREFIX/acme/http01/TOKEN` and `PREFIX/acme/alpn01/NAME`, under the
//!   order lock's lease (released with it, expiring with a dead holder); every node watches
//!   them into its HTTP-01 answers and resolver ([`watch`]);
//! - certificates: `PREFIX/certs/CERT-ID` = JSON `{chain, key, node}`; the key (and the
//!   account's credentials, which hold the account key) sealed with `secret_file` when set
//!   ([`secret`]); every node watches `PREFIX/certs/` and re-reads on each change.

pub mod lock;
pub mod secret;
mod watch;

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use portico_tls::CertResolver;
use portico_tls::TlsError;
use portico_tls::acme::{Http01Challenges, OrderLock, SharedAcme, SharedCert, SharedFuture};
use serde::{Deserialize, Serialize};

use crate::connect::{Connection, REQUEST_TIMEOUT};
pub use secret::Secret;

/// TTL of an order lock's lease: how long a dead node's lock (and its challenge answers)
/// outlive it.
pub const LOCK_TTL: Duration = Duration::from_secs(10);
/// After publishing a challenge answer, how long other nodes are given to see it (their
/// watches deliver within milliseconds; this is the margin) before the CA is told.
pub const PUBLISH_SETTLE: Duration = Duration::from_millis(300);

/// A secret value as stored: plain (no `secret_file`) or sealed.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Protected {
    Plain(String),
    Sealed(String),
}

/// `PREFIX/certs/CERT-ID`.
#[derive(Debug, Serialize, Deserialize)]
struct StoredCert {
    chain: String,
    key: Protected,
    /// The node that stored it.
    node: String,
}

/// `PREFIX/acme/account/DIRECTORY-ID`.
#[derive(Debug, Serialize, Deserialize)]
struct StoredAccount {
    credentials: Protected,
    node: String,
}

/// `PREFIX/acme/alpn01/NAME`.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct StoredAlpn {
    pub(crate) cert: String,
    pub(crate) key: String,
}

/// ACME state in etcd for one node. Build with [`EtcdAcme::new`], hand to
/// `portico_tls::TlsRuntime::start_with_shared` as `Arc<dyn SharedAcme>`.
pub struct EtcdAcme {
    conn: Connection,
    secret: Option<Secret>,
    lock_ttl: Duration,
    settle: Duration,
    changes: tokio::sync::watch::Sender<u64>,
    /// The watcher task, once attached.
    watcher: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl std::fmt::Debug for EtcdAcme {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdAcme")
            .field("conn", &self.conn)
            .field("sealed", &self.secret.is_some())
            .finish_non_exhaustive()
    }
}

impl Drop for EtcdAcme {
    fn drop(&mut self) {
        if let Some(task) = self
            .watcher
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            task.abort();
        }
    }
}

fn etcd_err(what: &str, e: impl std::fmt::Display) -> TlsError {
    TlsError::Shared(format!("{what}: {e}"))
}

/// `etcd!(WHAT, CLIENT, [CAPTURES], |c| CALL)`: [`bounded`] over `CALL` on a clone of
/// `CLIENT` named `c`, the `CAPTURES` cloned for each attempt.
macro_rules! etcd {
    ($what:expr, $client:expr, [$($cap:ident),*], |$c:ident| $call:expr) => {
        $crate::acme::bounded($what, || {
            let mut $c = $client.clone();
            $(let $cap = $cap.clone();)*
            async move { $call.await }
        })
    };
}
pub(crate) use etcd;

/// Attempts of one request when an endpoint is unreachable.
const ATTEMPTS: u32 = 3;

/// Whether `e` says the request did not reach etcd: the client balances over the
/// endpoints, so the next attempt goes to another member (one member down must be
/// invisible). Requests retried on it are all safe to repeat: reads, puts, lease grants and
/// revokes, and put-if-absent transactions (a repeat finds the key and reports so).
fn not_delivered(e: &etcd_client::Error) -> bool {
    match e {
        etcd_client::Error::TransportError(_) => true,
        // gRPC code 14, UNAVAILABLE.
        etcd_client::Error::GRpcStatus(status) => i32::from(status.code()) == 14,
        _ => false,
    }
}

/// One etcd request, bounded in time (the client's own timeout covers unary calls; this
/// also covers waits for a channel that cannot connect), tried again on another member when
/// it could not be delivered.
pub(crate) async fn bounded<T, F>(what: &str, mut call: impl FnMut() -> F) -> Result<T, TlsError>
where
    F: std::future::Future<Output = Result<T, etcd_client::Error>>,
{
    let mut attempt = 1;
    loop {
        match tokio::time::timeout(REQUEST_TIMEOUT + Duration::from_secs(1), call()).await {
            Ok(Ok(v)) => return Ok(v),
            Ok(Err(e)) if attempt < ATTEMPTS && not_delivered(&e) => {
                tracing::debug!(what, attempt, error = %e, "etcd request not delivered; trying again");
                tokio::time::sleep(Duration::from_millis(50 * u64::from(attempt))).await;
                attempt += 1;
            }
            Ok(Err(e)) => return Err(etcd_err(what, e)),
            Err(_) => return Err(etcd_err(what, "etcd did not answer in time")),
        }
    }
}

impl EtcdAcme {
    /// ACME state under `conn`'s prefix; private keys sealed with `secret` when given.
    pub fn new(conn: Connection, secret: Option<Secret>) -> EtcdAcme {
        EtcdAcme {
            conn,
            secret,
            lock_ttl: LOCK_TTL,
            settle: PUBLISH_SETTLE,
            changes: tokio::sync::watch::channel(0).0,
            watcher: Mutex::new(None),
        }
    }

    /// A shorter or longer order-lock TTL (tests).
    pub fn with_lock_ttl(mut self, ttl: Duration) -> EtcdAcme {
        self.lock_ttl = ttl;
        self
    }

    fn protect(&self, plain: &str, key: &str) -> Result<Protected, TlsError> {
        match &self.secret {
            None => Ok(Protected::Plain(plain.to_string())),
            Some(s) => s
                .seal(plain.as_bytes(), key)
                .map(Protected::Sealed)
                .map_err(|e| etcd_err(key, e)),
        }
    }

    fn unprotect(&self, value: &Protected, key: &str) -> Result<String, TlsError> {
        match (value, &self.secret) {
            (Protected::Plain(p), _) => Ok(p.clone()),
            (Protected::Sealed(_), None) => Err(etcd_err(
                key,
                "the private key is encrypted but this node has no [cluster] secret_file",
            )),
            (Protected::Sealed(s), Some(secret)) => {
                let plain = secret.open(s, key).map_err(|e| etcd_err(key, e))?;
                String::from_utf8(plain).map_err(|_| etcd_err(key, "not UTF-8"))
            }
        }
    }

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, TlsError> {
        let rsp = etcd!("read", self.conn.client, [key], |c| c.get(key, None)).await?;
        Ok(rsp.kvs().first().map(|kv| kv.value().to_vec()))
    }
}

impl SharedAcme for EtcdAcme {
    fn attach(&self, http01: Http01Challenges, resolver: Arc<CertResolver>) {
        let mut slot = self.watcher.lock().unwrap_or_else(PoisonError::into_inner);
        if slot.is_some() {
            return;
        }
        *slot = Some(tokio::spawn(watch::run(
            self.conn.clone(),
            http01,
            resolver,
            self.changes.clone(),
        )));
    }

    fn load_account<'a>(&'a self, directory_id: &'a str) -> SharedFuture<'a, Option<Vec<u8>>> {
        Box::pin(async move {
            let key = self.conn.keys.acme_account(directory_id);
            let Some(raw) = self.get(&key).await? else {
                return Ok(None);
            };
            let stored: StoredAccount =
                serde_json::from_slice(&raw).map_err(|e| etcd_err(&key, e))?;
            Ok(Some(
                self.unprotect(&stored.credentials, &key)?.into_bytes(),
            ))
        })
    }

    fn create_account<'a>(
        &'a self,
        directory_id: &'a str,
        credentials: Vec<u8>,
    ) -> SharedFuture<'a, Vec<u8>> {
        Box::pin(async move {
            use etcd_client::{Compare, CompareOp, Txn, TxnOp};
            let key = self.conn.keys.acme_account(directory_id);
            let plain = String::from_utf8(credentials.clone())
                .map_err(|_| etcd_err(&key, "credentials are not UTF-8"))?;
            let stored = StoredAccount {
                credentials: self.protect(&plain, &key)?,
                node: self.conn.node.clone(),
            };
            let value = serde_json::to_vec(&stored).map_err(|e| etcd_err(&key, e))?;
            let txn = Txn::new()
                .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
                .and_then([TxnOp::put(key.clone(), value, None)]);
            let rsp = etcd!("store the account", self.conn.client, [txn], |c| c.txn(txn)).await?;
            if rsp.succeeded() {
                return Ok(credentials);
            }
            self.load_account(directory_id)
                .await?
                .ok_or_else(|| etcd_err(&key, "the account vanished"))
        })
    }

    fn forget_account<'a>(
        &'a self,
        directory_id: &'a str,
        credentials: &'a [u8],
    ) -> SharedFuture<'a, ()> {
        Box::pin(async move {
            use etcd_client::{Compare, CompareOp, Txn, TxnOp};
            let key = self.conn.keys.acme_account(directory_id);
            let rsp = etcd!("read the account", self.conn.client, [key], |c| {
                c.get(key, None)
            })
            .await?;
            let Some(kv) = rsp.kvs().first() else {
                return Ok(());
            };
            let stored: StoredAccount =
                serde_json::from_slice(kv.value()).map_err(|e| etcd_err(&key, e))?;
            if self.unprotect(&stored.credentials, &key)?.as_bytes() != credentials {
                return Ok(());
            }
            // Only that version: a replacement stored meanwhile stays.
            let txn = Txn::new()
                .when([Compare::mod_revision(
                    key.clone(),
                    CompareOp::Equal,
                    kv.mod_revision(),
                )])
                .and_then([TxnOp::delete(key.clone(), None)]);
            etcd!("remove the account", self.conn.client, [txn], |c| c
                .txn(txn))
            .await?;
            Ok(())
        })
    }

    fn try_lock<'a>(&'a self, cert_id: &'a str) -> SharedFuture<'a, Option<Box<dyn OrderLock>>> {
        Box::pin(async move {
            let lock =
                lock::EtcdLock::try_take(&self.conn, cert_id, self.lock_ttl, self.settle).await?;
            Ok(lock.map(|l| Box::new(l) as Box<dyn OrderLock>))
        })
    }

    fn store_cert<'a>(&'a self, cert_id: &'a str, cert: &'a SharedCert) -> SharedFuture<'a, ()> {
        Box::pin(async move {
            let key = self.conn.keys.cert(cert_id);
            let stored = StoredCert {
                chain: cert.chain_pem.clone(),
                key: self.protect(&cert.key_pem, &key)?,
                node: self.conn.node.clone(),
            };
            let value = serde_json::to_vec(&stored).map_err(|e| etcd_err(&key, e))?;
            etcd!(
                "store the certificate",
                self.conn.client,
                [key, value],
                |c| { c.put(key, value, None) }
            )
            .await?;
            Ok(())
        })
    }

    fn load_cert<'a>(&'a self, cert_id: &'a str) -> SharedFuture<'a, Option<SharedCert>> {
        Box::pin(async move {
            let key = self.conn.keys.cert(cert_id);
            let Some(raw) = self.get(&key).await? else {
                return Ok(None);
            };
            let stored: StoredCert = serde_json::from_slice(&raw).map_err(|e| etcd_err(&key, e))?;
            Ok(Some(SharedCert {
                key_pem: self.unprotect(&stored.key, &key)?,
                chain_pem: stored.chain,
            }))
        })
    }

    fn changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changes.subscribe()
    }
}
