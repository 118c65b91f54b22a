//! Failover timing, measured the way `docs/ha.md` reports it (ignored by default: it only
//! measures; the pass/fail checks are in `ha_failover.rs`). Run with
//! `cargo test -p portico --test ha_measure -- --ignored --nocapture --test-threads=1`.
//!
//! Two Portico nodes (priorities 150 and 100); the client namespace polls the VIP every
//! ~20 ms (curl, 150 ms timeout). Three rounds per setting: hard crash (SIGKILL of the
//! master) and graceful stop (SIGTERM), each timed from the signal to the first answer from
//! the backup.

use std::time::{Duration, Instant};

use crate::support::*;

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

fn ms(d: &[Duration]) -> String {
    let v: Vec<String> = d.iter().map(|d| format!("{}", d.as_millis())).collect();
    format!("[{}] ms", v.join(", "))
}

fn measure(name: &str, hi: Vrrp, lo: Vrrp) {
    if !requirements(&["ip", "curl"]) {
        return;
    }
    let _serial = serial();
    let net = Net::standard();
    let _e1 = net.echo("n1");
    let _e2 = net.echo("n2");
    let c1 = net.node_config("n1", &hi, "");
    let c2 = net.node_config("n2", &lo, "");
    let _p2 = net.portico("n2", &c2);
    let (mut crash, mut graceful) = (Vec::new(), Vec::new());
    for _ in 0..3 {
        let mut p1 = net.portico("n1", &c1);
        net.wait_vip("n1", PORT, Instant::now(), secs(10.0));
        net.hold_vip("n1", PORT, secs(1.0));
        let t = Instant::now();
        p1.kill();
        crash.push(net.wait_vip("n2", PORT, t, secs(10.0)));
        let mut p1 = net.portico("n1", &c1);
        net.wait_vip("n1", PORT, Instant::now(), secs(10.0));
        net.hold_vip("n1", PORT, secs(1.0));
        let t = Instant::now();
        p1.term();
        graceful.push(net.wait_vip("n2", PORT, t, secs(10.0)));
        p1.stop(secs(10.0));
    }
    report(&format!(
        "{name}: SIGKILL {}; SIGTERM {}",
        ms(&crash),
        ms(&graceful)
    ));
}

#[test]
#[ignore = "measurement only"]
fn measure_v2_1s() {
    measure("v2 advert 1 s", Vrrp::v2(150), Vrrp::v2(100));
}

#[test]
#[ignore = "measurement only"]
fn measure_v3_1s() {
    measure("v3 advert 1 s", Vrrp::v3(150, "1s"), Vrrp::v3(100, "1s"));
}

#[test]
#[ignore = "measurement only"]
fn measure_v3_100ms() {
    measure(
        "v3 advert 100 ms",
        Vrrp::v3(150, "100ms"),
        Vrrp::v3(100, "100ms"),
    );
}
