//! Stop primitives: the run state of the server, a worker or one task ([`RunState`]), the
//! rule that combines two of them ([`combine`]), and [`Trigger`], a drain signal narrower
//! than the whole server.
//!
//! A [`Trigger`] is a worker-local run state of its own (`Running`, `Draining(deadline)`,
//! `Stopped`) that a task's stop watch (`StopWatch`, in [`crate::worker::state`]) combines
//! with the worker's: the connection or WebSocket pipe then behaves exactly as in a graceful
//! stop (finish the request in flight, or close 1001 at a frame boundary) without the rest of
//! the worker noticing.
//!
//! - Listener triggers are shared by the accept loop and every connection of that listener;
//!   firing one wakes every stop watcher of the worker (rare: only when a reload removes a
//!   listener).
//! - WebSocket triggers belong to one pipe (its ticket in the worker's WebSocket registry,
//!   [`crate::worker::websockets`]) and wake only that task.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::task::Waker;

/// Where the server is in its life: the run state both planes share (`portico-net`).
pub(crate) use portico_net::RunState;

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
    a.combine(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use std::time::Instant;

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
}
