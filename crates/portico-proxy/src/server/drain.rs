//! Reload drain policy for WebSockets: which ones a reload closes on this worker and when.
//!
//! The WebSockets of a removed server, and those whose upgrade the new snapshot no longer
//! routes to their server ([`crate::worker::websockets`]), get close 1001 at a frame
//! boundary, spread evenly over a window (half of `shutdown_grace`) so that their clients do
//! not all reconnect at once, and are closed hard at the deadline.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use portico_balance::ServerId;

use crate::worker::state::Worker;
use crate::worker::stop::RunState;

/// Drain the WebSockets on this worker that go to one of `servers` (removed by a reload) or whose
/// origin the current snapshot no longer routes to their server (see
/// [`crate::worker::websockets`]): close 1001 to the i-th of n at `start + window * i / n`, each
/// with the hard cap `deadline`. Returns how many.
pub(crate) fn drain_websockets(
    worker: &Worker,
    servers: &HashSet<ServerId>,
    start: Instant,
    window: Duration,
    deadline: Instant,
) -> usize {
    let snap = worker.snapshot();
    let triggers = worker.websockets.triggers_to_drain(servers, &snap);
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
    fn drains_are_spread_over_the_window() {
        let w = Duration::from_secs(10);
        assert_eq!(spread(w, 0, 4), Duration::ZERO);
        assert_eq!(spread(w, 2, 4), Duration::from_secs(5));
        assert!(spread(w, 3, 4) < w);
        assert_eq!(spread(w, 0, 1), Duration::ZERO);
    }
}
