//! The public face of the data plane: [`Server::start`] and [`RunningServer`].
//!
//! `start` is synchronous: it compiles the config into a snapshot (resolving server
//! names), binds every listener (one `SO_REUSEPORT` socket per worker), builds one
//! current-thread runtime per worker and starts the worker threads. Any failure is returned
//! before anything serves. Stopping: [`RunningServer::shutdown`] (graceful, bounded by
//! `server.shutdown_grace`) or [`RunningServer::stop_now`]; [`RunningServer::wait`] or
//! [`RunningServer::closed`] wait for the workers.

use std::net::SocketAddr;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

use arc_swap::ArcSwap;
use portico_balance::Registry;
use portico_config::Config;
use tokio::sync::{Notify, watch};

use crate::accept::bind_group;
use crate::access_log::AccessLog;
use crate::error::ProxyError;
use crate::snapshot::Snapshot;
use crate::worker::{RunState, Shared};

/// Starts the data plane.
#[derive(Debug)]
pub struct Server;

/// A started data plane: its bound addresses and its stop controls.
#[derive(Debug)]
pub struct RunningServer {
    shared: Arc<Shared>,
    bound: Vec<(SocketAddr, SocketAddr)>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    alive: watch::Receiver<usize>,
    grace: std::time::Duration,
}

impl Server {
    /// Bind every site listener, start the workers, return. A bind failure names the
    /// address.
    pub fn start(config: Arc<Config>, registry: Registry) -> Result<RunningServer, ProxyError> {
        let snapshot = Snapshot::build(&config, &registry)?;
        let threads = match config.server.threads {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        // sockets[listener][worker]
        let mut per_worker: Vec<Vec<(usize, std::net::TcpListener)>> =
            (0..threads).map(|_| Vec::new()).collect();
        let mut bound = Vec::with_capacity(snapshot.listeners.len());
        for (index, listener) in snapshot.listeners.iter().enumerate() {
            let (sockets, actual) = bind_group(listener.addr, threads)?;
            bound.push((listener.addr, actual));
            for (worker, socket) in sockets.into_iter().enumerate() {
                per_worker[worker].push((index, socket));
            }
        }
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
        for (i, (rt, listeners)) in runtimes.into_iter().zip(per_worker).enumerate() {
            let shared = shared.clone();
            let alive_tx = alive_tx.clone();
            let handle = std::thread::Builder::new()
                .name(format!("portico-worker-{i}"))
                .spawn(move || {
                    crate::worker::run(rt, shared, listeners);
                    alive_tx.send_modify(|n| *n = n.saturating_sub(1));
                })
                .map_err(ProxyError::Worker)?;
            handles.push(handle);
        }
        Ok(RunningServer {
            shared,
            bound,
            threads: Mutex::new(handles),
            alive,
            grace: config.server.shutdown_grace,
        })
    }
}

impl RunningServer {
    /// `(address as configured, address actually bound)` for every listener.
    pub fn bound_addrs(&self) -> Vec<(SocketAddr, SocketAddr)> {
        self.bound.clone()
    }

    /// Graceful stop: stop accepting, let requests in flight finish, close idle keep-alive
    /// connections, send WebSocket close 1001 to both sides; hard close after
    /// `server.shutdown_grace`.
    pub fn shutdown(&self) {
        let deadline = Instant::now() + self.grace;
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
