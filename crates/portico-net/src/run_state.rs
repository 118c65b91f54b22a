//! Where a data plane is in its life: the state both planes' control handles publish (on a
//! `tokio::sync::watch` channel of their own) and their accept loops and connections follow;
//! and [`Exited`], the flag a plane raises once its tasks have ended.

use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::Instant;

use tokio::sync::watch;

/// Running, draining until a deadline, or stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunState {
    Running,
    /// Graceful stop: no new connections; what runs may finish until the deadline (then it
    /// is closed).
    Draining(Instant),
    /// Stop at once: close every connection.
    Stopped,
}

impl RunState {
    /// The stricter of two states (a listener removed by a reload drains even while the
    /// plane runs; the earlier deadline wins).
    pub fn combine(self, other: RunState) -> RunState {
        match (self, other) {
            (RunState::Stopped, _) | (_, RunState::Stopped) => RunState::Stopped,
            (RunState::Draining(x), RunState::Draining(y)) => RunState::Draining(x.min(y)),
            (RunState::Draining(x), RunState::Running)
            | (RunState::Running, RunState::Draining(x)) => RunState::Draining(x),
            (RunState::Running, RunState::Running) => RunState::Running,
        }
    }
}

/// A one-way "it has ended" flag (a plane's tasks have exited) that can be awaited from a
/// task or blocked on from a plain thread.
#[derive(Debug)]
pub struct Exited {
    flag: watch::Sender<bool>,
    blocking: (Mutex<bool>, Condvar),
}

impl Exited {
    pub fn new() -> Arc<Exited> {
        Arc::new(Exited {
            flag: watch::channel(false).0,
            blocking: (Mutex::new(false), Condvar::new()),
        })
    }

    /// Mark it ended and wake every waiter.
    pub fn set(&self) {
        self.flag.send_replace(true);
        let (lock, cv) = &self.blocking;
        *lock.lock().unwrap_or_else(PoisonError::into_inner) = true;
        cv.notify_all();
    }

    pub fn is_set(&self) -> bool {
        *self.flag.borrow()
    }

    /// Wait (async) until it is set.
    pub async fn wait(&self) {
        let mut rx = self.flag.subscribe();
        let _ = rx.wait_for(|s| *s).await;
    }

    /// Block the calling thread until it is set (not from a task).
    pub fn wait_blocking(&self) {
        let (lock, cv) = &self.blocking;
        let mut done = lock.lock().unwrap_or_else(PoisonError::into_inner);
        while !*done {
            done = cv.wait(done).unwrap_or_else(PoisonError::into_inner);
        }
    }
}
