//! Balancing algorithms over one [`Tier`] (the primary or the backup servers of a pool).
//!
//! Every algorithm answers "which member of this tier?" given a [`Ctx`] that says which
//! members are usable right now and what their effective (slow-start) weights are; the pool
//! handles tiers, the all-failed fallback and acquiring the active slot.

pub(crate) mod hash;
pub(crate) mod ip_hash;
pub(crate) mod least_conn;
pub(crate) mod random_two;
pub(crate) mod round_robin;

use std::cell::Cell;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::health::FULL;
use crate::state::{SHARDS, shard};
use crate::{AdminState, Member};

/// Longest precomputed smooth-WRR period; larger weight sums are scaled down to fit.
pub(crate) const MAX_PERIOD: u64 = 1024;
/// Random draws tried before a linear scan takes over.
pub(crate) const MAX_DRAWS: usize = 32;

/// The primary or the backup members of a pool, with the precomputed smooth-WRR period.
#[derive(Debug, Default)]
pub(crate) struct Tier {
    /// Member indexes (into the pool), in config order, `down` ones included.
    pub members: Vec<usize>,
    /// Configured weights of `members` (>= 1, `down` ones included), for `ip_hash`.
    pub weights: Vec<u64>,
    /// Sum of `weights`.
    pub total_weight: u64,
    /// One smooth-WRR period over the members that are not `down`: positions in `members`.
    pub seq: Vec<usize>,
}

impl Tier {
    pub(crate) fn new(members: Vec<usize>, all: &[Member]) -> Tier {
        let weights: Vec<u64> = members
            .iter()
            .map(|&i| u64::from(all[i].spec.weight.max(1)))
            .collect();
        let live: Vec<u64> = members
            .iter()
            .zip(&weights)
            .map(|(&i, &w)| if all[i].spec.down { 0 } else { w })
            .collect();
        Tier {
            seq: round_robin::smooth_sequence(&live),
            total_weight: weights.iter().sum(),
            weights,
            members,
        }
    }
}

/// The bytes of a client address (IPv4-mapped IPv6 counts as IPv4): a buffer and its length.
pub(crate) fn ip_octets(ip: IpAddr) -> ([u8; 16], usize) {
    let mut buf = [0u8; 16];
    match ip.to_canonical() {
        IpAddr::V4(v4) => {
            buf[..4].copy_from_slice(&v4.octets());
            (buf, 4)
        }
        IpAddr::V6(v6) => (v6.octets(), 16),
    }
}

/// One thread's random generator, alone on its cache line.
#[derive(Debug)]
#[repr(align(128))]
struct RngShard {
    /// State of a splitmix64 generator.
    rng: AtomicU64,
}

/// The round-robin position, alone on its cache line.
#[derive(Debug)]
#[repr(align(128))]
struct Ticket(AtomicU64);

/// Counters shared by all picks of a pool (the only mutable pick-path state of a pool).
///
/// The round-robin ticket is one counter for the whole pool, so the smooth-WRR period is
/// walked exactly across workers (HAProxy's semantics: three servers get 10/10/10 of 30
/// connections whichever workers accepted them). Sharding it per worker, as nginx does, saved
/// about 2% CPU per request, within measurement noise, and made shares only approximately
/// even, so it stays shared. Random generators are per thread ([`crate::state::shard`]): any
/// thread's draws are as good as another's.
#[derive(Debug)]
pub(crate) struct Counters {
    ticket: Ticket,
    rngs: [RngShard; SHARDS],
}

impl Counters {
    pub(crate) fn new(seed: u64) -> Counters {
        Counters {
            ticket: Ticket(AtomicU64::new(0)),
            rngs: std::array::from_fn(|i| RngShard {
                rng: AtomicU64::new(splitmix64(seed ^ i as u64)),
            }),
        }
    }

    pub(crate) fn next_ticket(&self) -> u64 {
        self.ticket.0.fetch_add(1, Ordering::Relaxed)
    }

    pub(crate) fn next_random(&self) -> u64 {
        splitmix64(self.rngs[shard()].rng.fetch_add(GOLDEN, Ordering::Relaxed))
    }
}

const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

/// The splitmix64 output function: a good 64-bit mix of `x`.
pub(crate) fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(GOLDEN);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// `x` reduced to `0..n` (n > 0).
pub(crate) fn below(x: u64, n: usize) -> usize {
    // usize -> u64 is lossless on every supported target; the result is < n.
    (x % n as u64) as usize
}

/// The clock of one pick: a given instant (the `_at` variants), or read on first use, so a
/// pick over servers that were never ejected and are not ramping up reads no clock.
#[derive(Debug)]
pub(crate) struct Now(Cell<Option<Instant>>);

impl Now {
    pub(crate) fn fixed(now: Instant) -> Now {
        Now(Cell::new(Some(now)))
    }

    pub(crate) fn lazy() -> Now {
        Now(Cell::new(None))
    }

    pub(crate) fn get(&self) -> Instant {
        match self.0.get() {
            Some(now) => now,
            None => {
                let now = Instant::now();
                self.0.set(Some(now));
                now
            }
        }
    }
}

/// What one pick may use: which members are usable and their effective weights.
#[derive(Debug)]
pub(crate) struct Ctx<'a> {
    pub members: &'a [Member],
    pub tried: &'a [usize],
    pub now: &'a Now,
    /// Ignore passive-health ejections (the all-failed fallback).
    pub ignore_passive: bool,
    pub slow_start: Duration,
    pub counters: &'a Counters,
}

impl Ctx<'_> {
    /// Whether member `i` may be picked now.
    pub(crate) fn usable(&self, i: usize) -> bool {
        let m = &self.members[i];
        !m.spec.down
            && m.state.is_healthy()
            && m.state.admin_state() == AdminState::Enabled
            && !self.tried.contains(&i)
            && (m.spec.max_conns == 0 || m.state.active() < m.spec.max_conns)
            && (self.ignore_passive || !self.failed(i))
    }

    /// Whether passive health keeps member `i` out (the clock is read only for a member that
    /// was ever ejected).
    fn failed(&self, i: usize) -> bool {
        let state = &self.members[i].state;
        state.down_until.load(Ordering::Acquire) != 0 && state.is_failed_at(self.now.get())
    }

    /// Slow-start share of member `i`, in thousandths.
    pub(crate) fn factor(&self, i: usize) -> u64 {
        let state = &self.members[i].state;
        // Without slow start, or for a server that never recovered, the share is full
        // whatever the time: no clock read.
        if self.slow_start.is_zero() || state.recovered_at.load(Ordering::Acquire) == 0 {
            return FULL;
        }
        state.slow_start_factor(self.slow_start, self.now.get())
    }

    /// Configured weight times the slow-start share.
    pub(crate) fn eff_weight(&self, i: usize) -> u64 {
        u64::from(self.members[i].spec.weight.max(1)) * self.factor(i)
    }

    /// Whether a member in slow start passes the acceptance test for the draw `rnd`.
    pub(crate) fn accept(&self, i: usize, rnd: u64) -> bool {
        let f = self.factor(i);
        f >= FULL || splitmix64(rnd) % FULL < f
    }

    /// `active / eff_weight` of `a` is lower than that of `b`.
    pub(crate) fn less_loaded(&self, a: usize, b: usize) -> bool {
        let load = |i: usize| u128::from(self.members[i].state.active());
        load(a) * u128::from(self.eff_weight(b)) < load(b) * u128::from(self.eff_weight(a))
    }
}

/// Draw a member from `tier` with probability proportional to weight x slow-start share,
/// among usable members. The first draw uses `first` as its period slot (round robin passes
/// its ticket; random callers a random number); later draws are random. After
/// [`MAX_DRAWS`] misses, a linear scan from `first` returns the next usable member.
pub(crate) fn draw(tier: &Tier, ctx: &Ctx<'_>, first: u64) -> Option<usize> {
    let len = tier.seq.len();
    if len == 0 {
        return None;
    }
    let mut slot_key = first;
    for attempt in 0..MAX_DRAWS {
        if attempt > 0 {
            slot_key = ctx.counters.next_random();
        }
        let i = tier.members[tier.seq[below(slot_key, len)]];
        if ctx.usable(i) && ctx.accept(i, slot_key ^ 0x5EED) {
            return Some(i);
        }
    }
    let start = below(first, len);
    (0..len)
        .map(|k| tier.members[tier.seq[(start + k) % len]])
        .find(|&i| ctx.usable(i))
}

#[cfg(test)]
pub(crate) mod testutil {
    //! Helpers for algorithm and pool tests.

    /// A pick key for one fixed client and no hash input.
    pub(crate) fn key() -> crate::PickKey<'static> {
        crate::PickKey {
            client_ip: std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
            hash: None,
        }
    }

    use std::time::Duration;

    use portico_config::{Balance, HashKey, ServerAddr, ServerSpec, Upstream};

    pub(crate) fn spec(addr: &str, weight: u32) -> ServerSpec {
        let (host, port) = addr.rsplit_once(':').expect("host:port");
        ServerSpec {
            addr: ServerAddr {
                host: host.trim_matches(['[', ']']).to_string(),
                port: port.parse().expect("port"),
            },
            weight,
            backup: false,
            down: false,
            max_conns: 0,
        }
    }

    pub(crate) fn upstream(name: &str, balance: Balance, servers: Vec<ServerSpec>) -> Upstream {
        Upstream {
            name: name.to_string(),
            servers,
            balance,
            hash_key: HashKey::ClientIp,
            sticky_cookie: None,
            sticky_cookie_max_age: None,
            connect_timeout: Duration::from_secs(5),
            read_timeout: Duration::from_secs(60),
            send_timeout: Duration::from_secs(60),
            keepalive: 32,
            max_fails: 1,
            fail_timeout: Duration::from_secs(10),
            retries: 1,
            slow_start: Duration::ZERO,
            tls: None,
            health: None,
            discover: None,
        }
    }

    /// Upstream with servers `10.0.0.{1..}:80` of the given weights.
    pub(crate) fn weighted(balance: Balance, weights: &[u32]) -> Upstream {
        let servers = weights
            .iter()
            .enumerate()
            .map(|(i, &w)| spec(&format!("10.0.0.{}:80", i + 1), w))
            .collect();
        upstream("up", balance, servers)
    }

    /// A small seeded generator for property-style tests.
    pub(crate) struct TestRng(pub u64);

    impl TestRng {
        pub(crate) fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(1);
            super::splitmix64(self.0)
        }
    }
}
