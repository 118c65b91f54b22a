//! The order lock of one certificate: `PREFIX/acme/locks/CERT-ID` = the holder's node name,
//! put only if absent, under a lease this node keeps alive (a keep-alive every third of the
//! TTL) while it orders. Challenge answers are put under the same lease, so revoking it on
//! release removes the lock and the answers at once, and a dead node's lock and answers
//! expire together after at most the TTL. When keep-alives fail for longer than the TTL the
//! lock counts as lost ([`EtcdLock::is_held`]).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use etcd_client::{Compare, CompareOp, PutOptions, Txn, TxnOp};
use portico_tls::TlsError;
use portico_tls::acme::{OrderLock, SharedFuture};

use super::{StoredAlpn, etcd, etcd_err};
use crate::connect::Connection;

/// A held order lock.
pub struct EtcdLock {
    conn: Connection,
    lease: i64,
    key: String,
    settle: Duration,
    held: Arc<AtomicBool>,
    keeper: tokio::task::JoinHandle<()>,
}

impl EtcdLock {
    /// Take the lock of `cert_id` unless another node holds it.
    pub async fn try_take(
        conn: &Connection,
        cert_id: &str,
        ttl: Duration,
        settle: Duration,
    ) -> Result<Option<EtcdLock>, TlsError> {
        let key = conn.keys.acme_lock(cert_id);
        // A plain read first: the common case while another node orders (or backs off)
        // costs one request, not a lease grant and a revoke.
        let current = etcd!("read the order lock", conn.client, [key], |c| {
            c.get(key, None)
        })
        .await?;
        if !current.kvs().is_empty() {
            return Ok(None);
        }
        let ttl_secs = i64::try_from(ttl.as_secs().max(1)).unwrap_or(10);
        let lease = etcd!("lock lease", conn.client, [], |c| c
            .lease_grant(ttl_secs, None))
        .await?
        .id();
        let txn = Txn::new()
            .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(
                key.clone(),
                conn.node.clone(),
                Some(PutOptions::new().with_lease(lease)),
            )]);
        let taken = match etcd!("take the order lock", conn.client, [txn], |c| c.txn(txn)).await {
            Ok(rsp) => rsp.succeeded(),
            Err(e) => {
                revoke_later(conn, lease);
                return Err(e);
            }
        };
        if !taken {
            revoke_later(conn, lease);
            return Ok(None);
        }
        let held = Arc::new(AtomicBool::new(true));
        let keeper = tokio::spawn(keep_alive(conn.clone(), lease, ttl, held.clone()));
        tracing::debug!(lock = %key, lease, "order lock taken");
        Ok(Some(EtcdLock {
            conn: conn.clone(),
            lease,
            key,
            settle,
            held,
            keeper,
        }))
    }

    async fn put_under_lease(&self, key: String, value: Vec<u8>) -> Result<(), TlsError> {
        if !self.is_held() {
            return Err(etcd_err(&self.key, "the order lock was lost"));
        }
        let opts = PutOptions::new().with_lease(self.lease);
        etcd!(
            "publish a challenge answer",
            self.conn.client,
            [key, value, opts],
            |c| { c.put(key, value, Some(opts)) }
        )
        .await?;
        // Every node's watch delivers the put; give them a moment before the CA asks.
        tokio::time::sleep(self.settle).await;
        Ok(())
    }
}

impl Drop for EtcdLock {
    fn drop(&mut self) {
        self.keeper.abort();
    }
}

/// Revoke a lease in the background (best effort; it expires on its own otherwise).
fn revoke_later(conn: &Connection, lease: i64) {
    let client = conn.client.clone();
    tokio::spawn(async move {
        let _ = etcd!("revoke", client, [], |c| c.lease_revoke(lease)).await;
    });
}

/// Keep `lease` alive every third of `ttl`; mark it lost when no keep-alive succeeded for
/// `ttl` or etcd says it is gone. Reconnects the keep-alive stream after errors.
async fn keep_alive(conn: Connection, lease: i64, ttl: Duration, held: Arc<AtomicBool>) {
    let every = ttl / 3;
    let mut last_ok = Instant::now();
    'outer: loop {
        if last_ok.elapsed() >= ttl {
            break;
        }
        let (mut keeper, mut stream) = match etcd!("keep-alive", conn.client, [], |c| c
            .lease_keep_alive(lease))
        .await
        {
            Ok(pair) => pair,
            Err(e) => {
                tracing::debug!(lease, error = %e, "order lock keep-alive: cannot open the stream");
                tokio::time::sleep(every.min(Duration::from_secs(1))).await;
                continue;
            }
        };
        loop {
            if last_ok.elapsed() >= ttl {
                break 'outer;
            }
            if keeper.keep_alive().await.is_err() {
                continue 'outer;
            }
            match tokio::time::timeout(every, stream.message()).await {
                Ok(Ok(Some(rsp))) if rsp.ttl() > 0 => last_ok = Instant::now(),
                Ok(Ok(Some(_))) => {
                    tracing::warn!(lease, "order lock lease expired");
                    break 'outer;
                }
                _ => continue 'outer,
            }
            tokio::time::sleep(every).await;
        }
    }
    held.store(false, Ordering::SeqCst);
    tracing::warn!(lease, "order lock lost (no keep-alive within its TTL)");
}

impl OrderLock for EtcdLock {
    fn publish_http01<'a>(
        &'a self,
        token: &'a str,
        key_authorization: &'a str,
    ) -> SharedFuture<'a, ()> {
        Box::pin(async move {
            let key = self.conn.keys.http01(token);
            self.put_under_lease(key, key_authorization.as_bytes().to_vec())
                .await
        })
    }

    fn publish_alpn01<'a>(
        &'a self,
        name: &'a str,
        cert_pem: &'a str,
        key_pem: &'a str,
    ) -> SharedFuture<'a, ()> {
        Box::pin(async move {
            let key = self.conn.keys.alpn01(&name.to_ascii_lowercase());
            let value = serde_json::to_vec(&StoredAlpn {
                cert: cert_pem.to_string(),
                key: key_pem.to_string(),
            })
            .map_err(|e| etcd_err(&key, e))?;
            self.put_under_lease(key, value).await
        })
    }

    fn is_held(&self) -> bool {
        self.held.load(Ordering::SeqCst)
    }

    fn release(self: Box<Self>) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        let client = self.conn.client.clone();
        let (lease, key) = (self.lease, self.key.clone());
        self.keeper.abort();
        Box::pin(async move {
            // Revoking the lease deletes the lock and every answer published under it.
            match etcd!("release the order lock", client, [], |c| c
                .lease_revoke(lease))
            .await
            {
                Ok(_) => tracing::debug!(lock = %key, "order lock released"),
                Err(e) => {
                    tracing::warn!(lock = %key, error = %e, "cannot release the order lock; it expires on its own")
                }
            }
        })
    }
}
