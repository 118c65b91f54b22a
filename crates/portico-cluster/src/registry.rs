//! Servers registered by `portico register`: `PREFIX/registry/UPSTREAM/ADDR` holds a JSON
//! [`Registration`] under the register process's lease, so the key goes away when that
//! process deregisters at exit or, if it dies, when its lease expires (`--ttl`).
//!
//! [`register`] is the process side (grant, put, keep alive, retry with backoff while etcd is
//! unreachable, delete and revoke on stop); nodes read the folder through
//! [`crate::node::Node::registered`] and serve the servers of upstreams with
//! `discover = "cluster"`.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use etcd_client::PutOptions;
use portico_config::{ServerAddr, ServerSpec};
use serde::{Deserialize, Serialize};

use crate::connect::{Connection, REQUEST_TIMEOUT};
use crate::error::ClusterError;
use crate::keys::Keys;

/// One registered server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Registration {
    /// `host:port`, as the key has it.
    pub addr: String,
    pub weight: u32,
    /// Host name of the machine that registered it (for the operator).
    #[serde(default)]
    pub host: String,
    /// Process id of `portico register` there.
    #[serde(default)]
    pub pid: u32,
    pub since_unix: u64,
}

impl Registration {
    /// The server as an upstream member (`None`: the address does not parse).
    pub fn spec(&self) -> Option<ServerSpec> {
        Some(ServerSpec {
            addr: ServerAddr::parse(&self.addr).ok()?,
            weight: self.weight.clamp(1, 1_000_000),
            backup: false,
            down: false,
            max_conns: 0,
        })
    }
}

/// Registered servers by upstream, then by address.
pub type Registered = BTreeMap<String, BTreeMap<String, Registration>>;

/// The upstream and address a key under `registry/` names.
pub fn parse_key(keys: &Keys, key: &str) -> Option<(String, String)> {
    let rest = key.strip_prefix(&keys.registry())?;
    let (upstream, addr) = rest.split_once('/')?;
    (!upstream.is_empty() && !addr.is_empty()).then(|| (upstream.to_string(), addr.to_string()))
}

/// Unix seconds now.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// What [`register`] reports as it goes (for the log of `portico register`).
#[derive(Debug)]
pub enum RegisterEvent<'a> {
    /// Registered (again, after an outage) under this lease.
    Registered { lease: i64 },
    /// etcd failed: retrying after `retry_in`.
    Failed {
        error: &'a ClusterError,
        retry_in: Duration,
    },
}

/// Keep `reg` registered under `upstream` until `stop` resolves, then delete the key and
/// revoke the lease (each bounded by [`REQUEST_TIMEOUT`]). While etcd is unreachable it
/// retries with backoff (1 s doubling to 10 s). `ttl`: the lease's time to live (whole
/// seconds, at least 2), the time after which a server whose register process died goes
/// away.
pub async fn register(
    conn: &Connection,
    upstream: &str,
    reg: &Registration,
    ttl: Duration,
    stop: impl Future<Output = ()>,
    mut events: impl FnMut(RegisterEvent<'_>),
) -> Result<(), ClusterError> {
    let key = conn.keys.registered(upstream, &reg.addr);
    let value = serde_json::to_string(reg).map_err(|e| ClusterError::Lost(e.to_string()))?;
    let ttl_secs = i64::try_from(ttl.as_secs().max(2)).unwrap_or(i64::MAX);
    let mut client = conn.client.clone();
    let mut lease: Option<i64> = None;
    tokio::pin!(stop);
    let mut backoff = Duration::from_secs(1);
    loop {
        let session = async {
            let id = bounded(client.lease_grant(ttl_secs, None)).await?.id();
            lease = Some(id);
            bounded(client.put(
                key.as_str(),
                value.as_str(),
                Some(PutOptions::new().with_lease(id)),
            ))
            .await?;
            events(RegisterEvent::Registered { lease: id });
            crate::node::keep_alive(&mut client, id, ttl).await
        };
        let failed = tokio::select! {
            _ = &mut stop => break,
            r = session => r.err(),
        };
        if let Some(error) = failed {
            events(RegisterEvent::Failed {
                error: &error,
                retry_in: backoff,
            });
            tokio::select! {
                _ = &mut stop => break,
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(Duration::from_secs(10));
        }
    }
    // Deregister: the key first (also when the lease is gone), then the lease.
    let deleted = bounded(client.delete(key.as_str(), None)).await.map(|_| ());
    if let Some(id) = lease {
        let _ = bounded(client.lease_revoke(id)).await;
    }
    deleted
}

/// `op` bounded by [`REQUEST_TIMEOUT`].
pub(crate) async fn bounded<T>(
    op: impl Future<Output = Result<T, etcd_client::Error>>,
) -> Result<T, ClusterError> {
    tokio::time::timeout(REQUEST_TIMEOUT, op)
        .await
        .map_err(|_| ClusterError::Timeout(REQUEST_TIMEOUT))?
        .map_err(ClusterError::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_specs() {
        let keys = Keys::new("/p");
        assert_eq!(
            parse_key(&keys, "/p/registry/app/10.0.0.1:80"),
            Some(("app".into(), "10.0.0.1:80".into()))
        );
        assert_eq!(parse_key(&keys, "/p/registry/app/"), None);
        let reg = Registration {
            addr: "[::1]:8080".into(),
            weight: 0,
            host: String::new(),
            pid: 1,
            since_unix: 0,
        };
        let spec = reg.spec().expect("valid");
        assert_eq!(spec.addr.to_string(), "[::1]:8080");
        assert_eq!(spec.weight, 1);
        let bad = Registration {
            addr: "nope".into(),
            ..reg
        };
        assert!(bad.spec().is_none());
    }
}
