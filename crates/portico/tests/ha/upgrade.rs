//! Binary upgrade of a VRRP master in network namespaces: the VRRP state is handed over
//! with the listening sockets, so the VIP never moves.
//!
//! n1 runs Portico, MASTER (priority 150) for the VIP, with a site on :80 proxying to a local
//! echo server that answers "n1"; n2 runs the peer, BACKUP (priority 100): a second Portico
//! or keepalived. While the client namespace probes the VIP (`probe.py`: an HTTP request on
//! a new connection every 10 ms, and every VRRP advert on the segment recorded), n1 is
//! upgraded with `portico upgrade` (the same binary: what matters is the handover). Then:
//!
//! - every probe request got n1's answer (bound: 0 failed, on a new connection each);
//! - n2 never sent an advert (a backup does not) and never logged MASTER;
//! - n1's master adverts went on: the longest gap between two of them stays below 3 advert
//!   intervals (a backup takes over after 3 intervals + skew), measured and reported;
//! - `ip monitor address` in n1 and n2 saw no change of the VIP: it stayed on n1's eth0
//!   throughout and never appeared on n2 (a flap of any length would show there);
//! - the new process says it adopted MASTER; the old one exited 0.
//!
//! Then a graceful stop of the new process moves the VIP to n2: the same monitors and the
//! probe see that one, which shows they would have seen a flap.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Instant, SystemTime};

use crate::support::*;

const SITE_PORT: u16 = 80;

/// The peer on n2.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Peer {
    Portico,
    Keepalived,
}

#[test]
fn upgrade_keeps_the_vip_portico_peer_v3_100ms() {
    upgrade_master(Peer::Portico, Vrrp::v3(150, "100ms"));
}

#[test]
fn upgrade_keeps_the_vip_keepalived_peer_v3_100ms() {
    upgrade_master(Peer::Keepalived, Vrrp::v3(150, "100ms"));
}

#[test]
fn upgrade_keeps_the_vip_keepalived_peer_v2_1s() {
    upgrade_master(Peer::Keepalived, Vrrp::v2(150));
}

/// Kills (SIGKILL, by PID) on drop the process an upgrade started: it is not the test's
/// child (its parent, the old process, exits).
struct Adopted(u32);

impl Drop for Adopted {
    fn drop(&mut self) {
        if self.0 != 0 && alive(self.0) {
            let _ = Command::new("kill")
                .args(["-KILL", &self.0.to_string()])
                .status();
        }
    }
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        !s.rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z')
    })
}

fn pid_in(state: &Path) -> Option<u32> {
    std::fs::read_to_string(state.join("portico.pid"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

fn epoch() -> f64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// n1's config: the VRRP instance, a site on :80 to the local echo server, a short drain.
fn master_config(net: &Net, v: &Vrrp) -> (PathBuf, PathBuf) {
    let state = net.path("state-n1");
    let text = format!(
        "[server]\nstate_dir = \"{}\"\naccess_log = \"off\"\nshutdown_grace = \"2s\"\n\n\
         [admin]\nlisten = \"off\"\n\n\
         [upstreams.echo]\nservers = [\"127.0.0.1:{PORT}\"]\n\n\
         [[sites]]\nlisten = [\"0.0.0.0:{SITE_PORT}\"]\nroutes = [{{ path = \"/\", proxy = \"echo\" }}]\n\n{}",
        state.display(),
        v.toml()
    );
    (net.write("n1.toml", &text), state)
}

/// `ip -n NS monitor address` for `node`, into `monitor-NODE.out`.
fn monitor(net: &Net, node: &str) -> Proc {
    let mut c = Command::new("ip");
    c.args(["-n", &net.ns(node), "monitor", "address"]);
    net.spawn(c, &format!("monitor-{node}.out"))
}

fn vip_lines(net: &Net, node: &str) -> Vec<String> {
    std::fs::read_to_string(net.path(&format!("monitor-{node}.out")))
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(&format!(" {VIP}/")))
        .map(str::to_string)
        .collect()
}

struct Probed {
    /// (time, ok, seconds, detail)
    http: Vec<(f64, bool, f64, String)>,
    /// (time, source, priority) of VRID 51
    adverts: Vec<(f64, String, u64)>,
}

fn parse_probe(text: &str) -> Probed {
    let v: serde_json::Value =
        serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("probe output: {e}: {text:?}"));
    let http = v["http"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|r| {
                    (
                        r[0].as_f64().unwrap_or(0.0),
                        r[1].as_bool().unwrap_or(false),
                        r[2].as_f64().unwrap_or(0.0),
                        r[3].as_str().unwrap_or("").to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let adverts = v["adverts"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|r| r[2].as_u64() == Some(51))
                .map(|r| {
                    (
                        r[0].as_f64().unwrap_or(0.0),
                        r[1].as_str().unwrap_or("").to_string(),
                        r[3].as_u64().unwrap_or(0),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    Probed { http, adverts }
}

fn upgrade_master(peer: Peer, v: Vrrp) {
    let mut tools = vec!["ip", "curl", "python3"];
    if peer == Peer::Keepalived {
        tools.push("keepalived");
    }
    if !requirements(&tools) {
        return;
    }
    let _serial = serial();
    let net = Net::standard();
    let _echo = net.echo("n1");
    let (c1, state1) = master_config(&net, &v);
    let advert = if v.advert == "100ms" {
        secs(0.1)
    } else {
        secs(1.0)
    };

    let t = Instant::now();
    let mut old = net.portico("n1", &c1);
    net.wait_answer(VIP, SITE_PORT, |b| b.starts_with("n1"), "n1", t, secs(10.0));
    only_holder(&net, "n1", secs(2.0));
    let backup_v = Vrrp {
        priority: 100,
        ..v.clone()
    };
    let mut portico_peer = None;
    let mut keepalived_peer = None;
    let peer_log = match peer {
        Peer::Portico => {
            let c2 = net.node_config("n2", &backup_v, "");
            let p = net.portico("n2", &c2);
            let log = p.log.clone();
            portico_peer = Some(p);
            log
        }
        Peer::Keepalived => {
            let k = Keepalived::start(&net, "n2", &backup_v);
            let log = k.proc.log.clone();
            keepalived_peer = Some(k);
            log
        }
    };
    let backup_word = match peer {
        Peer::Portico => "state=BACKUP",
        Peer::Keepalived => "Entering BACKUP STATE",
    };
    let master_word = match peer {
        Peer::Portico => "state=MASTER",
        Peer::Keepalived => "Entering MASTER STATE",
    };
    let peer_text = || std::fs::read_to_string(&peer_log).unwrap_or_default();
    eventually(secs(10.0), "the peer in BACKUP", || {
        peer_text().contains(backup_word).then_some(())
    });
    // Past the peer's master-down interval: it accepts n1 as master.
    std::thread::sleep(advert * 4 + secs(0.5));
    only_holder(&net, "n1", secs(1.0));
    assert!(!peer_text().contains(master_word), "{}", net.logs());

    let mut mon1 = monitor(&net, "n1");
    let mut mon2 = monitor(&net, "n2");
    let probe_script = net.write("probe.py", include_str!("probe.py"));
    let window = 8.0 + 4.0 * advert.as_secs_f64();
    let mut pc = net.cmd("c", "python3");
    pc.arg(&probe_script)
        .args([VIP, &SITE_PORT.to_string(), "n1", "10.200.0.2"])
        .arg(window.to_string());
    let mut probe = net.spawn(pc, "probe.out");
    std::thread::sleep(secs(1.0) + advert * 2);

    // The upgrade.
    let old_pid = old.pid();
    let up_start = epoch();
    let t = Instant::now();
    let out = Command::new(portico_bin())
        .args(["upgrade", "-c"])
        .arg(&c1)
        .output()
        .unwrap_or_else(|e| panic!("portico upgrade: {e}"));
    let took = t.elapsed();
    let up_end = epoch();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "portico upgrade: {stdout}{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        net.logs()
    );
    let new_pid = pid_in(&state1).unwrap_or(0);
    let _adopted = Adopted(new_pid);
    assert!(
        new_pid != 0 && new_pid != old_pid && stdout.contains(&format!("process {new_pid}")),
        "{stdout}"
    );
    let status = old.stop_after_exit(secs(15.0));
    assert!(
        status.is_some_and(|s| s.success()),
        "old process: {status:?}\n{}",
        net.logs()
    );
    let old_gone = epoch();
    // The probe runs its whole window (bounded), then prints.
    probe.stop_after_exit(secs(window + 15.0));
    let probed = parse_probe(&probe.log_text());
    mon1.kill();
    mon2.kill();

    // Every request answered by n1.
    let failed: Vec<_> = probed.http.iter().filter(|r| !r.1).collect();
    let slowest = probed.http.iter().map(|r| r.2).fold(0.0, f64::max);
    let during: Vec<_> = probed
        .http
        .iter()
        .filter(|r| r.0 >= up_start - 0.5 && r.0 <= old_gone)
        .collect();
    assert!(
        probed.http.len() > 100 && during.len() > 5,
        "too few probes: {} ({} during the upgrade)",
        probed.http.len(),
        during.len()
    );
    assert!(
        failed.is_empty(),
        "{} of {} probes failed: {:?}\n{}",
        failed.len(),
        probed.http.len(),
        &failed[..failed.len().min(10)],
        net.logs()
    );
    // Adverts: only n1's, and no gap a backup would act on.
    let from_n2: Vec<_> = probed
        .adverts
        .iter()
        .filter(|a| a.1 == "10.200.0.12")
        .collect();
    assert!(from_n2.is_empty(), "the backup sent adverts: {from_n2:?}");
    let n1_times: Vec<f64> = probed
        .adverts
        .iter()
        .filter(|a| a.1 == "10.200.0.11")
        .map(|a| a.0)
        .collect();
    assert!(
        probed
            .adverts
            .iter()
            .all(|a| a.1 != "10.200.0.11" || a.2 == 150),
        "n1 resigned or changed priority: {:?}",
        probed.adverts
    );
    let covered = n1_times.first().is_some_and(|f| *f < up_start)
        && n1_times.last().is_some_and(|l| *l > old_gone);
    assert!(
        covered,
        "adverts do not cover the upgrade: {n1_times:?} vs {up_start}..{old_gone}"
    );
    let max_gap = n1_times.windows(2).map(|w| w[1] - w[0]).fold(0.0, f64::max);
    assert!(
        max_gap < 3.0 * advert.as_secs_f64(),
        "n1's adverts paused {max_gap:.3} s (advert {advert:?})\n{}",
        net.logs()
    );
    // The VIP never moved.
    assert!(
        vip_lines(&net, "n1").is_empty(),
        "{:?}",
        vip_lines(&net, "n1")
    );
    assert!(
        vip_lines(&net, "n2").is_empty(),
        "{:?}",
        vip_lines(&net, "n2")
    );
    assert!(
        !peer_text().contains(master_word),
        "the backup became master:\n{}",
        peer_text()
    );
    let n1_log = std::fs::read_to_string(net.path("portico-n1.log")).unwrap_or_default();
    assert!(
        n1_log.contains("VRRP instance adopted from the previous process")
            && n1_log.contains("handed_over=MASTER"),
        "{n1_log}"
    );
    assert!(
        n1_log.contains("handed over: addresses left to the new process"),
        "{n1_log}"
    );
    assert!(net.has_addr("n1", VIP) && !net.has_addr("n2", VIP));

    // The control: a graceful stop of the new process moves the VIP, and the same watchers
    // see it.
    let mut mon1 = monitor(&net, "n1");
    let mut mon2 = monitor(&net, "n2");
    std::thread::sleep(secs(0.3));
    let t = Instant::now();
    let _ = Command::new("kill")
        .args(["-TERM", &new_pid.to_string()])
        .status();
    eventually(secs(10.0), "the VIP on n2", || {
        net.has_addr("n2", VIP).then_some(())
    });
    let moved = t.elapsed();
    eventually(
        secs(5.0),
        "ip monitor sees the VIP leave n1 and reach n2",
        || {
            (vip_lines(&net, "n1")
                .iter()
                .any(|l| l.starts_with("Deleted"))
                && !vip_lines(&net, "n2").is_empty())
            .then_some(())
        },
    );
    eventually(secs(5.0), "the peer logs MASTER", || {
        peer_text().contains(master_word).then_some(())
    });
    mon1.kill();
    mon2.kill();
    drop(portico_peer);
    drop(keepalived_peer);

    let gaps = n1_times
        .windows(2)
        .filter(|w| w[0] >= up_start - 1.0 && w[1] <= old_gone + 1.0)
        .map(|w| w[1] - w[0])
        .fold(0.0, f64::max);
    report(&format!(
        "ha_upgrade ({peer:?} peer, v{} advert {advert:?}): `portico upgrade` {took:?}, old process gone {:.2} s after; \
         {} HTTP probes (new connection each, {} during the upgrade), 0 failed, slowest {:.0} ms; \
         longest gap between n1 adverts {:.0} ms around the upgrade ({:.0} ms in the whole window; \
         the backup would act at 3 x {advert:?} + skew); VIP never left n1 (ip monitor); \
         control: SIGTERM of the new process moves the VIP to n2 in {moved:?}",
        v.version,
        old_gone - up_end,
        probed.http.len(),
        during.len(),
        slowest * 1000.0,
        gaps * 1000.0,
        max_gap * 1000.0,
    ));
}
