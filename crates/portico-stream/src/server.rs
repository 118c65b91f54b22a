//! The public face of the L4 data plane: [`StreamServer::start`] and [`RunningStreams`],
//! mirroring `portico-proxy`'s `Server` / `RunningServer`.
//!
//! `start` is synchronous: it compiles the streams (resolving server names), binds every
//! stream listener (`SO_REUSEPORT`, so a restarted process can bind beside the old one),
//! builds one multi-thread runtime (`[server] threads` workers, 0 = one per core) on its own
//! thread, and returns. Any failure is returned before anything serves. With no
//! `[[streams]]` it binds nothing, starts no thread and returns an idle handle whose
//! `closed()` completes when `shutdown()` or `stop_now()` is called; the first reload that
//! adds streams starts the runtime then ([`Pending`], with the `[server]` settings of the
//! start-up config, as for the HTTP plane). Listeners live in a [`Control`] shared with the
//! runtime so that reloads (`reload.rs`) can add, update and remove them while it runs.
//! Start is itself "prepare + commit" on the idle handle.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::Duration;

use portico_balance::Registry;
use portico_config::{Config, ServerConfig};
use tokio::net::TcpListener;
use tokio::sync::{Notify, watch};

use crate::error::StreamError;
use crate::log::AccessLog;
use crate::reload::{Inputs, Slot};
use crate::snapshot::StreamRt;

/// Starts the stream listeners.
#[derive(Debug)]
pub struct StreamServer;

/// Knobs of the stream server that are not configuration keys.
#[derive(Debug, Clone)]
pub struct StreamOptions {
    /// How often the certificate files of TLS streams are checked for changes (default 5 s,
    /// as `portico_tls::FileCerts`; tests use a few milliseconds).
    pub cert_poll_interval: Duration,
}

impl Default for StreamOptions {
    fn default() -> Self {
        StreamOptions {
            cert_poll_interval: Duration::from_secs(5),
        }
    }
}

/// State every connection task sees.
#[derive(Debug)]
pub(crate) struct Shared {
    pub access_log: AccessLog,
    pub header_timeout: Duration,
    /// Turns true to close every connection (stop_now, or the end of the grace period).
    pub kill: watch::Sender<bool>,
    connections: AtomicUsize,
    max_connections: usize,
    slot_freed: Notify,
}

/// What the control side asks of the runtime.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RunState {
    Running,
    /// Stop accepting; connections may finish until the grace period ends.
    Draining,
    Stopped,
}

/// Started stream listeners: their bound addresses and their stop controls.
#[derive(Debug)]
pub struct RunningStreams {
    pub(crate) bound: Mutex<Vec<(SocketAddr, SocketAddr)>>,
    state: watch::Sender<RunState>,
    pub(crate) state_rx: watch::Receiver<RunState>,
    /// The running runtime; unset while no streams were ever configured (the idle handle).
    pub(crate) plane: OnceLock<Plane>,
    pub(crate) thread: Mutex<Option<JoinHandle<()>>>,
    pub(crate) options: StreamOptions,
    /// `[server]` of the start-up config: the runtime's settings, also when a reload starts it.
    pub(crate) server: ServerConfig,
}

/// The stream runtime's shared parts.
#[derive(Debug)]
pub(crate) struct Plane {
    pub shared: Arc<Shared>,
    /// Listeners and pollers.
    pub control: Arc<Mutex<Control>>,
    /// Turns false when the runtime has exited.
    alive: watch::Receiver<bool>,
}

/// A stream runtime built and waiting (its thread blocked) for [`Pending::go`]; dropping
/// it instead shuts the runtime down and ends the thread.
#[derive(Debug)]
pub(crate) struct Pending {
    pub plane: Plane,
    go: std::sync::mpsc::SyncSender<()>,
    pub thread: JoinHandle<()>,
}

impl Pending {
    /// Build the runtime (`server.threads` workers), open the access log and start the
    /// runtime's thread, which waits for [`go`](Pending::go). Nothing accepts yet.
    pub(crate) fn launch(
        server: &ServerConfig,
        state_rx: &watch::Receiver<RunState>,
        grace: Duration,
    ) -> Result<Pending, StreamError> {
        let access_log = AccessLog::open(&server.access_log, server.access_log_format)
            .map_err(StreamError::AccessLog)?;
        let (kill, _) = watch::channel(false);
        let shared = Arc::new(Shared {
            access_log,
            header_timeout: server.header_timeout,
            kill,
            connections: AtomicUsize::new(0),
            max_connections: server.max_connections.max(1),
            slot_freed: Notify::new(),
        });
        let threads = match server.threads {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .thread_name("portico-stream")
            .enable_all()
            .build()
            .map_err(StreamError::Worker)?;
        let control = Arc::new(Mutex::new(Control {
            handle: rt.handle().clone(),
            slots: Vec::new(),
            pollers: Vec::new(),
        }));
        let (alive_tx, alive) = watch::channel(true);
        let (go, go_rx) = std::sync::mpsc::sync_channel::<()>(1);
        let sh = Arc::clone(&shared);
        let rx = state_rx.clone();
        let ctl = Arc::clone(&control);
        let thread = std::thread::Builder::new()
            .name("portico-streams".into())
            .spawn(move || {
                if go_rx.recv().is_ok() {
                    rt.block_on(run(sh, ctl, rx, grace));
                }
                rt.shutdown_timeout(Duration::from_secs(1));
                let _ = alive_tx.send(false);
            })
            .map_err(StreamError::Worker)?;
        Ok(Pending {
            plane: Plane {
                shared,
                control,
                alive,
            },
            go,
            thread,
        })
    }

    /// Let the runtime's main task run (accept, sweep, drain at stop).
    pub(crate) fn go(&self) {
        let _ = self.go.send(());
    }
}

impl StreamServer {
    /// Bind every stream listener, start the runtime, return. A bind failure names the
    /// address; unusable certificate files name the stream and the file.
    pub fn start(config: Arc<Config>, registry: Registry) -> Result<RunningStreams, StreamError> {
        StreamServer::start_with(config, registry, &StreamOptions::default())
    }

    /// [`start`](StreamServer::start) with non-default [`StreamOptions`].
    pub fn start_with(
        config: Arc<Config>,
        registry: Registry,
        options: &StreamOptions,
    ) -> Result<RunningStreams, StreamError> {
        let (state, state_rx) = watch::channel(RunState::Running);
        let streams = RunningStreams {
            bound: Mutex::new(Vec::new()),
            state,
            state_rx,
            plane: OnceLock::new(),
            thread: Mutex::new(None),
            options: options.clone(),
            server: config.server.clone(),
        };
        if !config.streams.is_empty() {
            // The same path as a reload adding the first streams: all or nothing.
            let prepared = streams.prepare(&config, &registry)?;
            streams.commit(prepared);
        }
        Ok(streams)
    }
}

/// Bind one stream listener (one socket: the streams plane has one accept task per address).
pub(crate) fn bind_one(
    addr: SocketAddr,
) -> Result<(std::net::TcpListener, SocketAddr), StreamError> {
    let (mut group, actual) =
        portico_net::bind_group(addr, 1).map_err(|source| StreamError::Bind { addr, source })?;
    let l = group.pop().ok_or_else(|| StreamError::Bind {
        addr,
        source: std::io::Error::other("no socket was bound"),
    })?;
    Ok((l, actual))
}

/// The live listeners and certificate pollers, changed by reloads.
#[derive(Debug)]
pub(crate) struct Control {
    pub handle: tokio::runtime::Handle,
    pub slots: Vec<Slot>,
    /// Certificate-file poller of each compiled TLS stream in use.
    pub pollers: Vec<(Arc<StreamRt>, tokio::task::AbortHandle)>,
}

impl Control {
    pub(crate) fn spawn_slot(
        &self,
        shared: &Arc<Shared>,
        state: &watch::Receiver<RunState>,
        (listen, socket, bound): (SocketAddr, std::net::TcpListener, SocketAddr),
        inputs: Inputs,
        rt: Arc<StreamRt>,
    ) -> Slot {
        let (tx, rx) = watch::channel(rt);
        let (cut, cut_rx) = watch::channel(false);
        let _guard = self.handle.enter();
        let task = match TcpListener::from_std(socket) {
            Ok(l) => self.handle.spawn(accept_loop(
                Arc::clone(shared),
                l,
                bound,
                (rx, cut_rx),
                state.clone(),
            )),
            Err(e) => {
                tracing::error!(listen = %bound, error = %e, "stream listener failed");
                self.handle.spawn(async {})
            }
        };
        Slot {
            listen,
            bound,
            inputs,
            rt: tx,
            accept: task.abort_handle(),
            cut,
        }
    }

    pub(crate) fn spawn_poller(&mut self, rt: Arc<StreamRt>, files: portico_tls::FileCerts) {
        let _guard = self.handle.enter();
        let task = files.spawn();
        self.pollers.push((rt, task.abort_handle()));
    }

    /// Stop everything that runs outside connections (the end of the runtime).
    fn stop(&mut self) {
        for s in &self.slots {
            s.accept.abort();
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

/// The runtime's main task: accept until told to stop, then drain within the grace period.
async fn run(
    shared: Arc<Shared>,
    control: Arc<Mutex<Control>>,
    mut state: watch::Receiver<RunState>,
    grace: Duration,
) {
    let sweeper = tokio::spawn(sweep(Arc::clone(&control)));
    let _ = state.wait_for(|s| *s != RunState::Running).await;
    lock(&control).stop();
    sweeper.abort();
    if *state.borrow() == RunState::Draining {
        let deadline = tokio::time::Instant::now() + grace;
        loop {
            let freed = shared.slot_freed.notified();
            if shared.connections.load(Ordering::Acquire) == 0 {
                break;
            }
            tokio::select! {
                () = freed => {}
                () = tokio::time::sleep_until(deadline) => break,
                _ = state.wait_for(|s| *s == RunState::Stopped) => break,
            }
        }
    }
    // Close what is left and give the tasks a moment to write their log lines.
    shared.kill.send_replace(true);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
    while shared.connections.load(Ordering::Acquire) > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
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

async fn accept_loop(
    shared: Arc<Shared>,
    listener: TcpListener,
    addr: SocketAddr,
    (stream, cut): (watch::Receiver<Arc<StreamRt>>, watch::Receiver<bool>),
    mut state: watch::Receiver<RunState>,
) {
    loop {
        // The max_connections gate (stream connections only).
        loop {
            let freed = shared.slot_freed.notified();
            if shared.connections.load(Ordering::Acquire) < shared.max_connections {
                break;
            }
            tokio::select! {
                () = freed => {}
                _ = state.changed() => return,
            }
        }
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = state.changed() => return,
        };
        match accepted {
            Ok((sock, peer)) => {
                let _ = sock.set_nodelay(true);
                shared.connections.fetch_add(1, Ordering::AcqRel);
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
                    sh.connections.fetch_sub(1, Ordering::AcqRel);
                    sh.slot_freed.notify_waiters();
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

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl RunningStreams {
    /// `(address as configured, address actually bound)` for every stream listener.
    pub fn bound_addrs(&self) -> Vec<(SocketAddr, SocketAddr)> {
        lock(&self.bound).clone()
    }

    /// Graceful stop: stop accepting, let connections finish; close the rest after
    /// `server.shutdown_grace`.
    pub fn shutdown(&self) {
        self.state.send_if_modified(|s| {
            if *s == RunState::Running {
                *s = RunState::Draining;
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

    /// Stream connections open right now.
    pub fn connections(&self) -> usize {
        self.plane
            .get()
            .map_or(0, |p| p.shared.connections.load(Ordering::Relaxed))
    }

    /// Wait (async) until the stream runtime has exited (for the idle handle: until
    /// `shutdown` or `stop_now` is called).
    pub async fn closed(&self) {
        if self.plane.get().is_none() {
            let mut state = self.state_rx.clone();
            let _ = state.wait_for(|s| *s != RunState::Running).await;
        }
        // Also when a reload started the runtime while this waited.
        if let Some(p) = self.plane.get() {
            let mut alive = p.alive.clone();
            let _ = alive.wait_for(|a| !*a).await;
        }
    }

    /// Block until the stream runtime has exited. Call `shutdown` or `stop_now` first
    /// (the idle handle returns at once).
    pub fn wait(self) {
        let handle = match self.thread.lock() {
            Ok(mut h) => h.take(),
            Err(poisoned) => poisoned.into_inner().take(),
        };
        if let Some(h) = handle {
            let _ = h.join();
        }
    }
}
