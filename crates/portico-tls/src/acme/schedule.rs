//! When to renew and how long to wait after a failure (pure functions, unit-tested).
//!
//! Renewal: when less than `min(renew_before, lifetime / 3)` is left. With Let's Encrypt's
//! 90-day certificates and the default `renew_before = "30d"` both are 30 days; for short-lived
//! certificates (6-day profiles, test CAs) the third of the lifetime wins, so a `renew_before`
//! longer than the lifetime never makes Portico renew in a loop.
//!
//! Retries: exponential backoff from `initial` doubling up to `max`, with jitter (each delay
//! drawn from [d/2, d]), and never sooner than a server's `Retry-After`.

use std::time::{Duration, SystemTime};

use crate::pem::CertInfo;

/// The instant at which a certificate should be renewed.
pub fn renew_at(info: &CertInfo, renew_before: Duration) -> SystemTime {
    let margin = renew_before.min(info.lifetime() / 3);
    info.not_after
        .checked_sub(margin)
        .unwrap_or(info.not_before)
}

/// Exponential backoff with jitter.
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    attempt: u32,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration) -> Backoff {
        Backoff {
            initial,
            max: max.max(initial),
            attempt: 0,
        }
    }

    /// The ceiling of the next delay (before jitter) without advancing.
    pub fn ceiling(&self) -> Duration {
        let factor = 2u32.saturating_pow(self.attempt.min(31));
        self.initial.saturating_mul(factor).min(self.max)
    }

    /// The next delay: jittered in [ceiling/2, ceiling], at least `retry_after` when given.
    /// `unit` is a uniform random number in [0, 1).
    pub fn next_delay(&mut self, retry_after: Option<Duration>, unit: f64) -> Duration {
        let ceiling = self.ceiling();
        self.attempt = self.attempt.saturating_add(1);
        let jittered = ceiling.mul_f64(0.5 + 0.5 * unit.clamp(0.0, 1.0));
        match retry_after {
            Some(server) => jittered.max(server),
            None => jittered,
        }
    }

    /// Forget past failures (after a success).
    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    /// Failures since the last reset.
    pub fn attempts(&self) -> u32 {
        self.attempt
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    fn cert(lifetime: Duration) -> CertInfo {
        let not_before = UNIX_EPOCH + Duration::from_secs(1_000_000_000);
        CertInfo {
            names: vec!["a.test".into()],
            not_before,
            not_after: not_before + lifetime,
        }
    }

    const DAY: Duration = Duration::from_secs(86_400);

    #[test]
    fn ninety_day_cert_renews_thirty_days_before_expiry() {
        let c = cert(90 * DAY);
        assert_eq!(renew_at(&c, 30 * DAY), c.not_after - 30 * DAY);
        assert_eq!(renew_at(&c, 10 * DAY), c.not_after - 10 * DAY);
    }

    #[test]
    fn short_lived_cert_renews_at_a_third_left() {
        let c = cert(Duration::from_secs(30));
        assert_eq!(
            renew_at(&c, 30 * DAY),
            c.not_after - Duration::from_secs(10)
        );
        let six_days = cert(6 * DAY);
        assert_eq!(renew_at(&six_days, 30 * DAY), six_days.not_after - 2 * DAY);
    }

    #[test]
    fn backoff_doubles_with_jitter_up_to_max_and_honours_retry_after() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(10));
        assert_eq!(
            b.next_delay(None, 0.999_999),
            Duration::from_secs(1).mul_f64(0.999_999_5)
        );
        assert_eq!(b.next_delay(None, 0.0), Duration::from_secs(1));
        assert_eq!(b.ceiling(), Duration::from_secs(4));
        b.next_delay(None, 0.5);
        b.next_delay(None, 0.5);
        assert_eq!(b.ceiling(), Duration::from_secs(10), "capped at max");
        let d = b.next_delay(None, 0.25);
        assert!(
            d >= Duration::from_secs(5) && d <= Duration::from_secs(10),
            "{d:?}"
        );
        assert_eq!(
            b.next_delay(Some(Duration::from_secs(60)), 0.5),
            Duration::from_secs(60),
            "Retry-After wins when longer"
        );
        assert_eq!(b.attempts(), 6);
        b.reset();
        assert_eq!(b.ceiling(), Duration::from_secs(1));
    }
}
