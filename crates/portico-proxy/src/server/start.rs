//! The public face of the data plane: [`Server::start`] and [`RunningServer`].
//!
//! `start` is synchronous: it compiles the config into a snapshot (resolving server
//! names), binds every listener (one `SO_REUSEPORT` socket per worker) and starts each
//! worker's loop on the process's worker threads (`portico_net::Plumbing`: the binary hands
//! the same plumbing to the stream plane, so both share `threads` workers, one
//! `max_connections` count and the access log; [`Server::start`] alone builds plumbing of
//! its own). Any failure is returned before anything serves. Stopping:
//! [`RunningServer::shutdown`] (graceful, bounded by `server.shutdown_grace`) or
//! [`RunningServer::stop_now`]; [`RunningServer::wait`] or [`RunningServer::closed`] wait
//! for the workers' loops. [`RunningServer::reload`] (in [`crate::server::reload`]) applies a
//! new config to the running server.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use portico_balance::Registry;
use portico_config::Config;
use portico_net::{Exited, Plumbing, PlumbingError};
use tokio::sync::{mpsc, watch};

use crate::access_log::AccessLog;
use crate::client::accept::bind_group;
use crate::error::ProxyError;
use crate::server::worker_loop::Command;
use crate::snapshot::Snapshot;
use crate::snapshot::tls::{TlsContext, TlsShared};
use crate::worker::state::Shared;
use crate::worker::stop::RunState;

/// Starts the data plane.
#[derive(Debug)]
pub struct Server;

/// A started data plane: its bound addresses and its stop controls.
#[derive(Debug)]
pub struct RunningServer {
    pub(crate) shared: Arc<Shared>,
    /// `(configured, bound)` per listener, in the current snapshot's order.
    pub(crate) bound: Mutex<Vec<(SocketAddr, SocketAddr)>>,
    /// Raised once every worker's loop has ended.
    exited: Arc<Exited>,
    pub(crate) plumbing: Plumbing,
    /// The plumbing is this server's own ([`Server::start`]): ended with it.
    own: bool,
    /// `server.shutdown_grace` of the current config.
    pub(crate) grace: Arc<Mutex<Duration>>,
    /// One command channel per worker (reloads).
    pub(crate) commands: Vec<mpsc::UnboundedSender<Command>>,
    /// The config the running snapshot was built from; also serializes reloads.
    pub(crate) config: Mutex<Arc<Config>>,
}

impl From<PlumbingError> for ProxyError {
    fn from(e: PlumbingError) -> ProxyError {
        match e {
            PlumbingError::Workers(e) => ProxyError::Worker(e),
            PlumbingError::AccessLog(e) => ProxyError::AccessLog(e),
        }
    }
}

impl Server {
    /// Bind every site listener, start the workers, return. A bind failure names the
    /// address.
    pub fn start(config: Arc<Config>, registry: Registry) -> Result<RunningServer, ProxyError> {
        Server::start_with_tls(config, registry, None)
    }

    /// [`Server::start`] with TLS: `tls` (from a running `portico_tls::TlsRuntime`, see
    /// [`TlsContext::from_runtime`]) serves the TLS listeners (certificates by SNI) and the
    /// ACME HTTP-01 answers of the plain ones. Required when a site has `tls`; kept in the
    /// workers' shared state for the server's life (reloads reuse it).
    pub fn start_with_tls(
        config: Arc<Config>,
        registry: Registry,
        tls: Option<TlsContext>,
    ) -> Result<RunningServer, ProxyError> {
        Server::start_inner(config, registry, tls, None)
    }

    /// [`Server::start_with_tls`] on the process's `plumbing` (its workers, connection gate,
    /// access log and resolver, shared with the stream plane). The caller shuts the
    /// plumbing down once every plane on it has stopped.
    pub fn start_on(
        config: Arc<Config>,
        registry: Registry,
        tls: Option<TlsContext>,
        plumbing: &Plumbing,
    ) -> Result<RunningServer, ProxyError> {
        Server::start_inner(config, registry, tls, Some(plumbing))
    }

    fn start_inner(
        config: Arc<Config>,
        registry: Registry,
        tls: Option<TlsContext>,
        given: Option<&Plumbing>,
    ) -> Result<RunningServer, ProxyError> {
        let tls = tls.map(TlsShared::new).transpose()?;
        let resolver = given.map_or_else(portico_net::Resolver::system, |p| p.resolver().clone());
        let mut snapshot = Snapshot::build_with(&config, &registry, &resolver)?;
        if snapshot.needs_tls() && tls.is_none() {
            return Err(ProxyError::Tls(
                "a site has `tls` but the data plane was started without a TLS runtime".into(),
            ));
        }
        if let Some(tls) = &tls {
            snapshot.attach_tls(tls);
        }
        let threads = given.map_or_else(
            || portico_net::workers::thread_count(config.server.threads),
            |p| p.workers().len(),
        );
        // sockets[worker] = (listener identity, socket)
        let mut per_worker: Vec<Vec<(SocketAddr, std::net::TcpListener)>> =
            (0..threads).map(|_| Vec::new()).collect();
        let mut bound = Vec::with_capacity(snapshot.listeners.len());
        for listener in &snapshot.listeners {
            let (sockets, actual) = bind_group(listener.addr, threads)?;
            bound.push((listener.addr, actual));
            for (worker, socket) in sockets.into_iter().enumerate() {
                per_worker[worker].push((listener.addr, socket));
            }
        }
        snapshot.set_bound(&bound);
        // Last fallible step: plumbing of its own when started alone.
        let (plumbing, own) = match given {
            Some(p) => (p.clone(), false),
            None => (Plumbing::start(&config.server)?, true),
        };
        let (state, _) = watch::channel(RunState::Running);
        let shared = Arc::new(Shared {
            snapshot: Arc::new(ArcSwap::from_pointee(snapshot)),
            state,
            gate: Arc::clone(plumbing.gate()),
            access_log: AccessLog::from(plumbing.access_log().clone()),
            retired: Mutex::new(HashMap::new()),
            websockets: AtomicUsize::new(0),
            tls,
        });
        let exited = Exited::new();
        let alive = Arc::new(AtomicUsize::new(threads));
        let mut commands = Vec::with_capacity(threads);
        for (i, listeners) in per_worker.into_iter().enumerate() {
            let (command_tx, command_rx) = mpsc::unbounded_channel();
            commands.push(command_tx);
            let (shared, alive, exited) = (shared.clone(), alive.clone(), exited.clone());
            let own_workers = own.then(|| plumbing.workers().clone());
            plumbing.workers().spawn_local_on(i, move || async move {
                crate::server::worker_loop::serve(shared, listeners, command_rx).await;
                if alive.fetch_sub(1, Ordering::AcqRel) == 1 {
                    exited.set();
                    // Own workers end with the last loop: what still runs is dropped (the
                    // hard close).
                    if let Some(workers) = own_workers {
                        workers.shutdown();
                    }
                }
            });
        }
        Ok(RunningServer {
            shared,
            bound: Mutex::new(bound),
            exited,
            plumbing,
            own,
            grace: Arc::new(Mutex::new(config.server.shutdown_grace)),
            commands,
            config: Mutex::new(config),
        })
    }
}

impl RunningServer {
    /// `(address as configured, address actually bound)` for every listener.
    pub fn bound_addrs(&self) -> Vec<(SocketAddr, SocketAddr)> {
        lock(&self.bound).clone()
    }

    /// The config the running snapshot was built from (the last one a reload applied).
    pub fn config(&self) -> Arc<Config> {
        lock(&self.config).clone()
    }

    /// Graceful stop: stop accepting, let requests in flight finish, close idle keep-alive
    /// connections, send WebSocket close 1001 to both sides; hard close after
    /// `server.shutdown_grace`.
    pub fn shutdown(&self) {
        let deadline = Instant::now() + *lock(&self.grace);
        self.shared.state.send_if_modified(|s| {
            if *s == RunState::Running {
                *s = RunState::Draining(deadline);
                true
            } else {
                false
            }
        });
    }

    /// Stop at once: close every connection.
    pub fn stop_now(&self) {
        self.shared.state.send_replace(RunState::Stopped);
    }

    /// Client connections open right now over all workers: the count behind
    /// `max_connections`, which on shared plumbing includes the stream plane's.
    pub fn connections(&self) -> usize {
        self.shared.gate.count()
    }

    /// Wait (async) until every worker's loop has ended.
    pub async fn closed(&self) {
        self.exited.wait().await;
    }

    /// Block until every worker's loop has ended (and, started alone, its worker threads).
    pub fn wait(self) {
        self.exited.wait_blocking();
        if self.own {
            self.plumbing.shutdown_and_join();
        }
    }
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        // Dropped without a stop: its own workers must not outlive it.
        if self.own && !self.exited.is_set() {
            self.stop_now();
            self.plumbing.workers().shutdown();
        }
    }
}

/// Lock a mutex whose data stays consistent even if a holder panicked.
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
