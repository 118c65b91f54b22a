//! Workers: one thread per core, each a tokio current-thread runtime.
//!
//! A worker owns its listener sockets (one `SO_REUSEPORT` socket per address), its
//! upstream keep-alive pool and its WebSocket copy buffer, so the request path takes no
//! lock. What workers share is [`Shared`]: the published [`Snapshot`], the run state, and
//! the connection count behind `max_connections`.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::poll_fn;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::task::{Poll, Waker};
use std::time::Instant;

use arc_swap::ArcSwap;
use arc_swap::cache::Cache;
use tokio::sync::{Notify, watch};

use crate::access_log::AccessLog;
use crate::pool::ConnPool;
use crate::snapshot::Snapshot;

/// Where the server is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RunState {
    Running,
    /// Graceful stop: no new connections; finish what runs until the deadline.
    Draining(Instant),
    /// Stop at once.
    Stopped,
}

/// State shared by all workers.
#[derive(Debug)]
pub(crate) struct Shared {
    pub snapshot: Arc<ArcSwap<Snapshot>>,
    pub state: watch::Sender<RunState>,
    /// Client connections open over all workers and listeners.
    pub connections: AtomicUsize,
    pub max_connections: usize,
    /// Signalled when a connection closes while the count was at the limit.
    pub slot_freed: Notify,
    pub access_log: AccessLog,
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
    /// Idle upstream keep-alive connections of this worker.
    pub pool: ConnPool,
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
}

/// A task's subscription to its worker's run state (see [`Worker::stop_watch`]).
pub(crate) struct StopWatch {
    worker: Rc<Worker>,
    id: u64,
    seen: RunState,
}

impl StopWatch {
    /// The state now.
    pub fn state(&self) -> RunState {
        self.worker.run_state.get()
    }

    /// Resolves with the new state once it differs from the last one seen.
    pub async fn changed(&mut self) -> RunState {
        poll_fn(|_| {
            let now = self.worker.run_state.get();
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
            pool: ConnPool::default(),
            pipe_buf: RefCell::new(vec![0u8; PIPE_BUF].into_boxed_slice()),
            live: Cell::new(0),
            all_closed: Notify::new(),
            run_state: Cell::new(RunState::Running),
            stop_wakers: RefCell::new(HashMap::new()),
            next_watch: Cell::new(0),
        }
    }

    /// Subscribe the calling task to run-state changes (registers its waker once).
    pub async fn stop_watch(self: &Rc<Self>) -> StopWatch {
        let waker = poll_fn(|cx| Poll::Ready(cx.waker().clone())).await;
        let id = self.next_watch.get();
        self.next_watch.set(id + 1);
        self.stop_wakers.borrow_mut().insert(id, waker);
        StopWatch {
            worker: self.clone(),
            id,
            seen: RunState::Running,
        }
    }

    /// Publish a new run state to this worker's tasks.
    fn set_run_state(&self, state: RunState) {
        if self.run_state.replace(state) != state {
            for waker in self.stop_wakers.borrow().values() {
                waker.wake_by_ref();
            }
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
}

/// The body of one worker thread: serve `listeners` (index, socket) until stopped.
pub(crate) fn run(
    runtime: tokio::runtime::Runtime,
    shared: Arc<Shared>,
    listeners: Vec<(usize, std::net::TcpListener)>,
) {
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, async move {
        let worker = Rc::new(Worker::new(shared.clone()));
        for (index, socket) in listeners {
            match tokio::net::TcpListener::from_std(socket) {
                Ok(l) => {
                    tokio::task::spawn_local(crate::accept::accept_loop(worker.clone(), l, index));
                }
                Err(e) => tracing::error!(error = %e, "cannot register a listener"),
            }
        }
        tokio::task::spawn_local(crate::pool::sweeper(worker.clone()));
        let mut state = shared.state.subscribe();
        let deadline = loop {
            let now = *state.borrow_and_update();
            worker.set_run_state(now);
            match now {
                RunState::Running => {}
                RunState::Draining(deadline) => break Some(deadline),
                RunState::Stopped => break None,
            }
            if state.changed().await.is_err() {
                break None;
            }
        };
        if let Some(deadline) = deadline {
            drain(&worker, &mut state, deadline).await;
        }
        worker.pool.clear();
    });
    // Dropping the LocalSet and the runtime cancels whatever still runs (hard close).
    drop(local);
    drop(runtime);
}

/// Wait until every connection of this worker has closed, the deadline passes, or a hard
/// stop arrives.
async fn drain(worker: &Worker, state: &mut watch::Receiver<RunState>, deadline: Instant) {
    let sleep = tokio::time::sleep_until(deadline.into());
    tokio::pin!(sleep);
    loop {
        let closed = worker.all_closed.notified();
        tokio::pin!(closed);
        closed.as_mut().enable();
        if worker.live.get() == 0 {
            return;
        }
        tokio::select! {
            _ = &mut sleep => return,
            _ = closed => {}
            r = state.changed() => {
                let now = if r.is_err() { RunState::Stopped } else { *state.borrow_and_update() };
                worker.set_run_state(now);
                if now == RunState::Stopped {
                    return;
                }
            }
        }
    }
}
