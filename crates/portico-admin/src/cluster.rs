//! Cluster mode in the admin API: what the binary reports about the etcd cluster
//! ([`ClusterView`], through [`crate::Sources::cluster`]), the `cluster` object of the
//! status document ([`ClusterStatus`]) and the `portico_cluster_*` metrics.

use std::fmt;
use std::time::SystemTime;

use portico_balance::{AdminState, ServerId};
use prometheus_client::encoding::DescriptorEncoder;
use serde::{Deserialize, Serialize};

use crate::families::gauges;
use crate::state::Admin;
use crate::status::{admin_state_str, unix};

/// The cluster as this node sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterView {
    pub node: String,
    pub prefix: String,
    pub etcd: Vec<String>,
    /// etcd reachable and watched now.
    pub reachable: bool,
    pub last_error: Option<String>,
    /// When `reachable` last changed.
    pub since: Option<SystemTime>,
    /// This node's config hash.
    pub config_hash: String,
    pub members: Vec<MemberView>,
    /// Server admin states the cluster holds (absent servers are enabled).
    pub server_states: Vec<(ServerId, AdminState)>,
    /// Registered servers: upstream, address, weight.
    pub registered: Vec<(String, String, u32)>,
}

/// One member of the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberView {
    pub name: String,
    pub version: String,
    pub listen: Vec<String>,
    pub admin: Option<String>,
    pub config_hash: String,
    /// VRRP instance and role.
    pub vrrp: Vec<(String, String)>,
    pub started_unix: u64,
}

/// The `cluster` object of `GET /api/v1/status` (absent without `[cluster]`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ClusterStatus {
    pub node: String,
    pub prefix: String,
    pub etcd: Vec<String>,
    /// `up` (etcd reachable) or `degraded` (serving with the last known state).
    pub state: String,
    pub last_error: Option<String>,
    pub since_unix: Option<f64>,
    pub config_hash: String,
    pub members: Vec<ClusterMember>,
    pub server_states: Vec<ClusterServerState>,
    pub registered: Vec<ClusterRegistered>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ClusterMember {
    pub name: String,
    pub version: String,
    pub listen: Vec<String>,
    pub admin: Option<String>,
    pub config_hash: String,
    /// The member's config hash is not this node's.
    pub config_differs: bool,
    pub this_node: bool,
    pub vrrp: Vec<ClusterVrrpRole>,
    pub started_unix: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ClusterVrrpRole {
    pub instance: String,
    pub state: String,
}

/// A server state every node applies.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ClusterServerState {
    pub upstream: String,
    pub server: String,
    /// `draining` or `disabled`.
    pub admin_state: String,
}

/// A server registered with `portico register`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ClusterRegistered {
    pub upstream: String,
    pub server: String,
    pub weight: u32,
}

impl ClusterStatus {
    /// Whether etcd is reachable.
    pub fn is_up(&self) -> bool {
        self.state == "up"
    }
}

/// The status object for `view`.
pub fn status(view: ClusterView) -> ClusterStatus {
    let own = view.config_hash.clone();
    ClusterStatus {
        state: if view.reachable { "up" } else { "degraded" }.to_string(),
        last_error: view.last_error,
        since_unix: view.since.map(unix),
        members: view
            .members
            .into_iter()
            .map(|m| ClusterMember {
                config_differs: m.config_hash != own,
                this_node: m.name == view.node,
                name: m.name,
                version: m.version,
                listen: m.listen,
                admin: m.admin,
                config_hash: m.config_hash,
                vrrp: m
                    .vrrp
                    .into_iter()
                    .map(|(instance, state)| ClusterVrrpRole { instance, state })
                    .collect(),
                started_unix: m.started_unix,
            })
            .collect(),
        server_states: view
            .server_states
            .into_iter()
            .map(|(id, s)| ClusterServerState {
                upstream: id.upstream.to_string(),
                server: id.addr.to_string(),
                admin_state: admin_state_str(s).to_string(),
            })
            .collect(),
        registered: view
            .registered
            .into_iter()
            .map(|(upstream, server, weight)| ClusterRegistered {
                upstream,
                server,
                weight,
            })
            .collect(),
        node: view.node,
        prefix: view.prefix,
        etcd: view.etcd,
        config_hash: own,
    }
}

/// `portico_cluster_*` (nothing without `[cluster]`).
pub(crate) fn metrics(enc: &mut DescriptorEncoder<'_>, admin: &Admin) -> fmt::Result {
    let Some(view) = admin.sources().cluster() else {
        return Ok(());
    };
    let differs = view
        .members
        .iter()
        .filter(|m| m.config_hash != view.config_hash)
        .count();
    let one = |v: u64| vec![(Vec::new(), v)];
    gauges(
        enc,
        "portico_cluster_up",
        "1 while etcd is reachable and watched, 0 while degraded (serving with the last known state).",
        &one(u64::from(view.reachable)),
    )?;
    gauges(
        enc,
        "portico_cluster_members",
        "Nodes in the member list (this one included; the last known list while degraded).",
        &one(view.members.len() as u64),
    )?;
    gauges(
        enc,
        "portico_cluster_config_differs",
        "Members whose config hash differs from this node's.",
        &one(differs as u64),
    )?;
    gauges(
        enc,
        "portico_cluster_registered_servers",
        "Servers registered with `portico register`, all upstreams.",
        &one(view.registered.len() as u64),
    )
}
