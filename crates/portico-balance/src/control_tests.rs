//! Tests of operator control (drain / disable / enable), pinned picks (`pick_member`) and
//! the thread-safety of the public types.

use std::time::{Duration, Instant};

use portico_config::Balance;

use crate::algo::testutil::weighted;
use crate::{AdminState, PickKey, Picked, Pool, Registry};

fn key(ip: &str) -> PickKey<'static> {
    PickKey {
        client_ip: ip.parse().expect("ip"),
        hash: None,
    }
}

fn picks(pool: &Pool, n: usize) -> Vec<usize> {
    (0..n)
        .map(|i| {
            let k = key(&format!("10.{}.{}.1", i / 200, i % 200));
            pool.pick(&k, &[]).expect("pick").index
        })
        .collect()
}

#[test]
fn drained_and_disabled_servers_get_no_new_picks() {
    for balance in [
        Balance::RoundRobin,
        Balance::LeastConn,
        Balance::IpHash,
        Balance::Hash,
    ] {
        let pool = Pool::new(&weighted(balance, &[1, 1, 1]), &Registry::new());
        pool.members()[0]
            .state
            .set_admin_state(AdminState::Draining);
        pool.members()[2]
            .state
            .set_admin_state(AdminState::Disabled);
        assert!(picks(&pool, 200).iter().all(|&i| i == 1), "{balance:?}");
        pool.members()[0].state.set_admin_state(AdminState::Enabled);
        assert!(picks(&pool, 200).contains(&0), "{balance:?}: re-enabled");
    }
}

#[test]
fn any_usable_follows_admin_state() {
    let pool = Pool::new(&weighted(Balance::RoundRobin, &[1]), &Registry::new());
    assert!(pool.any_usable());
    pool.members()[0]
        .state
        .set_admin_state(AdminState::Disabled);
    assert!(!pool.any_usable());
    assert!(pool.pick(&key("10.0.0.1"), &[]).is_err());
}

#[test]
fn any_serving_also_follows_passive_health() {
    let mut up = weighted(Balance::RoundRobin, &[1, 1]);
    up.max_fails = 1;
    up.fail_timeout = Duration::from_secs(10);
    let pool = Pool::new(&up, &Registry::new());
    let t0 = Instant::now();
    assert!(pool.any_serving_at(t0));
    pool.report_failure_at(0, t0);
    assert!(pool.any_serving_at(t0), "one server left");
    pool.report_failure_at(1, t0);
    assert!(!pool.any_serving_at(t0), "every server failed passively");
    assert!(pool.any_usable(), "any_usable ignores passive health");
    assert!(
        pool.any_serving_at(t0 + Duration::from_secs(11)),
        "after fail_timeout"
    );
}

#[test]
fn pick_member_pins_unless_the_server_cannot_serve() {
    let mut up = weighted(Balance::RoundRobin, &[1, 1, 1]);
    up.servers[2].down = true;
    up.servers[1].max_conns = 1;
    let pool = Pool::new(&up, &Registry::new());
    let t0 = Instant::now();
    let p = pool.pick_member_at(0, t0).expect("pinned");
    assert_eq!(p.index, 0);
    assert_eq!(pool.members()[0].state.active(), 1);
    drop(p);
    assert!(pool.pick_member_at(2, t0).is_none(), "down");
    assert!(pool.pick_member_at(7, t0).is_none(), "no such member");
    let held = pool.pick_member_at(1, t0).expect("first slot");
    assert!(pool.pick_member_at(1, t0).is_none(), "max_conns");
    drop(held);
    pool.members()[0]
        .state
        .set_admin_state(AdminState::Draining);
    assert!(
        pool.pick_member_at(0, t0).is_some(),
        "draining still serves pinned clients"
    );
    pool.members()[0]
        .state
        .set_admin_state(AdminState::Disabled);
    assert!(pool.pick_member_at(0, t0).is_none(), "disabled");
    pool.members()[0].state.set_admin_state(AdminState::Enabled);
    pool.report_failure_at(0, t0);
    assert!(pool.pick_member_at(0, t0).is_none(), "passively failed");
    assert!(
        pool.pick_member_at(0, t0 + Duration::from_secs(11))
            .is_some()
    );
    assert!(pool.members().iter().all(|m| m.state.active() == 0));
}

#[test]
fn admin_state_survives_a_rebuilt_pool() {
    let reg = Registry::new();
    let up = weighted(Balance::RoundRobin, &[1, 1]);
    let old = Pool::new(&up, &reg);
    old.members()[1].state.set_admin_state(AdminState::Disabled);
    drop(old);
    let new = Pool::new(&up, &reg);
    assert_eq!(
        new.member_stats(1).map(|s| s.admin),
        Some(AdminState::Disabled)
    );
    assert!(picks(&new, 50).iter().all(|&i| i == 0));
}

fn assert_send_sync<T: Send + Sync>() {}

#[test]
fn public_types_are_send_and_sync() {
    assert_send_sync::<Pool>();
    assert_send_sync::<Picked>();
    assert_send_sync::<Registry>();
}

#[test]
fn smooth_wrr_shares_stay_exact_across_threads() {
    let pool = std::sync::Arc::new(Pool::new(
        &weighted(Balance::RoundRobin, &[5, 1, 1]),
        &Registry::new(),
    ));
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let pool = std::sync::Arc::clone(&pool);
            std::thread::spawn(move || {
                let mut c = [0u64; 3];
                for _ in 0..7_000 {
                    c[pool.pick(&key("10.0.0.1"), &[]).expect("pick").index] += 1;
                }
                c
            })
        })
        .collect();
    let mut total = [0u64; 3];
    for h in handles {
        let c = h.join().expect("thread");
        (0..3).for_each(|k| total[k] += c[k]);
    }
    assert_eq!(total, [20_000, 4_000, 4_000]);
}

#[test]
fn report_success_through_the_pool_resets_the_window() {
    let mut up = weighted(Balance::RoundRobin, &[1, 1]);
    up.max_fails = 2;
    let pool = Pool::new(&up, &Registry::new());
    let t0 = Instant::now();
    pool.report_failure_at(0, t0);
    pool.report_success(0);
    pool.report_failure_at(0, t0 + Duration::from_secs(1));
    assert_eq!(pool.member_stats_at(0, t0).map(|s| s.failed), Some(false));
    pool.report_failure_at(0, t0 + Duration::from_secs(2));
    let stats = pool.member_stats_at(0, t0 + Duration::from_secs(2));
    assert_eq!(stats.map(|s| (s.failed, s.fails)), Some((true, 3)));
    // Out-of-range indexes are ignored.
    pool.report_failure(9);
    pool.report_success(9);
    assert!(pool.member_stats(9).is_none());
}
