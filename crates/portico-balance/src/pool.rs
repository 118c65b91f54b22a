//! [`Pool`]: one upstream's members, tiers and algorithm; picking and outcome reports.

use std::sync::Arc;
use std::time::{Duration, Instant};

use portico_config::{Balance, Upstream};

use crate::algo::{self, Counters, Ctx, Now, Tier};
use crate::health::Passive;
use crate::state::MemberStats;
use crate::{AdminState, Member, PickError, PickKey, Picked, Registry, ServerId};

/// One upstream pool.
#[derive(Debug)]
pub struct Pool {
    name: String,
    balance: Balance,
    members: Vec<Member>,
    primary: Tier,
    backup: Tier,
    passive: Passive,
    slow_start: Duration,
    /// `hash::fnv1a` of each member's address (for `balance = "hash"`).
    server_hash: Vec<u64>,
    counters: Counters,
}

impl Pool {
    /// Build the pool for `upstream`, reusing live state from `registry`.
    pub fn new(upstream: &Upstream, registry: &Registry) -> Pool {
        let name: Arc<str> = Arc::from(upstream.name.as_str());
        let members: Vec<Member> = upstream
            .servers
            .iter()
            .map(|spec| {
                let id = ServerId {
                    upstream: Arc::clone(&name),
                    addr: Arc::from(spec.addr.to_string()),
                };
                let state = registry.state(&id);
                Member {
                    id,
                    spec: spec.clone(),
                    state,
                }
            })
            .collect();
        let (backups, primaries): (Vec<usize>, Vec<usize>) =
            (0..members.len()).partition(|&i| members[i].spec.backup);
        let server_hash = members
            .iter()
            .map(|m| algo::hash::fnv1a(m.id.addr.as_bytes()))
            .collect();
        Pool {
            name: upstream.name.clone(),
            balance: upstream.balance,
            primary: Tier::new(primaries, &members),
            backup: Tier::new(backups, &members),
            members,
            passive: Passive {
                max_fails: upstream.max_fails,
                fail_timeout: upstream.fail_timeout,
            },
            slow_start: upstream.slow_start,
            server_hash,
            counters: Counters::new(rand::random()),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn members(&self) -> &[Member] {
        &self.members
    }

    /// Number of members (primary and backup, `down` ones included).
    pub fn member_count(&self) -> usize {
        self.members.len()
    }

    pub fn balance(&self) -> Balance {
        self.balance
    }

    /// Index of the member with this address (as written in the config), if any.
    pub fn index_of(&self, addr: &str) -> Option<usize> {
        self.members.iter().position(|m| &*m.id.addr == addr)
    }

    /// Counters of member `index` now.
    pub fn member_stats(&self, index: usize) -> Option<MemberStats> {
        self.member_stats_at(index, Instant::now())
    }

    /// [`Pool::member_stats`] with an explicit clock.
    pub fn member_stats_at(&self, index: usize, now: Instant) -> Option<MemberStats> {
        self.members
            .get(index)
            .map(|m| MemberStats::of(&m.state, now))
    }

    /// Whether some server (primary or backup) is not `down`, not failed by active health
    /// and enabled by the operator. Passive-health ejections and `max_conns` are not
    /// considered: they are transient, and a pool whose servers all failed passively still
    /// tries them (see [`Pool::pick`]).
    pub fn any_usable(&self) -> bool {
        self.members.iter().any(|m| {
            !m.spec.down && m.state.is_healthy() && m.state.admin_state() == AdminState::Enabled
        })
    }

    /// Whether some server can serve now: as [`Pool::any_usable`], and not taken out by
    /// passive health (`max_fails` failures within `fail_timeout`). What a VRRP
    /// `track = [{ upstream = "NAME" }]` asks: an upstream whose every server just failed
    /// is not serving, even without active health checks.
    pub fn any_serving(&self) -> bool {
        self.any_serving_at(Instant::now())
    }

    /// [`Pool::any_serving`] with an explicit clock.
    pub fn any_serving_at(&self, now: Instant) -> bool {
        self.members.iter().any(|m| {
            !m.spec.down
                && m.state.is_healthy()
                && m.state.admin_state() == AdminState::Enabled
                && !m.state.is_failed_at(now)
        })
    }

    /// Take member `index` itself (a sticky cookie's or a stream persistence entry's server)
    /// if it can serve: not `down`, healthy, not failed by passive health, below
    /// `max_conns`, and not disabled. A draining server passes here: stream persistence keeps
    /// its clients on it (HAProxy's drain); the proxy's sticky cookies refuse a draining
    /// server before asking (`UpstreamEntry::pick_pinned`: re-picked and re-pinned).
    /// `None` otherwise: the caller then falls back to [`Pool::pick`].
    pub fn pick_member(&self, index: usize) -> Option<Picked> {
        self.pick_member_at(index, Instant::now())
    }

    /// [`Pool::pick_member`] with an explicit clock.
    pub fn pick_member_at(&self, index: usize, now: Instant) -> Option<Picked> {
        let m = self.members.get(index)?;
        let ok = !m.spec.down
            && m.state.is_healthy()
            && m.state.admin_state() != AdminState::Disabled
            && !m.state.is_failed_at(now);
        if !ok {
            return None;
        }
        let guard = m.state.try_acquire(m.spec.max_conns)?;
        Some(Picked { index, guard })
    }

    /// Choose a server, skipping the indexes in `tried` (earlier attempts of this request),
    /// `down` servers, servers failed by passive health, and servers at `max_conns`. Backup
    /// servers are used only when no primary is usable.
    ///
    /// When no server (primary or backup) is usable, the pick runs once more ignoring
    /// passive-health ejections, like nginx resetting its failure marks when all peers
    /// failed; `down`, active health, the admin state, `max_conns` and `tried` are always
    /// respected.
    pub fn pick(&self, key: &PickKey<'_>, tried: &[usize]) -> Result<Picked, PickError> {
        self.pick_with(key, tried, &Now::lazy())
    }

    /// [`Pool::pick`] with an explicit clock, for tests.
    pub fn pick_at(
        &self,
        key: &PickKey<'_>,
        tried: &[usize],
        now: Instant,
    ) -> Result<Picked, PickError> {
        self.pick_with(key, tried, &Now::fixed(now))
    }

    fn pick_with(
        &self,
        key: &PickKey<'_>,
        tried: &[usize],
        now: &Now,
    ) -> Result<Picked, PickError> {
        // A member found full by `try_acquire` (a racing pick took its last slot) is skipped
        // like a tried one; each round skips one more member, so this ends.
        let mut skipped: Vec<usize> = Vec::new();
        loop {
            let index = if skipped.is_empty() {
                self.choose(key, tried, now)
            } else {
                self.choose(key, &skipped, now)
            };
            let Some(index) = index else { break };
            let m = &self.members[index];
            if let Some(guard) = m.state.try_acquire(m.spec.max_conns) {
                return Ok(Picked { index, guard });
            }
            if skipped.is_empty() {
                skipped.extend_from_slice(tried);
            }
            skipped.push(index);
        }
        Err(PickError::NoServer(self.name.clone()))
    }

    fn choose(&self, key: &PickKey<'_>, tried: &[usize], now: &Now) -> Option<usize> {
        let passes: &[bool] = if self.passive.max_fails == 0 {
            &[false]
        } else {
            &[false, true]
        };
        for &ignore_passive in passes {
            let ctx = Ctx {
                members: &self.members,
                tried,
                now,
                ignore_passive,
                slow_start: self.slow_start,
                counters: &self.counters,
            };
            for tier in [&self.primary, &self.backup] {
                if let Some(i) = self.choose_in(tier, &ctx, key) {
                    return Some(i);
                }
            }
        }
        None
    }

    fn choose_in(&self, tier: &Tier, ctx: &Ctx<'_>, key: &PickKey<'_>) -> Option<usize> {
        match self.balance {
            Balance::RoundRobin => algo::round_robin::choose(tier, ctx),
            Balance::LeastConn => algo::least_conn::choose(tier, ctx),
            Balance::RandomTwo => algo::random_two::choose(tier, ctx),
            Balance::IpHash => algo::ip_hash::choose(tier, ctx, key.client_ip)
                .or_else(|| algo::round_robin::choose(tier, ctx)),
            Balance::Hash => {
                let h = match key.hash {
                    Some(bytes) => algo::hash::fnv1a(bytes),
                    None => {
                        let (buf, len) = algo::ip_octets(key.client_ip);
                        algo::hash::fnv1a(&buf[..len])
                    }
                };
                algo::hash::choose(tier, ctx, h, &self.server_hash)
            }
        }
    }

    /// A request/connection to server `index` succeeded.
    pub fn report_success(&self, index: usize) {
        if let Some(m) = self.members.get(index) {
            m.state.record_success();
        }
    }

    /// A request/connection to server `index` failed (connect error, timeout, reset before a
    /// response). `max_fails` within `fail_timeout` takes it out for `fail_timeout`.
    pub fn report_failure(&self, index: usize) {
        self.report_failure_at(index, Instant::now());
    }

    /// Same as [`Pool::report_failure`] with an explicit clock, for tests.
    pub fn report_failure_at(&self, index: usize, now: Instant) {
        if let Some(m) = self.members.get(index) {
            m.state.record_failure(self.passive, now);
        }
    }
}
