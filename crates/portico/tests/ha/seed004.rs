//! Seed 004 (keepalived + nginx HA, health-tracked, nopreempt) with the shipped, unchanged
//! `examples/seed-004-ha-node-{master,backup}.toml` in network namespaces, at their
//! configured 1 s advert interval, VRRPv2 with `auth_pass`, `listeners` tracking.
//!
//! Check (the files' header): the VIP 10.200.0.130:88 answers "Welcome to nginx! 1"; stop
//! the master -> "Welcome to nginx! 2"; start the master again -> the VIP stays on the
//! backup (the master has `preempt = false`).

use std::time::{Duration, Instant};

use crate::support::*;

const SEED_VIP: &str = "10.200.0.130";
const SEED_PORT: u16 = 88;

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

#[test]
fn seed004_master_backup_nopreempt() {
    if !requirements(&["ip", "curl"]) {
        return;
    }
    let _serial = serial();
    let net = Net::standard();
    // Each node gets its own folder with the unchanged file and the www/ beside it (the
    // state_dir default, portico-data/, then stays per node too).
    let place = |node: &str, file: &str| {
        let dir = net.path(node);
        copy_dir(&example("www"), &dir.join("www"));
        let to = dir.join(file);
        std::fs::copy(example(file), &to).unwrap_or_else(|e| panic!("{file}: {e}"));
        to
    };
    let master = place("n1", "seed-004-ha-node-master.toml");
    let backup = place("n2", "seed-004-ha-node-backup.toml");
    let one = |b: &str| b.contains("Welcome to nginx! 1");
    let two = |b: &str| b.contains("Welcome to nginx! 2");
    let nodes = ["n1", "n2"];

    let t = Instant::now();
    let mut p1 = net.portico_log("n1", &master, "master-1.log");
    let elected = net.wait_answer(SEED_VIP, SEED_PORT, one, "master", t, secs(10.0));
    let mut p2 = net.portico_log("n2", &backup, "backup.log");
    // The backup (priority 90) joins and stays backup.
    std::thread::sleep(secs(4.0));
    assert_eq!(net.holders_of(SEED_VIP, &nodes), ["n1"], "{}", net.logs());
    assert!(
        net.get_within("c", SEED_VIP, SEED_PORT, "2")
            .is_some_and(|b| one(&b))
    );

    // Stop the master (graceful): the backup answers.
    let t = Instant::now();
    p1.term();
    let failover = net.wait_answer(SEED_VIP, SEED_PORT, two, "backup", t, secs(8.0));
    assert!(
        p1.stop(secs(10.0)).is_some_and(|s| s.success()),
        "{}",
        net.logs()
    );
    assert_eq!(net.holders_of(SEED_VIP, &nodes), ["n2"]);

    // Start the master again: nopreempt keeps the VIP on the backup, well past the 3.6 s a
    // preempting node would need.
    let _p1 = net.portico_log("n1", &master, "master-2.log");
    let end = Instant::now() + secs(6.0);
    while Instant::now() < end {
        let got = net.get_within("c", SEED_VIP, SEED_PORT, "2"); // slow under load is not moved
        assert!(
            got.as_deref().is_some_and(two),
            "VIP left the backup: {got:?}\n{}",
            net.logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(net.holders_of(SEED_VIP, &nodes), ["n2"]);
    let restarted = std::fs::read_to_string(net.path("master-2.log")).unwrap_or_default();
    assert!(
        restarted.contains("BACKUP") && !restarted.contains("MASTER"),
        "{restarted}"
    );
    assert!(p2.stop(secs(10.0)).is_some_and(|s| s.success()));
    report(&format!(
        "ha_seed004 (v2, advert 1 s): master elected {elected:?}; SIGTERM master -> \"Welcome to nginx! 2\" after {failover:?}; restarted master stayed BACKUP for 6 s"
    ));
}
