//! Certificates and ACME across the cluster: with `[cluster]`, the sites' ACME manager
//! shares its account, order locks, challenge answers and certificates with the other
//! nodes through etcd (`portico_cluster::acme::EtcdAcme`); `state_dir` keeps a local copy.
//! Without `[cluster]` nothing here runs and certificates stay per node.
//!
//! The etcd client is created on the TLS runtime (its channel's tasks live there, as long
//! as the ACME tasks that use it). `[cluster]` is read at start; a reload that changes it
//! applies at the next restart.

use std::sync::Arc;

use anyhow::Context as _;
use portico_cluster::acme::{EtcdAcme, Secret};
use portico_config::Config;
use portico_tls::acme::SharedAcme;

/// What `portico check` (and the start) warn about in `[cluster]`.
pub fn warnings(config: &Config) -> Vec<String> {
    match &config.cluster {
        Some(cluster) if cluster.secret_file.is_none() => vec![
            "[cluster] has no secret_file: private keys of certificates and of the ACME account \
             are stored in etcd unencrypted (set secret_file to a file of at least 32 random \
             bytes, the same on every node)"
                .to_string(),
        ],
        _ => Vec::new(),
    }
}

/// The shared ACME state of `config`'s cluster, `None` without `[cluster]`. Fails when
/// `secret_file` cannot be used or the etcd options are unusable (a down etcd is not an
/// error: the client connects lazily and certificate tasks retry).
pub fn shared_acme(
    config: &Config,
    runtime: &tokio::runtime::Runtime,
) -> anyhow::Result<Option<Arc<dyn SharedAcme>>> {
    let Some(cluster) = &config.cluster else {
        return Ok(None);
    };
    let secret = cluster
        .secret_file
        .as_deref()
        .map(Secret::from_file)
        .transpose()
        .context("[cluster] secret_file")?;
    for warning in warnings(config) {
        tracing::warn!("{warning}");
    }
    // On a thread of its own: the caller may itself run inside a runtime.
    let conn = std::thread::scope(|s| {
        s.spawn(|| runtime.block_on(portico_cluster::connect(cluster)))
            .join()
    })
    .map_err(|_| anyhow::anyhow!("the etcd client setup panicked"))?
    .context("[cluster] cannot set up the etcd client")?;
    tracing::info!(node = %conn.node, prefix = %conn.keys.prefix(), endpoints = ?cluster.etcd,
        sealed = secret.is_some(), "cluster mode: ACME account, order locks, challenges and certificates shared through etcd");
    Ok(Some(Arc::new(EtcdAcme::new(conn, secret))))
}
