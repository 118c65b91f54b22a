//! Errors of the cluster crate.

use std::path::PathBuf;

/// What can go wrong talking to etcd or reading the files `[cluster]` names.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// A file named in `[cluster]` could not be read.
    #[error("{path}: {source}")]
    File {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A file named in `[cluster]` has unusable content.
    #[error("{path}: {reason}")]
    BadFile { path: PathBuf, reason: String },
    /// etcd refused or failed a request, or is unreachable.
    #[error("etcd: {0}")]
    Etcd(#[from] etcd_client::Error),
    /// A request did not finish in time.
    #[error("etcd: no answer within {0:?}")]
    Timeout(std::time::Duration),
    /// A lease or a watch was lost (expired, cancelled, stream ended).
    #[error("etcd: {0}")]
    Lost(String),
}
