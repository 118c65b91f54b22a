//! Drains narrower than the whole server: one listener removed by a reload, or the
//! WebSockets of a server removed by a reload.
//!
//! A [`Trigger`] is a worker-local run state of its own (`Running`, `Draining(deadline)`,
//! `Stopped`) that a task's [`crate::worker::StopWatch`] combines with the worker's: the
//! connection or WebSocket pipe then behaves exactly as in a graceful stop (finish the request
//! in flight, or close 1001 at a frame boundary) without the rest of the worker noticing.
//!
//! - Listener triggers are shared by the accept loop and every connection of that listener;
//!   firing one wakes every stop watcher of the worker (rare: only when a reload removes a
//!   listener).
//! - WebSocket triggers belong to one pipe (its [`WsTicket`]) and wake only that task. The
//!   worker keeps a registry of live WebSockets keyed by [`ServerId`] (upstream name +
//!   address as written), so a reload that removes a server finds exactly its WebSockets and
//!   leaves every other one untouched.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet};
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::task::Waker;
use std::time::{Duration, Instant};

use portico_balance::ServerId;

use crate::worker::{RunState, StopWatch, Worker};

/// A drain signal for one listener or one WebSocket (see the module doc).
#[derive(Debug)]
pub(crate) struct Trigger {
    state: Cell<RunState>,
    waker: RefCell<Option<Waker>>,
}

impl Trigger {
    pub fn new() -> Rc<Trigger> {
        Rc::new(Trigger {
            state: Cell::new(RunState::Running),
            waker: RefCell::new(None),
        })
    }

    pub fn state(&self) -> RunState {
        self.state.get()
    }

    /// Move to `state` (never back to `Running`) and wake the registered task.
    pub fn fire(&self, state: RunState) {
        let next = combine(self.state.get(), state);
        if self.state.replace(next) != next
            && let Some(waker) = self.waker.borrow_mut().take()
        {
            waker.wake();
        }
    }

    /// Remember the task to wake on [`Trigger::fire`] (one task per trigger).
    pub fn register(&self, waker: &Waker) {
        let mut slot = self.waker.borrow_mut();
        if !slot.as_ref().is_some_and(|w| w.will_wake(waker)) {
            *slot = Some(waker.clone());
        }
    }
}

/// The stricter of two run states: `Stopped` over `Draining` (earliest deadline) over
/// `Running`.
pub(crate) fn combine(a: RunState, b: RunState) -> RunState {
    match (a, b) {
        (RunState::Stopped, _) | (_, RunState::Stopped) => RunState::Stopped,
        (RunState::Draining(x), RunState::Draining(y)) => RunState::Draining(x.min(y)),
        (RunState::Draining(x), RunState::Running) | (RunState::Running, RunState::Draining(x)) => {
            RunState::Draining(x)
        }
        (RunState::Running, RunState::Running) => RunState::Running,
    }
}

/// The worker's live WebSockets by server.
#[derive(Debug, Default)]
pub(crate) struct WsRegistry {
    by_server: RefCell<HashMap<ServerId, HashMap<u64, Rc<Trigger>>>>,
    next: Cell<u64>,
}

impl WsRegistry {
    /// The triggers of every WebSocket to one of `servers`.
    fn triggers_of(&self, servers: &HashSet<ServerId>) -> Vec<Rc<Trigger>> {
        let map = self.by_server.borrow();
        servers
            .iter()
            .filter_map(|s| map.get(s))
            .flat_map(|m| m.values().cloned())
            .collect()
    }
}

/// One live WebSocket's place in the worker's registry; dropping it unregisters.
pub(crate) struct WsTicket {
    worker: Rc<Worker>,
    server: ServerId,
    id: u64,
    trigger: Rc<Trigger>,
}

impl WsTicket {
    /// Register a WebSocket piped to `server`.
    pub fn new(worker: &Rc<Worker>, server: ServerId) -> WsTicket {
        let reg = &worker.websockets;
        let id = reg.next.get();
        reg.next.set(id + 1);
        let trigger = Trigger::new();
        worker.shared.websockets.fetch_add(1, Ordering::Relaxed);
        reg.by_server
            .borrow_mut()
            .entry(server.clone())
            .or_default()
            .insert(id, trigger.clone());
        WsTicket {
            worker: worker.clone(),
            server,
            id,
            trigger,
        }
    }

    /// A stop watch over the worker's run state, the connection's listener and this
    /// WebSocket's own trigger.
    pub async fn stop_watch(&self, listener: std::net::SocketAddr) -> StopWatch {
        self.worker
            .stop_watch_with(Some(listener), Some(self.trigger.clone()))
            .await
    }
}

impl Drop for WsTicket {
    fn drop(&mut self) {
        self.worker
            .shared
            .websockets
            .fetch_sub(1, Ordering::Relaxed);
        let mut map = self.worker.websockets.by_server.borrow_mut();
        if let Some(m) = map.get_mut(&self.server) {
            m.remove(&self.id);
            if m.is_empty() {
                map.remove(&self.server);
            }
        }
    }
}

/// Drain the WebSockets of `servers` on this worker: close 1001 to the i-th of n at
/// `start + window * i / n`, each with the hard cap `deadline`. Returns how many.
pub(crate) fn drain_websockets(
    worker: &Worker,
    servers: &HashSet<ServerId>,
    start: Instant,
    window: Duration,
    deadline: Instant,
) -> usize {
    let triggers = worker.websockets.triggers_of(servers);
    let n = triggers.len();
    if n == 0 {
        return 0;
    }
    tokio::task::spawn_local(async move {
        for (i, trigger) in triggers.into_iter().enumerate() {
            let at = start + spread(window, i, n);
            tokio::time::sleep_until(at.into()).await;
            trigger.fire(RunState::Draining(deadline));
        }
    });
    n
}

/// Offset of the i-th of n drains spread evenly over `window`.
fn spread(window: Duration, i: usize, n: usize) -> Duration {
    let n = u32::try_from(n.max(1)).unwrap_or(u32::MAX);
    let i = u32::try_from(i).unwrap_or(u32::MAX).min(n);
    window / n * i
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn combine_prefers_the_stricter_state() {
        let t0 = Instant::now();
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(
            combine(RunState::Running, RunState::Running),
            RunState::Running
        );
        assert_eq!(
            combine(RunState::Running, RunState::Draining(t1)),
            RunState::Draining(t1)
        );
        assert_eq!(
            combine(RunState::Draining(t1), RunState::Draining(t0)),
            RunState::Draining(t0)
        );
        assert_eq!(
            combine(RunState::Draining(t0), RunState::Stopped),
            RunState::Stopped
        );
    }

    #[test]
    fn a_trigger_never_goes_back_to_running() {
        let t = Trigger::new();
        let d = Instant::now();
        t.fire(RunState::Draining(d));
        t.fire(RunState::Running);
        assert_eq!(t.state(), RunState::Draining(d));
        t.fire(RunState::Stopped);
        assert_eq!(t.state(), RunState::Stopped);
    }

    #[test]
    fn drains_are_spread_over_the_window() {
        let w = Duration::from_secs(10);
        assert_eq!(spread(w, 0, 4), Duration::ZERO);
        assert_eq!(spread(w, 2, 4), Duration::from_secs(5));
        assert!(spread(w, 3, 4) < w);
        assert_eq!(spread(w, 0, 1), Duration::ZERO);
    }
}
