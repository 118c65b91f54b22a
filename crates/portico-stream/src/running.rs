//! [`RunningStreams`]: the control handle of the stream plane (bound addresses, graceful
//! and hard stop, waits), and [`Pending`], a plane built but not yet serving (the first
//! streams of a start or a reload, applied only once everything else of it worked).
//!
//! Floor: above `listeners` and `shared`; below `reload` and `server`.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use portico_config::ServerConfig;
use portico_net::{Exited, Plumbing, RunState};
use tokio::sync::watch;

use crate::listeners::{Control, run};
use crate::shared::{Shared, StreamOptions, lock};

/// Started stream listeners: their bound addresses and their stop controls.
#[derive(Debug)]
pub struct RunningStreams {
    pub(crate) bound: Mutex<Vec<(SocketAddr, SocketAddr)>>,
    pub(crate) state: watch::Sender<RunState>,
    pub(crate) state_rx: watch::Receiver<RunState>,
    /// The running plane; unset while no streams were ever configured (the idle handle).
    pub(crate) plane: OnceLock<Plane>,
    pub(crate) options: StreamOptions,
    /// `[server]` of the start-up config: the workers, gate and access log of a plane started
    /// alone (also when a reload starts it).
    pub(crate) server: ServerConfig,
    /// The process's plumbing when the plane was started on it (`StreamServer::start_on`);
    /// `None`: the plane starts plumbing of its own with its first streams.
    pub(crate) plumbing: Option<Plumbing>,
    /// `[server] shutdown_grace` of the current config.
    pub(crate) grace: Mutex<Duration>,
}

/// The running stream plane's parts.
#[derive(Debug)]
pub(crate) struct Plane {
    pub shared: Arc<Shared>,
    /// Listeners and pollers.
    pub control: Arc<Mutex<Control>>,
    /// Raised when the plane's main task has ended.
    exited: Arc<Exited>,
    plumbing: Plumbing,
    /// The plumbing is the plane's own (started alone): shut down with it.
    own: bool,
}

impl Plane {
    /// The workers the plane runs on.
    pub(crate) fn workers(&self) -> &portico_net::Workers {
        self.plumbing.workers()
    }
}

/// A plane built and not serving yet; dropping it undoes it (its own workers end).
#[derive(Debug)]
pub(crate) struct Pending {
    plane: Option<Plane>,
}

impl Pending {
    /// Build a plane on `plumbing` (`own`: started for it, shut down with it).
    pub(crate) fn launch(plumbing: Plumbing, own: bool, server: &ServerConfig) -> Pending {
        let shared = Arc::new(Shared::new(
            plumbing.access_log().clone(),
            Arc::clone(plumbing.gate()),
            server,
        ));
        let control = Arc::new(Mutex::new(Control::new(plumbing.workers().clone())));
        Pending {
            plane: Some(Plane {
                shared,
                control,
                exited: Exited::new(),
                plumbing,
                own,
            }),
        }
    }

    /// The plane being built.
    pub(crate) fn plane(&self) -> Option<&Plane> {
        self.plane.as_ref()
    }

    /// Start the plane's main task (sweep, drain at stop) on the first worker.
    pub(crate) fn go(mut self, state: &watch::Receiver<RunState>) -> Option<Plane> {
        let plane = self.plane.take()?;
        let own = plane.own.then(|| plane.plumbing.workers().clone());
        plane.plumbing.workers().handle(0).spawn(run(
            Arc::clone(&plane.shared),
            Arc::clone(&plane.control),
            state.clone(),
            Arc::clone(&plane.exited),
            own,
        ));
        Some(plane)
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if let Some(p) = &self.plane
            && p.own
        {
            p.plumbing.workers().shutdown();
        }
    }
}

impl RunningStreams {
    pub(crate) fn new(
        server: &ServerConfig,
        options: &StreamOptions,
        plumbing: Option<Plumbing>,
    ) -> RunningStreams {
        let (state, state_rx) = watch::channel(RunState::Running);
        RunningStreams {
            bound: Mutex::new(Vec::new()),
            state,
            state_rx,
            plane: OnceLock::new(),
            options: options.clone(),
            server: server.clone(),
            plumbing,
            grace: Mutex::new(server.shutdown_grace),
        }
    }

    /// `(address as configured, address actually bound)` for every stream listener.
    pub fn bound_addrs(&self) -> Vec<(SocketAddr, SocketAddr)> {
        lock(&self.bound).clone()
    }

    /// Graceful stop: stop accepting, let connections finish; close the rest after
    /// `server.shutdown_grace` (of the current config).
    pub fn shutdown(&self) {
        let deadline = Instant::now() + *lock(&self.grace);
        self.state.send_if_modified(|s| {
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
        self.state.send_replace(RunState::Stopped);
    }

    /// Stream connections open right now (this plane's; the `max_connections` gate counts
    /// both planes').
    pub fn connections(&self) -> usize {
        self.plane.get().map_or(0, |p| p.shared.live())
    }

    /// Wait (async) until the stream plane has stopped (for the idle handle: until
    /// `shutdown` or `stop_now` is called).
    pub async fn closed(&self) {
        if self.plane.get().is_none() {
            let mut state = self.state_rx.clone();
            let _ = state.wait_for(|s| *s != RunState::Running).await;
        }
        // Also when a reload started the plane while this waited.
        if let Some(p) = self.plane.get() {
            p.exited.wait().await;
        }
    }

    /// Block until the stream plane has stopped (and its own workers, if it has some, have
    /// ended). Call `shutdown` or `stop_now` first (the idle handle returns at once).
    pub fn wait(self) {
        if let Some(p) = self.plane.get() {
            p.exited.wait_blocking();
            if p.own {
                p.plumbing.shutdown_and_join();
            }
        }
    }
}

impl Drop for RunningStreams {
    fn drop(&mut self) {
        // A handle dropped without a stop: its own workers must not outlive it.
        if let Some(p) = self.plane.get()
            && p.own
        {
            self.state.send_replace(RunState::Stopped);
            p.plumbing.workers().shutdown();
        }
    }
}
