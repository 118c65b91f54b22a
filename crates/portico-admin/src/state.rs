//! [`Admin`]: what the admin API knows about the running process, shared between the
//! control loop (which records reloads and publishes the config in force) and the admin
//! server thread (which reads it on every request).
//!
//! Live per-server state comes straight from `portico-balance`'s [`Registry`]; what only the
//! binary can reach (active health checks, certificates, VRRP instances) comes through the
//! [`Sources`] trait it implements. Reload requests go the other way, over a channel the
//! control loop serves ([`ReloadRequests`]), so a reload through the API runs exactly like
//! one from SIGHUP.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Instant, SystemTime};

use portico_balance::{AdminState, CheckStatus, Registry, ServerId};
use portico_config::Config;
use tokio::sync::{mpsc, oneshot};

/// How many reloads the status keeps.
pub const RELOADS_KEPT: usize = 10;

/// What the binary provides and the admin crate cannot reach itself.
pub trait Sources: Send + Sync + 'static {
    /// Active health checks, per checked server.
    fn health(&self) -> Vec<CheckStatus>;
    /// Certificates serving now (files and ACME).
    fn certificates(&self) -> Vec<CertView>;
    /// VRRP instances, in config order.
    fn vrrp(&self) -> Vec<VrrpView>;
    /// The server was disabled: close its open WebSockets with 1001 over the drain window
    /// (returns at once; the closes follow).
    fn drain_websockets(&self, server: &ServerId);
    /// The cluster as this node sees it (`None` without `[cluster]`).
    fn cluster(&self) -> Option<crate::cluster::ClusterView> {
        None
    }
    /// Write a server's new admin state to the cluster, so every node applies it (`None`
    /// without `[cluster]`; the future's error says why it could not be shared).
    fn share_server_state(&self, _server: &ServerId, _state: AdminState) -> Option<ShareFuture> {
        None
    }
}

/// The answer of [`Sources::share_server_state`].
pub type ShareFuture =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), String>> + Send>>;

/// One certificate as the admin API shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertView {
    /// Names it covers (subjectAltName for files, the ordered names for ACME).
    pub names: Vec<String>,
    /// `file` or `acme`.
    pub source: &'static str,
    /// The certificate file, for `file`.
    pub path: Option<String>,
    pub not_after: Option<SystemTime>,
    /// When the next ACME order is due.
    pub next_renewal: Option<SystemTime>,
    pub last_error: Option<String>,
    /// Completed ACME orders (this process).
    pub orders_ok: u64,
    /// Failed ACME attempts (this process).
    pub orders_failed: u64,
}

/// One VRRP instance as the admin API shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VrrpView {
    pub name: String,
    pub interface: String,
    pub vrid: u8,
    /// `MASTER`, `BACKUP`, `FAULT` or `INIT`.
    pub state: &'static str,
    pub base_priority: u8,
    pub effective_priority: u8,
    pub transitions: u64,
    pub virtual_ips: Vec<String>,
    pub tracks: Vec<TrackView>,
}

/// One tracked check of a VRRP instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackView {
    pub check: String,
    pub weight: i32,
    pub failing: bool,
}

/// One bound listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerView {
    /// `http`, `https` or `stream`.
    pub protocol: &'static str,
    /// The address as configured (port 0 asks the system for one).
    pub configured: SocketAddr,
    pub bound: SocketAddr,
}

/// The result of one reload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReloadResult {
    /// Applied (the text may list what needs a restart).
    Applied,
    /// The new config does not load: the running one stays; the text has the FILE:LINE:COL
    /// diagnostics.
    Invalid,
    /// A valid config could not be applied (e.g. a listener cannot be bound).
    Failed,
}

impl ReloadResult {
    pub fn as_str(self) -> &'static str {
        match self {
            ReloadResult::Applied => "applied",
            ReloadResult::Invalid => "invalid",
            ReloadResult::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<ReloadResult> {
        [
            ReloadResult::Applied,
            ReloadResult::Invalid,
            ReloadResult::Failed,
        ]
        .into_iter()
        .find(|r| r.as_str() == s)
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// One reload (from SIGHUP or the API).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReloadRecord {
    /// The config generation it produced or was refused at (grows with every attempt).
    pub generation: u64,
    pub at: SystemTime,
    pub result: ReloadResult,
    /// What changed, or the diagnostics.
    pub text: String,
}

/// A reload asked through the API; the control loop answers it.
#[derive(Debug)]
pub struct ReloadRequest {
    reply: oneshot::Sender<ReloadRecord>,
}

impl ReloadRequest {
    /// Send the outcome back to the API caller (who may have gone: then it is dropped).
    pub fn answer(self, record: ReloadRecord) {
        let _ = self.reply.send(record);
    }
}

/// The receiving end of API reloads, served by the control loop.
#[derive(Debug)]
pub struct ReloadRequests {
    rx: mpsc::UnboundedReceiver<ReloadRequest>,
}

impl ReloadRequests {
    /// The next request (pends forever once every [`Admin`] is gone).
    pub async fn next(&mut self) -> ReloadRequest {
        match self.rx.recv().await {
            Some(r) => r,
            None => std::future::pending().await,
        }
    }
}

/// Reload history and counters.
#[derive(Debug, Default)]
struct ReloadLog {
    recent: VecDeque<ReloadRecord>,
    counts: [u64; 3],
    last_good: Option<SystemTime>,
}

struct Inner {
    registry: Registry,
    config: Mutex<Arc<Config>>,
    generation: AtomicU64,
    started: SystemTime,
    started_at: Instant,
    sources: Box<dyn Sources>,
    listeners: Mutex<Vec<ListenerView>>,
    reloads: Mutex<ReloadLog>,
    reload_tx: mpsc::UnboundedSender<ReloadRequest>,
}

/// Shared admin state; cheap to clone.
#[derive(Clone)]
pub struct Admin {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Admin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Admin")
            .field("generation", &self.generation())
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section is a plain read or replace: a panic inside cannot leave the
    // value half-written, so a poisoned lock is still usable.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Admin {
    /// State for a process started with `config` (generation 0). The returned
    /// [`ReloadRequests`] must be served by whoever applies reloads.
    pub fn new(
        config: Arc<Config>,
        registry: Registry,
        sources: impl Sources,
    ) -> (Admin, ReloadRequests) {
        let (reload_tx, rx) = mpsc::unbounded_channel();
        let admin = Admin {
            inner: Arc::new(Inner {
                registry,
                config: Mutex::new(config),
                generation: AtomicU64::new(0),
                started: SystemTime::now(),
                started_at: Instant::now(),
                sources: Box::new(sources),
                listeners: Mutex::new(Vec::new()),
                reloads: Mutex::new(ReloadLog::default()),
                reload_tx,
            }),
        };
        (admin, ReloadRequests { rx })
    }

    /// The config in force.
    pub fn config(&self) -> Arc<Config> {
        Arc::clone(&lock(&self.inner.config))
    }

    pub fn generation(&self) -> u64 {
        self.inner.generation.load(Ordering::Relaxed)
    }

    pub fn registry(&self) -> &Registry {
        &self.inner.registry
    }

    pub fn sources(&self) -> &dyn Sources {
        self.inner.sources.as_ref()
    }

    pub fn started(&self) -> SystemTime {
        self.inner.started
    }

    pub fn uptime(&self) -> std::time::Duration {
        self.inner.started_at.elapsed()
    }

    /// Replace the config in force without a reload record (cluster mode: servers registered
    /// in etcd joined or left an upstream with `discover = "cluster"`).
    pub fn set_config(&self, config: Arc<Config>) {
        *lock(&self.inner.config) = config;
    }

    /// Replace the list of bound listeners (at start and after each reload).
    pub fn set_listeners(&self, listeners: Vec<ListenerView>) {
        *lock(&self.inner.listeners) = listeners;
    }

    pub fn listeners(&self) -> Vec<ListenerView> {
        lock(&self.inner.listeners).clone()
    }

    /// Record a reload's outcome; `config` is the config in force afterwards (the new one
    /// when applied, the running one otherwise).
    pub fn record_reload(&self, record: ReloadRecord, config: Arc<Config>) {
        *lock(&self.inner.config) = config;
        self.inner
            .generation
            .store(record.generation, Ordering::Relaxed);
        let mut log = lock(&self.inner.reloads);
        log.counts[record.result.index()] += 1;
        if record.result == ReloadResult::Applied {
            log.last_good = Some(record.at);
        }
        if log.recent.len() == RELOADS_KEPT {
            log.recent.pop_front();
        }
        log.recent.push_back(record);
    }

    /// The last reloads, newest first.
    pub fn reloads(&self) -> Vec<ReloadRecord> {
        lock(&self.inner.reloads)
            .recent
            .iter()
            .rev()
            .cloned()
            .collect()
    }

    /// Reloads by result (applied, invalid, failed) and the time of the last applied one.
    pub fn reload_counts(&self) -> ([u64; 3], Option<SystemTime>) {
        let log = lock(&self.inner.reloads);
        (log.counts, log.last_good)
    }

    /// Ask the control loop to reload and wait for its answer (`None`: nobody serves
    /// reloads, e.g. the process is stopping).
    pub async fn reload(&self) -> Option<ReloadRecord> {
        let (reply, rx) = oneshot::channel();
        self.inner.reload_tx.send(ReloadRequest { reply }).ok()?;
        rx.await.ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) struct NoSources;

    impl Sources for NoSources {
        fn health(&self) -> Vec<CheckStatus> {
            Vec::new()
        }
        fn certificates(&self) -> Vec<CertView> {
            Vec::new()
        }
        fn vrrp(&self) -> Vec<VrrpView> {
            Vec::new()
        }
        fn drain_websockets(&self, _: &ServerId) {}
    }

    fn config() -> Arc<Config> {
        let text =
            "[[sites]]\nlisten = [\"127.0.0.1:1\"]\nroutes = [{ path = \"/\", respond = \"x\" }]\n";
        Arc::new(
            portico_config::parse(text, std::path::Path::new("/tmp/p.toml"))
                .unwrap_or_else(|e| panic!("test config: {e}")),
        )
    }

    fn record(generation: u64, result: ReloadResult) -> ReloadRecord {
        ReloadRecord {
            generation,
            at: SystemTime::now(),
            result,
            text: String::new(),
        }
    }

    #[test]
    fn reload_log_keeps_the_last_ten_newest_first_and_counts_every_one() {
        let (admin, _rx) = Admin::new(config(), Registry::new(), NoSources);
        for g in 1..=12 {
            let result = if g % 3 == 0 {
                ReloadResult::Invalid
            } else {
                ReloadResult::Applied
            };
            admin.record_reload(record(g, result), config());
        }
        let recent = admin.reloads();
        assert_eq!(recent.len(), RELOADS_KEPT);
        assert_eq!(recent[0].generation, 12);
        assert_eq!(recent[9].generation, 3);
        let (counts, last_good) = admin.reload_counts();
        assert_eq!(counts, [8, 4, 0]);
        assert!(last_good.is_some());
        assert_eq!(admin.generation(), 12);
    }

    #[tokio::test]
    async fn an_api_reload_is_answered_by_the_control_loop() {
        let (admin, mut requests) = Admin::new(config(), Registry::new(), NoSources);
        let served = tokio::spawn(async move {
            let req = requests.next().await;
            req.answer(record(1, ReloadResult::Invalid));
        });
        let got = admin.reload().await.map(|r| r.result);
        assert_eq!(got, Some(ReloadResult::Invalid));
        served.await.unwrap_or_else(|e| panic!("{e}"));
    }

    #[test]
    fn results_round_trip() {
        for r in [
            ReloadResult::Applied,
            ReloadResult::Invalid,
            ReloadResult::Failed,
        ] {
            assert_eq!(ReloadResult::parse(r.as_str()), Some(r));
        }
        assert_eq!(ReloadResult::parse("x"), None);
    }
}
