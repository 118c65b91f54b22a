//! Active health checks seen through [`Pool::pick`]: backup takeover and give-back, the
//! slow-start ramp after a recovery, and state that survives pool rebuilds, checker
//! restarts and reloads.

use std::time::{Duration, Instant};

use crate::support::*;
use portico_balance::{HealthChecks, Pool, Registry};
use portico_config::HealthKind;

#[test]
fn backup_takes_over_only_when_every_primary_is_down_and_gives_back() {
    let p1 = echo("p1");
    let p2 = echo("p2");
    let bk = echo("backup");
    let servers = [
        plain(p1.addr),
        plain(p2.addr),
        format!("{{ addr = \"{}\", backup = true }}", bk.addr),
    ];
    let cfg = with_check(config(&servers, ""), check(HealthKind::Http, "/"));
    let registry = Registry::new();
    let pool = Pool::new(&cfg.upstreams["app"], &registry);
    let checks = HealthChecks::start(&cfg, &registry).expect("start");
    let (s1, s2) = (
        state(&registry, &p1.addr.to_string()),
        state(&registry, &p2.addr.to_string()),
    );
    wait_probes(&bk, 0, u64::from(FALL) + 1);
    assert_eq!(
        pick_counts(&pool, 100)[2],
        0,
        "backup idle while primaries are up"
    );

    let p1_addr = p1.addr;
    p1.stop();
    assert!(time_until(WAIT, || !s1.is_healthy()).is_some());
    assert_eq!(
        pick_counts(&pool, 100),
        [0, 100, 0],
        "one primary left: still no backup"
    );

    p2.stop();
    assert!(time_until(WAIT, || !s2.is_healthy()).is_some());
    assert_eq!(
        pick_counts(&pool, 100),
        [0, 0, 100],
        "backup once no primary is healthy"
    );
    assert!(pool.any_usable(), "the backup keeps the pool usable");

    let _p1 = echo_again(p1_addr, "p1");
    assert!(
        time_until(WAIT, || s1.is_healthy()).is_some(),
        "p1 never returned"
    );
    assert_eq!(
        pick_counts(&pool, 100),
        [100, 0, 0],
        "the recovered primary takes over"
    );
    checks.stop();
}

/// Share of member 0 over `n` picks.
fn share0(pool: &Pool, n: usize) -> f64 {
    pick_counts(pool, n)[0] as f64 / n as f64
}

#[test]
fn slow_start_ramps_a_recovered_server_back_in() {
    let a = echo("alpha");
    let b = echo("beta");
    let a_addr = a.addr;
    let slow = Duration::from_secs(3);
    let cfg = with_check(
        config(&[plain(a.addr), plain(b.addr)], "slow_start = \"3s\""),
        check(HealthKind::Http, "/"),
    );
    let registry = Registry::new();
    let pool = Pool::new(&cfg.upstreams["app"], &registry);
    let checks = HealthChecks::start(&cfg, &registry).expect("start");
    let sa = state(&registry, &a_addr.to_string());
    wait_probes(&a, 0, u64::from(FALL) + 1);
    let before = share0(&pool, 2000);
    assert!(
        (0.4..=0.6).contains(&before),
        "equal weights before: {before}"
    );

    a.stop();
    assert!(time_until(WAIT, || !sa.is_healthy()).is_some());
    let _a = echo_again(a_addr, "alpha");
    // The ramp starts when the checker marks the server up, at an instant between the last
    // poll that saw it down and the first that saw it up: on a busy machine this poll loop
    // can be descheduled for a while, so the gap is measured and the expected share is the
    // range the ramp covers over it (plus a fixed margin), not one point.
    let deadline = Instant::now() + WAIT;
    let mut last_down = Instant::now();
    loop {
        let checked = Instant::now();
        if sa.is_healthy() {
            break;
        }
        last_down = checked;
        assert!(checked < deadline, "never healthy again");
        std::thread::sleep(Duration::from_millis(5));
    }
    let recovered = Instant::now();
    let gap = recovered - last_down;

    // Sample the share right after recovery, mid-ramp, and after the window; compare each
    // with the ramp at the time it was taken: effective weight 0.1 -> 1.0 over the window,
    // so the share of two equal servers is f / (1 + f).
    let expected = |at: Duration| {
        let f = 0.1 + 0.9 * (at.as_secs_f64() / slow.as_secs_f64()).min(1.0);
        f / (1.0 + f)
    };
    let mut samples = Vec::new();
    for target in [Duration::ZERO, slow / 2, slow + Duration::from_millis(200)] {
        std::thread::sleep(target.saturating_sub(recovered.elapsed()));
        let from = recovered.elapsed();
        let share = share0(&pool, 2000);
        let to = recovered.elapsed();
        // Time since the real recovery, over the sampling: from `from` (recovered at the
        // poll that saw it) to `to + gap` (recovered just after the previous poll).
        samples.push((from, to + gap, share, expected(from), expected(to + gap)));
    }
    eprintln!("slow start shares (from, to, measured, ramp at from, ramp at to): {samples:.3?}");
    for &(from, to, share, lo, hi) in &samples {
        assert!(
            share > lo - 0.06 && share < hi + 0.06,
            "share {share:.3} between {from:?} and {to:?} after recovery, ramp says {lo:.3}..{hi:.3}"
        );
    }
    let samples: Vec<(Duration, f64)> = samples.iter().map(|s| (s.0, s.2)).collect();
    assert!(samples[0].1 < 0.2, "a recovered server starts small");
    assert!(samples[2].1 > 0.44, "and ends with its full share");
    checks.stop();
}

#[test]
fn verdicts_survive_pool_rebuilds_checker_restarts_and_reloads() {
    let a = echo("alpha");
    let b = echo("beta");
    let a_addr = a.addr;
    let cfg = with_check(
        config(&[plain(a.addr), plain(b.addr)], ""),
        check(HealthKind::Http, "/"),
    );
    let registry = Registry::new();
    let checks = HealthChecks::start(&cfg, &registry).expect("start");
    let sa = state(&registry, &a_addr.to_string());
    a.stop();
    assert!(time_until(WAIT, || !sa.is_healthy()).is_some());

    // A pool built later (a reload's new snapshot) sees the verdict at once.
    let pool = Pool::new(&cfg.upstreams["app"], &registry);
    assert_eq!(pick_counts(&pool, 50), [0, 50]);

    // A restarted checker continues from the verdict: the dead server stays out.
    checks.stop();
    let checks = HealthChecks::start(&cfg, &registry).expect("restart");
    let before = b.connections_accepted();
    wait_probes(&b, before, u64::from(FALL) + 2);
    assert!(!sa.is_healthy(), "restart revived a dead server");
    assert_eq!(pick_counts(&pool, 50), [0, 50]);

    // Reloading the same config keeps the checks running with their counters.
    let probes = |c: &HealthChecks| c.status().iter().map(|s| s.probes).sum::<u64>();
    let before = probes(&checks);
    checks.replace(&cfg);
    assert!(
        probes(&checks) >= before,
        "counters survive an unchanged reload"
    );

    // Reload without `health`: nothing would ever revive it, so it is healthy again.
    let no_health = config(&[plain(a_addr), plain(b.addr)], "");
    checks.replace(&no_health);
    assert!(
        time_until(WAIT, || sa.is_healthy()).is_some(),
        "unchecked servers are healthy"
    );
    assert!(checks.checked().is_empty());
    std::thread::sleep(INTERVAL); // let a probe in flight at the reload finish
    let before = b.connections_accepted();
    std::thread::sleep(INTERVAL * 4);
    assert_eq!(
        b.connections_accepted(),
        before,
        "probes stopped after the reload"
    );

    // Reload with `health` again: the dead server is found out again.
    checks.replace(&cfg);
    assert!(time_until(WAIT, || !sa.is_healthy()).is_some());
    checks.stop();
}
