//! The stream plane's lowest floor: what every connection task sees ([`Shared`]), the knobs
//! that are not config keys ([`StreamOptions`]), and a poison-tolerant [`lock`].
//!
//! `header_timeout`, which a reload may change, is kept in an atomic here, so a reload
//! applies it to new connections at once, as on the HTTP plane (`shutdown_grace` lives in
//! the control handle, which computes the drain deadline). The connection count behind `max_connections` is the
//! process's [`portico_net::Gate`], shared with the HTTP plane; [`Shared`] also counts this
//! plane's own connections, which a graceful stop waits for. `trusted_proxies` is kept
//! here too, for the PROXY headers of `accept_proxy_protocol` streams.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use portico_config::{IpNet, ServerConfig};
use portico_net::Gate;
use portico_net::access_log::AccessLog;
use tokio::sync::{Notify, watch};

/// Knobs of the stream server that are not configuration keys.
#[derive(Debug, Clone)]
pub struct StreamOptions {
    /// How often the certificate files of TLS streams are checked for changes (default 5 s,
    /// as `portico_tls::FileCerts`; tests use a few milliseconds).
    pub cert_poll_interval: Duration,
}

impl Default for StreamOptions {
    fn default() -> Self {
        StreamOptions {
            cert_poll_interval: Duration::from_secs(5),
        }
    }
}

/// State every connection task sees.
#[derive(Debug)]
pub(crate) struct Shared {
    pub access_log: AccessLog,
    /// The process's connection gate (both planes).
    pub gate: Arc<Gate>,
    /// Turns true to close every connection (stop_now, or the end of the grace period).
    pub kill: watch::Sender<bool>,
    /// `[server] header_timeout`, in nanoseconds (reloadable).
    header_timeout: AtomicU64,
    /// `[server] trusted_proxies` (reloadable): the only peers whose PROXY headers are
    /// believed when not empty. Read once per connection of a stream with
    /// `accept_proxy_protocol`.
    trusted_proxies: std::sync::RwLock<Arc<[IpNet]>>,
    /// Stream connections open now (this plane only).
    live: AtomicUsize,
    /// Signalled whenever one of them closes.
    closed: Notify,
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

impl Shared {
    pub(crate) fn new(access_log: AccessLog, gate: Arc<Gate>, server: &ServerConfig) -> Shared {
        let shared = Shared {
            access_log,
            gate,
            kill: watch::channel(false).0,
            header_timeout: AtomicU64::new(0),
            trusted_proxies: std::sync::RwLock::new(Arc::from(Vec::new())),
            live: AtomicUsize::new(0),
            closed: Notify::new(),
        };
        shared.apply(server);
        shared
    }

    /// Apply the reloadable `[server]` settings.
    pub(crate) fn apply(&self, server: &ServerConfig) {
        self.header_timeout
            .store(nanos(server.header_timeout), Ordering::Relaxed);
        let nets: Arc<[IpNet]> = Arc::from(server.trusted_proxies.clone());
        *self
            .trusted_proxies
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = nets;
    }

    /// Whether a PROXY header from `peer` may be believed: `[server] trusted_proxies` is
    /// empty (every peer of an `accept_proxy_protocol` listener is a proxy) or lists it.
    pub(crate) fn proxy_trusted(&self, peer: std::net::IpAddr) -> bool {
        let nets = self
            .trusted_proxies
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        nets.is_empty() || nets.iter().any(|n| n.contains(peer))
    }

    pub(crate) fn header_timeout(&self) -> Duration {
        Duration::from_nanos(self.header_timeout.load(Ordering::Relaxed))
    }

    /// A connection of this plane opened.
    pub(crate) fn opened(&self) {
        self.live.fetch_add(1, Ordering::AcqRel);
    }

    /// A connection of this plane closed.
    pub(crate) fn closed(&self) {
        self.live.fetch_sub(1, Ordering::AcqRel);
        self.closed.notify_waiters();
    }

    /// Connections of this plane open now.
    pub(crate) fn live(&self) -> usize {
        self.live.load(Ordering::Acquire)
    }

    /// Wait until no connection of this plane is open.
    pub(crate) async fn all_closed(&self) {
        loop {
            let closed = self.closed.notified();
            tokio::pin!(closed);
            closed.as_mut().enable();
            if self.live() == 0 {
                return;
            }
            closed.await;
        }
    }
}

/// Lock a mutex whose data stays consistent even if a holder panicked.
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
