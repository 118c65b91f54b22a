//! Eventually-assertions: poll a condition until it holds or a deadline passes.
//!
//! Tests use these instead of sleeps: they return as soon as the condition is true and fail
//! with a clear message when it never becomes true.

use std::future::Future;
use std::time::{Duration, Instant};

/// How often conditions are polled.
const POLL_EVERY: Duration = Duration::from_millis(10);

/// Poll `cond` until it returns true (then `true`) or `timeout` passes (then `false`).
pub fn eventually(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(POLL_EVERY);
    }
}

/// Async [`eventually`]: `cond` is awaited each round.
pub async fn eventually_async<F, Fut>(timeout: Duration, mut cond: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if cond().await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(POLL_EVERY).await;
    }
}

/// Panic with `what` unless `cond` becomes true within `timeout`.
#[track_caller]
pub fn assert_eventually(timeout: Duration, what: &str, cond: impl FnMut() -> bool) {
    assert!(
        eventually(timeout, cond),
        "not true within {timeout:?}: {what}"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn returns_true_once_the_condition_holds() {
        let start = Instant::now();
        let mut n = 0;
        assert!(eventually(Duration::from_secs(5), || {
            n += 1;
            n >= 3
        }));
        assert!(start.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn returns_false_after_the_deadline() {
        let start = Instant::now();
        assert!(!eventually(Duration::from_millis(50), || false));
        assert!(start.elapsed() >= Duration::from_millis(50));
    }

    #[tokio::test]
    async fn async_variant_polls_futures() {
        let mut n = 0;
        assert!(
            eventually_async(Duration::from_secs(5), || {
                n += 1;
                let done = n >= 2;
                async move { done }
            })
            .await
        );
    }
}
