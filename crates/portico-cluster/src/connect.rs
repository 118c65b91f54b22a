//! An etcd client from the typed `[cluster]` section.
//!
//! The client is built lazily by `etcd-client` (the channel connects on first use and
//! balances over the endpoints), so a node starts while etcd is down and catches up when it
//! returns. Every request carries a timeout ([`REQUEST_TIMEOUT`]) so a missing quorum shows
//! up as an error, never as a hang.

use std::path::Path;
use std::time::Duration;

use etcd_client::{Certificate, Client, ConnectOptions, Identity, TlsOptions};
use portico_config::ClusterConfig;

use crate::error::ClusterError;
use crate::keys::Keys;

/// How long one etcd request may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(3);
/// How long establishing a connection to one endpoint may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// A client plus what every cluster task needs: the key layout and this node's name.
#[derive(Clone)]
pub struct Connection {
    pub client: Client,
    pub keys: Keys,
    pub node: String,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("prefix", &self.keys.prefix())
            .field("node", &self.node)
            .finish_non_exhaustive()
    }
}

/// Build the client for `cfg` (reads the TLS and password files).
pub async fn connect(cfg: &ClusterConfig) -> Result<Connection, ClusterError> {
    connect_to(cfg, &cfg.etcd).await
}

/// One client per endpoint of `cfg`, in order. A balanced client over several endpoints
/// keeps sending some requests to a member that died (they fail with "connection
/// refused"), so the long-lived sessions of [`crate::node`] use one endpoint at a time and
/// move to the next when a session fails.
pub async fn connect_each(cfg: &ClusterConfig) -> Result<Vec<Client>, ClusterError> {
    let mut all = Vec::with_capacity(cfg.etcd.len());
    for endpoint in &cfg.etcd {
        all.push(
            connect_to(cfg, std::slice::from_ref(endpoint))
                .await?
                .client,
        );
    }
    Ok(all)
}

/// [`connect`] to the given endpoints only.
async fn connect_to(cfg: &ClusterConfig, endpoints: &[String]) -> Result<Connection, ClusterError> {
    let mut opts = ConnectOptions::new()
        .with_connect_timeout(CONNECT_TIMEOUT)
        .with_timeout(REQUEST_TIMEOUT)
        .with_keep_alive(Duration::from_secs(10), Duration::from_secs(5))
        .with_keep_alive_while_idle(true);
    if cfg.ca_file.is_some() || cfg.cert.is_some() {
        let mut tls = TlsOptions::new();
        if let Some(ca) = &cfg.ca_file {
            tls = tls.ca_certificate(Certificate::from_pem(read(ca)?));
        }
        if let (Some(cert), Some(key)) = (&cfg.cert, &cfg.key) {
            tls = tls.identity(Identity::from_pem(read(cert)?, read(key)?));
        }
        opts = opts.with_tls(tls);
    }
    if let (Some(user), Some(file)) = (&cfg.username, &cfg.password_file) {
        let password = String::from_utf8(read(file)?).map_err(|_| ClusterError::BadFile {
            path: file.clone(),
            reason: "the password is not UTF-8".into(),
        })?;
        opts = opts.with_user(user.clone(), password.trim().to_string());
    }
    let client = Client::connect(endpoints, Some(opts)).await?;
    Ok(Connection {
        client,
        keys: Keys::new(&cfg.prefix),
        node: node_name(cfg),
    })
}

/// `node_name`, or the host name.
pub fn node_name(cfg: &ClusterConfig) -> String {
    if let Some(n) = &cfg.node_name {
        return n.clone();
    }
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}

fn read(path: &Path) -> Result<Vec<u8>, ClusterError> {
    std::fs::read(path).map_err(|source| ClusterError::File {
        path: path.to_path_buf(),
        source,
    })
}
