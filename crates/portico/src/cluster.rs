//! Cluster mode in the binary (`[cluster]`): the node's session with etcd
//! (`portico_cluster::node`), what it feeds the admin API, the registered servers of
//! upstreams with `discover = "cluster"`, and `portico register`.
//!
//! Registered servers join the running config without a reload of the file: the control loop
//! builds the *effective* config (the file's, plus the registered servers of each
//! `discover = "cluster"` upstream, see [`Cluster::effective`]) and applies it like a reload
//! does (new snapshot, health checks replaced), so a new server gets traffic at once and a
//! removed server's WebSockets drain with 1001 while the others stay untouched. A reload of
//! the file merges the registered servers the same way. A registered server that joins
//! starts cold: it ramps over its upstream's `slow_start` ([`ramp_joined`]).

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use portico_admin::cluster::{ClusterView, MemberView};
use portico_balance::{AdminState, Registry, ServerId};
use portico_cluster::node::Node;
use portico_cluster::registry::{RegisterEvent, Registration};
use portico_cluster::{MemberInfo, Registered, VrrpRole};
use portico_config::{Config, Discover};
use tokio::sync::watch;

use crate::exit::Failure;
use crate::ha::InstanceWatch;
use crate::plane::DataPlane;
use crate::reload::Running;

/// A running node of the cluster.
pub struct Cluster {
    node: Node,
    /// The config from the file (without registered servers), replaced by each reload.
    base: Mutex<Arc<Config>>,
    /// This node's config hash, published in its member entry.
    hash: Arc<Mutex<String>>,
    registered: Mutex<watch::Receiver<Registered>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Plain reads and replacements only: usable after a panic elsewhere.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Cluster {
    /// Start the node when `config` has `[cluster]` (`None` otherwise). Never waits for etcd:
    /// a node starts and serves while etcd is down.
    pub async fn start(
        config: &Arc<Config>,
        registry: &Registry,
        plane: &DataPlane,
        vrrp: Vec<InstanceWatch>,
    ) -> anyhow::Result<Option<Arc<Cluster>>> {
        let Some(cfg) = &config.cluster else {
            return Ok(None);
        };
        let conn = portico_cluster::connect(cfg)
            .await
            .context("cannot set up the etcd client of [cluster]")?;
        let clients = portico_cluster::connect_each(cfg)
            .await
            .context("cannot set up the etcd client of [cluster]")?;
        let hash = Arc::new(Mutex::new(portico_cluster::config_hash(config)));
        let info = {
            let hash = Arc::clone(&hash);
            let name = conn.node.clone();
            let listen: Vec<String> = plane.all_addrs().iter().map(ToString::to_string).collect();
            let admin = config.admin.listen.map(|a| a.to_string());
            let names: Vec<String> = config.vrrp.iter().map(|v| v.name.clone()).collect();
            let started = portico_cluster::registry::unix_now();
            Arc::new(move || MemberInfo {
                name: name.clone(),
                version: env!("CARGO_PKG_VERSION").to_string(),
                listen: listen.clone(),
                admin: admin.clone(),
                config_hash: lock(&hash).clone(),
                vrrp: names
                    .iter()
                    .zip(&vrrp)
                    .map(|(n, w)| VrrpRole {
                        instance: n.clone(),
                        state: w.status.borrow().state.as_str().to_string(),
                    })
                    .collect(),
                started_unix: started,
            })
        };
        let drainer = plane.ws_drainer();
        let drain = Arc::new(move |id: &ServerId| {
            drainer.drain(std::collections::HashSet::from([id.clone()]));
        });
        tracing::info!(node = %conn.node, etcd = %cfg.etcd.join(","), prefix = %cfg.prefix, "cluster: joining");
        let node = Node::start(
            conn,
            cfg.etcd.clone(),
            clients,
            registry.clone(),
            info,
            drain,
        );
        let registered = node.registered();
        Ok(Some(Arc::new(Cluster {
            node,
            base: Mutex::new(Arc::clone(config)),
            hash,
            registered: Mutex::new(registered),
        })))
    }

    /// `config` (the file's) plus the registered servers of its `discover = "cluster"`
    /// upstreams (an address the file already lists stays the file's).
    pub fn effective(&self, config: &Arc<Config>) -> Arc<Config> {
        let registered = lock(&self.registered).borrow().clone();
        merge(Arc::clone(config), &registered)
    }

    /// A reload applied `file`, merged into `new`, in place of `old`: it is the file's
    /// config from now on (registry changes merge into it, its hash is published), the
    /// cluster's server states apply to servers that just joined, and registered servers
    /// that joined with it start their slow start ([`ramp_joined`]).
    pub fn applied(&self, file: Arc<Config>, old: &Config, new: &Config, registry: &Registry) {
        let registered = lock(&self.registered).borrow().clone();
        let now = (Instant::now(), portico_cluster::registry::unix_now());
        ramp_joined(&file, old, new, &registered, registry, now);
        *lock(&self.hash) = portico_cluster::config_hash(&file);
        *lock(&self.base) = file;
        self.node.reapply_states();
    }

    /// Resolves when the registered servers changed.
    pub async fn registry_changed(&self) {
        let mut rx = lock(&self.registered).clone();
        if rx.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
        // Mark the value seen on the shared receiver too.
        lock(&self.registered).borrow_and_update();
    }

    /// Registered servers changed: apply the effective config to the running planes (no
    /// reload record: the file did not change).
    pub fn apply_registered(&self, running: &mut Running<'_>, admin: &crate::admin::AdminPlane) {
        let base = Arc::clone(&lock(&self.base));
        let registered = lock(&self.registered).borrow().clone();
        let new = merge(Arc::clone(&base), &registered);
        if servers_of(&new) == servers_of(&running.config) {
            return;
        }
        match running.plane.reload(&new, running.registry) {
            Ok(summary) => {
                let now = (Instant::now(), portico_cluster::registry::unix_now());
                ramp_joined(
                    &base,
                    &running.config,
                    &new,
                    &registered,
                    running.registry,
                    now,
                );
                running.health.replace(&new);
                running.registry.prune();
                running.config = Arc::clone(&new);
                admin.set_config(new);
                self.node.reapply_states();
                tracing::info!(changes = %summary.changes, "cluster: registered servers applied");
            }
            Err(e) => {
                tracing::error!(error = %format!("{e:#}"), "cluster: cannot apply the registered servers, keeping the running ones");
            }
        }
    }

    /// For the admin API.
    pub fn view(&self) -> ClusterView {
        let s = self.node.snapshot();
        ClusterView {
            node: s.node,
            prefix: s.prefix,
            etcd: s.endpoints,
            reachable: s.reachable,
            last_error: s.last_error,
            since: s.since,
            config_hash: lock(&self.hash).clone(),
            members: s
                .members
                .into_values()
                .map(|m| MemberView {
                    name: m.name,
                    version: m.version,
                    listen: m.listen,
                    admin: m.admin,
                    config_hash: m.config_hash,
                    vrrp: m.vrrp.into_iter().map(|v| (v.instance, v.state)).collect(),
                    started_unix: m.started_unix,
                })
                .collect(),
            server_states: s.server_states.into_iter().collect(),
            registered: s
                .registered
                .into_iter()
                .flat_map(|(up, servers)| {
                    servers
                        .into_values()
                        .map(move |r| (up.clone(), r.addr, r.weight))
                })
                .collect(),
        }
    }

    /// Write a server state for the cluster (for the admin API, awaited on its runtime).
    pub fn share(&self, id: &ServerId, state: AdminState) -> portico_admin::ShareFuture {
        Box::pin(self.node.share(id.clone(), state))
    }

    /// Leave the cluster (the member entry goes at once).
    pub async fn stop(&self) {
        self.node.stop().await;
    }
}

/// Every (upstream, server) of `config`, to tell whether a change matters.
fn servers_of(config: &Config) -> BTreeSet<(String, String, u32)> {
    config
        .upstreams
        .values()
        .flat_map(|u| {
            u.servers
                .iter()
                .map(|s| (u.name.clone(), s.addr.to_string(), s.weight))
        })
        .collect()
}

/// `config` with the registered servers added to its `discover = "cluster"` upstreams.
fn merge(config: Arc<Config>, registered: &Registered) -> Arc<Config> {
    let wanted = config.upstreams.values().any(|u| {
        u.discover == Some(Discover::Cluster)
            && registered.get(&u.name).is_some_and(|r| !r.is_empty())
    });
    if !wanted {
        return config;
    }
    let mut c = (*config).clone();
    for u in c.upstreams.values_mut() {
        if u.discover != Some(Discover::Cluster) {
            continue;
        }
        let Some(regs) = registered.get(&u.name) else {
            continue;
        };
        for reg in regs.values() {
            let Some(spec) = reg.spec() else { continue };
            if !u.servers.iter().any(|s| s.addr == spec.addr) {
                u.servers.push(spec);
            }
        }
    }
    Arc::new(c)
}

/// Start the slow-start ramp of the registered servers that `new` runs and `old` did not: a
/// server that joins through registration (an autoscaled one) starts cold, so it ramps
/// over its upstream's `slow_start` as a recovered server does. The ramp counts from the
/// registration's time (`since_unix`, the registering host's clock; a time ahead of ours
/// counts as now), so every node ramps a server alike, and a registration older than
/// `slow_start` (a node that starts, or an upstream that turns `discover = "cluster"` on)
/// does not ramp at all. Servers listed in `file`, and servers `old` already ran, are left
/// alone. `now` is this node's clock as an instant and as Unix seconds.
fn ramp_joined(
    file: &Config,
    old: &Config,
    new: &Config,
    registered: &Registered,
    registry: &Registry,
    now: (Instant, u64),
) {
    let has = |c: &Config, upstream: &str, addr: &portico_config::ServerAddr| {
        c.upstreams
            .get(upstream)
            .is_some_and(|u| u.servers.iter().any(|s| &s.addr == addr))
    };
    for u in new.upstreams.values() {
        if u.discover != Some(Discover::Cluster) || u.slow_start.is_zero() {
            continue;
        }
        let Some(regs) = registered.get(&u.name) else {
            continue;
        };
        for reg in regs.values() {
            let Some(spec) = reg.spec() else { continue };
            // A listed address is the file's server (see `merge`); `old` ran it already.
            if !has(new, &u.name, &spec.addr)
                || has(file, &u.name, &spec.addr)
                || has(old, &u.name, &spec.addr)
            {
                continue;
            }
            let age = Duration::from_secs(now.1.saturating_sub(reg.since_unix));
            if age >= u.slow_start {
                continue;
            }
            let id = ServerId {
                upstream: Arc::from(u.name.as_str()),
                addr: Arc::from(spec.addr.to_string()),
            };
            if let Some(state) = registry.get(&id) {
                state.joined_at(now.0.checked_sub(age).unwrap_or(now.0));
                tracing::info!(upstream = %u.name, server = %spec.addr, slow_start = ?u.slow_start, "cluster: registered server joined, slow start");
            }
        }
    }
}

/// `portico register --upstream NAME --addr HOST:PORT [--weight N] [--ttl 10s] -c FILE`: keep
/// the server registered in the cluster while this runs; deregister on SIGTERM/SIGINT.
pub fn register(
    path: &Path,
    upstream: &str,
    addr: &str,
    weight: u32,
    ttl: &str,
) -> Result<(), Failure> {
    let config = crate::check::load(path)?;
    let invalid = |msg: String| Failure::InvalidConfig(format!("portico register: {msg}"));
    let Some(cfg) = config.cluster.clone() else {
        return Err(invalid(format!(
            "{} has no [cluster] section (the etcd to register in)",
            path.display()
        )));
    };
    match config.upstreams.get(upstream) {
        None => {
            return Err(invalid(format!(
                "{} has no upstream `{upstream}`",
                path.display()
            )));
        }
        Some(u) if u.discover != Some(Discover::Cluster) => {
            return Err(invalid(format!(
                "upstream `{upstream}` does not have discover = \"cluster\" in {}: its nodes would ignore the registration",
                path.display()
            )));
        }
        Some(_) => {}
    }
    let parsed = portico_config::ServerAddr::parse(addr)
        .map_err(|e| invalid(format!("bad --addr `{addr}`: {e}")))?;
    if !(1..=1_000_000).contains(&weight) {
        return Err(invalid(format!("--weight {weight}: use 1-1000000")));
    }
    let ttl = portico_config::parse_duration(ttl)
        .ok()
        .filter(|d| *d >= Duration::from_secs(2))
        .ok_or_else(|| {
            invalid(format!(
                "bad --ttl `{ttl}`: use a duration of at least 2s, e.g. 10s"
            ))
        })?;
    crate::logging::init();
    let reg = Registration {
        addr: parsed.to_string(),
        weight,
        host: portico_cluster::connect::node_name(&cfg),
        pid: std::process::id(),
        since_unix: portico_cluster::registry::unix_now(),
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    runtime.block_on(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .context("cannot handle SIGTERM")?;
        let stop = async {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            tracing::info!("stopping: deregistering");
        };
        let conn = portico_cluster::connect(&cfg)
            .await
            .context("cannot set up the etcd client of [cluster]")?;
        let key = conn.keys.registered(upstream, &reg.addr);
        portico_cluster::registry::register(&conn, upstream, &reg, ttl, stop, |ev| match ev {
            RegisterEvent::Registered { lease } => {
                tracing::info!(key = %key, lease, ttl = ?ttl, "registered");
            }
            RegisterEvent::Failed { error, retry_in } => {
                tracing::warn!(error = %error, retry_in = ?retry_in, "etcd unreachable, retrying");
            }
        })
        .await
        .context("cannot deregister (the entry goes when its lease expires)")?;
        tracing::info!(key = %key, "deregistered");
        anyhow::Ok(())
    })?;
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use portico_balance::Pool;

    fn file() -> Config {
        let text = "[cluster]\netcd = [\"http://127.0.0.1:2379\"]\n\
                    [upstreams.app]\nservers = [\"127.0.0.1:9001\"]\ndiscover = \"cluster\"\n\
                    slow_start = \"100s\"\n\
                    [[sites]]\nlisten = [\"127.0.0.1:0\"]\n\
                    routes = [{ path = \"/\", proxy = \"app\" }]\n";
        portico_config::parse(text, Path::new("/tmp/p.toml")).unwrap()
    }

    fn registered(servers: &[(&str, u64)]) -> Registered {
        let regs = servers
            .iter()
            .map(|&(addr, since_unix)| {
                let reg = Registration {
                    addr: addr.into(),
                    weight: 1,
                    host: "h".into(),
                    pid: 1,
                    since_unix,
                };
                (addr.to_string(), reg)
            })
            .collect();
        Registered::from([("app".to_string(), regs)])
    }

    fn permille(registry: &Registry, addr: &str) -> u64 {
        let id = ServerId {
            upstream: "app".into(),
            addr: addr.into(),
        };
        let state = registry.get(&id).unwrap();
        state.slow_start_permille(Duration::from_secs(100))
    }

    /// Only a registered server new to the running config ramps, from its registration
    /// time: not the file's server (also registered), not one already running, not one
    /// registered longer ago than `slow_start`.
    #[test]
    fn registered_servers_that_join_start_their_slow_start() {
        let file = Arc::new(file());
        let unix = 1_000_000;
        let running = registered(&[("127.0.0.1:9001", unix), ("127.0.0.1:9003", unix - 5)]);
        let all = registered(&[
            ("127.0.0.1:9001", unix),
            ("127.0.0.1:9002", unix),
            ("127.0.0.1:9003", unix - 5),
            ("127.0.0.1:9004", unix - 200),
            ("127.0.0.1:9005", unix - 50),
        ]);
        let old = merge(Arc::clone(&file), &running);
        let new = merge(Arc::clone(&file), &all);
        assert_eq!(new.upstreams["app"].servers.len(), 5);
        let registry = Registry::new();
        let _pool = Pool::new(&new.upstreams["app"], &registry);
        ramp_joined(&file, &old, &new, &all, &registry, (Instant::now(), unix));
        let joined = permille(&registry, "127.0.0.1:9002");
        assert!((100..150).contains(&joined), "{joined}");
        let halfway = permille(&registry, "127.0.0.1:9005");
        assert!((550..600).contains(&halfway), "{halfway}");
        for addr in ["127.0.0.1:9001", "127.0.0.1:9003", "127.0.0.1:9004"] {
            assert_eq!(permille(&registry, addr), 1000, "{addr}");
        }
        // A reload that changes nothing ramps nothing again (the servers ran already).
        let registry2 = Registry::new();
        let _pool = Pool::new(&new.upstreams["app"], &registry2);
        ramp_joined(&file, &new, &new, &all, &registry2, (Instant::now(), unix));
        assert_eq!(permille(&registry2, "127.0.0.1:9002"), 1000);
    }
}
