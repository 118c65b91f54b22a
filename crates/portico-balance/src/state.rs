//! Live per-server state ([`ServerState`]) and the process-wide [`Registry`] that owns it.
//!
//! A `ServerState` is shared (through an `Arc`) by every [`crate::Pool`] built for a config
//! that contains the server, so counters and health survive reloads. Everything in it is an
//! atomic: the pick path never locks. The registry's map is behind a mutex, taken only when a
//! pool is built or when the admin side looks a server up.
//!
//! Times are stored as "ticks": nanoseconds since a process-wide epoch, plus one, so that `0`
//! can mean "never". Callers pass [`Instant`]s (the `_at` variants take a virtual clock).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::ServerId;

/// The process-wide time origin of all stored ticks: an hour before the first use (when the
/// monotonic clock goes back that far), so that a time shortly before the process started
/// (a cluster registration's, [`ServerState::joined_at`]) is still told apart.
fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(|| {
        let now = Instant::now();
        now.checked_sub(Duration::from_secs(3600)).unwrap_or(now)
    })
}

/// `now` as ticks (>= 1). Instants before the epoch map to 1.
pub(crate) fn ticks(now: Instant) -> u64 {
    let nanos = now.saturating_duration_since(epoch()).as_nanos();
    u64::try_from(nanos)
        .unwrap_or(u64::MAX - 1)
        .saturating_add(1)
}

/// A duration as a tick count.
pub(crate) fn span(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Operator control of one server (admin API `enable` / `drain` / `disable`); kept across
/// reloads like the rest of the live state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AdminState {
    /// Normal operation.
    #[default]
    Enabled,
    /// No new picks; [`crate::Pool::pick_member`] (sticky / persistent clients) still works.
    Draining,
    /// No picks at all.
    Disabled,
}

impl AdminState {
    fn to_u8(self) -> u8 {
        match self {
            AdminState::Enabled => 0,
            AdminState::Draining => 1,
            AdminState::Disabled => 2,
        }
    }

    fn from_u8(v: u8) -> AdminState {
        match v {
            1 => AdminState::Draining,
            2 => AdminState::Disabled,
            _ => AdminState::Enabled,
        }
    }
}

/// Number of counter shards. Each thread uses one ([`shard`]), so the per-request counter
/// updates of different workers never write the same cache line.
pub(crate) const SHARDS: usize = 8;

/// The counter shard of the calling thread (threads get shards in turn).
pub(crate) fn shard() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static SHARD: usize = NEXT.fetch_add(1, Ordering::Relaxed) % SHARDS;
    }
    SHARD.with(|s| *s)
}

/// One thread's share of a server's hot counters, alone on its cache lines (128 bytes:
/// adjacent-line prefetch pairs lines).
#[derive(Debug, Default)]
#[repr(align(128))]
pub(crate) struct Shard {
    /// Guards taken from this shard and not dropped yet.
    active: AtomicU32,
    /// Picks counted on this shard.
    picks: AtomicU64,
}

/// Live counters and health of one server; shared by every snapshot that has the server.
///
/// The per-request counters (active, picks) are sharded per thread: a pick writes only its
/// thread's shard, and readers ([`ServerState::active`], [`ServerState::picks`]) sum the
/// shards. A server with `max_conns` counts its guards in one shared counter instead, so the
/// limit stays exact.
#[derive(Debug)]
pub struct ServerState {
    /// Active guards and picks of servers without `max_conns`, per thread.
    shards: [Shard; SHARDS],
    /// Active guards taken under a `max_conns` limit (checked together with the shards).
    limited: AtomicU32,
    /// Total failures reported (passive health input), for statistics.
    pub(crate) failures: AtomicU64,
    /// Failures in the current window (passive health).
    pub(crate) window_fails: AtomicU32,
    /// Tick at which the current failure window started (0 = no window).
    pub(crate) window_start: AtomicU64,
    /// Tick until which passive health keeps the server out (0 = never taken out).
    pub(crate) down_until: AtomicU64,
    /// Tick at which the server last came back (end of a passive ejection, or active health
    /// turning healthy again); 0 = never. Drives slow start.
    pub(crate) recovered_at: AtomicU64,
    /// Verdict of active health checks (true until a checker says otherwise).
    pub(crate) active_health: AtomicBool,
    /// [`AdminState`] as a byte.
    pub(crate) admin: AtomicU8,
}

impl Default for ServerState {
    fn default() -> Self {
        // Make sure the epoch is fixed no later than the first state's creation.
        let _ = epoch();
        ServerState {
            shards: Default::default(),
            limited: AtomicU32::new(0),
            failures: AtomicU64::new(0),
            window_fails: AtomicU32::new(0),
            window_start: AtomicU64::new(0),
            down_until: AtomicU64::new(0),
            recovered_at: AtomicU64::new(0),
            active_health: AtomicBool::new(true),
            admin: AtomicU8::new(0),
        }
    }
}

impl ServerState {
    /// Connections/requests currently active on this server.
    pub fn active(&self) -> u32 {
        self.limited
            .load(Ordering::Acquire)
            .wrapping_add(self.sharded_active())
    }

    /// Active guards counted in the per-thread shards.
    fn sharded_active(&self) -> u32 {
        self.shards.iter().fold(0u32, |n, s| {
            n.wrapping_add(s.active.load(Ordering::Acquire))
        })
    }

    /// Total times this server was picked.
    pub fn picks(&self) -> u64 {
        self.shards
            .iter()
            .fold(0u64, |n, s| n.wrapping_add(s.picks.load(Ordering::Relaxed)))
    }

    /// Total failures reported for this server.
    pub fn fails(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }

    /// Failures counted in the current passive-health window.
    pub fn window_fails(&self) -> u32 {
        self.window_fails.load(Ordering::Relaxed)
    }

    /// Verdict of active health checks (true by default).
    pub fn is_healthy(&self) -> bool {
        self.active_health.load(Ordering::Relaxed)
    }

    /// Record an active health check verdict. Turning healthy after unhealthy starts the
    /// slow-start ramp (if the upstream has one).
    pub fn set_healthy(&self, healthy: bool) {
        self.set_healthy_at(healthy, Instant::now());
    }

    /// [`ServerState::set_healthy`] with an explicit clock.
    pub fn set_healthy_at(&self, healthy: bool, now: Instant) {
        let was = self.active_health.swap(healthy, Ordering::AcqRel);
        if healthy && !was {
            self.recovered_at.store(ticks(now), Ordering::Release);
        }
    }

    /// The operator's setting for this server.
    pub fn admin_state(&self) -> AdminState {
        AdminState::from_u8(self.admin.load(Ordering::Relaxed))
    }

    /// Change the operator's setting. Enabling a drained or disabled server starts the
    /// slow-start ramp (if the upstream has one).
    pub fn set_admin_state(&self, state: AdminState) {
        self.set_admin_state_at(state, Instant::now());
    }

    /// [`ServerState::set_admin_state`] with an explicit clock.
    pub fn set_admin_state_at(&self, state: AdminState, now: Instant) {
        let was = AdminState::from_u8(self.admin.swap(state.to_u8(), Ordering::AcqRel));
        if state == AdminState::Enabled && was != AdminState::Enabled {
            self.recovered_at.store(ticks(now), Ordering::Release);
        }
    }

    /// The server joined its upstream at `at` (a server registered through the cluster:
    /// it starts cold). Starts the slow-start ramp from `at`, as a recovery does (if the
    /// upstream has one); an `at` before the epoch counts from the epoch.
    pub fn joined_at(&self, at: Instant) {
        self.recovered_at.store(ticks(at), Ordering::Release);
    }

    /// Whether passive health currently keeps this server out.
    pub fn is_failed_at(&self, now: Instant) -> bool {
        ticks(now) < self.down_until.load(Ordering::Acquire)
    }

    /// When passive health lets this server back in, if it is out at `now`.
    pub fn failed_for_at(&self, now: Instant) -> Option<Duration> {
        let now = ticks(now);
        let until = self.down_until.load(Ordering::Acquire);
        (now < until).then(|| Duration::from_nanos(until - now))
    }

    /// Take one active slot, respecting `max_conns` (0 = unlimited). `None` when full.
    pub(crate) fn try_acquire(self: &Arc<Self>, max_conns: u32) -> Option<ActiveGuard> {
        let shard = shard();
        let slot = if max_conns == 0 {
            self.shards[shard].active.fetch_add(1, Ordering::AcqRel);
            Slot::Shard(shard)
        } else {
            self.limited
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |a| {
                    (a.wrapping_add(self.sharded_active()) < max_conns).then_some(a + 1)
                })
                .ok()?;
            Slot::Limited
        };
        self.shards[shard].picks.fetch_add(1, Ordering::Relaxed);
        Some(ActiveGuard {
            state: Arc::clone(self),
            slot,
        })
    }
}

/// Which counter an [`ActiveGuard`] took its count from.
#[derive(Debug, Clone, Copy)]
enum Slot {
    Shard(usize),
    Limited,
}

/// Counts one active connection/request on a server until dropped. `Send + Sync`.
#[derive(Debug)]
pub struct ActiveGuard {
    state: Arc<ServerState>,
    slot: Slot,
}

impl ActiveGuard {
    /// The server's live state.
    pub fn state(&self) -> &Arc<ServerState> {
        &self.state
    }
}

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        match self.slot {
            Slot::Shard(i) => self.state.shards[i].active.fetch_sub(1, Ordering::AcqRel),
            Slot::Limited => self.state.limited.fetch_sub(1, Ordering::AcqRel),
        };
    }
}

/// A point-in-time copy of one member's counters, for the admin API and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemberStats {
    pub active: u32,
    pub picks: u64,
    pub fails: u64,
    /// Active health verdict.
    pub healthy: bool,
    /// Whether passive health keeps the server out right now.
    pub failed: bool,
    pub admin: AdminState,
}

impl MemberStats {
    pub(crate) fn of(state: &ServerState, now: Instant) -> MemberStats {
        MemberStats {
            active: state.active(),
            picks: state.picks(),
            fails: state.fails(),
            healthy: state.is_healthy(),
            failed: state.is_failed_at(now),
            admin: state.admin_state(),
        }
    }
}

/// Process-wide live state, keyed by [`ServerId`]. Cheap to clone (an `Arc` inside).
#[derive(Debug, Clone, Default)]
pub struct Registry {
    inner: Arc<Mutex<HashMap<ServerId, Arc<ServerState>>>>,
}

impl Registry {
    pub fn new() -> Registry {
        Registry::default()
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<ServerId, Arc<ServerState>>> {
        // A panic while holding this lock cannot leave the map inconsistent (single inserts
        // and removals), so a poisoned lock is still usable.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The state for `id`, created on first use.
    pub fn state(&self, id: &ServerId) -> Arc<ServerState> {
        Arc::clone(self.map().entry(id.clone()).or_default())
    }

    /// The state for `id` if some pool has created it.
    pub fn get(&self, id: &ServerId) -> Option<Arc<ServerState>> {
        self.map().get(id).cloned()
    }

    /// Every known server and its state, sorted by id (for the admin API and metrics).
    pub fn entries(&self) -> Vec<(ServerId, Arc<ServerState>)> {
        let mut all: Vec<_> = self
            .map()
            .iter()
            .map(|(id, state)| (id.clone(), Arc::clone(state)))
            .collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }

    /// Number of servers known.
    pub fn len(&self) -> usize {
        self.map().len()
    }

    pub fn is_empty(&self) -> bool {
        self.map().is_empty()
    }

    /// Forget servers that no pool and no in-flight connection references any more (call
    /// after a reload has dropped the old snapshot).
    pub fn prune(&self) {
        self.map().retain(|_, state| Arc::strong_count(state) > 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(addr: &str) -> ServerId {
        ServerId {
            upstream: "up".into(),
            addr: addr.into(),
        }
    }

    #[test]
    fn registry_returns_the_same_state_for_the_same_id() {
        let reg = Registry::new();
        let a = reg.state(&id("10.0.0.1:80"));
        let b = reg.state(&id("10.0.0.1:80"));
        let c = reg.state(&id("10.0.0.2:80"));
        assert!(Arc::ptr_eq(&a, &b));
        assert!(!Arc::ptr_eq(&a, &c));
        assert_eq!(reg.len(), 2);
        let ids: Vec<ServerId> = reg.entries().into_iter().map(|(id, _)| id).collect();
        assert_eq!(ids, [id("10.0.0.1:80"), id("10.0.0.2:80")]);
        drop((a, b));
        reg.prune();
        assert_eq!(reg.len(), 1, "only the still-referenced state remains");
        assert!(reg.get(&id("10.0.0.2:80")).is_some());
    }

    #[test]
    fn guard_counts_and_max_conns_limits() {
        let s = Arc::new(ServerState::default());
        let g1 = s.try_acquire(2).expect("first slot");
        let g2 = s.try_acquire(2).expect("second slot");
        assert!(s.try_acquire(2).is_none(), "third exceeds max_conns=2");
        assert_eq!(s.active(), 2);
        drop(g1);
        let g3 = s.try_acquire(2).expect("slot freed");
        drop((g2, g3));
        assert_eq!(s.active(), 0);
        assert_eq!(s.picks(), 3);
    }

    #[test]
    fn sharded_counts_add_up_across_threads() {
        let s = Arc::new(ServerState::default());
        // Guards taken on several threads (several shards), some dropped on another thread.
        let guards: Vec<ActiveGuard> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..SHARDS + 2)
                .map(|_| {
                    let s = Arc::clone(&s);
                    scope.spawn(move || {
                        (0..10)
                            .map(|_| s.try_acquire(0).expect("unlimited"))
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().expect("thread"))
                .collect()
        });
        let n = u32::try_from(guards.len()).expect("small");
        assert_eq!(s.active(), n);
        assert_eq!(s.picks(), u64::from(n));
        // A limited acquire sees the sharded guards too.
        assert!(s.try_acquire(n).is_none(), "limit counts every guard");
        let limited = s.try_acquire(n + 1).expect("one slot left");
        assert_eq!(s.active(), n + 1);
        drop(guards);
        assert_eq!(s.active(), 1);
        drop(limited);
        assert_eq!(s.active(), 0);
    }

    #[test]
    fn set_healthy_marks_recovery_only_on_transition() {
        let s = ServerState::default();
        let t0 = Instant::now();
        s.set_healthy_at(true, t0);
        assert_eq!(s.recovered_at.load(Ordering::Relaxed), 0);
        s.set_healthy_at(false, t0);
        assert!(!s.is_healthy());
        s.set_healthy_at(true, t0 + Duration::from_secs(1));
        assert!(s.is_healthy());
        assert_eq!(
            s.recovered_at.load(Ordering::Relaxed),
            ticks(t0 + Duration::from_secs(1))
        );
    }

    #[test]
    fn admin_state_round_trips_and_enabling_starts_recovery() {
        let s = ServerState::default();
        let t0 = Instant::now();
        assert_eq!(s.admin_state(), AdminState::Enabled);
        s.set_admin_state_at(AdminState::Enabled, t0);
        assert_eq!(s.recovered_at.load(Ordering::Relaxed), 0, "no transition");
        for state in [
            AdminState::Draining,
            AdminState::Disabled,
            AdminState::Enabled,
        ] {
            s.set_admin_state_at(state, t0 + SEC);
            assert_eq!(s.admin_state(), state);
        }
        assert_eq!(s.recovered_at.load(Ordering::Relaxed), ticks(t0 + SEC));
    }

    const SEC: Duration = Duration::from_secs(1);

    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn types_are_send_and_sync() {
        assert_send_sync::<ServerState>();
        assert_send_sync::<ActiveGuard>();
        assert_send_sync::<Registry>();
    }
}
