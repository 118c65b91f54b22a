//! The seed keepalived pairs, converted by `portico import keepalived`, fail over in network
//! namespaces: two `portico run` processes with the converted configs, the master killed
//! (SIGKILL, by PID), the backup takes the VIP within 3 x advert_int + skew, and the
//! returning node does what the seed config says.
//!
//! Inputs: the seed keepalived configs the import tests use
//! (`crates/portico-import/tests/data/seed-00{3,4}-*-keepalived.conf`), as printed in the
//! articles. The test rewrites each one before converting it, and only this:
//!
//! - `interface ens33` / `eth0` / `eth1` -> `interface eth0`: each namespace has one
//!   interface, `eth0`; the seeds name their hosts' NICs;
//! - `192.168.99.X` and `192.168.50.X` -> `10.200.0.X` (same host part): the seeds' LANs
//!   become the test segment. So the VIPs are 10.200.0.151 (seed 003) and 10.200.0.130
//!   (seed 004), seed 003's real server 10.200.0.104, and seed 004's nodes keep their host
//!   parts (`mcast_src_ip` .133 / .134, which the import drops: Portico sends from the
//!   interface's address, set to those).
//!
//! Then `portico import keepalived IN -o OUT` converts it (must exit 0: the converted config
//! checks), and the test appends `[admin] listen = "off"` (the tests' rule: no admin API
//! unless the test is about it; the converted file has no `[admin]`). Nothing else changes:
//! priorities, advert 1 s, VRRPv2 with `auth_pass`, `nopreempt`, the `listeners` track of
//! seed 004 and the stream of seed 003 are the converted ones.
//!
//! - Seed 003: both nodes priority 100 (preempt by default), `virtual_server VIP:6201` ->
//!   a stream on 6201 to the node's real server (node 1 -> :6101, node 2 -> :6102, both on
//!   the backend namespace at .104, answering "via-node1" / "via-node2"). Node 1 starts first
//!   and is elected; killed, node 2 takes the VIP; node 1 returns and does NOT take it back:
//!   with equal priorities a backup never preempts (RFC 5798 6.4.2, as keepalived).
//! - Seed 004: master priority 100 with `nopreempt`, backup 90. The master is killed, the
//!   backup takes the VIP; the master returns and stays BACKUP (nopreempt). A `portico echo`
//!   on :88 in each node (standing for the nginx the article's keepalived protects) tells the
//!   client which node holds the VIP.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::*;

/// The seed keepalived config `name` from the import tests' data.
fn seed(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../portico-import/tests/data")
        .join(name)
}

/// The rewriting described in the module doc.
fn to_namespaces(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        let trimmed = line.trim_start();
        let line = if let Some(rest) = trimmed.strip_prefix("interface ") {
            let name = rest.split_whitespace().next().unwrap_or("");
            line.replacen(name, "eth0", 1)
        } else {
            line.replace("192.168.99.", "10.200.0.")
                .replace("192.168.50.", "10.200.0.")
        };
        out.push_str(&line);
        out.push('\n');
    }
    out
}

/// Rewrites seed `name` into `node`'s folder, converts it with `portico import keepalived`
/// and appends `[admin] listen = "off"`; returns the config path.
fn convert(net: &Net, node: &str, name: &str) -> PathBuf {
    let dir = net.path(node);
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
    let text = std::fs::read_to_string(seed(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
    let input = dir.join("keepalived.conf");
    std::fs::write(&input, to_namespaces(&text)).unwrap_or_else(|e| panic!("{e}"));
    let out = dir.join("portico.toml");
    let run = Command::new(portico_bin())
        .args(["import", "keepalived"])
        .arg(&input)
        .arg("-o")
        .arg(&out)
        .output()
        .unwrap_or_else(|e| panic!("portico import: {e}"));
    let report_text = String::from_utf8_lossy(&run.stderr).into_owned();
    assert!(run.status.success(), "portico import {name}: {report_text}");
    std::fs::write(net.path(&format!("import-{node}.log")), &report_text)
        .unwrap_or_else(|e| panic!("{e}"));
    let mut config = std::fs::read_to_string(&out).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        config.contains("interface = \"eth0\"") && config.contains("version = 2"),
        "{config}"
    );
    config.push_str("\n[admin]\nlisten = \"off\"\n");
    std::fs::write(&out, config).unwrap_or_else(|e| panic!("{e}"));
    out
}

/// Polls every 20 ms until `node` holds `vip`; the time since `since`.
fn wait_holder(net: &Net, node: &str, vip: &str, since: Instant, limit: Duration) -> Duration {
    loop {
        if net.has_addr(node, vip) {
            return since.elapsed();
        }
        assert!(
            since.elapsed() < limit,
            "{node} did not take {vip} within {limit:?}\n{}",
            net.logs()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The expected takeover after a master dies, from its last advert: 3 x advert + skew, v2
/// skew = (256 - priority) / 256 s. Measured from the kill it lies between that minus one
/// advert interval (the last advert came up to 1 s before the kill) and that, plus margin
/// for this busy machine.
fn check_failover(took: Duration, backup_priority: u32) -> Duration {
    let expected = secs(3.0) + secs(f64::from(256 - backup_priority) / 256.0);
    assert!(
        took + secs(1.0) >= expected - secs(0.1) && took <= expected + secs(1.0),
        "failover took {took:?}; expected {:?}..{expected:?}",
        expected - secs(1.0)
    );
    expected
}

#[test]
fn seed003_converted_pair_fails_over() {
    if !requirements(&["ip", "curl"]) {
        return;
    }
    let _serial = serial();
    const VIP3: &str = "10.200.0.151";
    const STREAM: u16 = 6201;
    let net = Net::new(&[
        ("c", "10.200.0.2"),
        ("n1", "10.200.0.11"),
        ("n2", "10.200.0.12"),
        ("b", "10.200.0.104"),
    ]);
    let c1 = convert(&net, "n1", "seed-003-node1-keepalived.conf");
    let c2 = convert(&net, "n2", "seed-003-node2-keepalived.conf");
    let _backends: Vec<Proc> = [(6101, "via-node1"), (6102, "via-node2")]
        .into_iter()
        .map(|(port, name)| {
            let mut c = net.cmd("b", portico_bin());
            c.args([
                "echo",
                "--listen",
                &format!("10.200.0.104:{port}"),
                "--name",
                name,
            ]);
            let p = net.spawn(c, &format!("{name}.log"));
            eventually(secs(10.0), name, || {
                net.get_from("b", "10.200.0.104", port).map(|_| ())
            });
            p
        })
        .collect();
    let nodes = ["n1", "n2"];
    let via = |node: &'static str| move |b: &str| b.starts_with(&format!("via-node{}", &node[1..]));

    // Node 1 first: elected after its master-down interval (3.6 s); node 2 then joins as
    // backup (equal priority: it accepts node 1's adverts).
    let t = Instant::now();
    let mut p1 = net.portico_log("n1", &c1, "node1.log");
    let elected = net.wait_answer(VIP3, STREAM, via("n1"), "node 1", t, secs(10.0));
    let mut p2 = net.portico_log("n2", &c2, "node2.log");
    std::thread::sleep(secs(4.5));
    assert_eq!(net.holders_of(VIP3, &nodes), ["n1"], "{}", net.logs());
    assert!(
        net.get_within("c", VIP3, STREAM, "2")
            .is_some_and(|b| via("n1")(&b))
    );

    // Kill node 1 by PID: node 2 takes the VIP after 3 x 1 s + (256 - 100) / 256 s.
    let t = Instant::now();
    p1.kill();
    let took = wait_holder(&net, "n2", VIP3, t, secs(8.0));
    let answered = net.wait_answer(VIP3, STREAM, via("n2"), "node 2", t, secs(8.0));
    let expected = check_failover(took, 100);

    // Node 1 returns: equal priorities, so it stays backup and the VIP stays on node 2
    // (watched for longer than a master-down interval).
    let _p1 = net.portico_log("n1", &c1, "node1-again.log");
    eventually(secs(10.0), "node 1 back as BACKUP", || {
        std::fs::read_to_string(net.path("node1-again.log"))
            .ok()
            .filter(|l| l.contains("state=BACKUP"))
            .map(|_| ())
    });
    let end = Instant::now() + secs(5.0);
    while Instant::now() < end {
        let got = net.get_within("c", VIP3, STREAM, "2");
        assert!(
            got.as_deref().is_some_and(via("n2")),
            "the VIP left node 2: {got:?}\n{}",
            net.logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(net.holders_of(VIP3, &nodes), ["n2"]);
    assert!(p2.stop(secs(10.0)).is_some_and(|s| s.success()));
    report(&format!(
        "ha_imported seed 003 (converted, v2 advert 1 s, priorities 100/100): node 1 answered through the stream after {elected:?}; \
         SIGKILL node 1 -> VIP on node 2 after {took:?} (expected at most {expected:?}), answers via node 2 after {answered:?}; \
         node 1 back stays BACKUP (equal priority)"
    ));
}

#[test]
fn seed004_converted_pair_fails_over_nopreempt() {
    if !requirements(&["ip", "curl"]) {
        return;
    }
    let _serial = serial();
    const VIP4: &str = "10.200.0.130";
    const WEB: u16 = 88;
    let net = Net::new(&[
        ("c", "10.200.0.2"),
        ("n1", "10.200.0.133"),
        ("n2", "10.200.0.134"),
    ]);
    let master = convert(&net, "n1", "seed-004-master-keepalived.conf");
    let backup = convert(&net, "n2", "seed-004-backup-keepalived.conf");
    let text = std::fs::read_to_string(&master).unwrap_or_default();
    assert!(text.contains("preempt = false"), "{text}");
    let _webs: Vec<Proc> = ["n1", "n2"]
        .into_iter()
        .map(|node| {
            let mut c = net.cmd(node, portico_bin());
            c.args([
                "echo",
                "--listen",
                &format!("0.0.0.0:{WEB}"),
                "--name",
                node,
            ]);
            let p = net.spawn(c, &format!("web-{node}.log"));
            eventually(secs(10.0), node, || {
                net.get_from(node, "127.0.0.1", WEB).map(|_| ())
            });
            p
        })
        .collect();
    let nodes = ["n1", "n2"];
    let is = |node: &'static str| move |b: &str| b.starts_with(node);

    let t = Instant::now();
    let mut p1 = net.portico_log("n1", &master, "master.log");
    let elected = net.wait_answer(VIP4, WEB, is("n1"), "master", t, secs(10.0));
    let mut p2 = net.portico_log("n2", &backup, "backup.log");
    std::thread::sleep(secs(4.5));
    assert_eq!(net.holders_of(VIP4, &nodes), ["n1"], "{}", net.logs());

    // Kill the master by PID: the backup (priority 90) takes the VIP after
    // 3 x 1 s + (256 - 90) / 256 s.
    let t = Instant::now();
    p1.kill();
    let took = wait_holder(&net, "n2", VIP4, t, secs(8.0));
    let answered = net.wait_answer(VIP4, WEB, is("n2"), "backup", t, secs(8.0));
    let expected = check_failover(took, 90);

    // The master returns: nopreempt, it stays BACKUP; the VIP stays on the backup.
    let _p1 = net.portico_log("n1", &master, "master-again.log");
    eventually(secs(10.0), "the master back as BACKUP", || {
        std::fs::read_to_string(net.path("master-again.log"))
            .ok()
            .filter(|l| l.contains("state=BACKUP"))
            .map(|_| ())
    });
    let end = Instant::now() + secs(6.0);
    while Instant::now() < end {
        let got = net.get_within("c", VIP4, WEB, "2");
        assert!(
            got.as_deref().is_some_and(is("n2")),
            "the VIP left the backup: {got:?}\n{}",
            net.logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(net.holders_of(VIP4, &nodes), ["n2"]);
    let again = std::fs::read_to_string(net.path("master-again.log")).unwrap_or_default();
    assert!(!again.contains("state=MASTER"), "{again}");
    assert!(p2.stop(secs(10.0)).is_some_and(|s| s.success()));
    report(&format!(
        "ha_imported seed 004 (converted, v2 advert 1 s, priorities 100 nopreempt / 90): master answered after {elected:?}; \
         SIGKILL master -> VIP on the backup after {took:?} (expected at most {expected:?}), answers after {answered:?}; \
         the returning master stays BACKUP (nopreempt)"
    ));
}

#[test]
fn the_rewriting_touches_only_interfaces_and_addresses() {
    let text = std::fs::read_to_string(seed("seed-004-backup-keepalived.conf"))
        .unwrap_or_else(|e| panic!("{e}"));
    let out = to_namespaces(&text);
    assert!(out.contains("\tinterface eth0\n"), "{out}");
    assert!(out.contains("mcast_src_ip 10.200.0.134"), "{out}");
    assert!(out.contains("\t\t10.200.0.130\n"), "{out}");
    assert!(!out.contains("192.168."), "{out}");
    // Everything else as it was, line for line.
    let changed = text
        .lines()
        .zip(out.lines())
        .filter(|(a, b)| a != b)
        .count();
    assert_eq!(changed, 3, "{out}");
    assert_eq!(text.lines().count(), out.lines().count());
}
