//! Passive health (nginx `max_fails` / `fail_timeout`) and the slow-start ramp.
//!
//! Rules, per server (all atomics on [`ServerState`]):
//!
//! - A failure opens a window of `fail_timeout` if none is open; failures inside the window
//!   are counted. When the count reaches `max_fails`, the server is out for `fail_timeout`
//!   (`down_until = now + fail_timeout`) and the count resets. `max_fails = 0` disables it.
//! - A failure reported while the server is already out does not extend the ejection.
//! - A success resets the window count (simpler than nginx, which only forgets failures
//!   when the window expires). It does not end an ejection early.
//! - When the ejection ends, the server "recovers": slow start (if configured) ramps its
//!   effective weight from 1/10 to full, linearly over the `slow_start` window. Active health
//!   turning a server healthy again, the admin API enabling it, and a server joining
//!   through cluster registration ([`ServerState::joined_at`]) start the same ramp.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::state::{ServerState, span, ticks};

/// Full weight, in thousandths.
pub(crate) const FULL: u64 = 1000;
/// Where the slow-start ramp begins, in thousandths of the weight.
pub(crate) const RAMP_START: u64 = 100;

/// Passive-health settings of one upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Passive {
    pub max_fails: u32,
    pub fail_timeout: Duration,
}

impl ServerState {
    /// Record a failure under `passive`; returns true when this failure took the server out.
    pub(crate) fn record_failure(&self, passive: Passive, now: Instant) -> bool {
        self.failures.fetch_add(1, Ordering::Relaxed);
        if passive.max_fails == 0 {
            return false;
        }
        let now = ticks(now);
        if now < self.down_until.load(Ordering::Acquire) {
            return false;
        }
        let timeout = span(passive.fail_timeout);
        let start = self.window_start.load(Ordering::Acquire);
        let fails = if start == 0 || now.saturating_sub(start) >= timeout {
            // Open a new window. Racing failures may both reset; each then counts once,
            // which only errs towards ejecting slightly later.
            self.window_start.store(now, Ordering::Release);
            self.window_fails.store(1, Ordering::Release);
            1
        } else {
            self.window_fails.fetch_add(1, Ordering::AcqRel) + 1
        };
        if fails < passive.max_fails {
            return false;
        }
        let until = now.saturating_add(timeout.max(1));
        self.down_until.store(until, Ordering::Release);
        self.recovered_at.store(until, Ordering::Release);
        self.window_fails.store(0, Ordering::Release);
        self.window_start.store(0, Ordering::Release);
        true
    }

    /// Record a success: forget the failures of the current window.
    pub(crate) fn record_success(&self) {
        if self.window_fails.load(Ordering::Relaxed) != 0 {
            self.window_fails.store(0, Ordering::Release);
            self.window_start.store(0, Ordering::Release);
        }
    }

    /// Effective weight share now, in thousandths (100..=1000), under an upstream's
    /// `slow_start` (for the admin API and metrics: the pick path uses its own clock).
    pub fn slow_start_permille(&self, slow_start: Duration) -> u64 {
        self.slow_start_factor(slow_start, Instant::now())
    }

    /// Effective weight share in thousandths (`RAMP_START..=FULL`) under slow start.
    pub(crate) fn slow_start_factor(&self, slow_start: Duration, now: Instant) -> u64 {
        if slow_start.is_zero() {
            return FULL;
        }
        let recovered = self.recovered_at.load(Ordering::Acquire);
        if recovered == 0 {
            return FULL;
        }
        let now = ticks(now);
        if now < recovered {
            // Still ejected (only reachable when every server failed): lowest weight.
            return RAMP_START;
        }
        let window = span(slow_start);
        let elapsed = now - recovered;
        if elapsed >= window {
            return FULL;
        }
        let ramp = (u128::from(FULL - RAMP_START) * u128::from(elapsed)) / u128::from(window);
        // ramp < FULL - RAMP_START because elapsed < window.
        RAMP_START + u64::try_from(ramp).unwrap_or(FULL - RAMP_START)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: Duration = Duration::from_secs(1);

    fn passive(max_fails: u32, secs: u64) -> Passive {
        Passive {
            max_fails,
            fail_timeout: Duration::from_secs(secs),
        }
    }

    #[test]
    fn max_fails_within_window_ejects_for_fail_timeout() {
        let s = ServerState::default();
        let p = passive(3, 10);
        let t0 = Instant::now();
        assert!(!s.record_failure(p, t0));
        assert!(!s.record_failure(p, t0 + SEC));
        assert!(!s.is_failed_at(t0 + SEC));
        assert!(s.record_failure(p, t0 + 2 * SEC), "third failure ejects");
        assert!(s.is_failed_at(t0 + 2 * SEC));
        assert!(s.is_failed_at(t0 + 11 * SEC));
        assert!(!s.is_failed_at(t0 + 12 * SEC), "back after fail_timeout");
        assert_eq!(s.fails(), 3);
    }

    #[test]
    fn failures_spread_beyond_the_window_do_not_eject() {
        let s = ServerState::default();
        let p = passive(2, 10);
        let t0 = Instant::now();
        assert!(!s.record_failure(p, t0));
        assert!(
            !s.record_failure(p, t0 + 10 * SEC),
            "window expired: count restarts"
        );
        assert!(s.record_failure(p, t0 + 15 * SEC));
    }

    #[test]
    fn max_fails_zero_never_ejects() {
        let s = ServerState::default();
        let t0 = Instant::now();
        for i in 0..100 {
            assert!(!s.record_failure(passive(0, 10), t0 + i * SEC / 100));
        }
        assert!(!s.is_failed_at(t0 + SEC));
        assert_eq!(s.fails(), 100);
    }

    #[test]
    fn success_resets_the_window_count_but_not_an_ejection() {
        let s = ServerState::default();
        let p = passive(2, 10);
        let t0 = Instant::now();
        s.record_failure(p, t0);
        s.record_success();
        assert!(
            !s.record_failure(p, t0 + SEC),
            "count restarted after success"
        );
        assert!(s.record_failure(p, t0 + 2 * SEC));
        s.record_success();
        assert!(s.is_failed_at(t0 + 3 * SEC));
    }

    #[test]
    fn failures_while_out_do_not_extend_the_ejection() {
        let s = ServerState::default();
        let p = passive(1, 10);
        let t0 = Instant::now();
        assert!(s.record_failure(p, t0));
        assert!(!s.record_failure(p, t0 + 9 * SEC));
        assert!(!s.is_failed_at(t0 + 10 * SEC));
    }

    #[test]
    fn slow_start_ramps_linearly_after_recovery() {
        let s = ServerState::default();
        let p = passive(1, 10);
        let ss = Duration::from_secs(20);
        let t0 = Instant::now();
        assert_eq!(
            s.slow_start_factor(ss, t0),
            FULL,
            "never failed: full weight"
        );
        s.record_failure(p, t0);
        let back = t0 + 10 * SEC;
        assert_eq!(s.slow_start_factor(ss, back), RAMP_START);
        assert_eq!(s.slow_start_factor(ss, back + 10 * SEC), 550);
        assert_eq!(s.slow_start_factor(ss, back + 20 * SEC), FULL);
        assert_eq!(s.slow_start_factor(Duration::ZERO, back), FULL, "off");
    }
}
