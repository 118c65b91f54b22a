//! The live stream listeners and the plane's main task: per listener one accept loop per
//! worker (an `SO_REUSEPORT` socket each, as the HTTP plane), the `max_connections` gate
//! (the process's, shared with the HTTP plane), the certificate pollers, and the drain at
//! stop.
//!
//! Floor: above `conn`, `snapshot` and `shared`; below `running` (the control handle) and
//! `reload`. Nothing here knows about the handle: the accept loops and [`run`] follow a
//! `watch` of [`RunState`] and report their end through an [`Exited`] flag.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use portico_config::Config;
use portico_net::{Exited, RunState, Workers};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::error::StreamError;
use crate::shared::{Shared, lock};
use crate::snapshot::StreamRt;

/// What a stream's compiled form depends on: its own config and the upstreams it uses.
pub(crate) type Inputs = (portico_config::Stream, Vec<portico_config::Upstream>);

/// A stream's config and the upstreams it uses (by name order).
pub(crate) fn stream_inputs(config: &Config, s: &portico_config::Stream) -> Inputs {
    let mut names: Vec<&str> = s
        .upstream
        .as_deref()
        .into_iter()
        .chain(s.sni_routes.iter().map(|(_, u)| u.as_str()))
        .collect();
    names.sort_unstable();
    names.dedup();
    let upstreams = names
        .into_iter()
        .filter_map(|n| config.upstreams.get(n).cloned())
        .collect();
    (s.clone(), upstreams)
}

/// A newly bound stream listener: (configured address, one socket per worker, bound address).
pub(crate) type Bound = (SocketAddr, Vec<std::net::TcpListener>, SocketAddr);

/// Bind one stream listener: one `SO_REUSEPORT` socket per worker.
pub(crate) fn bind(addr: SocketAddr, workers: usize) -> Result<Bound, StreamError> {
    let (sockets, actual) = portico_net::bind_group(addr, workers)
        .map_err(|source| StreamError::Bind { addr, source })?;
    Ok((addr, sockets, actual))
}

/// One stream listener as the plane serves it.
#[derive(Debug)]
pub(crate) struct Slot {
    /// Configured address (the listener's identity across reloads) and bound address.
    pub listen: SocketAddr,
    pub bound: SocketAddr,
    /// The config its stream was compiled from (what a reload compares).
    pub inputs: Inputs,
    /// The compiled stream new connections get; connections keep the one they started on.
    pub rt: watch::Sender<Arc<StreamRt>>,
    /// The accept loops (one per worker).
    pub accept: Vec<tokio::task::AbortHandle>,
    /// Turns true `shutdown_grace` after a reload removed the listener: its connections
    /// still open then are closed.
    pub cut: watch::Sender<bool>,
}

impl Slot {
    fn stop_accepting(&self) {
        for a in &self.accept {
            a.abort();
        }
    }
}

/// The live listeners and certificate pollers, changed by reloads.
#[derive(Debug)]
pub(crate) struct Control {
    pub workers: Workers,
    pub slots: Vec<Slot>,
    /// Certificate-file poller of each compiled TLS stream in use.
    pub pollers: Vec<(Arc<StreamRt>, tokio::task::AbortHandle)>,
}

impl Control {
    pub(crate) fn new(workers: Workers) -> Control {
        Control {
            workers,
            slots: Vec::new(),
            pollers: Vec::new(),
        }
    }

    /// Start accepting on a newly bound listener: worker `i` accepts on socket `i`.
    pub(crate) fn spawn_slot(
        &self,
        shared: &Arc<Shared>,
        state: &watch::Receiver<RunState>,
        (listen, sockets, bound): Bound,
        inputs: Inputs,
        rt: Arc<StreamRt>,
    ) -> Slot {
        let (tx, rx) = watch::channel(rt);
        let (cut, cut_rx) = watch::channel(false);
        let mut accept = Vec::with_capacity(sockets.len());
        for (i, socket) in sockets.into_iter().enumerate() {
            let handle = self.workers.handle(i);
            // Registered with this worker's reactor.
            let _inside = handle.enter();
            match TcpListener::from_std(socket) {
                Ok(l) => {
                    let task = handle.spawn(accept_loop(
                        Arc::clone(shared),
                        l,
                        bound,
                        (rx.clone(), cut_rx.clone()),
                        state.clone(),
                    ));
                    accept.push(task.abort_handle());
                }
                Err(e) => tracing::error!(listen = %bound, error = %e, "stream listener failed"),
            }
        }
        Slot {
            listen,
            bound,
            inputs,
            rt: tx,
            accept,
            cut,
        }
    }

    /// A listener removed by a reload: stop accepting now; close its connections still open
    /// after `grace`.
    pub(crate) fn retire(&self, slot: Slot, grace: Duration) {
        slot.stop_accepting();
        let cut = slot.cut;
        self.workers.handle(0).spawn(async move {
            tokio::time::sleep(grace).await;
            cut.send_replace(true);
        });
    }

    pub(crate) fn spawn_poller(&mut self, rt: Arc<StreamRt>, files: portico_tls::FileCerts) {
        let _inside = self.workers.handle(0).enter();
        let task = files.spawn();
        self.pollers.push((rt, task.abort_handle()));
    }

    /// Stop everything that runs outside connections (the end of the plane).
    fn stop(&mut self) {
        for s in &self.slots {
            s.stop_accepting();
        }
        for (_, p) in &self.pollers {
            p.abort();
        }
    }

    /// The compiled streams new connections get now.
    pub(crate) fn current(&self) -> Vec<Arc<StreamRt>> {
        self.slots
            .iter()
            .map(|s| Arc::clone(&s.rt.borrow()))
            .collect()
    }
}

/// The plane's main task: sweep persistence tables until told to stop, then drain until the
/// deadline, close what is left, and raise `exited`. With `own` workers (a plane started
/// alone), shut them down last.
pub(crate) async fn run(
    shared: Arc<Shared>,
    control: Arc<Mutex<Control>>,
    mut state: watch::Receiver<RunState>,
    exited: Arc<Exited>,
    own: Option<Workers>,
) {
    let sweeper = tokio::spawn(sweep(Arc::clone(&control)));
    let _ = state.wait_for(|s| *s != RunState::Running).await;
    lock(&control).stop();
    sweeper.abort();
    let now = *state.borrow();
    if let RunState::Draining(deadline) = now {
        tokio::select! {
            () = shared.all_closed() => {}
            () = tokio::time::sleep_until(deadline.into()) => {}
            _ = state.wait_for(|s| *s == RunState::Stopped) => {}
        }
    }
    // Close what is left and give the tasks a moment to write their log lines.
    shared.kill.send_replace(true);
    let _ = tokio::time::timeout(Duration::from_secs(1), shared.all_closed()).await;
    exited.set();
    if let Some(workers) = own {
        workers.shutdown();
    }
}

/// Drop expired persistence entries every few seconds.
async fn sweep(control: Arc<Mutex<Control>>) {
    loop {
        tokio::time::sleep(Duration::from_secs(5)).await;
        let now = std::time::Instant::now();
        let streams = lock(&control).current();
        for s in &streams {
            for (_, t) in &s.targets {
                if let Some(p) = &t.persistence {
                    p.sweep(now);
                }
            }
        }
    }
}

/// Accept on one worker's socket of a listener until the plane stops or a reload removes
/// the listener (the task is aborted).
async fn accept_loop(
    shared: Arc<Shared>,
    listener: TcpListener,
    addr: SocketAddr,
    (stream, cut): (watch::Receiver<Arc<StreamRt>>, watch::Receiver<bool>),
    mut state: watch::Receiver<RunState>,
) {
    let gate = Arc::clone(&shared.gate);
    loop {
        if *state.borrow_and_update() != RunState::Running {
            return;
        }
        // The max_connections gate (HTTP and stream connections together): wait for room.
        tokio::select! {
            () = gate.wait_room() => {}
            r = state.changed() => if r.is_err() { return } else { continue },
        }
        let accepted = tokio::select! {
            r = listener.accept() => r,
            r = state.changed() => if r.is_err() { return } else { continue },
        };
        match accepted {
            Ok((sock, peer)) => {
                // Another loop (any listener, either plane) may have taken the last slot
                // since the check: this connection then waits for one, unserved.
                let permit = tokio::select! {
                    p = gate.wait_take() => p,
                    _ = state.wait_for(|s| *s != RunState::Running) => return,
                };
                let _ = sock.set_nodelay(true);
                shared.opened();
                let label = addr.to_string();
                portico_metrics::global().stream_accepted(&label);
                let sh = Arc::clone(&shared);
                let st = Arc::clone(&stream.borrow());
                let cut = cut.clone();
                tokio::spawn(async move {
                    tokio::select! {
                        () = crate::conn::serve(Arc::clone(&sh), st, sock, peer, addr) => {}
                        () = cut_at(cut) => tracing::info!(
                            listen = %addr, client = %peer,
                            "stream connection closed: its listener was removed by a reload and shutdown_grace passed"
                        ),
                    }
                    drop(permit);
                    sh.closed();
                    portico_metrics::global().stream_closed(&label);
                });
            }
            Err(e) => {
                tracing::warn!(listen = %addr, error = %e, "stream accept failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

/// Resolves once `cut` turns true (never if its sender goes away first).
async fn cut_at(mut cut: watch::Receiver<bool>) {
    if cut.wait_for(|c| *c).await.is_err() {
        std::future::pending::<()>().await;
    }
}
