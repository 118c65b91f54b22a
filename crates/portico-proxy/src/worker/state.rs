//! A worker's state: one per worker thread of the process's pool (`portico_net::Workers`, each
//! a tokio current-thread runtime).
//!
//! A worker owns its listener sockets (one `SO_REUSEPORT` socket per address), its
//! upstream keep-alive pool and its WebSocket copy buffer, so the request path takes no
//! lock. What workers share is [`Shared`]: the published [`Snapshot`], the run state, and
//! the connection count behind `max_connections`.
//!
//! Every task of the worker follows the run state through a [`StopWatch`]: the worker's
//! state combined with its listener's drain trigger (a listener removed by a reload) and the
//! task's own (a WebSocket a reload drains), see [`crate::worker::stop`]. The loop that
//! drives a worker and applies a reload's commands is the server's
//! (`server::worker_loop`).

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::poll_fn;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex};
use std::task::{Poll, Waker};
use std::time::Instant;

use arc_swap::ArcSwap;
use arc_swap::cache::Cache;
use tokio::sync::{Notify, watch};

use crate::access_log::AccessLog;
use crate::snapshot::Snapshot;
use crate::worker::pool::ConnPool;
use crate::worker::stop::{RunState, Trigger, combine};
use crate::worker::websockets::WsRegistry;

/// State shared by all workers.
#[derive(Debug)]
pub(crate) struct Shared {
    pub snapshot: Arc<ArcSwap<Snapshot>>,
    pub state: watch::Sender<RunState>,
    /// The process's connection gate behind `max_connections` (`portico-net`: one count
    /// over all listeners and workers of both planes).
    pub gate: Arc<portico_net::Gate>,
    pub access_log: AccessLog,
    /// Listeners removed by a reload whose connections still drain, with the last snapshot
    /// that had them and their hard-close deadline (locked only by requests on such
    /// connections; pruned by the next reload).
    pub retired: Mutex<HashMap<SocketAddr, (Arc<Snapshot>, Instant)>>,
    /// WebSockets open over all workers.
    pub websockets: AtomicUsize,
    /// TLS for the TLS listeners (certificates by SNI) and ACME HTTP-01 answers; `None`
    /// without a TLS runtime. Kept for the server's life: listeners a reload adds use it.
    pub tls: Option<crate::snapshot::tls::TlsShared>,
}

/// Size of the per-worker WebSocket copy buffer.
pub(crate) const PIPE_BUF: usize = 32 * 1024;

/// One worker's thread-local state.
pub(crate) struct Worker {
    pub shared: Arc<Shared>,
    cache: RefCell<Cache<Arc<ArcSwap<Snapshot>>, Arc<Snapshot>>>,
    // An `Rc` around the `Arc` so that handing the snapshot to a request is a non-atomic
    // increment: workers never contend on the shared `Arc`'s counter.
    #[allow(clippy::redundant_allocation)]
    current: RefCell<Rc<Arc<Snapshot>>>,
    /// Idle upstream keep-alive connections of this worker (an `Rc`: a response body gives
    /// its connection back through it without holding the worker).
    pub pool: Rc<ConnPool>,
    /// Shared copy buffer for WebSocket pipes (borrowed only between awaits).
    pub pipe_buf: RefCell<Box<[u8]>>,
    /// Client connections (and WebSockets) alive on this worker.
    pub live: Cell<usize>,
    /// Signalled when `live` drops to zero.
    pub all_closed: Notify,
    /// This worker's copy of the run state, and the tasks to wake when it changes: a
    /// thread-local signal, so connections never touch the shared watch channel's lock.
    run_state: Cell<RunState>,
    stop_wakers: RefCell<HashMap<u64, Waker>>,
    next_watch: Cell<u64>,
    /// Drain trigger of every listener this worker accepts on, by configured address.
    /// (Set by the worker loop as listeners come and go.)
    pub listeners: RefCell<HashMap<SocketAddr, Rc<Trigger>>>,
    /// Live WebSockets by server (drained when a reload removes their server).
    pub websockets: WsRegistry,
    /// This worker's data-plane counters (written by this thread only, summed at scrape).
    pub metrics: portico_metrics::WorkerMetrics,
}

/// A task's subscription to its worker's run state (see [`Worker::stop_watch_with`]).
/// The watched state is the strictest of the worker's, the task's listener's (removed by a
/// reload) and the task's own trigger (a WebSocket whose server was removed).
pub(crate) struct StopWatch {
    worker: Rc<Worker>,
    id: u64,
    seen: RunState,
    listener: Option<Rc<Trigger>>,
    own: Option<Rc<Trigger>>,
}

impl StopWatch {
    /// The state now.
    pub fn state(&self) -> RunState {
        let mut state = self.worker.run_state.get();
        if let Some(t) = &self.listener {
            state = combine(state, t.state());
        }
        if let Some(t) = &self.own {
            state = combine(state, t.state());
        }
        state
    }

    /// Resolves with the new state once it differs from the last one seen.
    pub async fn changed(&mut self) -> RunState {
        poll_fn(|cx| {
            if let Some(t) = &self.own {
                t.register(cx.waker());
            }
            let now = self.state();
            if now == self.seen {
                Poll::Pending
            } else {
                self.seen = now;
                Poll::Ready(now)
            }
        })
        .await
    }
}

impl Drop for StopWatch {
    fn drop(&mut self) {
        self.worker.stop_wakers.borrow_mut().remove(&self.id);
    }
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("live", &self.live.get())
            .finish()
    }
}

impl Worker {
    pub fn new(shared: Arc<Shared>) -> Worker {
        let mut cache = Cache::new(shared.snapshot.clone());
        let current = Rc::new(cache.load().clone());
        Worker {
            shared,
            cache: RefCell::new(cache),
            current: RefCell::new(current),
            pool: Rc::new(ConnPool::default()),
            pipe_buf: RefCell::new(vec![0u8; PIPE_BUF].into_boxed_slice()),
            live: Cell::new(0),
            all_closed: Notify::new(),
            run_state: Cell::new(RunState::Running),
            stop_wakers: RefCell::new(HashMap::new()),
            next_watch: Cell::new(0),
            listeners: RefCell::new(HashMap::new()),
            websockets: WsRegistry::default(),
            metrics: portico_metrics::global().worker(),
        }
    }

    /// Subscribe the calling task to run-state changes (registers its waker once), also
    /// following the drain of `listener` (removed by a reload) and the task's `own` trigger.
    pub async fn stop_watch_with(
        self: &Rc<Self>,
        listener: Option<SocketAddr>,
        own: Option<Rc<Trigger>>,
    ) -> StopWatch {
        let waker = poll_fn(|cx| Poll::Ready(cx.waker().clone())).await;
        let id = self.next_watch.get();
        self.next_watch.set(id + 1);
        self.stop_wakers.borrow_mut().insert(id, waker);
        let listener = listener.and_then(|l| self.listeners.borrow().get(&l).cloned());
        StopWatch {
            worker: self.clone(),
            id,
            seen: RunState::Running,
            listener,
            own,
        }
    }

    /// Wake every task that watches the run state (after a listener trigger fired).
    pub fn wake_all(&self) {
        for waker in self.stop_wakers.borrow().values() {
            waker.wake_by_ref();
        }
    }

    /// Publish a new run state to this worker's tasks.
    pub fn set_run_state(&self, state: RunState) {
        if self.run_state.replace(state) != state {
            self.wake_all();
        }
    }

    /// The current snapshot; no atomic read-modify-write unless a reload happened.
    #[allow(clippy::redundant_allocation)]
    pub fn snapshot(&self) -> Rc<Arc<Snapshot>> {
        let mut cache = self.cache.borrow_mut();
        let latest = cache.load();
        let mut current = self.current.borrow_mut();
        if !Arc::ptr_eq(&current, latest) {
            *current = Rc::new(latest.clone());
        }
        current.clone()
    }

    /// The snapshot a request on `listener` runs against, and the listener's index in it:
    /// the current one, or for a listener removed by a reload, the last one that had it.
    #[allow(clippy::redundant_allocation)]
    pub fn snapshot_for(&self, listener: SocketAddr) -> (Rc<Arc<Snapshot>>, Option<usize>) {
        let snap = self.snapshot();
        if let Some(i) = snap.listener_index(listener) {
            return (snap, Some(i));
        }
        let retired = match self.shared.retired.lock() {
            Ok(map) => map.get(&listener).map(|(s, _)| s.clone()),
            Err(poisoned) => poisoned.into_inner().get(&listener).map(|(s, _)| s.clone()),
        };
        match retired {
            Some(old) => {
                let i = old.listener_index(listener);
                (Rc::new(old), i)
            }
            None => (snap, None),
        }
    }
}
