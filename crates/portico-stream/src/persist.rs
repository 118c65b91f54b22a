//! Source-IP persistence (LVS `persistence_timeout`): client IP -> server index.
//!
//! An entry lives while the client has connections open, and for `timeout` after its last
//! one closed. The table is consulted once per connection setup (never per byte), so a
//! sharded `Mutex<HashMap>` is plenty: 16 shards keyed by the address hash keep workers from
//! queueing on one lock. Every call takes `now` so tests run on a virtual clock.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

const SHARDS: usize = 16;

#[derive(Debug, Clone, Copy)]
struct Entry {
    server: usize,
    open: u32,
    /// When `open == 0`: the entry is gone after this instant.
    expires: Instant,
}

#[derive(Debug, Default)]
struct Shard {
    map: HashMap<IpAddr, Entry>,
    /// When expired entries were last swept.
    swept: Option<Instant>,
}

/// The persistence table of one stream.
#[derive(Debug)]
pub struct Persistence {
    timeout: Duration,
    shards: Vec<Mutex<Shard>>,
    hasher: RandomState,
}

impl Persistence {
    pub fn new(timeout: Duration) -> Persistence {
        Persistence {
            timeout,
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            hasher: RandomState::new(),
        }
    }

    fn shard(&self, ip: IpAddr) -> std::sync::MutexGuard<'_, Shard> {
        let i = usize::try_from(self.hasher.hash_one(ip)).unwrap_or(0) % SHARDS;
        // A panic while holding the lock cannot leave an entry half-written (plain inserts
        // and field updates), so a poisoned lock is still usable.
        self.shards[i].lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The server this client is pinned to, if any.
    pub fn lookup(&self, ip: IpAddr, now: Instant) -> Option<usize> {
        let shard = self.shard(ip);
        let e = shard.map.get(&ip)?;
        (e.open > 0 || e.expires > now).then_some(e.server)
    }

    /// A connection of `ip` to `server` is open: pin the client there (a new pin replaces
    /// an old one, e.g. after the old server failed).
    pub fn open(&self, ip: IpAddr, server: usize, now: Instant) {
        let mut shard = self.shard(ip);
        if shard
            .swept
            .is_none_or(|t| now.saturating_duration_since(t) >= Duration::from_secs(1))
        {
            shard.map.retain(|_, e| e.open > 0 || e.expires > now);
            shard.swept = Some(now);
        }
        let e = shard.map.entry(ip).or_insert(Entry {
            server,
            open: 0,
            expires: now,
        });
        let expired = e.open == 0 && e.expires <= now;
        if e.server != server || expired {
            e.server = server;
        }
        e.open += 1;
    }

    /// A connection of `ip` closed: the timer starts when the last one closes.
    pub fn close(&self, ip: IpAddr, now: Instant) {
        let mut shard = self.shard(ip);
        if let Some(e) = shard.map.get_mut(&ip) {
            e.open = e.open.saturating_sub(1);
            if e.open == 0 {
                e.expires = now + self.timeout;
            }
        }
    }

    /// Drop every expired entry (a periodic task calls this; `open` also sweeps its shard
    /// at most once a second).
    pub fn sweep(&self, now: Instant) {
        for s in &self.shards {
            let mut shard = s.lock().unwrap_or_else(|e| e.into_inner());
            shard.map.retain(|_, e| e.open > 0 || e.expires > now);
            shard.swept = Some(now);
        }
    }

    /// Entries (live or not yet swept); for tests and metrics.
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|e| e.into_inner()).map.len())
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn pinned_while_open_and_for_the_timeout_after() {
        let p = Persistence::new(Duration::from_secs(50));
        let t0 = Instant::now();
        let a = ip("127.0.0.2");
        assert_eq!(p.lookup(a, t0), None);
        p.open(a, 2, t0);
        // Open for a long time: still pinned.
        assert_eq!(p.lookup(a, t0 + Duration::from_secs(500)), Some(2));
        p.close(a, t0 + Duration::from_secs(500));
        let closed = t0 + Duration::from_secs(500);
        assert_eq!(p.lookup(a, closed + Duration::from_secs(49)), Some(2));
        assert_eq!(p.lookup(a, closed + Duration::from_secs(50)), None);
        // Another client is independent.
        assert_eq!(p.lookup(ip("127.0.0.3"), t0), None);
    }

    #[test]
    fn timer_starts_at_the_last_close() {
        let p = Persistence::new(Duration::from_secs(10));
        let t0 = Instant::now();
        let a = ip("10.0.0.1");
        p.open(a, 1, t0);
        p.open(a, 1, t0);
        p.close(a, t0 + Duration::from_secs(1));
        assert_eq!(
            p.lookup(a, t0 + Duration::from_secs(30)),
            Some(1),
            "one still open"
        );
        p.close(a, t0 + Duration::from_secs(30));
        assert_eq!(p.lookup(a, t0 + Duration::from_secs(39)), Some(1));
        assert_eq!(p.lookup(a, t0 + Duration::from_secs(41)), None);
    }

    #[test]
    fn repin_and_sweep() {
        let p = Persistence::new(Duration::from_secs(5));
        let t0 = Instant::now();
        let a = ip("::1");
        p.open(a, 0, t0);
        p.close(a, t0);
        // The pinned server failed; the caller picked another one.
        p.open(a, 3, t0 + Duration::from_secs(1));
        assert_eq!(p.lookup(a, t0 + Duration::from_secs(2)), Some(3));
        p.close(a, t0 + Duration::from_secs(2));
        // Many clients, then time passes: opening sweeps the expired ones of its shard.
        for i in 0..64u8 {
            let c = IpAddr::from([10, 0, 1, i]);
            p.open(c, 0, t0);
            p.close(c, t0);
        }
        assert!(p.len() >= 64);
        let b = IpAddr::from([10, 0, 2, 1]);
        p.open(b, 0, t0);
        let later = t0 + Duration::from_secs(60);
        p.sweep(later);
        assert_eq!(p.len(), 1, "only the open entry remains");
        assert_eq!(p.lookup(b, later), Some(0));
    }
}
