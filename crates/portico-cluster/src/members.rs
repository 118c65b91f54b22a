//! What a node publishes about itself under `PREFIX/members/NODE` (JSON, under the node's
//! lease), and the config hash that lets every node see a member whose config differs.
//!
//! The hash covers what must match across the nodes of one cluster: `[server]` (except
//! `state_dir`), `[acme]`, the upstreams, the sites and the streams (except their listen
//! addresses) and `[cluster]` (except `node_name`). It leaves out what may differ per node
//! by design: `[admin]`, `[[vrrp]]` (priorities), listen addresses (a node may bind its own
//! IP), `node_name`, `state_dir`, and comments or formatting of the file. It is the
//! SHA-256 of a canonical rendering of the typed config, first 16 hex digits.

use portico_config::Config;
use serde::{Deserialize, Serialize};

/// One node of the cluster, as it registered itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberInfo {
    pub name: String,
    /// Portico's version.
    pub version: String,
    /// Bound listeners (sites and streams).
    pub listen: Vec<String>,
    /// The admin API's address, if on.
    #[serde(default)]
    pub admin: Option<String>,
    /// See the module documentation.
    pub config_hash: String,
    /// VRRP instances and their current role (`MASTER`, `BACKUP`, ...).
    #[serde(default)]
    pub vrrp: Vec<VrrpRole>,
    /// Unix seconds at which the process started.
    pub started_unix: u64,
}

/// One VRRP instance of a member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VrrpRole {
    pub instance: String,
    pub state: String,
}

/// The cluster-wide config hash of `config` (see the module documentation).
pub fn config_hash(config: &Config) -> String {
    let mut server = config.server.clone();
    server.state_dir = std::path::PathBuf::new();
    let cluster = config.cluster.clone().map(|mut c| {
        c.node_name = None;
        c
    });
    let mut sites = config.sites.clone();
    for s in &mut sites {
        s.listen.clear();
        s.http_listen.clear();
    }
    let mut streams = config.streams.clone();
    for s in &mut streams {
        s.listen.clear();
    }
    let canonical = format!(
        "{server:?}\n{:?}\n{:?}\n{sites:?}\n{streams:?}\n{cluster:?}",
        config.acme, config.upstreams
    );
    let digest = ring::digest::digest(&ring::digest::SHA256, canonical.as_bytes());
    digest.as_ref()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn parse(text: &str, dir: &str) -> Config {
        portico_config::parse(text, &std::path::Path::new(dir).join("p.toml")).unwrap()
    }

    const BASE: &str = "[cluster]\netcd = [\"http://127.0.0.1:2379\"]\nnode_name = \"NODE\"\n\
                        [admin]\nlisten = \"ADMIN\"\n\
                        [upstreams.app]\nservers = [\"127.0.0.1:9001\"]\n\
                        [[sites]]\nlisten = [\"127.0.0.1:ADMIN\"]\n\
                        routes = [{ path = \"/\", proxy = \"app\" }]\n";

    #[test]
    fn the_hash_ignores_per_node_settings_and_sees_shared_ones() {
        let a = BASE
            .replace("NODE", "a")
            .replace("127.0.0.1:ADMIN", "127.0.0.1:8001")
            .replace("ADMIN", "127.0.0.1:9901");
        let b = BASE
            .replace("NODE", "b")
            .replace("127.0.0.1:ADMIN", "127.0.0.1:8002")
            .replace("ADMIN", "127.0.0.1:9902");
        let ha = config_hash(&parse(&a, "/x"));
        assert_eq!(ha.len(), 16);
        assert_eq!(ha, config_hash(&parse(&b, "/x")));
        let c = b.replace("9001", "9002");
        assert_ne!(ha, config_hash(&parse(&c, "/x")));
    }
}
