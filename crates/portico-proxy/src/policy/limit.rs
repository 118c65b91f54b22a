//! Per-client limits: `limit_rate` (nginx `limit_req` with `nodelay`) and `limit_conn`
//! (requests in progress, a WebSocket for as long as it is open).
//!
//! Both keep one entry per client IP in a table of fixed size allocated when the snapshot is
//! built: [`SHARDS`] shards, each behind its own mutex (workers rarely meet on one),
//! holding sets of [`WAYS`] entries; an address hashes (SipHash with a random key per table,
//! so a client cannot aim at a set) to one set of one shard. A flood from any number of
//! addresses costs the same memory: a new address takes a free entry of its set, else one
//! that no longer matters (a rate entry whose excess has drained, a conn entry with nothing
//! in progress), else (rate only) the least recently seen one, whose client then starts
//! afresh. A conn set full of clients with requests in progress refuses the new client.

use std::hash::BuildHasher;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use portico_config::LimitRate;

/// Shards of a table.
const SHARDS: usize = 64;
/// Entries of one set.
const WAYS: usize = 8;
/// Entries of a table: 16384 clients tracked at once per limit (about 512 KiB for a rate
/// table, 384 KiB for a conn table).
pub(crate) const ENTRIES: usize = 16384;
const SETS_PER_SHARD: usize = ENTRIES / SHARDS / WAYS;

/// A client address as a table key: IPv4 as its IPv4-mapped IPv6 form; 0 (`::`, never a
/// client) marks a free entry.
fn key_of(ip: IpAddr) -> u128 {
    let v6 = match ip.to_canonical() {
        IpAddr::V4(a) => a.to_ipv6_mapped(),
        IpAddr::V6(a) => a,
    };
    u128::from(v6)
}

/// Where a key lives: (shard, first entry of its set within the shard).
fn place(hasher: &std::collections::hash_map::RandomState, key: u128) -> (usize, usize) {
    let h = hasher.hash_one(key) as usize;
    let shard = h % SHARDS;
    let set = (h / SHARDS) % SETS_PER_SHARD;
    (shard, set * WAYS)
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding a shard cannot leave an entry half-written in a way that
    // matters (plain numbers); keep serving.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[derive(Debug, Clone, Copy, Default)]
struct RateEntry {
    key: u128,
    /// Milliseconds since the table's start, at the last accepted request.
    last_ms: u64,
    /// Requests above the steady rate at `last_ms` (nginx's `excess`).
    excess: f64,
}

/// The `limit_rate` table of one limit.
#[derive(Debug)]
pub(crate) struct RateTable {
    /// Requests per millisecond.
    rate: f64,
    burst: f64,
    start: Instant,
    hasher: std::collections::hash_map::RandomState,
    shards: Box<[Mutex<Box<[RateEntry]>>]>,
}

impl RateTable {
    pub fn new(limit: &LimitRate) -> Arc<RateTable> {
        let per_ms = limit.per.as_millis().max(1) as f64;
        Arc::new(RateTable {
            rate: f64::from(limit.requests) / per_ms,
            burst: f64::from(limit.burst),
            start: Instant::now(),
            hasher: Default::default(),
            shards: (0..SHARDS)
                .map(|_| Mutex::new(vec![RateEntry::default(); SETS_PER_SHARD * WAYS].into()))
                .collect(),
        })
    }

    /// Count a request from `ip` now: `Err(retry_after)` when it is past the rate and
    /// the burst (a refused request is not counted, as in nginx).
    pub fn check(&self, ip: IpAddr) -> Result<(), Duration> {
        let now = self.start.elapsed().as_millis() as u64;
        self.check_at(ip, now)
    }

    fn check_at(&self, ip: IpAddr, now: u64) -> Result<(), Duration> {
        let key = key_of(ip);
        let (shard, first) = place(&self.hasher, key);
        let mut entries = lock(&self.shards[shard]);
        let set = &mut entries[first..first + WAYS];
        let drained = |e: &RateEntry| e.excess - self.rate * now.saturating_sub(e.last_ms) as f64;
        if let Some(e) = set.iter_mut().find(|e| e.key == key) {
            // As nginx: clamped at 0 after adding this request.
            let excess = (drained(e) + 1.0).max(0.0);
            if excess > self.burst {
                // Time until the excess has drained to `burst - 1`, so that one more fits.
                let wait_ms = (excess - self.burst) / self.rate;
                return Err(Duration::from_millis(wait_ms.ceil() as u64));
            }
            e.excess = excess;
            e.last_ms = now;
            return Ok(());
        }
        // A new client: a free entry, else one fully drained, else the least recently seen.
        let slot = match set.iter().position(|e| e.key == 0 || drained(e) <= 0.0) {
            Some(i) => i,
            None => (0..WAYS).min_by_key(|&i| set[i].last_ms).unwrap_or(0),
        };
        set[slot] = RateEntry {
            key,
            last_ms: now,
            excess: 0.0,
        };
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct ConnEntry {
    key: u128,
    count: u32,
}

/// The `limit_conn` table of one limit.
#[derive(Debug)]
pub(crate) struct ConnTable {
    max: u32,
    hasher: std::collections::hash_map::RandomState,
    shards: Box<[Mutex<Box<[ConnEntry]>>]>,
}

/// One request in progress (or open WebSocket) of a client; releases its count on drop.
#[derive(Debug)]
pub(crate) struct ConnSlot {
    table: Arc<ConnTable>,
    key: u128,
}

impl ConnTable {
    pub fn new(max: u32) -> Arc<ConnTable> {
        Arc::new(ConnTable {
            max,
            hasher: Default::default(),
            shards: (0..SHARDS)
                .map(|_| Mutex::new(vec![ConnEntry::default(); SETS_PER_SHARD * WAYS].into()))
                .collect(),
        })
    }

    /// Count one more request in progress for `ip`, or `None` when it already has `max`
    /// (or its set is full of clients with requests in progress).
    pub fn acquire(self: &Arc<ConnTable>, ip: IpAddr) -> Option<ConnSlot> {
        let key = key_of(ip);
        let (shard, first) = place(&self.hasher, key);
        let mut entries = lock(&self.shards[shard]);
        let set = &mut entries[first..first + WAYS];
        let entry = match set.iter().position(|e| e.key == key) {
            Some(i) => &mut set[i],
            None => {
                let i = set.iter().position(|e| e.key == 0 || e.count == 0)?;
                set[i] = ConnEntry { key, count: 0 };
                &mut set[i]
            }
        };
        if entry.count >= self.max {
            return None;
        }
        entry.count += 1;
        Some(ConnSlot {
            table: Arc::clone(self),
            key,
        })
    }

    fn release(&self, key: u128) {
        let (shard, first) = place(&self.hasher, key);
        let mut entries = lock(&self.shards[shard]);
        if let Some(e) = entries[first..first + WAYS]
            .iter_mut()
            .find(|e| e.key == key)
        {
            e.count = e.count.saturating_sub(1);
        }
    }
}

impl Drop for ConnSlot {
    fn drop(&mut self) {
        self.table.release(self.key);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn ip(n: u32) -> IpAddr {
        IpAddr::V4(n.into())
    }

    #[test]
    fn rate_allows_burst_plus_one_then_the_rate() {
        // 10 r/s, burst 5: six at once, the seventh refused; 100 ms later one more.
        let t = RateTable::new(&LimitRate {
            requests: 10,
            per: Duration::from_secs(1),
            burst: 5,
        });
        let a = ip(1);
        for _ in 0..6 {
            assert!(t.check_at(a, 0).is_ok());
        }
        let wait = t.check_at(a, 0).unwrap_err();
        assert_eq!(wait, Duration::from_millis(100));
        assert!(t.check_at(a, 50).is_err());
        assert!(t.check_at(a, 100).is_ok());
        assert!(t.check_at(a, 100).is_err());
        // Another client is not affected; after a second the first has its burst back.
        assert!(t.check_at(ip(2), 100).is_ok());
        for _ in 0..6 {
            assert!(t.check_at(a, 1200).is_ok());
        }
        assert!(t.check_at(a, 1200).is_err());
    }

    #[test]
    fn a_flood_of_one_shot_addresses_does_not_free_a_limited_client() {
        let t = RateTable::new(&LimitRate {
            requests: 1,
            per: Duration::from_secs(60),
            burst: 3,
        });
        for _ in 0..4 {
            assert!(t.check_at(ip(7), 0).is_ok());
        }
        assert!(t.check_at(ip(7), 0).is_err());
        // 200 000 addresses, once each: they only ever replace each other (an entry with
        // nothing in excess is as good as free), never the limited client; memory is the
        // fixed table.
        for n in 100..200_100 {
            assert!(t.check_at(ip(n), 1).is_ok());
        }
        assert!(
            t.check_at(ip(7), 2).is_err(),
            "still limited after the flood"
        );
        let entries: usize = t.shards.iter().map(|s| s.lock().unwrap().len()).sum();
        assert_eq!(entries, ENTRIES);
    }

    #[test]
    fn conn_counts_and_releases() {
        let t = ConnTable::new(2);
        let a = ip(1);
        let s1 = t.acquire(a).unwrap();
        let s2 = t.acquire(a).unwrap();
        assert!(t.acquire(a).is_none());
        assert!(t.acquire(ip(2)).is_some());
        drop(s1);
        let s3 = t.acquire(a).unwrap();
        drop((s2, s3));
        assert!(t.acquire(a).is_some());
    }
}
