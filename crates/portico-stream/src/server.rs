//! The public face of the L4 data plane: [`StreamServer::start`] and [`RunningStreams`],
//! mirroring `portico-proxy`'s `Server` / `RunningServer`.
//!
//! `start` is synchronous: it compiles the streams (resolving server names), binds every
//! stream listener (`SO_REUSEPORT`, so a restarted process can bind beside the old one),
//! builds one multi-thread runtime (`[server] threads` workers, 0 = one per core) on its own
//! thread, and returns. Any failure is returned before anything serves. With no
//! `[[streams]]` it binds nothing, starts no thread and returns an idle handle whose
//! `closed()` completes when `shutdown()` or `stop_now()` is called.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use portico_balance::Registry;
use portico_config::Config;
use tokio::net::TcpListener;
use tokio::sync::{Notify, watch};

use crate::error::StreamError;
use crate::log::AccessLog;
use crate::snapshot::{Snapshot, StreamRt};

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
enum RunState {
    Running,
    /// Stop accepting; connections may finish until the grace period ends.
    Draining,
    Stopped,
}

/// Started stream listeners: their bound addresses and their stop controls.
#[derive(Debug)]
pub struct RunningStreams {
    shared: Option<Arc<Shared>>,
    bound: Vec<(SocketAddr, SocketAddr)>,
    state: watch::Sender<RunState>,
    state_rx: watch::Receiver<RunState>,
    thread: Mutex<Option<JoinHandle<()>>>,
    /// `None` for the idle handle (no streams).
    alive: Option<watch::Receiver<bool>>,
    /// The streams and upstreams this runtime was started with (what a reload compares).
    started: Mutex<(Vec<portico_config::Stream>, Vec<portico_config::Upstream>)>,
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
        if config.streams.is_empty() {
            return Ok(RunningStreams {
                shared: None,
                bound: Vec::new(),
                state,
                state_rx,
                thread: Mutex::new(None),
                alive: None,
                started: Mutex::new((Vec::new(), Vec::new())),
            });
        }
        let mut snapshot = Snapshot::build(&config, &registry, options)?;
        let cert_files = std::mem::take(&mut snapshot.cert_files);
        let mut listeners: Vec<(std::net::TcpListener, SocketAddr, Arc<StreamRt>)> = Vec::new();
        let mut bound = Vec::new();
        for (s, rt) in config.streams.iter().zip(&snapshot.streams) {
            for &addr in &s.listen {
                // One socket: the streams plane runs a single worker thread.
                let (mut group, actual) = portico_net::bind_group(addr, 1)
                    .map_err(|source| StreamError::Bind { addr, source })?;
                let l = group.pop().ok_or_else(|| StreamError::Bind {
                    addr,
                    source: std::io::Error::other("no socket was bound"),
                })?;
                bound.push((addr, actual));
                listeners.push((l, actual, Arc::clone(rt)));
            }
        }
        let access_log =
            AccessLog::open(&config.server.access_log, config.server.access_log_format)
                .map_err(StreamError::AccessLog)?;
        let (kill, _) = watch::channel(false);
        let shared = Arc::new(Shared {
            access_log,
            header_timeout: config.server.header_timeout,
            kill,
            connections: AtomicUsize::new(0),
            max_connections: config.server.max_connections.max(1),
            slot_freed: Notify::new(),
        });
        let threads = match config.server.threads {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .thread_name("portico-stream")
            .enable_all()
            .build()
            .map_err(StreamError::Worker)?;
        let (alive_tx, alive) = watch::channel(true);
        let grace = config.server.shutdown_grace;
        let sh = Arc::clone(&shared);
        let rx = state_rx.clone();
        let handle = std::thread::Builder::new()
            .name("portico-streams".into())
            .spawn(move || {
                rt.block_on(run(sh, listeners, rx, grace, snapshot, cert_files));
                rt.shutdown_timeout(Duration::from_secs(1));
                let _ = alive_tx.send(false);
            })
            .map_err(StreamError::Worker)?;
        Ok(RunningStreams {
            shared: Some(shared),
            bound,
            state,
            state_rx,
            thread: Mutex::new(Some(handle)),
            alive: Some(alive),
            started: Mutex::new(stream_inputs(&config)),
        })
    }
}

/// The runtime's main task: accept until told to stop, then drain within the grace period.
async fn run(
    shared: Arc<Shared>,
    listeners: Vec<(std::net::TcpListener, SocketAddr, Arc<StreamRt>)>,
    mut state: watch::Receiver<RunState>,
    grace: Duration,
    snapshot: Snapshot,
    cert_files: Vec<portico_tls::FileCerts>,
) {
    let mut accepts = Vec::new();
    for (l, addr, stream) in listeners {
        match TcpListener::from_std(l) {
            Ok(l) => accepts.push(tokio::spawn(accept_loop(
                Arc::clone(&shared),
                l,
                addr,
                stream,
                state.clone(),
            ))),
            Err(e) => tracing::error!(listen = %addr, error = %e, "stream listener failed"),
        }
    }
    let sweeper = tokio::spawn(sweep(snapshot));
    let pollers: Vec<_> = cert_files.into_iter().map(|f| f.spawn()).collect();
    let _ = state.wait_for(|s| *s != RunState::Running).await;
    for a in &accepts {
        a.abort();
    }
    sweeper.abort();
    for p in &pollers {
        p.abort();
    }
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
async fn sweep(snapshot: Snapshot) {
    loop {
        tokio::time::sleep(Duration::from_secs(5)).await;
        let now = std::time::Instant::now();
        for s in &snapshot.streams {
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
    stream: Arc<StreamRt>,
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
                let st = Arc::clone(&stream);
                tokio::spawn(async move {
                    crate::conn::serve(Arc::clone(&sh), st, sock, peer, addr).await;
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

/// The streams of `config` and the upstreams they use (by name order).
fn stream_inputs(config: &Config) -> (Vec<portico_config::Stream>, Vec<portico_config::Upstream>) {
    let mut names: Vec<&str> = config
        .streams
        .iter()
        .flat_map(|s| {
            s.upstream
                .as_deref()
                .into_iter()
                .chain(s.sni_routes.iter().map(|(_, u)| u.as_str()))
        })
        .collect();
    names.sort_unstable();
    names.dedup();
    let upstreams = names
        .into_iter()
        .filter_map(|n| config.upstreams.get(n).cloned())
        .collect();
    (config.streams.clone(), upstreams)
}

impl RunningStreams {
    /// A reload of the process config: the stream plane keeps running untouched (its
    /// listeners and connections are never closed by a reload). It does not apply stream
    /// changes live yet: returns what differs from the running streams and needs a restart
    /// (empty when `[[streams]]` and the upstreams they use are unchanged). Upstream health
    /// and counters are shared through the registry either way.
    pub fn reload(&self, config: &Config) -> Vec<String> {
        let started = match self.started.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        let (streams, upstreams) = stream_inputs(config);
        let mut notes = Vec::new();
        if streams != started.0 {
            notes.push(format!(
                "[[streams]] changed ({} running, {} in the new config): streams keep their start-up settings until a restart",
                started.0.len(),
                streams.len()
            ));
        } else if upstreams != started.1 {
            notes.push(
                "an upstream used by [[streams]] changed: streams keep its start-up servers and settings until a restart"
                    .to_string(),
            );
        }
        notes
    }

    /// `(address as configured, address actually bound)` for every stream listener.
    pub fn bound_addrs(&self) -> Vec<(SocketAddr, SocketAddr)> {
        self.bound.clone()
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
        self.shared
            .as_ref()
            .map_or(0, |s| s.connections.load(Ordering::Relaxed))
    }

    /// Wait (async) until the stream runtime has exited (for the idle handle: until
    /// `shutdown` or `stop_now` is called).
    pub async fn closed(&self) {
        match &self.alive {
            Some(alive) => {
                let mut alive = alive.clone();
                let _ = alive.wait_for(|a| !*a).await;
            }
            None => {
                let mut state = self.state_rx.clone();
                let _ = state.wait_for(|s| *s != RunState::Running).await;
            }
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
