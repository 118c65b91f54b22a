//! High availability: the glue between `portico run` and `portico-vrrp`.
//!
//! Turns each `[[vrrp]]` instance of the config into a running VRRP instance, with its
//! tracked checks bound to what the binary knows: the bound site and stream listeners
//! (`listeners`)
//! and the upstream pools' live health (`upstream`). Without `[[vrrp]]` nothing starts.
//! Without CAP_NET_RAW / CAP_NET_ADMIN, [`start`] fails with an error naming the capability
//! (the binary then exits 2).
//!
//! A binary upgrade hands instances over ([`crate::vrrp_handover`]): the old process
//! [`HaHandle::pause_for`]s the ones the new config has unchanged, the new one [`start`]s
//! them as the role they had, and the old one's [`HaHandle::shutdown`] leaves the paused
//! ones' addresses alone; [`HaHandle::resume`] undoes the pause when the upgrade fails.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use portico_config::{Config, VrrpTrackKind};
use portico_vrrp::Inherited;
use portico_vrrp::linux::{self, InstanceHandle};
use portico_vrrp::track::{Check, Tracked};

use crate::vrrp_handover::Key;

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
    instances: Vec<Running>,
}

#[derive(Debug)]
struct Running {
    key: Key,
    handle: InstanceHandle,
    /// Handed over to a new process (binary upgrade).
    paused: bool,
}

/// Starts every `[[vrrp]]` instance of `config`, those named in `inherited` as the role a
/// previous process handed over (binary upgrade). Must run inside a tokio runtime.
pub async fn start(
    config: &Config,
    env: TrackEnv,
    inherited: &HashMap<String, Inherited>,
) -> anyhow::Result<HaHandle> {
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
        match linux::start(inst, tracked, inherited.get(&inst.name).copied()).await {
            Ok(h) => handle.instances.push(Running {
                key: Key::of(inst),
                handle: h,
                paused: false,
            }),
            Err(e) => {
                if inherited.is_empty() {
                    handle.shutdown().await;
                } else {
                    // The old process resumes what it handed over: leave it as it is.
                    handle.release().await;
                }
                return Err(e).with_context(|| format!("VRRP instance {}", inst.name));
            }
        }
    }
    Ok(handle)
}

impl HaHandle {
    /// Graceful stop of every instance: priority-0 advert from a master, addresses removed;
    /// an instance handed over to a new process stops without touching the network.
    pub async fn shutdown(self) {
        for r in self.instances {
            r.handle.shutdown().await;
        }
    }

    /// A new process that adopted instances and then cannot serve: stop every instance
    /// without touching the network (no priority-0 advert, addresses kept), for the old
    /// process to resume.
    pub async fn release(mut self) {
        for r in &mut self.instances {
            r.handle.pause().await;
            r.paused = true;
        }
        self.shutdown().await;
    }

    /// Binary upgrade, old process: pause every instance whose key is in `wanted` (the new
    /// config has it unchanged) and return what each ran as.
    pub async fn pause_for(&mut self, wanted: &[Key]) -> Vec<(String, Inherited)> {
        let mut handed = Vec::new();
        for r in &mut self.instances {
            if r.paused || !wanted.contains(&r.key) {
                continue;
            }
            if let Some(from) = r.handle.pause().await {
                r.paused = true;
                handed.push((r.key.name.clone(), from));
            }
        }
        handed
    }

    /// Binary upgrade, old process: the new process did not take over; act again.
    pub fn resume(&mut self) {
        for r in &mut self.instances {
            if std::mem::take(&mut r.paused) {
                r.handle.resume();
            }
        }
    }

    /// Live views of every instance's status and tracked checks, in config order (for the
    /// admin API).
    pub fn watchers(&self) -> Vec<InstanceWatch> {
        self.instances
            .iter()
            .map(|r| InstanceWatch {
                status: r.handle.watch(),
                tracks: r.handle.watch_tracks(),
            })
            .collect()
    }
}
