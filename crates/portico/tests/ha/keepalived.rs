//! Interoperability with real keepalived (the `keepalived` apt package) on the same VRID, in
//! network namespaces: VRRPv2 with `auth_type PASS`, and VRRPv3. Each implementation is
//! master once and backup once; the VIP moves both ways (graceful stop, restart with
//! preemption, and a SIGKILL of the Portico master).

use std::time::{Duration, Instant};

use crate::support::*;

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

fn only_holder(net: &Net, node: &str, within: Duration) {
    eventually(within, &format!("{node} alone holds the VIP"), || {
        (net.holders(&["n1", "n2"]) == [node]).then_some(())
    });
}

fn interop(version: u8) {
    if !requirements(&["ip", "curl", "keepalived"]) {
        return;
    }
    let _serial = serial();
    let (hi, lo) = if version == 2 {
        (Vrrp::v2(150), Vrrp::v2(100))
    } else {
        (Vrrp::v3(150, "1s"), Vrrp::v3(100, "1s"))
    };
    let limit = secs(8.0);
    let net = Net::standard();
    let _e1 = net.echo("n1");
    let _e2 = net.echo("n2");
    let mut figures = Vec::new();

    // A: keepalived master (n1, 150), Portico backup (n2, 100).
    let t = Instant::now();
    let mut ka = Keepalived::start(&net, "n1", &hi);
    let c2 = net.node_config("n2", &lo, "");
    let mut p2 = net.portico("n2", &c2);
    net.wait_vip("n1", PORT, t, limit);
    only_holder(&net, "n1", secs(2.0));
    net.hold_vip("n1", PORT, secs(1.5));
    assert!(p2.log_text().contains("BACKUP"), "{}", net.logs());
    let t = Instant::now();
    ka.proc.term();
    figures.push((
        "keepalived SIGTERM -> Portico answers",
        net.wait_vip("n2", PORT, t, limit),
    ));
    ka.stop();
    only_holder(&net, "n2", secs(2.0));
    let t = Instant::now();
    ka = Keepalived::start(&net, "n1", &hi);
    figures.push((
        "keepalived restart preempts Portico",
        net.wait_vip("n1", PORT, t, limit),
    ));
    only_holder(&net, "n1", secs(2.0));
    assert!(p2.stop(secs(10.0)).is_some_and(|s| s.success()));
    ka.stop();
    drop(ka);

    // B: Portico master (n1, 150), keepalived backup (n2, 100).
    let c1 = net.node_config("n1", &hi, "");
    let t = Instant::now();
    let mut p1 = net.portico("n1", &c1);
    let mut ka = Keepalived::start(&net, "n2", &lo);
    net.wait_vip("n1", PORT, t, limit);
    only_holder(&net, "n1", secs(2.0));
    net.hold_vip("n1", PORT, secs(1.5));
    let t = Instant::now();
    p1.term();
    figures.push((
        "Portico SIGTERM -> keepalived answers",
        net.wait_vip("n2", PORT, t, limit),
    ));
    p1.stop(secs(10.0));
    only_holder(&net, "n2", secs(2.0));
    let t = Instant::now();
    p1 = net.portico("n1", &c1);
    figures.push((
        "Portico restart preempts keepalived",
        net.wait_vip("n1", PORT, t, limit),
    ));
    only_holder(&net, "n1", secs(2.0));
    let t = Instant::now();
    p1.kill();
    figures.push((
        "Portico SIGKILL -> keepalived answers",
        net.wait_vip("n2", PORT, t, limit),
    ));
    ka.stop();
    let text: Vec<String> = figures
        .iter()
        .map(|(what, d)| format!("{what} {d:?}"))
        .collect();
    report(&format!(
        "ha_keepalived v{version} (advert 1 s): {}",
        text.join("; ")
    ));
}

#[test]
fn interop_v2_auth_pass() {
    interop(2);
}

#[test]
fn interop_v3() {
    interop(3);
}

/// Hard crashes both ways at a 100 ms advert interval (keepalived `advert_int 0.1`).
#[test]
fn interop_v3_100ms_crash_both_ways() {
    if !requirements(&["ip", "curl", "keepalived"]) {
        return;
    }
    let _serial = serial();
    let net = Net::standard();
    let _e1 = net.echo("n1");
    let _e2 = net.echo("n2");
    let limit = secs(5.0);
    // Portico master (150), keepalived backup (100): SIGKILL Portico.
    let c1 = net.node_config("n1", &Vrrp::v3(150, "100ms"), "");
    let t = Instant::now();
    let mut p1 = net.portico("n1", &c1);
    let mut ka = Keepalived::start(&net, "n2", &Vrrp::v3(100, "100ms"));
    net.wait_vip("n1", PORT, t, secs(10.0));
    net.hold_vip("n1", PORT, secs(1.0));
    let t = Instant::now();
    p1.kill();
    let to_keepalived = net.wait_vip("n2", PORT, t, limit);
    // Portico back as a backup (priority 50), then keepalived crashes.
    let c1 = net.node_config("n1", &Vrrp::v3(50, "100ms"), "");
    let p1 = net.portico("n1", &c1);
    eventually(secs(5.0), "Portico backup logged", || {
        p1.log_text().contains("BACKUP").then_some(())
    });
    net.hold_vip("n2", PORT, secs(1.0));
    let t = Instant::now();
    ka.crash();
    let to_portico = net.wait_vip("n1", PORT, t, limit);
    assert!(
        to_keepalived < secs(1.5) && to_portico < secs(1.5),
        "{to_keepalived:?} {to_portico:?}"
    );
    report(&format!(
        "ha_keepalived v3 (advert 100 ms): Portico SIGKILL -> keepalived answers {to_keepalived:?}; keepalived SIGKILL -> Portico answers {to_portico:?}"
    ));
}
