//! The accept gate: ONE connection count for the whole process (HTTP and stream listeners,
//! every worker), and the `[server] max_connections` limit on it.
//!
//! The count never passes the limit, without a lock: an accept loop accepts only while the
//! count is below the limit ([`Gate::wait_room`]), then takes its slot with a
//! compare-and-swap that fails at the limit ([`Gate::try_take`], [`Gate::wait_take`]).
//! Several loops (workers, listeners, both planes) may see the last free slot and each
//! accept one connection; the first takes the slot, the others hold their accepted
//! connection unserved (as if still in the backlog) until a slot frees. So at most one
//! connection per accept loop waits in user space, and none is served past the limit.
//!
//! A connection gives its slot back when it closes ([`Gate::release`], or by dropping the
//! [`Permit`] that [`Gate::wait_take`] returns); waiters are woken only when the count was
//! at the limit, so the common path is one atomic add and one subtract per connection.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::Notify;

/// The process-wide connection count and its limit; shared as `Arc<Gate>` by every accept
/// loop of both planes.
#[derive(Debug)]
pub struct Gate {
    count: AtomicUsize,
    max: usize,
    /// Signalled when a connection closes while the count was at the limit.
    freed: Notify,
}

impl Gate {
    /// A gate admitting at most `max` connections at once (at least one).
    pub fn new(max: usize) -> Arc<Gate> {
        Arc::new(Gate {
            count: AtomicUsize::new(0),
            max: max.max(1),
            freed: Notify::new(),
        })
    }

    /// The limit.
    pub fn max(&self) -> usize {
        self.max
    }

    /// Connections counted right now (both planes).
    pub fn count(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }

    /// Whether a slot is free now (nothing taken).
    pub fn has_room(&self) -> bool {
        self.count() < self.max
    }

    /// Count one more connection unless the limit is reached: one compare-and-swap, no lock.
    pub fn try_take(&self) -> bool {
        self.count
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < self.max).then_some(n + 1)
            })
            .is_ok()
    }

    /// Give back a slot taken by [`try_take`](Gate::try_take).
    pub fn release(&self) {
        let before = self.count.fetch_sub(1, Ordering::Relaxed);
        if before >= self.max {
            self.freed.notify_waiters();
        }
    }

    /// Wait until a slot is free (takes nothing: call before accepting).
    pub async fn wait_room(&self) {
        self.wait(Gate::has_room).await;
    }

    /// Wait until a slot is taken for an accepted connection; the permit gives it back.
    pub async fn wait_take(self: &Arc<Self>) -> Permit {
        self.wait(Gate::try_take).await;
        Permit(Arc::clone(self))
    }

    /// Wait until a slot is taken, without a permit: the caller calls
    /// [`release`](Gate::release) when the connection closes.
    pub async fn wait_take_counted(&self) {
        self.wait(Gate::try_take).await;
    }

    async fn wait(&self, got: fn(&Gate) -> bool) {
        loop {
            let notified = self.freed.notified();
            tokio::pin!(notified);
            // Registered before the check: a release between the check and the await wakes it.
            notified.as_mut().enable();
            if got(self) {
                return;
            }
            notified.await;
        }
    }
}

/// One counted connection; dropping it gives the slot back.
#[derive(Debug)]
pub struct Permit(Arc<Gate>);

impl Drop for Permit {
    fn drop(&mut self) {
        self.0.release();
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_slot_is_taken_only_below_the_limit() {
        let gate = Gate::new(2);
        assert!(gate.try_take());
        assert!(gate.try_take());
        assert!(!gate.try_take(), "the limit is never passed");
        assert_eq!(gate.count(), 2);
        gate.release();
        assert!(gate.try_take(), "a freed slot is taken again");
        assert_eq!(Gate::new(0).max(), 1);
    }

    #[test]
    fn threads_racing_for_the_last_slots_never_pass_the_limit() {
        let gate = Gate::new(3);
        let taken = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let (gate, taken) = (gate.clone(), taken.clone());
                std::thread::spawn(move || {
                    for _ in 0..10_000 {
                        if gate.try_take() {
                            taken.fetch_add(1, Ordering::Relaxed);
                            assert!(gate.count() <= 3);
                            gate.release();
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(gate.count(), 0);
        assert!(taken.load(Ordering::Relaxed) > 0);
    }

    #[tokio::test]
    async fn a_waiter_gets_the_slot_a_permit_gives_back() {
        let gate = Gate::new(1);
        let first = gate.wait_take().await;
        let g = gate.clone();
        let second = tokio::spawn(async move { g.wait_take().await });
        tokio::task::yield_now().await;
        assert!(!second.is_finished());
        assert_eq!(gate.count(), 1);
        drop(first);
        let second = tokio::time::timeout(std::time::Duration::from_secs(5), second)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(gate.count(), 1);
        drop(second);
        assert_eq!(gate.count(), 0);
    }
}
