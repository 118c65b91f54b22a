//! Per-connection request limits: `keepalive_requests` (requests per connection, as nginx;
//! HTTP/2 streams count) and early resets (HTTP/2 Rapid Reset, CVE-2023-44487: streams the
//! client cancels before their response, each of which may already have started upstream
//! work).
//!
//! Either limit reached winds the connection down: hyper's graceful shutdown, which on
//! HTTP/1.1 closes after the request in flight and on HTTP/2 sends GOAWAY (no new
//! streams; those in flight finish). The connection driver ([`crate::client::http::drive`])
//! waits for [`ConnLimits::wound_down`].

use std::cell::Cell;
use std::rc::Rc;

use tokio::sync::Notify;

/// Early resets tolerated per connection before GOAWAY: at least this many, and at least
/// half of the requests started (a browser cancels some streams; an attacker cancels all).
pub(crate) const MAX_EARLY_RESETS: u64 = 100;

/// The counters of one connection.
#[derive(Debug)]
pub(crate) struct ConnLimits {
    max_requests: u64,
    started: Cell<u64>,
    early: Cell<u64>,
    tripped: Cell<bool>,
    wind_down: Notify,
}

impl ConnLimits {
    pub fn new(max_requests: u64) -> ConnLimits {
        ConnLimits {
            max_requests: max_requests.max(1),
            started: Cell::new(0),
            early: Cell::new(0),
            tripped: Cell::new(false),
            wind_down: Notify::new(),
        }
    }

    /// A request started; the connection winds down once `keepalive_requests` did.
    pub fn started(&self) {
        let n = self.started.get() + 1;
        self.started.set(n);
        if n >= self.max_requests {
            self.trip();
        }
    }

    /// A request was cancelled before its response was ready.
    pub fn early_end(&self) {
        let n = self.early.get() + 1;
        self.early.set(n);
        if n >= MAX_EARLY_RESETS && n * 2 >= self.started.get() && !self.tripped.get() {
            tracing::info!(
                early_resets = n,
                requests = self.started.get(),
                "client cancels most of its requests early (HTTP/2 rapid reset?): closing the connection"
            );
            self.trip();
        }
    }

    fn trip(&self) {
        if !self.tripped.replace(true) {
            self.wind_down.notify_one();
        }
    }

    /// Resolves once a limit was reached.
    pub async fn wound_down(&self) {
        self.wind_down.notified().await;
    }
}

/// Counts the request as ended early unless [`EarlyEnd::done`] was called first.
pub(crate) struct EarlyEnd(Option<Rc<ConnLimits>>);

impl EarlyEnd {
    pub fn new(limits: &Rc<ConnLimits>) -> EarlyEnd {
        limits.started();
        EarlyEnd(Some(limits.clone()))
    }

    pub fn done(mut self) {
        self.0 = None;
    }
}

impl Drop for EarlyEnd {
    fn drop(&mut self) {
        if let Some(limits) = self.0.take() {
            limits.early_end();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::Future;
    use std::pin::pin;
    use std::task::{Context, Poll, Waker};

    fn tripped(l: &ConnLimits) -> bool {
        let mut fut = pin!(l.wound_down());
        matches!(
            fut.as_mut().poll(&mut Context::from_waker(Waker::noop())),
            Poll::Ready(())
        )
    }

    #[test]
    fn keepalive_requests_winds_down_at_the_limit() {
        let l = Rc::new(ConnLimits::new(3));
        EarlyEnd::new(&l).done();
        EarlyEnd::new(&l).done();
        assert!(!tripped(&l));
        EarlyEnd::new(&l).done();
        assert!(tripped(&l));
    }

    #[test]
    fn mostly_cancelled_requests_wind_down_a_few_do_not() {
        let l = Rc::new(ConnLimits::new(1_000_000));
        // A browser: many requests, some cancelled.
        for i in 0..1000 {
            let e = EarlyEnd::new(&l);
            if i % 4 != 0 {
                e.done();
            }
        }
        assert!(!tripped(&l), "250 of 1000 cancelled is normal");
        // Rapid reset: every request cancelled.
        let l = Rc::new(ConnLimits::new(1_000_000));
        for _ in 0..MAX_EARLY_RESETS - 1 {
            drop(EarlyEnd::new(&l));
        }
        assert!(!tripped(&l));
        drop(EarlyEnd::new(&l));
        assert!(tripped(&l));
    }
}
