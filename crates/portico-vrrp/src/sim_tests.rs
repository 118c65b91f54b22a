//! The state machine on a simulated network of N nodes with a virtual clock.
//!
//! Packets take `delay` to arrive; links can be cut per direction; nodes can crash (stop
//! dead, no resign) or shut down gracefully. The simulator records every state change with
//! its virtual time and the longest time two nodes held the virtual addresses at once.

#![allow(clippy::unwrap_used)] // tests may unwrap

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use super::*;
use crate::packet::{Advert, Auth};

const MS: Duration = Duration::from_millis(1);

fn ip(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 200, 0, last))
}

fn params(last: u8, priority: u8, version: VrrpVersion, advert: Duration) -> Params {
    Params {
        name: format!("node{last}"),
        version,
        vrid: 51,
        priority,
        advert_interval: advert,
        virtual_ips: vec![ip(100)],
        auth: if version == VrrpVersion::V2 {
            Auth::simple("s3cr3t")
        } else {
            Auth::None
        },
        preempt: true,
        preempt_delay: Duration::ZERO,
        primary: ip(last),
    }
}

struct Node {
    m: Machine,
    up: bool,
    holds: bool,
    announces: usize,
    /// (time since sim start, new state)
    changes: Vec<(Duration, State)>,
}

struct Sim {
    t0: Instant,
    now: Instant,
    nodes: Vec<Node>,
    inflight: Vec<(Instant, usize, usize, Advert)>,
    cut: HashSet<(usize, usize)>,
    delay: Duration,
    overlap_since: Option<Instant>,
    max_overlap: Duration,
}

impl Sim {
    fn new(params: Vec<Params>) -> Self {
        let t0 = Instant::now();
        let nodes = params
            .into_iter()
            .map(|p| Node {
                m: Machine::new(p),
                up: false,
                holds: false,
                announces: 0,
                changes: vec![],
            })
            .collect();
        Sim {
            t0,
            now: t0,
            nodes,
            inflight: vec![],
            cut: HashSet::new(),
            delay: MS,
            overlap_since: None,
            max_overlap: Duration::ZERO,
        }
    }

    fn elapsed(&self) -> Duration {
        self.now - self.t0
    }

    fn input(&mut self, i: usize, input: Input<'_>) {
        let actions = self.nodes[i].m.handle(input, self.now);
        self.apply(i, actions);
    }

    fn start(&mut self, i: usize) {
        self.nodes[i].up = true;
        self.input(i, Input::Startup);
    }

    fn crash(&mut self, i: usize) {
        self.nodes[i].up = false;
        self.nodes[i].holds = false; // its addresses are unreachable with it
        self.nodes[i].m = Machine::new(self.nodes[i].m.params().clone());
    }

    fn shutdown(&mut self, i: usize) {
        self.input(i, Input::Shutdown);
        self.nodes[i].up = false;
    }

    fn apply(&mut self, i: usize, actions: Vec<Action>) {
        for a in actions {
            match a {
                Action::SendAdvert { priority } => {
                    let p = self.nodes[i].m.params();
                    let advert = Advert {
                        version: p.version,
                        vrid: p.vrid,
                        priority,
                        interval_cs: p.interval_cs(),
                        auth: p.auth,
                        addresses: p.virtual_ips.clone(),
                    };
                    for j in 0..self.nodes.len() {
                        if j != i && !self.cut.contains(&(i, j)) {
                            self.inflight
                                .push((self.now + self.delay, i, j, advert.clone()));
                        }
                    }
                }
                Action::AddVips => self.nodes[i].holds = true,
                Action::RemoveVips => self.nodes[i].holds = false,
                Action::Announce => self.nodes[i].announces += 1,
                Action::Notify(s) => {
                    let at = self.elapsed();
                    self.nodes[i].changes.push((at, s));
                }
            }
        }
        self.check_overlap();
    }

    fn check_overlap(&mut self) {
        let holders = self.nodes.iter().filter(|n| n.holds).count();
        match (holders > 1, self.overlap_since) {
            (true, None) => self.overlap_since = Some(self.now),
            (false, Some(since)) => {
                self.max_overlap = self.max_overlap.max(self.now - since);
                self.overlap_since = None;
            }
            _ => {}
        }
    }

    fn next_event(&self) -> Option<Instant> {
        let timers = self
            .nodes
            .iter()
            .filter(|n| n.up)
            .filter_map(|n| n.m.deadline());
        let packets = self.inflight.iter().map(|p| p.0);
        timers.chain(packets).min()
    }

    fn run_for(&mut self, d: Duration) {
        let end = self.now + d;
        while let Some(t) = self.next_event().filter(|t| *t <= end) {
            self.now = self.now.max(t);
            let (due, rest): (Vec<_>, Vec<_>) = std::mem::take(&mut self.inflight)
                .into_iter()
                .partition(|p| p.0 <= self.now);
            self.inflight = rest;
            for (_, from, to, advert) in due {
                if self.nodes[to].up {
                    let src = self.nodes[from].m.params().primary;
                    self.input(
                        to,
                        Input::Advert {
                            from: src,
                            advert: &advert,
                        },
                    );
                }
            }
            for i in 0..self.nodes.len() {
                if self.nodes[i].up && self.nodes[i].m.deadline().is_some_and(|d| d <= self.now) {
                    self.input(i, Input::Timer);
                }
            }
        }
        self.now = end;
    }

    fn masters(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&i| self.nodes[i].up && self.nodes[i].m.state() == State::Master)
            .collect()
    }

    fn holders(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&i| self.nodes[i].holds)
            .collect()
    }

    /// When node `i` last became `state`, if it did after `after`.
    fn became(&self, i: usize, state: State, after: Duration) -> Option<Duration> {
        self.nodes[i]
            .changes
            .iter()
            .rev()
            .find(|c| c.1 == state && c.0 >= after)
            .map(|c| c.0)
    }
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

fn v2(last: u8, prio: u8) -> Params {
    params(last, prio, VrrpVersion::V2, Duration::from_secs(1))
}

fn v3(last: u8, prio: u8, advert_ms: u64) -> Params {
    params(
        last,
        prio,
        VrrpVersion::V3,
        Duration::from_millis(advert_ms),
    )
}

#[test]
fn timer_formulas_match_the_rfcs() {
    let m = Machine::new(v3(11, 100, 100));
    assert_eq!(m.skew(), Duration::from_millis(100) * 156 / 256);
    assert_eq!(
        m.master_down_interval(),
        Duration::from_millis(300) + m.skew()
    );
    let m = Machine::new(v3(11, 100, 1000));
    assert_eq!(
        m.master_down_interval(),
        secs(3.0) + Duration::from_secs(1) * 156 / 256
    );
    // v2: skew is (256 - priority)/256 seconds whatever the interval.
    let m = Machine::new(v2(11, 150));
    assert_eq!(m.skew(), Duration::from_secs(1) * 106 / 256);
    assert_eq!(m.master_down_interval(), secs(3.0) + m.skew());
}

#[test]
fn effective_priority_clamps_and_faults() {
    assert_eq!(effective_priority(100, &[]), Effective::Priority(100));
    assert_eq!(
        effective_priority(100, &[(-20, true), (-20, false)]),
        Effective::Priority(80)
    );
    assert_eq!(
        effective_priority(10, &[(-20, true)]),
        Effective::Priority(1)
    );
    assert_eq!(
        effective_priority(250, &[(20, true)]),
        Effective::Priority(254)
    );
    assert_eq!(
        effective_priority(255, &[(-20, false)]),
        Effective::Priority(255)
    );
    assert_eq!(
        effective_priority(255, &[(-20, true)]),
        Effective::Priority(235)
    );
    assert_eq!(
        effective_priority(100, &[(-20, true), (0, true)]),
        Effective::Fault
    );
    assert_eq!(
        effective_priority(100, &[(0, false)]),
        Effective::Priority(100)
    );
}

#[test]
fn highest_priority_wins_the_initial_election() {
    let mut s = Sim::new(vec![v2(11, 100), v2(12, 150), v2(13, 120)]);
    (0..3).for_each(|i| s.start(i));
    s.run_for(secs(6.0));
    assert_eq!(s.masters(), vec![1]);
    assert_eq!(s.holders(), vec![1]);
    let mdi = Machine::new(v2(12, 150)).master_down_interval();
    assert_eq!(s.became(1, State::Master, Duration::ZERO), Some(mdi));
    assert_eq!(s.nodes[0].m.state(), State::Backup);
    assert_eq!(s.nodes[2].m.state(), State::Backup);
    assert_eq!(s.max_overlap, Duration::ZERO);
}

#[test]
fn owner_255_is_master_at_once() {
    let mut s = Sim::new(vec![v3(11, 255, 100), v3(12, 200, 100)]);
    s.start(1);
    s.run_for(secs(1.0));
    assert_eq!(s.masters(), vec![1]);
    s.start(0);
    s.run_for(MS * 5);
    assert_eq!(s.masters(), vec![0]);
    assert_eq!(s.nodes[1].m.state(), State::Backup);
}

#[test]
fn backup_takes_over_within_master_down_interval_when_master_dies() {
    for (version, advert_ms) in [(VrrpVersion::V2, 1000), (VrrpVersion::V3, 100)] {
        let advert = Duration::from_millis(advert_ms);
        let mut s = Sim::new(vec![
            params(11, 150, version, advert),
            params(12, 120, version, advert),
            params(13, 100, version, advert),
        ]);
        (0..3).for_each(|i| s.start(i));
        s.run_for(advert * 10 + secs(0.5));
        assert_eq!(s.masters(), vec![0]);
        let crash_at = s.elapsed();
        s.crash(0);
        s.run_for(advert * 10);
        let took = s
            .became(1, State::Master, crash_at)
            .expect("node 2 took over")
            - crash_at;
        let mdi = Machine::new(params(12, 120, version, advert)).master_down_interval();
        assert!(
            took <= mdi,
            "{version:?}: took {took:?} > master-down {mdi:?}"
        );
        assert!(
            took >= mdi - advert,
            "{version:?}: took {took:?}, too early"
        );
        assert_eq!(s.masters(), vec![1], "{version:?}");
        assert_eq!(
            s.became(2, State::Master, Duration::ZERO),
            None,
            "{version:?}"
        );
    }
}

#[test]
fn priority_zero_lets_the_backup_take_over_after_skew_only() {
    let mut s = Sim::new(vec![v2(11, 150), v2(12, 100)]);
    s.start(0);
    s.start(1);
    s.run_for(secs(5.0));
    assert_eq!(s.masters(), vec![0]);
    let at = s.elapsed();
    s.shutdown(0);
    assert!(!s.nodes[0].holds, "graceful stop releases the addresses");
    s.run_for(secs(2.0));
    let took = s.became(1, State::Master, at).expect("backup took over") - at;
    let skew = Machine::new(v2(12, 100)).skew(); // 0.609 s
    assert_eq!(took, skew + s.delay);
    assert_eq!(s.holders(), vec![1]);
}

#[test]
fn higher_priority_node_preempts_unless_nopreempt() {
    for preempt in [true, false] {
        let mut hi = v3(11, 150, 100);
        hi.preempt = preempt;
        let mut s = Sim::new(vec![hi, v3(12, 100, 100)]);
        s.start(1);
        s.run_for(secs(1.0));
        assert_eq!(s.masters(), vec![1]);
        let at = s.elapsed();
        s.start(0);
        s.run_for(secs(3.0));
        if preempt {
            assert_eq!(s.masters(), vec![0]);
            let took = s.became(0, State::Master, at).expect("preempted") - at;
            assert!(took <= Machine::new(v3(11, 150, 100)).master_down_interval() + MS * 2);
            assert_eq!(s.nodes[1].m.state(), State::Backup);
        } else {
            assert_eq!(
                s.masters(),
                vec![1],
                "nopreempt must leave the lower master alone"
            );
            assert_eq!(s.nodes[0].m.state(), State::Backup);
        }
        assert_eq!(s.holders(), s.masters());
        assert!(s.max_overlap <= s.delay * 2, "overlap {:?}", s.max_overlap);
    }
}

#[test]
fn preempt_delay_postpones_preemption() {
    let mut hi = v2(11, 150);
    hi.preempt_delay = secs(3.0);
    let mut s = Sim::new(vec![hi, v2(12, 100)]);
    s.start(1);
    s.run_for(secs(5.0));
    let at = s.elapsed();
    s.start(0);
    s.run_for(secs(12.0));
    let took = s
        .became(0, State::Master, at)
        .expect("preempted eventually")
        - at;
    let mdi = Machine::new(v2(11, 150)).master_down_interval();
    assert!(
        took > secs(3.0) + mdi - secs(1.0),
        "preempted too early: {took:?}"
    );
    assert!(
        took <= secs(3.0) + mdi + secs(1.0),
        "preempted too late: {took:?}"
    );
    assert_eq!(s.masters(), vec![0]);
}

#[test]
fn equal_priorities_higher_address_wins() {
    let mut s = Sim::new(vec![v3(11, 100, 100), v3(12, 100, 100), v3(13, 100, 100)]);
    (0..3).for_each(|i| s.start(i));
    s.run_for(secs(2.0));
    assert_eq!(s.masters(), vec![2]);
    assert_eq!(s.holders(), vec![2]);
}

#[test]
fn healed_partition_leaves_exactly_one_master_within_three_adverts() {
    let advert = Duration::from_millis(100);
    let mut s = Sim::new(vec![v3(11, 150, 100), v3(12, 100, 100)]);
    s.start(0);
    s.start(1);
    s.run_for(secs(1.0));
    assert_eq!(s.masters(), vec![0]);
    s.cut.extend([(0, 1), (1, 0)]);
    s.run_for(secs(1.0));
    assert_eq!(
        s.masters(),
        vec![0, 1],
        "both sides of a partition become master"
    );
    let announced = s.nodes[0].announces;
    s.cut.clear();
    s.run_for(advert * 3);
    assert_eq!(s.masters(), vec![0]);
    assert_eq!(s.holders(), vec![0]);
    assert!(
        s.nodes[0].announces > announced,
        "the winner refreshes ARP caches after a heal"
    );
    s.run_for(secs(2.0));
    assert_eq!(s.masters(), vec![0], "stays settled");
    // Equal priorities: the higher address keeps it after the heal.
    let mut s = Sim::new(vec![v3(11, 100, 100), v3(12, 100, 100)]);
    s.cut.extend([(0, 1), (1, 0)]);
    s.start(0);
    s.start(1);
    s.run_for(secs(1.0));
    assert_eq!(s.masters(), vec![0, 1]);
    s.cut.clear();
    s.run_for(advert * 3);
    assert_eq!(s.masters(), vec![1]);
}

#[test]
fn one_way_cut_heals_too() {
    let mut s = Sim::new(vec![v3(11, 150, 100), v3(12, 100, 100)]);
    s.start(0);
    s.start(1);
    s.run_for(secs(1.0));
    s.cut.insert((0, 1)); // 1 no longer hears 0
    s.run_for(secs(1.0));
    // 1 became master; 0 hears it, but 0 has the higher priority and stays master; 1's
    // adverts cannot be overruled because 0's adverts do not reach 1.
    assert_eq!(s.masters(), vec![0, 1]);
    s.cut.clear();
    s.run_for(Duration::from_millis(300));
    assert_eq!(s.masters(), vec![0]);
}

#[test]
fn flapping_track_never_gives_two_holders() {
    let mut s = Sim::new(vec![v3(11, 150, 100), v3(12, 100, 100)]);
    s.start(0);
    s.start(1);
    s.run_for(secs(1.0));
    // Flap the master between 150 and 80 every 150 ms for 3 s: it never stays low long
    // enough for the backup's master-down timer (~0.36 s) to run out.
    for k in 0..20 {
        let e = if k % 2 == 0 {
            Effective::Priority(80)
        } else {
            Effective::Priority(150)
        };
        s.input(0, Input::Track(e));
        s.run_for(Duration::from_millis(150));
        assert_eq!(s.masters(), vec![0], "flap {k}");
    }
    // Now flap a weight-0 check (FAULT) slowly: the VIP moves each time, never held twice
    // for longer than one packet delay.
    for k in 0..6 {
        let e = if k % 2 == 0 {
            Effective::Fault
        } else {
            Effective::Priority(150)
        };
        s.input(0, Input::Track(e));
        s.run_for(secs(1.0));
        let want = if k % 2 == 0 { vec![1] } else { vec![0] };
        assert_eq!(s.masters(), want, "fault flap {k}");
        assert_eq!(s.holders(), want, "fault flap {k}");
    }
    assert!(
        s.max_overlap <= s.delay,
        "two holders for {:?}",
        s.max_overlap
    );
    assert_eq!(
        s.nodes[0]
            .changes
            .iter()
            .filter(|c| c.1 == State::Fault)
            .count(),
        3
    );
}

#[test]
fn fault_resigns_at_once() {
    let mut s = Sim::new(vec![v2(11, 150), v2(12, 100)]);
    s.start(0);
    s.start(1);
    s.run_for(secs(5.0));
    let at = s.elapsed();
    s.input(0, Input::Track(Effective::Fault));
    assert_eq!(s.nodes[0].m.state(), State::Fault);
    assert!(!s.nodes[0].holds);
    s.run_for(secs(1.0));
    let took = s.became(1, State::Master, at).expect("backup took over") - at;
    assert!(took < secs(0.7), "{took:?}");
}

#[test]
fn lowered_priority_lets_a_backup_preempt() {
    let mut s = Sim::new(vec![v3(11, 150, 100), v3(12, 100, 100)]);
    s.start(0);
    s.start(1);
    s.run_for(secs(1.0));
    let at = s.elapsed();
    s.input(0, Input::Track(Effective::Priority(130))); // still above 100: nothing moves
    s.run_for(secs(1.0));
    assert_eq!(s.masters(), vec![0]);
    s.input(0, Input::Track(Effective::Priority(80)));
    s.run_for(secs(1.0));
    assert_eq!(s.masters(), vec![1]);
    let took = s.became(1, State::Master, at).expect("moved") - at - secs(1.0);
    assert!(took <= Machine::new(v3(12, 100, 100)).master_down_interval() + MS * 2);
}

#[test]
fn v2_auth_mismatch_is_ignored() {
    let mut other = v2(12, 100);
    other.auth = Auth::simple("wrong");
    let mut s = Sim::new(vec![v2(11, 150), other]);
    s.start(0);
    s.start(1);
    s.run_for(secs(6.0));
    // Each ignores the other: both are master (what keepalived does too), and the drops
    // were for authentication.
    assert_eq!(s.masters(), vec![0, 1]);
    assert_eq!(s.nodes[0].m.last_drop(), Some(DropReason::Auth));
    assert_eq!(s.nodes[1].m.last_drop(), Some(DropReason::Auth));
    // Five adverts each way in 6 s, one log line each; then one more per minute.
    assert_eq!(s.nodes[0].m.auth_mismatch_logs(), 1);
    s.run_for(secs(61.0));
    assert_eq!(s.nodes[0].m.auth_mismatch_logs(), 2);
}

#[test]
fn other_vrid_version_and_interval_mismatches() {
    let mut m = Machine::new(v2(11, 100));
    let now = Instant::now();
    m.handle(Input::Startup, now);
    let deadline = m.deadline();
    let base = Advert {
        version: VrrpVersion::V2,
        vrid: 51,
        priority: 200,
        interval_cs: 100,
        auth: Auth::simple("s3cr3t"),
        addresses: vec![ip(100)],
    };
    let later = now + secs(1.0);
    let cases = [
        (
            Advert {
                vrid: 52,
                ..base.clone()
            },
            DropReason::OtherVrid,
        ),
        (
            Advert {
                version: VrrpVersion::V3,
                ..base.clone()
            },
            DropReason::Version,
        ),
        (
            Advert {
                interval_cs: 200,
                ..base.clone()
            },
            DropReason::Interval,
        ),
    ];
    for (a, why) in cases {
        assert!(
            m.handle(
                Input::Advert {
                    from: ip(12),
                    advert: &a
                },
                later
            )
            .is_empty()
        );
        assert_eq!(m.last_drop(), Some(why));
        assert_eq!(
            m.deadline(),
            deadline,
            "a dropped advert must not reset the timer"
        );
    }
    // A different address list is only logged: the advert still counts.
    let a = Advert {
        addresses: vec![ip(101)],
        ..base
    };
    m.handle(
        Input::Advert {
            from: ip(12),
            advert: &a,
        },
        later,
    );
    assert_eq!(m.deadline(), Some(later + m.master_down_interval()));
}

#[test]
fn v3_backup_learns_the_masters_interval() {
    let mut m = Machine::new(v3(11, 100, 1000));
    let now = Instant::now();
    m.handle(Input::Startup, now);
    let a = Advert {
        version: VrrpVersion::V3,
        vrid: 51,
        priority: 200,
        interval_cs: 10,
        auth: Auth::None,
        addresses: vec![ip(100)],
    };
    m.handle(
        Input::Advert {
            from: ip(12),
            advert: &a,
        },
        now,
    );
    let want = Duration::from_millis(300) + Duration::from_millis(100) * 156 / 256;
    assert_eq!(m.deadline(), Some(now + want));
}
