//! Reload: apply a new config to a running server without an accept gap and without
//! touching connections or WebSockets the change does not concern.
//!
//! [`RunningServer::reload`] works in this order; nothing changes unless every fallible
//! step succeeded:
//! 1. compile the new [`Snapshot`] (resolves server names) — a failure returns `Err`;
//! 2. diff listeners by configured address (a listener's identity): unchanged ones keep
//!    their sockets (never re-bound), added ones are bound now (one `SO_REUSEPORT` socket
//!    per worker) — a bind failure returns `Err` and closes what this reload bound;
//! 3. remember the old snapshot for the removed listeners' connections, publish the new
//!    snapshot (requests in flight keep the `Arc` they started with);
//! 4. hand each worker its socket of every added listener, tell it to stop the removed
//!    ones (their connections finish gracefully, closed at `shutdown_grace`), and to drain
//!    the WebSockets the new config no longer sends where they went: their server (upstream
//!    name + address) is gone, or their upgrade request would now meet no site and route
//!    proxying WebSockets to the same upstream (see [`crate::worker::websockets`]). Close 1001 at a
//!    frame boundary, spread over half of `shutdown_grace`, hard close at the cap; every
//!    other WebSocket is left alone.
//!
//! [`WsDrainer`] sends the same WebSocket drain for servers that stay in the config but
//! were disabled (the admin API's `disable`).
//!
//! Settings read once at start (`threads`, `max_connections`, `access_log`,
//! `access_log_format`, `state_dir`) are reported in [`ReloadOutcome::needs_restart`].

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use portico_balance::{Registry, ServerId};
use portico_config::Config;

use crate::client::accept::bind_group;
use crate::error::ProxyError;
use crate::server::start::{RunningServer, lock};
use crate::server::worker_loop::Command;
use crate::snapshot::Snapshot;
use crate::worker::stop::RunState;

/// Why a reload was refused (the running config stays).
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The new config could not be compiled or a new listener could not be bound.
    #[error(transparent)]
    Build(#[from] ProxyError),
    /// The server is stopping.
    #[error("the server is stopping")]
    Stopping,
}

/// What a reload changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReloadOutcome {
    /// `(configured, bound)` addresses of listeners bound by this reload.
    pub listeners_added: Vec<(SocketAddr, SocketAddr)>,
    /// Listeners that stopped accepting (their connections drain).
    pub listeners_removed: Vec<SocketAddr>,
    /// Servers no longer in any upstream (their WebSockets drain).
    pub servers_removed: Vec<ServerId>,
    /// `[server]` keys that changed but apply only after a restart.
    pub needs_restart: Vec<&'static str>,
}

impl RunningServer {
    /// Apply `config` (already validated) to the running server; see the module doc.
    /// Reloads are serialized. On `Err` nothing changed.
    pub fn reload(
        &self,
        config: Arc<Config>,
        registry: &Registry,
    ) -> Result<ReloadOutcome, ReloadError> {
        let mut current = lock(&self.config);
        if *self.shared.state.borrow() != RunState::Running {
            return Err(ReloadError::Stopping);
        }
        let mut snapshot = Snapshot::build_with(&config, registry, self.plumbing.resolver())?;
        if snapshot.needs_tls() && self.shared.tls.is_none() {
            return Err(crate::error::ProxyError::Tls(
                "a site has `tls` but the data plane was started without a TLS runtime".into(),
            )
            .into());
        }
        if let Some(tls) = &self.shared.tls {
            snapshot.attach_tls(tls);
        }
        let old = self.shared.snapshot.load_full();
        let old_ids: HashSet<SocketAddr> = old.listeners.iter().map(|l| l.addr).collect();
        let new_ids: HashSet<SocketAddr> = snapshot.listeners.iter().map(|l| l.addr).collect();

        // Bind every added listener before anything changes.
        let threads = self.commands.len();
        let mut added = Vec::new();
        for l in &snapshot.listeners {
            if !old_ids.contains(&l.addr) {
                let (sockets, actual) = bind_group(l.addr, threads)?;
                added.push((l.addr, actual, sockets));
            }
        }
        let removed: Vec<SocketAddr> = old
            .listeners
            .iter()
            .map(|l| l.addr)
            .filter(|a| !new_ids.contains(a))
            .collect();
        let new_servers = server_ids(&snapshot);
        let servers_removed: HashSet<ServerId> = server_ids(&old)
            .into_iter()
            .filter(|s| !new_servers.contains(s))
            .collect();

        // A TLS site's redirects name the port its listener actually got (port 0 in tests).
        let pairs: Vec<(SocketAddr, SocketAddr)> = lock(&self.bound)
            .iter()
            .copied()
            .chain(added.iter().map(|(c, a, _)| (*c, *a)))
            .collect();
        snapshot.set_bound(&pairs);
        let grace = config.server.shutdown_grace;
        let now = Instant::now();
        let deadline = now + grace;
        {
            let mut retired = lock(&self.shared.retired);
            retired.retain(|id, (_, until)| *until > now && !new_ids.contains(id));
            for id in &removed {
                retired.insert(*id, (old.clone(), deadline));
            }
        }
        let mut bound = lock(&self.bound);
        let old_bound = std::mem::take(&mut *bound);
        self.shared.snapshot.store(Arc::new(snapshot));

        let mut outcome = ReloadOutcome {
            needs_restart: needs_restart(&current, &config),
            ..ReloadOutcome::default()
        };
        for (id, actual, sockets) in added {
            for (worker, socket) in sockets.into_iter().enumerate() {
                // A worker stops receiving only when it exits (the server is stopping).
                let _ = self.commands[worker].send(Command::AddListener { id, socket });
            }
            outcome.listeners_added.push((id, actual));
        }
        for id in &removed {
            for tx in &self.commands {
                let _ = tx.send(Command::RemoveListener { id: *id, deadline });
            }
        }
        // Always: besides removed servers, each worker routes its WebSockets' upgrades again
        // against the new snapshot (a site or route may be gone or point elsewhere).
        let servers = Arc::new(servers_removed.clone());
        for tx in &self.commands {
            let _ = tx.send(Command::DrainServers {
                servers: servers.clone(),
                window: grace / 2,
                deadline,
            });
        }
        // Bound addresses in the new snapshot's order.
        let snap = self.shared.snapshot.load();
        *bound = snap
            .listeners
            .iter()
            .filter_map(|l| {
                old_bound
                    .iter()
                    .chain(outcome.listeners_added.iter())
                    .find(|(c, _)| *c == l.addr)
                    .copied()
            })
            .collect();
        *lock(&self.grace) = grace;
        outcome.listeners_removed = removed;
        let mut servers: Vec<ServerId> = servers_removed.into_iter().collect();
        servers.sort();
        outcome.servers_removed = servers;
        *current = config;
        Ok(outcome)
    }

    /// A handle that drains the WebSockets of chosen servers on every worker, from any
    /// thread (the admin API's `disable`).
    pub fn ws_drainer(&self) -> WsDrainer {
        WsDrainer {
            commands: self.commands.clone(),
            grace: Arc::clone(&self.grace),
        }
    }

    /// WebSockets open now over all workers (for tests and status).
    pub fn websockets(&self) -> usize {
        self.shared
            .websockets
            .load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// Drains the WebSockets of servers that stay in the config (a disabled server): on every
/// worker, close 1001 at a frame boundary spread over half of the current
/// `shutdown_grace`, hard close at its end, exactly as a reload drains a removed server's.
/// Cheap to clone; usable from any thread. Once the server has stopped it does nothing.
#[derive(Debug, Clone)]
pub struct WsDrainer {
    commands: Vec<mpsc::UnboundedSender<Command>>,
    grace: Arc<Mutex<Duration>>,
}

impl WsDrainer {
    /// Start draining the WebSockets of `servers` (returns at once; the closes follow over
    /// the window).
    pub fn drain(&self, servers: HashSet<ServerId>) {
        let grace = *lock(&self.grace);
        let deadline = Instant::now() + grace;
        let servers = Arc::new(servers);
        for tx in &self.commands {
            // A worker stops receiving only when it exits (the server is stopping).
            let _ = tx.send(Command::DrainServers {
                servers: servers.clone(),
                window: grace / 2,
                deadline,
            });
        }
    }
}

/// Every server (upstream name + address as written) of a snapshot.
fn server_ids(snapshot: &Snapshot) -> HashSet<ServerId> {
    snapshot
        .upstreams
        .iter()
        .flat_map(|u| u.pool.members().iter().map(|m| m.id.clone()))
        .collect()
}

/// `[server]` keys read once at start that differ between `old` and `new`.
fn needs_restart(old: &Config, new: &Config) -> Vec<&'static str> {
    let (a, b) = (&old.server, &new.server);
    let mut keys = Vec::new();
    if a.threads != b.threads {
        keys.push("server.threads");
    }
    if a.max_connections != b.max_connections {
        keys.push("server.max_connections");
    }
    if a.access_log != b.access_log {
        keys.push("server.access_log");
    }
    if a.access_log_format != b.access_log_format {
        keys.push("server.access_log_format");
    }
    if a.state_dir != b.state_dir {
        keys.push("server.state_dir");
    }
    keys
}
