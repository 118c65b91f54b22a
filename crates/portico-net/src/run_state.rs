//! Where a data plane is in its life: the state both planes' control handles publish (on a
//! `tokio::sync::watch` channel of their own) and their accept loops and connections follow.

use std::time::Instant;

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
