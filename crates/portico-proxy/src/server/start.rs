//! The public face of the data plane: [`Server::start`] and [`RunningServer`].
//!
//! `start` is synchronous: it compiles the config into a snapshot (resolving server
//! names), binds every listener (one `SO_REUSEPORT` socket per worker), builds one
//! current-thread runtime per worker and starts the worker threads. Any failure is returned
//! before anything serves. Stopping: [`RunningServer::shutdown`] (graceful, bounded by
//! `server.shutdown_grace`) or [`RunningServer::stop_now`]; [`RunningServer::wait`] or
//! [`RunningServer::closed`] wait for the workers. [`RunningServer::reload`] (in
//! [`crate::server::reload`]) applies a new config to the running server.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use portico_balance::Registry;
use portico_config::Config;
use tokio::sync::{Notify, mpsc, watch};

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
    threads: Mutex<Vec<JoinHandle<()>>>,
    alive: watch::Receiver<usize>,
    /// `server.shutdown_grace` of the current config.
    pub(crate) grace: Mutex<Duration>,
    /// One command channel per worker (reloads).
    pub(crate) commands: Vec<mpsc::UnboundedSender<Command>>,
    /// The config the running snapshot was built from; also serializes reloads.
    pub(crate) config: Mutex<Arc<Config>>,
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
        let tls = tls.map(TlsShared::new).transpose()?;
        let mut snapshot = Snapshot::build(&config, &registry)?;
        if snapshot.needs_tls() && tls.is_none() {
            return Err(ProxyError::Tls(
                "a site has `tls` but the data plane was started without a TLS runtime".into(),
            ));
        }
        if let Some(tls) = &tls {
            snapshot.attach_tls(tls);
        }
        let threads = match config.server.threads {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
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
        let access_log =
            AccessLog::open(&config.server.access_log, config.server.access_log_format)
                .map_err(ProxyError::AccessLog)?;
        let (state, _) = watch::channel(RunState::Running);
        let shared = Arc::new(Shared {
            snapshot: Arc::new(ArcSwap::from_pointee(snapshot)),
            state,
            connections: AtomicUsize::new(0),
            max_connections: config.server.max_connections.max(1),
            slot_freed: Notify::new(),
            access_log,
            retired: Mutex::new(HashMap::new()),
            websockets: AtomicUsize::new(0),
            tls,
        });
        let mut runtimes = Vec::with_capacity(threads);
        for _ in 0..threads {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(ProxyError::Worker)?;
            runtimes.push(rt);
        }
        let (alive_tx, alive) = watch::channel(threads);
        let alive_tx = Arc::new(alive_tx);
        let mut handles = Vec::with_capacity(threads);
        let mut commands = Vec::with_capacity(threads);
        for (i, (rt, listeners)) in runtimes.into_iter().zip(per_worker).enumerate() {
            let shared = shared.clone();
            let alive_tx = alive_tx.clone();
            let (command_tx, command_rx) = mpsc::unbounded_channel();
            commands.push(command_tx);
            let handle = std::thread::Builder::new()
                .name(format!("portico-worker-{i}"))
                .spawn(move || {
                    crate::server::worker_loop::run(rt, shared, listeners, command_rx);
                    alive_tx.send_modify(|n| *n = n.saturating_sub(1));
                })
                .map_err(ProxyError::Worker)?;
            handles.push(handle);
        }
        Ok(RunningServer {
            shared,
            bound: Mutex::new(bound),
            threads: Mutex::new(handles),
            alive,
            grace: Mutex::new(config.server.shutdown_grace),
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

    /// Client connections open right now over all workers.
    pub fn connections(&self) -> usize {
        self.shared
            .connections
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Wait (async) until every worker has exited.
    pub async fn closed(&self) {
        let mut alive = self.alive.clone();
        let _ = alive.wait_for(|n| *n == 0).await;
    }

    /// Block until every worker has exited.
    pub fn wait(self) {
        let handles = match self.threads.lock() {
            Ok(mut h) => std::mem::take(&mut *h),
            Err(poisoned) => std::mem::take(&mut *poisoned.into_inner()),
        };
        for h in handles {
            let _ = h.join();
        }
    }
}

/// Lock a mutex whose data stays consistent even if a holder panicked.
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
