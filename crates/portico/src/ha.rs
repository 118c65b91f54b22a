//! High availability: the glue between `portico run` and `portico-vrrp`.
//!
//! Turns each `[[vrrp]]` instance of the config into a running VRRP instance, with its
//! tracked checks bound to what the binary knows: the bound site and stream listeners
//! (`listeners`)
//! and the upstream pools' live health (`upstream`). Without `[[vrrp]]` nothing starts.
//! Without CAP_NET_RAW / CAP_NET_ADMIN, [`start`] fails with an error naming the capability
//! (the binary then exits 2).

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use portico_config::{Config, VrrpTrackKind};
use portico_vrrp::linux::{self, InstanceHandle};
use portico_vrrp::track::{Check, Tracked};

/// Name, state (MASTER/BACKUP/FAULT/INIT), effective priority and transitions of one
/// instance.
pub type InstanceStatus = portico_vrrp::linux::Status;

/// What the admin API follows of one instance.
#[derive(Debug, Clone)]
pub struct InstanceWatch {
    pub status: tokio::sync::watch::Receiver<InstanceStatus>,
    pub tracks: tokio::sync::watch::Receiver<Vec<portico_vrrp::track::TrackState>>,
}

/// What tracked checks need from the running binary.
pub struct TrackEnv {
    /// Bound site listeners (an HTTP probe); 0.0.0.0 / :: are probed on 127.0.0.1 / ::1.
    pub listener_addrs: Vec<SocketAddr>,
    /// Bound stream listeners (checked bound and listening, without a connection).
    pub stream_addrs: Vec<SocketAddr>,
    /// Whether the named upstream has a usable server.
    pub upstream_usable: Arc<dyn Fn(&str) -> bool + Send + Sync>,
}

/// The running VRRP instances (none without `[[vrrp]]`).
#[derive(Debug, Default)]
pub struct HaHandle {
    instances: Vec<InstanceHandle>,
}

/// Starts every `[[vrrp]]` instance of `config`. Must run inside a tokio runtime.
pub async fn start(config: &Config, env: TrackEnv) -> anyhow::Result<HaHandle> {
    let mut handle = HaHandle::default();
    for inst in &config.vrrp {
        let tracked = inst
            .track
            .iter()
            .map(|t| Tracked {
                check: match &t.kind {
                    VrrpTrackKind::Listeners => Check::Listeners {
                        http: env.listener_addrs.clone(),
                        tcp: env.stream_addrs.clone(),
                    },
                    VrrpTrackKind::Upstream(name) => Check::Upstream {
                        name: name.clone(),
                        usable: env.upstream_usable.clone(),
                    },
                    VrrpTrackKind::Script { path, interval } => Check::Script {
                        path: path.clone(),
                        interval: *interval,
                    },
                },
                weight: t.weight,
            })
            .collect();
        match linux::start(inst, tracked).await {
            Ok(h) => handle.instances.push(h),
            Err(e) => {
                handle.shutdown().await;
                return Err(e).with_context(|| format!("VRRP instance {}", inst.name));
            }
        }
    }
    Ok(handle)
}

impl HaHandle {
    /// Graceful stop of every instance: priority-0 advert from a master, addresses removed.
    pub async fn shutdown(self) {
        for h in self.instances {
            h.shutdown().await;
        }
    }

    /// Live views of every instance's status and tracked checks, in config order (for the
    /// admin API).
    pub fn watchers(&self) -> Vec<InstanceWatch> {
        self.instances
            .iter()
            .map(|h| InstanceWatch {
                status: h.watch(),
                tracks: h.watch_tracks(),
            })
            .collect()
    }
}
