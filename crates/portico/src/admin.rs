//! The admin API in the binary: starts `portico-admin`'s listener next to the data plane,
//! feeds it what only the binary reaches (health checks, certificates, VRRP instances,
//! bound listeners, reloads). The client side of `portico status` and `portico reload` is
//! `crate::admin_client`.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use anyhow::Context as _;
use portico_admin::{
    Admin, AdminServer, CertView, ListenerView, ReloadRecord, ReloadRequests, ReloadResult,
    Sources, TrackView, VrrpView,
};
use portico_balance::{CheckStatus, HealthChecks, Registry, ServerId};
use portico_config::Config;
use portico_tls::TlsRuntime;

use crate::ha::InstanceWatch;
use crate::plane::DataPlane;
use crate::reload::{Outcome, Running};

/// The admin side of a running instance: the shared state and its listener (none with
/// `listen = "off"`).
pub struct AdminPlane {
    admin: Admin,
    server: Option<AdminServer>,
}

/// What the admin API reads from the binary's running parts.
struct BinarySources {
    health: Arc<HealthChecks>,
    tls: Arc<Mutex<TlsRuntime>>,
    vrrp: Vec<(portico_config::VrrpInstance, InstanceWatch)>,
    /// Closes a disabled server's WebSockets on the HTTP plane's workers.
    websockets: portico_proxy::WsDrainer,
    /// `[cluster]`: members, etcd's state, shared server states.
    cluster: Option<Arc<crate::cluster::Cluster>>,
}

impl Sources for BinarySources {
    fn health(&self) -> Vec<CheckStatus> {
        self.health.status()
    }

    fn certificates(&self) -> Vec<CertView> {
        let tls = self.tls.lock().unwrap_or_else(|e| e.into_inner());
        let files = tls.file_status().iter().map(|(_, path, info)| CertView {
            names: info.names.clone(),
            source: "file",
            path: Some(path.display().to_string()),
            not_after: Some(info.not_after),
            next_renewal: None,
            last_error: None,
            orders_ok: 0,
            orders_failed: 0,
        });
        let acme = tls.acme_status().into_iter().map(|s| CertView {
            names: s.names,
            source: "acme",
            path: None,
            not_after: s.not_after,
            next_renewal: s.next_attempt,
            last_error: s.last_error,
            orders_ok: u64::from(s.orders),
            orders_failed: u64::from(s.failed_orders),
        });
        files.chain(acme).collect()
    }

    fn vrrp(&self) -> Vec<VrrpView> {
        self.vrrp
            .iter()
            .map(|(cfg, w)| {
                let st = w.status.borrow().clone();
                VrrpView {
                    name: cfg.name.clone(),
                    interface: cfg.interface.clone(),
                    vrid: cfg.vrid,
                    state: st.state.as_str(),
                    base_priority: cfg.priority,
                    effective_priority: st.priority,
                    transitions: st.transitions,
                    virtual_ips: cfg.virtual_ips.iter().map(ToString::to_string).collect(),
                    tracks: w
                        .tracks
                        .borrow()
                        .iter()
                        .map(|t| TrackView {
                            check: t.check.clone(),
                            weight: t.weight,
                            failing: t.failing,
                        })
                        .collect(),
                }
            })
            .collect()
    }

    fn drain_websockets(&self, server: &ServerId) {
        self.websockets
            .drain(std::collections::HashSet::from([server.clone()]));
    }

    fn cluster(&self) -> Option<portico_admin::cluster::ClusterView> {
        self.cluster.as_ref().map(|c| c.view())
    }

    fn share_server_state(
        &self,
        server: &ServerId,
        state: portico_balance::AdminState,
    ) -> Option<portico_admin::ShareFuture> {
        self.cluster.as_ref().map(|c| c.share(server, state))
    }
}

/// Start the admin API of a running instance (its listener only when `[admin] listen` is
/// not `"off"`), and the reload requests the control loop must serve. A listener that
/// cannot be bound is an error (the process exits 2).
pub fn start(
    config: &Arc<Config>,
    registry: &Registry,
    health: &Arc<HealthChecks>,
    plane: &DataPlane,
    vrrp: Vec<InstanceWatch>,
    cluster: Option<Arc<crate::cluster::Cluster>>,
) -> anyhow::Result<(AdminPlane, ReloadRequests)> {
    let sources = BinarySources {
        cluster,
        health: Arc::clone(health),
        tls: plane.tls_runtime(),
        vrrp: config.vrrp.iter().cloned().zip(vrrp).collect(),
        websockets: plane.ws_drainer(),
    };
    let (admin, requests) = Admin::new(Arc::clone(config), registry.clone(), sources);
    let server = match config.admin.listen {
        None => None,
        Some(addr) => {
            if let Some(path) = &config.admin.token_file {
                let token = portico_admin::read_token(path).with_context(|| {
                    format!("cannot read [admin] token_file {}", path.display())
                })?;
                anyhow::ensure!(
                    !token.is_empty(),
                    "[admin] token_file {} is empty",
                    path.display()
                );
            }
            Some(AdminServer::start(admin.clone(), addr)?)
        }
    };
    let plane_admin = AdminPlane { admin, server };
    plane_admin.set_listeners(plane);
    Ok((plane_admin, requests))
}

impl AdminPlane {
    /// The bound admin address (`None` when off).
    pub fn addr(&self) -> Option<SocketAddr> {
        self.server.as_ref().map(AdminServer::addr)
    }

    /// Run a reload (from SIGHUP or the API) and record it; returns the record for the API.
    pub fn reload(&self, running: &mut Running<'_>, plane: &DataPlane) -> ReloadRecord {
        let (outcome, text) = running.apply();
        let record = ReloadRecord {
            generation: running.generation,
            at: std::time::SystemTime::now(),
            result: match outcome {
                Outcome::Applied => ReloadResult::Applied,
                Outcome::Invalid => ReloadResult::Invalid,
                Outcome::Failed => ReloadResult::Failed,
            },
            text,
        };
        self.admin
            .record_reload(record.clone(), Arc::clone(&running.config));
        self.set_listeners(plane);
        record
    }

    fn set_listeners(&self, plane: &DataPlane) {
        self.admin.set_listeners(
            plane
                .listeners()
                .into_iter()
                .map(|(protocol, configured, bound)| ListenerView {
                    protocol,
                    configured,
                    bound,
                })
                .collect(),
        );
    }

    /// The config in force changed without a reload (registered servers joined or left).
    pub fn set_config(&self, config: Arc<Config>) {
        self.admin.set_config(config);
    }

    /// Stop the listener.
    pub fn stop(self) {
        if let Some(s) = self.server {
            s.stop();
        }
    }
}
