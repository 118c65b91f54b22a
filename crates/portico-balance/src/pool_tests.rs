//! Pool-level tests: tiers, `down`, `max_conns`, `tried`, passive health through the pool,
//! the all-failed fallback, slow start, reloads and concurrency.

use std::sync::Arc;
use std::time::{Duration, Instant};

use portico_config::{Balance, Upstream};

use crate::algo::testutil::{TestRng, weighted};
use crate::{PickError, PickKey, Picked, Pool, Registry};

const ALL: [Balance; 5] = [
    Balance::RoundRobin,
    Balance::LeastConn,
    Balance::RandomTwo,
    Balance::IpHash,
    Balance::Hash,
];
const SEC: Duration = Duration::from_secs(1);

fn key(ip: &str) -> PickKey<'static> {
    PickKey {
        client_ip: ip.parse().expect("ip"),
        hash: None,
    }
}

/// Indexes picked for `n` clients (distinct addresses, so hashing spreads), guards dropped.
fn picks_at(pool: &Pool, n: usize, tried: &[usize], now: Instant) -> Vec<usize> {
    (0..n)
        .map(|i| {
            let k = key(&format!("10.{}.{}.9", i / 250, i % 250));
            pool.pick_at(&k, tried, now).expect("pick").index
        })
        .collect()
}

fn counts(picks: &[usize], n: usize) -> Vec<usize> {
    (0..n)
        .map(|k| picks.iter().filter(|&&i| i == k).count())
        .collect()
}

fn with_backup(balance: Balance) -> Upstream {
    let mut up = weighted(balance, &[1, 1, 1]);
    up.servers[2].backup = true;
    up
}

#[test]
fn backup_only_when_all_primaries_unusable() {
    for balance in ALL {
        let pool = Pool::new(&with_backup(balance), &Registry::new());
        let t0 = Instant::now();
        let c = counts(&picks_at(&pool, 300, &[], t0), 3);
        assert_eq!(
            c[2], 0,
            "{balance:?}: backup unused while primaries are up: {c:?}"
        );
        assert!(c[0] > 0 && c[1] > 0, "{balance:?}: {c:?}");
        pool.report_failure_at(0, t0);
        let c = counts(&picks_at(&pool, 100, &[], t0), 3);
        assert_eq!(c, [0, 100, 0], "{balance:?}: remaining primary takes all");
        pool.members()[1].state.set_healthy(false);
        let c = counts(&picks_at(&pool, 100, &[], t0), 3);
        assert_eq!(
            c,
            [0, 0, 100],
            "{balance:?}: backup once no primary is usable"
        );
        pool.members()[1].state.set_healthy(true);
        let back = t0 + 11 * SEC;
        assert_eq!(
            counts(&picks_at(&pool, 100, &[], back), 3)[2],
            0,
            "{balance:?}"
        );
    }
}

#[test]
fn down_servers_are_never_picked() {
    for balance in ALL {
        let mut up = weighted(balance, &[1, 5, 1]);
        up.servers[1].down = true;
        let pool = Pool::new(&up, &Registry::new());
        let t0 = Instant::now();
        let c = counts(&picks_at(&pool, 400, &[], t0), 3);
        assert_eq!(c[1], 0, "{balance:?}: {c:?}");
        // Not even when everything else failed.
        pool.report_failure_at(0, t0);
        pool.report_failure_at(2, t0);
        let c = counts(&picks_at(&pool, 50, &[], t0), 3);
        assert_eq!(c[1], 0, "{balance:?}: {c:?}");
        assert!(pool.any_usable());
    }
}

#[test]
fn all_down_or_unhealthy_is_an_error_and_not_usable() {
    let mut up = weighted(Balance::RoundRobin, &[1, 1]);
    up.servers[0].down = true;
    let pool = Pool::new(&up, &Registry::new());
    pool.members()[1].state.set_healthy(false);
    assert!(!pool.any_usable());
    assert_eq!(
        pool.pick(&key("127.0.0.1"), &[]).map(|p| p.index),
        Err(PickError::NoServer("up".into()))
    );
    pool.members()[1].state.set_healthy(true);
    assert!(pool.any_usable());
    assert_eq!(pool.pick(&key("127.0.0.1"), &[]).map(|p| p.index), Ok(1));
}

#[test]
fn max_conns_is_respected_while_guards_are_held() {
    for balance in ALL {
        let mut up = weighted(balance, &[1, 1]);
        up.servers[0].max_conns = 3;
        up.servers[1].max_conns = 2;
        let pool = Pool::new(&up, &Registry::new());
        let held: Vec<Picked> = (0..5)
            .map(|i| pool.pick(&key(&format!("10.9.{i}.1")), &[]).expect("pick"))
            .collect();
        assert_eq!(
            counts(&held.iter().map(|p| p.index).collect::<Vec<_>>(), 2),
            [3, 2]
        );
        assert!(
            pool.pick(&key("10.0.0.1"), &[]).is_err(),
            "{balance:?}: full"
        );
        drop(held);
        assert!(
            pool.pick(&key("10.0.0.1"), &[]).is_ok(),
            "{balance:?}: freed"
        );
        assert_eq!(pool.member_stats(0).map(|s| s.active), Some(0));
    }
}

#[test]
fn tried_servers_are_skipped() {
    for balance in ALL {
        let pool = Pool::new(&weighted(balance, &[1, 1, 1]), &Registry::new());
        let now = Instant::now();
        let c = counts(&picks_at(&pool, 100, &[0, 2], now), 3);
        assert_eq!(c, [0, 100, 0], "{balance:?}");
        let k = key("10.0.0.1");
        assert!(pool.pick_at(&k, &[0, 1, 2], now).is_err(), "{balance:?}");
    }
}

#[test]
fn passive_failures_eject_then_expire() {
    for balance in ALL {
        let mut up = weighted(balance, &[1, 1]);
        up.max_fails = 2;
        let pool = Pool::new(&up, &Registry::new());
        let t0 = Instant::now();
        pool.report_failure_at(0, t0);
        assert!(
            counts(&picks_at(&pool, 100, &[], t0), 2)[0] > 0,
            "{balance:?}: one fail"
        );
        pool.report_failure_at(0, t0 + SEC);
        let out = t0 + 5 * SEC;
        assert_eq!(
            counts(&picks_at(&pool, 100, &[], out), 2)[0],
            0,
            "{balance:?}"
        );
        assert_eq!(pool.member_stats_at(0, out).map(|s| s.failed), Some(true));
        let back = t0 + 11 * SEC;
        assert!(
            counts(&picks_at(&pool, 100, &[], back), 2)[0] > 0,
            "{balance:?}"
        );
        assert_eq!(pool.member_stats_at(0, back).map(|s| s.fails), Some(2));
    }
}

#[test]
fn max_fails_zero_never_ejects() {
    let mut up = weighted(Balance::RoundRobin, &[1, 1]);
    up.max_fails = 0;
    let pool = Pool::new(&up, &Registry::new());
    let t0 = Instant::now();
    for _ in 0..50 {
        pool.report_failure_at(0, t0);
    }
    assert_eq!(counts(&picks_at(&pool, 100, &[], t0), 2), [50, 50]);
}

#[test]
fn all_failed_passively_still_picks_ignoring_passive_health() {
    for balance in ALL {
        let pool = Pool::new(&with_backup(balance), &Registry::new());
        let t0 = Instant::now();
        for i in 0..3 {
            pool.report_failure_at(i, t0);
        }
        let c = counts(&picks_at(&pool, 100, &[], t0), 3);
        assert_eq!(
            c[2], 0,
            "{balance:?}: fallback still prefers primaries: {c:?}"
        );
        assert_eq!(c[0] + c[1], 100);
        // The fallback does not override `tried`.
        assert!(pool.pick_at(&key("10.0.0.1"), &[0, 1, 2], t0).is_err());
        assert!(pool.any_usable());
    }
}

/// Share of server 0 (in slow start) among 7000 round-robin picks at `now`.
fn slow_start_share(balance: Balance, at: f64) -> f64 {
    let mut up = weighted(balance, &[1, 1]);
    up.slow_start = Duration::from_secs(100);
    let pool = Pool::new(&up, &Registry::new());
    let t0 = Instant::now();
    pool.report_failure_at(0, t0);
    let recovered = t0 + up.fail_timeout;
    let now = recovered + Duration::from_secs_f64(100.0 * at);
    let c = counts(&picks_at(&pool, 7000, &[], now), 2);
    c[0] as f64 / 7000.0
}

#[test]
fn slow_start_ramps_share_over_the_window() {
    for balance in [Balance::RoundRobin, Balance::LeastConn, Balance::RandomTwo] {
        // Effective weights 0.1 : 1, 0.55 : 1, 1 : 1.
        for (at, expected) in [(0.0, 0.1 / 1.1), (0.5, 0.55 / 1.55), (1.0, 0.5)] {
            let share = slow_start_share(balance, at);
            assert!(
                (share - expected).abs() < 0.03,
                "{balance:?} at {at}: share {share}, expected {expected}"
            );
        }
    }
}

#[test]
fn slow_start_after_active_health_recovery() {
    let mut up = weighted(Balance::RoundRobin, &[1, 1]);
    up.slow_start = Duration::from_secs(60);
    let pool = Pool::new(&up, &Registry::new());
    let t0 = Instant::now();
    pool.members()[0].state.set_healthy_at(false, t0);
    pool.members()[0].state.set_healthy_at(true, t0 + SEC);
    let c = counts(&picks_at(&pool, 5000, &[], t0 + SEC), 2);
    let share = c[0] as f64 / 5000.0;
    assert!((share - 0.1 / 1.1).abs() < 0.03, "share {share}");
    let c = counts(&picks_at(&pool, 700, &[], t0 + 61 * SEC), 2);
    assert_eq!(c, [350, 350]);
}

/// A server that joins a running upstream (a cluster registration: the pool is rebuilt with
/// one more server, states from the same registry) and is marked joined ramps from 1/10 of
/// its weight to full over `slow_start`; the servers already there keep their full weight.
#[test]
fn slow_start_of_a_server_that_joins() {
    for balance in [Balance::RoundRobin, Balance::LeastConn, Balance::RandomTwo] {
        let reg = Registry::new();
        let mut up = weighted(balance, &[1, 1, 1]);
        up.slow_start = Duration::from_secs(100);
        let joined = up.servers.pop().expect("three servers");
        let before = Pool::new(&up, &reg);
        let t0 = Instant::now();
        let c = counts(&picks_at(&before, 700, &[], t0), 2);
        assert!(c[0].abs_diff(c[1]) < 70, "{balance:?}: {c:?}");
        up.servers.push(joined);
        let after = Pool::new(&up, &reg);
        after.members()[2].state.joined_at(t0);
        // Effective weights 1 : 1 : 0.1, then 0.55, then 1.
        for (at, expected) in [(0.0, 0.1 / 2.1), (0.5, 0.55 / 2.55), (1.0, 1.0 / 3.0)] {
            let now = t0 + Duration::from_secs_f64(100.0 * at);
            let c = counts(&picks_at(&after, 9000, &[], now), 3);
            let share = c[2] as f64 / 9000.0;
            assert!(
                (share - expected).abs() < 0.03,
                "{balance:?} at {at}: share {share}, expected {expected} ({c:?})"
            );
            assert!(c[0].abs_diff(c[1]) < 450, "{balance:?} at {at}: {c:?}");
        }
        // What the admin API shows (by the wall clock: just after t0).
        let permille = after.members()[2].state.slow_start_permille(up.slow_start);
        assert!((100..200).contains(&permille), "{permille}");
        assert_eq!(
            after.members()[0].state.slow_start_permille(up.slow_start),
            1000
        );
    }
}

#[test]
fn registry_state_survives_a_rebuilt_pool() {
    let reg = Registry::new();
    let mut up = weighted(Balance::RoundRobin, &[1, 1, 1]);
    let old = Pool::new(&up, &reg);
    let t0 = Instant::now();
    let held = old.pick_at(&key("10.0.0.1"), &[], t0).expect("pick");
    assert_eq!(held.index, 0);
    old.report_failure_at(1, t0);
    // Reload: server 3 removed, weights changed, a new server added.
    up.servers.remove(2);
    up.servers[0].weight = 4;
    up.servers
        .push(crate::algo::testutil::spec("10.0.0.9:80", 1));
    let new = Pool::new(&up, &reg);
    assert!(Arc::ptr_eq(
        &old.members()[0].state,
        &new.members()[0].state
    ));
    assert_eq!(new.member_stats_at(0, t0).map(|s| s.active), Some(1));
    assert_eq!(new.member_stats_at(1, t0).map(|s| s.failed), Some(true));
    assert_eq!(new.member_stats_at(2, t0).map(|s| s.picks), Some(0));
    drop(held);
    assert_eq!(new.members()[0].state.active(), 0);
    drop(old);
    reg.prune();
    assert_eq!(reg.len(), 3, "the removed server's state is pruned");
    assert_eq!(new.index_of("10.0.0.9:80"), Some(2));
}

#[test]
fn same_address_in_two_upstreams_has_separate_state() {
    let reg = Registry::new();
    let a = Pool::new(&weighted(Balance::RoundRobin, &[1]), &reg);
    let mut up_b = weighted(Balance::RoundRobin, &[1]);
    up_b.name = "other".into();
    let b = Pool::new(&up_b, &reg);
    assert!(!Arc::ptr_eq(&a.members()[0].state, &b.members()[0].state));
}

#[test]
fn random_pick_sequences_keep_invariants() {
    // Property-style: random ops (pick/hold/drop/fail/succeed/health) on random pools.
    let mut rng = TestRng(99);
    for round in 0..40 {
        let balance = ALL[round % ALL.len()];
        let n = 1 + (rng.next() % 5) as usize;
        let weights: Vec<u32> = (0..n).map(|_| 1 + (rng.next() % 4) as u32).collect();
        let mut up = weighted(balance, &weights);
        for s in up.servers.iter_mut() {
            s.backup = rng.next().is_multiple_of(4);
            s.down = rng.next().is_multiple_of(6);
            s.max_conns = (rng.next() % 4) as u32;
        }
        let pool = Pool::new(&up, &Registry::new());
        let t0 = Instant::now();
        let mut held: Vec<Picked> = Vec::new();
        for step in 0..300u32 {
            let now = t0 + Duration::from_millis(u64::from(step) * 100);
            match rng.next() % 5 {
                0 if !held.is_empty() => {
                    drop(held.swap_remove((rng.next() % held.len() as u64) as usize))
                }
                1 => pool.report_failure_at((rng.next() % n as u64) as usize, now),
                2 => pool.members()[(rng.next() % n as u64) as usize]
                    .state
                    .set_healthy(!rng.next().is_multiple_of(3)),
                _ => {
                    let k = key(&format!("10.0.{}.1", step % 200));
                    let full = |m: &crate::Member| {
                        m.spec.max_conns != 0 && m.state.active() >= m.spec.max_conns
                    };
                    let out = |m: &crate::Member| m.spec.down || !m.state.is_healthy() || full(m);
                    match pool.pick_at(&k, &[], now) {
                        Ok(p) => {
                            let m = &pool.members()[p.index];
                            assert!(!m.spec.down && m.state.is_healthy());
                            assert!(m.spec.max_conns == 0 || m.state.active() <= m.spec.max_conns);
                            if m.spec.backup {
                                let primaries = pool.members().iter().filter(|m| !m.spec.backup);
                                assert!(
                                    primaries
                                        .clone()
                                        .all(|m| out(m) || m.state.is_failed_at(now))
                                );
                            }
                            held.push(p);
                        }
                        Err(_) => assert!(pool.members().iter().all(out), "no usable server"),
                    }
                }
            }
        }
        held.clear();
        assert!(pool.members().iter().all(|m| m.state.active() == 0));
    }
}

#[test]
fn concurrent_picks_return_active_counts_to_zero() {
    for balance in ALL {
        let mut up = weighted(balance, &[3, 2, 1, 1]);
        up.servers[3].max_conns = 2;
        let pool = Arc::new(Pool::new(&up, &Registry::new()));
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let pool = Arc::clone(&pool);
                std::thread::spawn(move || {
                    let mut held: Vec<Picked> = Vec::new();
                    for i in 0..25_000u32 {
                        let k = key(&format!("10.{t}.{}.1", i % 256));
                        if let Ok(p) = pool.pick(&k, &[]) {
                            held.push(p);
                        }
                        if held.len() > 8 {
                            held.remove(0);
                        }
                        if i % 1000 == 0 {
                            pool.report_success(0);
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().expect("picker thread");
        }
        let picks: u64 = pool.members().iter().map(|m| m.state.picks()).sum();
        assert_eq!(picks, 100_000, "{balance:?}");
        assert!(
            pool.members().iter().all(|m| m.state.active() == 0),
            "{balance:?}"
        );
    }
}

/// An upstream with `discover = "cluster"` may have no server yet: every algorithm answers
/// "no server" (the proxy's 502/503), never panics.
#[test]
fn an_empty_pool_picks_nothing() {
    for balance in ALL {
        let mut up = weighted(balance, &[1]);
        up.servers.clear();
        let pool = Pool::new(&up, &Registry::new());
        assert_eq!(pool.member_count(), 0);
        assert!(!pool.any_serving());
        assert!(matches!(
            pool.pick(&key("10.0.0.1"), &[]),
            Err(PickError::NoServer(_))
        ));
        assert!(pool.pick_member(0).is_none());
    }
}
