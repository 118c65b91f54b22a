//! VRRP failover between two Portico nodes in network namespaces (see `ha_support`).
//!
//! Each node runs `portico run` with a `[[vrrp]]` instance and `portico echo` answering its
//! name on :8080; the client namespace asks the VIP. VRRPv3 with 100 ms adverts keeps every
//! test well under 60 s (master-down interval 0.36 s at priority 100).

use std::time::{Duration, Instant};

use crate::support::*;

/// Configs of n1 (priority 150) and n2 (priority 100), VRRPv3 with 100 ms adverts, no sites.
fn plain_pair(net: &Net) -> (std::path::PathBuf, std::path::PathBuf) {
    (
        net.node_config("n1", &Vrrp::v3(150, "100ms"), ""),
        net.node_config("n2", &Vrrp::v3(100, "100ms"), ""),
    )
}

#[test]
fn election_crash_restart_and_graceful_stop() {
    if !requirements(&["ip", "curl"]) {
        return;
    }
    let _serial = serial();
    let net = Net::standard();
    let (_e1, _e2) = net.echoes();
    let (c1, c2) = plain_pair(&net);

    // Initial election: both start as backup; the higher priority wins after its
    // master-down interval (3 x 100 ms + skew).
    let t = Instant::now();
    let mut p1 = net.portico("n1", &c1);
    let mut p2 = net.portico("n2", &c2);
    let elected = net.wait_vip("n1", PORT, t, secs(10.0));
    only_holder(&net, "n1", secs(2.0));
    net.hold_vip("n1", PORT, secs(1.0));

    // Hard crash: SIGKILL. No resignation: n2 waits its whole master-down interval.
    let t = Instant::now();
    p1.kill();
    let crash = net.wait_vip("n2", PORT, t, secs(5.0));
    assert!(net.has_addr("n2", VIP));
    assert!(crash < secs(1.5), "crash failover took {crash:?}");

    // Restart after the crash: the stale VIP the killed process left is removed at start,
    // and n1 (preempt, higher priority) takes the VIP back.
    let t = Instant::now();
    p1 = net.portico("n1", &c1);
    let back = net.wait_vip("n1", PORT, t, secs(5.0));
    only_holder(&net, "n1", secs(2.0));

    // Graceful stop: priority-0 advert, n2 waits only its skew (61 ms).
    let t = Instant::now();
    p1.term();
    let graceful = net.wait_vip("n2", PORT, t, secs(5.0));
    let status = p1.stop(secs(10.0));
    assert!(
        status.is_some_and(|s| s.success()),
        "portico exit: {status:?}\n{}",
        net.logs()
    );
    assert!(!net.has_addr("n1", VIP), "a graceful stop removes the VIP");
    assert!(graceful < secs(1.0), "graceful failover took {graceful:?}");
    only_holder(&net, "n2", secs(1.0));
    let log = p1.log_text();
    assert!(log.contains("MASTER"), "state changes are logged:\n{log}");
    assert!(p2.stop(secs(10.0)).is_some_and(|s| s.success()));
    assert!(!net.has_addr("n2", VIP));
    report(&format!(
        "ha_failover (v3, advert 100 ms): election {elected:?}, SIGKILL -> backup answers {crash:?}, \
         restart preempts {back:?}, SIGTERM -> backup answers {graceful:?}"
    ));
}

#[test]
fn nopreempt_is_honoured() {
    if !requirements(&["ip", "curl"]) {
        return;
    }
    let _serial = serial();
    let net = Net::standard();
    let (_e1, _e2) = net.echoes();
    let c1 = net.node_config(
        "n1",
        &Vrrp {
            preempt: false,
            ..Vrrp::v3(150, "100ms")
        },
        "",
    );
    let c2 = net.node_config("n2", &Vrrp::v3(100, "100ms"), "");
    let _p2 = net.portico("n2", &c2);
    net.wait_vip("n2", PORT, Instant::now(), secs(10.0));
    // The higher-priority node with preempt = false joins and stays backup.
    let mut p1 = net.portico("n1", &c1);
    net.hold_vip("n2", PORT, secs(2.5)); // 25 advert intervals
    assert_eq!(net.holders(&NODES), ["n2"]);
    assert!(p1.log_text().contains("BACKUP"), "{}", net.logs());
    assert!(!p1.log_text().contains("MASTER"), "{}", net.logs());
    drop(_p2);
    // Once the master is gone n1 takes over (hard kill: after its master-down interval).
    let t = Instant::now();
    net.wait_vip("n1", PORT, t, secs(5.0));
    p1.stop(secs(10.0));
}

#[test]
fn partition_then_heal_leaves_exactly_one_master() {
    if !requirements(&["ip", "curl"]) {
        return;
    }
    let _serial = serial();
    let net = Net::standard();
    let (_e1, _e2) = net.echoes();
    let (c1, c2) = plain_pair(&net);
    let _pcap = net.capture();
    let _p1 = net.portico("n1", &c1);
    let _p2 = net.portico("n2", &c2);
    net.n1_elected();

    // Cut n1's link both ways: each side believes it is alone; both hold the VIP.
    net.link("n1", false);
    eventually(secs(3.0), "both hold the VIP during the partition", || {
        (net.holders(&NODES) == NODES).then_some(())
    });
    net.wait_vip("n2", PORT, Instant::now(), secs(3.0));

    // Heal: within three adverts exactly one master is left, and it stays so.
    let t = Instant::now();
    net.link("n1", true);
    only_holder(&net, "n1", secs(3.0));
    let healed = t.elapsed();
    // Three adverts are 300 ms; every polling round runs `ip` in each namespace, which on a
    // busy 2-core machine can take a few hundred ms by itself: 1.2 s of margin.
    assert!(healed < secs(0.3) + secs(1.2), "took {healed:?} to settle");
    for _ in 0..10 {
        assert_eq!(net.holders(&NODES), ["n1"], "{}", net.logs());
        std::thread::sleep(Duration::from_millis(100));
    }
    // The winner refreshed the client's ARP cache: the VIP answers from n1 again.
    let answered = net.wait_vip("n1", PORT, t, secs(3.0));
    report(&format!(
        "ha_failover partition (v3, 100 ms): one master {healed:?} after healing, client on n1 after {answered:?}"
    ));
}

#[test]
fn ipv6_v3_failover() {
    if !requirements(&["ip", "curl"]) {
        return;
    }
    let _serial = serial();
    let net = Net::standard();
    for (node, a) in [
        ("c", "fd00::2/64"),
        ("n1", "fd00::11/64"),
        ("n2", "fd00::12/64"),
    ] {
        add_addr(&net, node, a);
    }
    let echo6 = |node: &str| {
        let mut c = net.cmd(node, portico_bin());
        c.args(["echo", "--listen", &format!("[::]:{PORT}"), "--name", node]);
        let p = net.spawn(c, &format!("echo6-{node}.log"));
        eventually(secs(10.0), "IPv6 echo server", || {
            net.get_from(node, "::1", PORT)
                .filter(|b| b.starts_with(node))
                .map(|_| ())
        });
        p
    };
    let _e1 = echo6("n1");
    let _e2 = echo6("n2");
    let vip = "fd00::100";
    let v = |prio| Vrrp {
        vip: "fd00::100/64",
        ..Vrrp::v3(prio, "100ms")
    };
    let c1 = net.node_config("n1", &v(150), "");
    let c2 = net.node_config("n2", &v(100), "");
    let t = Instant::now();
    let mut p1 = net.portico("n1", &c1);
    let _p2 = net.portico("n2", &c2);
    let is = |n: &'static str| move |b: &str| b.starts_with(n);
    let elected = net.wait_answer(vip, PORT, is("n1"), "n1", t, secs(10.0));
    eventually(secs(2.0), "n1 alone holds the IPv6 VIP", || {
        (net.holders_of(vip, &NODES) == ["n1"]).then_some(())
    });
    // Graceful stop: priority 0, the backup takes over and its unsolicited NA moves the
    // client's neighbour entry.
    let t = Instant::now();
    p1.term();
    let graceful = net.wait_answer(vip, PORT, is("n2"), "n2", t, secs(5.0));
    p1.stop(secs(10.0));
    assert_eq!(net.holders_of(vip, &NODES), ["n2"]);
    report(&format!(
        "ha_failover IPv6 (v3, 100 ms): election {elected:?}, SIGTERM -> backup answers {graceful:?}"
    ));
}

#[test]
fn unicast_peers_elect_and_fail_over() {
    if !requirements(&["ip", "curl"]) {
        return;
    }
    let _serial = serial();
    let net = Net::standard();
    let (_e1, _e2) = net.echoes();
    let uni = |prio, peer: &str| Vrrp {
        extra: format!("unicast_peers = [\"{peer}\"]\n"),
        ..Vrrp::v3(prio, "100ms")
    };
    let c1 = net.node_config("n1", &uni(150, "10.200.0.12"), "");
    let c2 = net.node_config("n2", &uni(100, "10.200.0.11"), "");
    let mut p1 = net.portico("n1", &c1);
    let _p2 = net.portico("n2", &c2);
    net.n1_elected();
    // Unicast adverts keep n2 backup: no second holder for 1 s (10 adverts).
    for _ in 0..10 {
        assert_eq!(net.holders(&NODES), ["n1"], "{}", net.logs());
        std::thread::sleep(Duration::from_millis(100));
    }
    let t = Instant::now();
    p1.term();
    let graceful = net.wait_vip("n2", PORT, t, secs(5.0));
    p1.stop(secs(10.0));
    only_holder(&net, "n2", secs(2.0));
    report(&format!(
        "ha_failover unicast (v3, 100 ms): SIGTERM -> backup answers {graceful:?}"
    ));
}
