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
//! - n1's master adverts went on: the longest gap between two of them stays below the
//!   peer's master-down interval (3 adverts + skew, after which it would take over),
//!   measured and reported (about one advert interval);
//! - `ip monitor address` in n1 and n2 saw no change of the VIP: it stayed on n1's eth0
//!   throughout and never appeared on n2 (a flap of any length would show there);
//! - the new process says it adopted MASTER; the old one exited 0.
//!
//! Then a graceful stop of the new process moves the VIP to n2: the same monitors and the
//! probe see that one, which shows they would have seen a flap.
//!
//! Also: upgrading the BACKUP keeps it BACKUP, and an upgrade that fails after the new
//! process adopted the master resumes the old process's instance, both without a flap.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

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

/// n1 (Portico, master) and n2 (the peer, backup), settled, with the client probe's script
/// written. Fields drop in order: the processes before the namespaces.
struct Pair {
    old: Proc,
    _echo: Proc,
    peer: (Option<Proc>, Option<Keepalived>),
    peer_log: PathBuf,
    /// The Portico peer's config.
    c2: Option<PathBuf>,
    master_word: &'static str,
    c1: PathBuf,
    state1: PathBuf,
    advert: Duration,
    net: Net,
}

impl Pair {
    fn start(peer: Peer, v: &Vrrp) -> Option<Pair> {
        let mut tools = vec!["ip", "curl", "python3"];
        if peer == Peer::Keepalived {
            tools.push("keepalived");
        }
        if !requirements(&tools) {
            return None;
        }
        let net = Net::standard();
        let echo = net.echo("n1");
        let (c1, state1) = master_config(&net, v);
        let advert = if v.advert == "100ms" {
            secs(0.1)
        } else {
            secs(1.0)
        };
        let t = Instant::now();
        let old = net.portico("n1", &c1);
        net.wait_answer(VIP, SITE_PORT, |b| b.starts_with("n1"), "n1", t, secs(10.0));
        only_holder(&net, "n1", secs(2.0));
        let backup_v = Vrrp {
            priority: 100,
            ..v.clone()
        };
        let mut c2 = None;
        let (peer_proc, peer_log, backup_word, master_word) = match peer {
            Peer::Portico => {
                let config = net.node_config("n2", &backup_v, "");
                let p = net.portico("n2", &config);
                c2 = Some(config);
                let log = p.log.clone();
                ((Some(p), None), log, "state=BACKUP", "state=MASTER")
            }
            Peer::Keepalived => {
                let k = Keepalived::start(&net, "n2", &backup_v);
                let log = k.proc.log.clone();
                (
                    (None, Some(k)),
                    log,
                    "Entering BACKUP STATE",
                    "Entering MASTER STATE",
                )
            }
        };
        let pair = Pair {
            old,
            _echo: echo,
            peer: peer_proc,
            peer_log,
            c2,
            master_word,
            c1,
            state1,
            advert,
            net,
        };
        eventually(secs(10.0), "the peer in BACKUP", || {
            pair.peer_text().contains(backup_word).then_some(())
        });
        // Past the peer's master-down interval: it accepts n1 as master.
        std::thread::sleep(advert * 4 + secs(0.5));
        only_holder(&pair.net, "n1", secs(1.0));
        assert!(
            !pair.peer_text().contains(master_word),
            "{}",
            pair.net.logs()
        );
        Some(pair)
    }

    fn peer_text(&self) -> String {
        std::fs::read_to_string(&self.peer_log).unwrap_or_default()
    }

    fn n1_log(&self) -> String {
        std::fs::read_to_string(self.net.path("portico-n1.log")).unwrap_or_default()
    }

    /// `portico upgrade -c n1.toml`: its output and how long it took.
    fn upgrade(&self) -> (std::process::Output, Duration) {
        upgrade(&self.c1)
    }
}

/// `portico upgrade -c CONFIG`: its output and how long it took.
fn upgrade(config: &Path) -> (std::process::Output, Duration) {
    let t = Instant::now();
    let out = Command::new(portico_bin())
        .args(["upgrade", "-c"])
        .arg(config)
        .output()
        .unwrap_or_else(|e| panic!("portico upgrade: {e}"));
    (out, t.elapsed())
}

/// The watchers of one upgrade: `ip monitor address` in n1 and n2, and the client probe.
struct Watch {
    mon: [Proc; 2],
    probe: Proc,
    window: f64,
}

impl Watch {
    fn start(pair: &Pair) -> Watch {
        let net = &pair.net;
        let mon = [monitor(net, "n1"), monitor(net, "n2")];
        let script = net.write("probe.py", include_str!("probe.py"));
        let window = 8.0 + 4.0 * pair.advert.as_secs_f64();
        let mut pc = net.cmd("c", "python3");
        pc.arg(&script)
            .args([VIP, &SITE_PORT.to_string(), "n1", "10.200.0.2"])
            .arg(window.to_string());
        let probe = net.spawn(pc, "probe.out");
        // A baseline of adverts and answers before the upgrade.
        std::thread::sleep(secs(1.0) + pair.advert * 2);
        Watch { mon, probe, window }
    }

    /// Waits for the probe's window to end (bounded), stops the monitors.
    fn finish(mut self) -> Probed {
        self.probe.stop_after_exit(secs(self.window + 15.0));
        for m in &mut self.mon {
            m.kill();
        }
        parse_probe(&self.probe.log_text())
    }
}

/// What the watchers saw around an upgrade that started at `from` (epoch seconds) and was
/// over (old or new process alone) at `to`.
struct Seen {
    probes: usize,
    during: usize,
    slowest_ms: f64,
    /// Longest gap between two adverts of n1, around the upgrade and in the whole window.
    gap_ms: f64,
    gap_window_ms: f64,
}

/// The VIP never moved: every probe answered by n1, no advert from n2 and n1's at priority
/// 150 without a gap a backup would act on, no address change in n1 or n2, the peer never
/// MASTER.
fn assert_no_flap(pair: &Pair, probed: &Probed, from: f64, to: f64) -> Seen {
    let net = &pair.net;
    let failed: Vec<_> = probed.http.iter().filter(|r| !r.1).collect();
    let during = probed
        .http
        .iter()
        .filter(|r| r.0 >= from - 0.5 && r.0 <= to)
        .count();
    assert!(
        probed.http.len() > 100 && during > 3,
        "too few probes: {} ({during} during the upgrade)",
        probed.http.len(),
    );
    assert!(
        failed.is_empty(),
        "{} of {} probes failed: {:?}\n{}",
        failed.len(),
        probed.http.len(),
        &failed[..failed.len().min(10)],
        net.logs()
    );
    let from_n2: Vec<_> = probed
        .adverts
        .iter()
        .filter(|a| a.1 == "10.200.0.12")
        .collect();
    assert!(from_n2.is_empty(), "the backup sent adverts: {from_n2:?}");
    assert!(
        probed
            .adverts
            .iter()
            .all(|a| a.1 != "10.200.0.11" || a.2 == 150),
        "n1 resigned or changed priority: {:?}",
        probed.adverts
    );
    let n1: Vec<f64> = probed
        .adverts
        .iter()
        .filter(|a| a.1 == "10.200.0.11")
        .map(|a| a.0)
        .collect();
    assert!(
        n1.first().is_some_and(|f| *f < from) && n1.last().is_some_and(|l| *l > to),
        "adverts do not cover the upgrade: {n1:?} vs {from}..{to}"
    );
    let gap = |keep: &dyn Fn(&[f64]) -> bool| {
        n1.windows(2)
            .filter(|w| keep(w))
            .map(|w| w[1] - w[0])
            .fold(0.0, f64::max)
    };
    let gap_window = gap(&|_| true);
    let advert = pair.advert.as_secs_f64();
    // The peer (priority 100) takes over after 3 x advert + skew without an advert; skew
    // = 156/256 x advert (v3) or 156/256 s (v2, whose advert here is 1 s): either way
    // 156/256 x advert in these tests.
    let master_down = 3.0 * advert + 156.0 / 256.0 * advert;
    assert!(
        gap_window < master_down,
        "n1's adverts paused {gap_window:.3} s (advert {advert} s, master-down {master_down:.3} s)\n{}",
        net.logs()
    );
    assert!(
        vip_lines(net, "n1").is_empty(),
        "{:?}",
        vip_lines(net, "n1")
    );
    assert!(
        vip_lines(net, "n2").is_empty(),
        "{:?}",
        vip_lines(net, "n2")
    );
    assert!(
        !pair.peer_text().contains(pair.master_word),
        "the backup became master:\n{}",
        pair.peer_text()
    );
    assert!(net.has_addr("n1", VIP) && !net.has_addr("n2", VIP));
    Seen {
        probes: probed.http.len(),
        during,
        slowest_ms: probed.http.iter().map(|r| r.2).fold(0.0, f64::max) * 1000.0,
        gap_ms: gap(&|w| w[0] >= from - 1.0 && w[1] <= to + 1.0) * 1000.0,
        gap_window_ms: gap_window * 1000.0,
    }
}

fn upgrade_master(peer: Peer, v: Vrrp) {
    let _serial = serial();
    let Some(mut pair) = Pair::start(peer, &v) else {
        return;
    };
    let watch = Watch::start(&pair);
    let old_pid = pair.old.pid();
    let up_start = epoch();
    let (out, took) = pair.upgrade();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "portico upgrade: {stdout}{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        pair.net.logs()
    );
    let new_pid = pid_in(&pair.state1).unwrap_or(0);
    let _adopted = Adopted(new_pid);
    assert!(
        new_pid != 0 && new_pid != old_pid && stdout.contains(&format!("process {new_pid}")),
        "{stdout}"
    );
    let status = pair.old.stop_after_exit(secs(15.0));
    assert!(
        status.is_some_and(|s| s.success()),
        "old process: {status:?}\n{}",
        pair.net.logs()
    );
    let old_gone = epoch();
    let seen = assert_no_flap(&pair, &watch.finish(), up_start, old_gone);
    let log = pair.n1_log();
    assert!(
        log.contains("VRRP instance adopted from the previous process")
            && log.contains("handed_over=MASTER"),
        "{log}"
    );
    assert!(
        log.contains("handed over: addresses left to the new process"),
        "{log}"
    );

    // The control: a graceful stop of the new process moves the VIP, and the same watchers
    // see it.
    let net = &pair.net;
    let mut mon = [monitor(net, "n1"), monitor(net, "n2")];
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
            (vip_lines(net, "n1")
                .iter()
                .any(|l| l.starts_with("Deleted"))
                && !vip_lines(net, "n2").is_empty())
            .then_some(())
        },
    );
    eventually(secs(5.0), "the peer logs MASTER", || {
        pair.peer_text().contains(pair.master_word).then_some(())
    });
    for m in &mut mon {
        m.kill();
    }
    report(&format!(
        "ha_upgrade ({peer:?} peer, v{} advert {:?}): `portico upgrade` {took:?}, old process gone {:.0} ms after it started; \
         {} HTTP probes (new connection each, {} during the upgrade), 0 failed, slowest {:.0} ms; \
         longest gap between n1 adverts {:.0} ms around the upgrade ({:.0} ms in the whole window; \
         the backup would act at 3 x advert + skew); VIP never left n1 (ip monitor); \
         control: SIGTERM of the new process moves the VIP to n2 in {moved:?}",
        v.version,
        pair.advert,
        (old_gone - up_start) * 1000.0,
        seen.probes,
        seen.during,
        seen.slowest_ms,
        seen.gap_ms,
        seen.gap_window_ms,
    ));
}

/// The new process adopts VI_1 as MASTER, then cannot start a second instance the new
/// config adds (an interface that does not exist): it releases VI_1 without touching the
/// network and reports the failure; the old process resumes VI_1 (adverts at once) and
/// serves on. No flap either way.
#[test]
fn a_failed_upgrade_resumes_the_handed_over_master() {
    let _serial = serial();
    let v = Vrrp::v3(150, "100ms");
    let Some(mut pair) = Pair::start(Peer::Portico, &v) else {
        return;
    };
    let text = std::fs::read_to_string(&pair.c1).unwrap_or_default();
    let broken = format!(
        "{text}\n[[vrrp]]\nname = \"VI_2\"\ninterface = \"nosuch0\"\nvrid = 52\nvirtual_ips = [\"10.200.1.100/24\"]\n"
    );
    std::fs::write(&pair.c1, broken).unwrap_or_else(|e| panic!("{e}"));
    let watch = Watch::start(&pair);
    let up_start = epoch();
    let (out, took) = pair.upgrade();
    let up_end = epoch();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "{stderr}\n{}", pair.net.logs());
    assert!(
        stderr.contains("upgrade failed, still serving") && stderr.contains("nosuch0"),
        "{stderr}"
    );
    let seen = assert_no_flap(&pair, &watch.finish(), up_start, up_end);
    let old_pid = pair.old.pid();
    assert!(old_pid != 0, "the old process exited\n{}", pair.net.logs());
    assert_eq!(pid_in(&pair.state1), Some(old_pid));
    let log = pair.n1_log();
    for line in [
        "handed_over=MASTER",
        "VRRP instance paused: handed over to the new process",
        "VRRP instance resumed (not handed over)",
    ] {
        assert!(log.contains(line), "{line}:\n{log}");
    }
    report(&format!(
        "ha_upgrade_failed (Portico peer, v3 advert 100 ms): `portico upgrade` exit 2 in {took:?}; \
         the old process resumed VI_1; {} probes ({} during), 0 failed; longest advert gap {:.0} ms; VIP never left n1",
        seen.probes, seen.during, seen.gap_ms
    ));
}

/// Upgrading the BACKUP (a Portico peer) keeps it BACKUP: the new process adopts the role,
/// sends no advert, never takes the VIP; it is a working backup afterwards (the master's
/// graceful stop moves the VIP to it).
#[test]
fn upgrade_of_the_backup_keeps_it_backup() {
    let _serial = serial();
    let v = Vrrp::v3(150, "100ms");
    let Some(mut pair) = Pair::start(Peer::Portico, &v) else {
        return;
    };
    let c2 = pair.c2.clone().unwrap_or_default();
    let state2 = pair.net.path("state-n2");
    let old_pid = pid_in(&state2).unwrap_or(0);
    let watch = Watch::start(&pair);
    let up_start = epoch();
    let (out, took) = upgrade(&c2);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "portico upgrade: {stdout}{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        pair.net.logs()
    );
    let new_pid = pid_in(&state2).unwrap_or(0);
    let _adopted = Adopted(new_pid);
    assert!(new_pid != 0 && new_pid != old_pid, "{stdout}");
    let status = pair
        .peer
        .0
        .as_mut()
        .and_then(|p| p.stop_after_exit(secs(15.0)));
    assert!(
        status.is_some_and(|s| s.success()),
        "old backup process: {status:?}\n{}",
        pair.net.logs()
    );
    let old_gone = epoch();
    let seen = assert_no_flap(&pair, &watch.finish(), up_start, old_gone);
    let log = pair.peer_text();
    assert!(
        log.contains("VRRP instance adopted from the previous process")
            && log.contains("handed_over=BACKUP"),
        "{log}"
    );

    // The new backup works: the master's graceful stop moves the VIP to it.
    let t = Instant::now();
    pair.old.term();
    eventually(secs(10.0), "the VIP on n2", || {
        pair.net.has_addr("n2", VIP).then_some(())
    });
    let moved = t.elapsed();
    assert!(pair.peer_text().contains("state=MASTER"));
    report(&format!(
        "ha_upgrade of the backup (Portico, v3 advert 100 ms): `portico upgrade` {took:?}; {} probes ({} during), 0 failed; \
         no advert from the backup, VIP never moved; then SIGTERM of the master -> the new backup process holds the VIP after {moved:?}",
        seen.probes, seen.during
    ));
}
