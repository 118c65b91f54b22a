//! Handing an instance from one process to the next (binary upgrade): [`Input::Adopt`],
//! [`Input::Resume`] and [`Machine::inherited`], with a virtual clock.

#![allow(clippy::unwrap_used)] // tests may unwrap

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use super::*;
use crate::packet::{Advert, Auth};

const MS: Duration = Duration::from_millis(1);

fn ip(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 200, 0, last))
}

fn machine(last: u8, priority: u8, version: VrrpVersion, advert: Duration) -> Machine {
    Machine::new(Params {
        name: format!("node{last}"),
        version,
        vrid: 51,
        priority,
        advert_interval: advert,
        virtual_ips: vec![ip(100)],
        auth: Auth::None,
        preempt: true,
        preempt_delay: Duration::ZERO,
        primary: ip(last),
    })
}

fn advert_of(m: &Machine, priority: u8) -> Advert {
    let p = m.params();
    Advert {
        version: p.version,
        vrid: p.vrid,
        priority,
        interval_cs: p.interval_cs(),
        auth: p.auth,
        addresses: p.virtual_ips.clone(),
    }
}

/// A master handed over stays master: one advert at once, the addresses only made sure of
/// (never removed), no notify (the group sees no state change), next advert one interval on.
#[test]
fn adopted_master_adverts_at_once_and_keeps_its_addresses() {
    let t0 = Instant::now();
    let mut m = machine(11, 150, VrrpVersion::V3, 100 * MS);
    let from = Inherited {
        state: State::Master,
        master_adver_interval: 100 * MS,
    };
    let actions = m.handle(Input::Adopt(from), t0);
    assert_eq!(
        actions,
        [Action::SendAdvert { priority: 150 }, Action::AddVips]
    );
    assert_eq!(m.state(), State::Master);
    assert_eq!(m.deadline(), Some(t0 + 100 * MS));
    assert_eq!(m.inherited().state, State::Master);
    // Adopt only applies to a machine that has not started.
    assert!(m.handle(Input::Adopt(from), t0).is_empty());
    assert!(m.handle(Input::Startup, t0).is_empty());
}

/// A backup handed over stays backup, keeping the master's interval it learned (v3): its
/// master-down timer is the one the old process would have run.
#[test]
fn adopted_backup_keeps_the_learned_interval() {
    let t0 = Instant::now();
    let mut m = machine(12, 100, VrrpVersion::V3, 1000 * MS);
    let from = Inherited {
        state: State::Backup,
        master_adver_interval: 200 * MS,
    };
    assert!(m.handle(Input::Adopt(from), t0).is_empty());
    assert_eq!(m.state(), State::Backup);
    // 3 x 200 ms + (256 - 100) / 256 x 200 ms = 721.875 ms
    assert_eq!(
        m.deadline(),
        Some(t0 + 600 * MS + Duration::from_micros(121_875))
    );
}

/// A failing weight-0 check wins over the handed-over role; INIT or FAULT start afresh.
#[test]
fn adopt_falls_back_to_startup() {
    let t0 = Instant::now();
    let master = Inherited {
        state: State::Master,
        master_adver_interval: MS * 1000,
    };
    let mut m = machine(11, 150, VrrpVersion::V2, 1000 * MS);
    m.handle(Input::Track(Effective::Fault), t0);
    assert_eq!(
        m.handle(Input::Adopt(master), t0),
        [Action::Notify(State::Fault)]
    );
    let mut m = machine(11, 150, VrrpVersion::V2, 1000 * MS);
    let fault = Inherited {
        state: State::Fault,
        ..master
    };
    assert_eq!(
        m.handle(Input::Adopt(fault), t0),
        [Action::Notify(State::Backup)]
    );
    // The address owner (255) is master from the start whatever the old role.
    let mut m = machine(11, 255, VrrpVersion::V2, 1000 * MS);
    let backup = Inherited {
        state: State::Backup,
        ..master
    };
    assert!(
        m.handle(Input::Adopt(backup), t0)
            .contains(&Action::Notify(State::Master))
    );
}

/// The whole handover as a peer backup sees it: the old master adverts every second, stops
/// (paused) 0.5 s after its last advert, the new process adopts 0.2 s later and adverts at
/// once. The peer's master-down timer never runs out and the addresses are never removed.
#[test]
fn peer_backup_never_sees_a_missing_master_across_a_handover() {
    let t0 = Instant::now();
    let advert = 1000 * MS;
    let mut old = machine(11, 150, VrrpVersion::V2, advert);
    let mut peer = machine(12, 100, VrrpVersion::V2, advert);
    let mut actions = Vec::new();
    actions.extend(old.handle(Input::Track(Effective::Priority(255)), t0));
    actions.extend(old.handle(Input::Startup, t0));
    assert_eq!(old.state(), State::Master);
    old.handle(Input::Track(Effective::Priority(150)), t0);
    peer.handle(Input::Startup, t0);
    let from = ip(11);
    let a = advert_of(&old, 150);
    let mut now = t0;
    // Three seconds of adverts from the old master.
    for _ in 0..3 {
        now += advert;
        actions.extend(old.handle(Input::Timer, now));
        peer.handle(Input::Advert { from, advert: &a }, now);
    }
    assert_eq!(peer.state(), State::Backup);
    // Paused half an interval after its last advert; the new process adopts 0.2 s later.
    let handed = old.inherited();
    now += 700 * MS;
    let mut new = machine(11, 150, VrrpVersion::V2, advert);
    let first = new.handle(Input::Adopt(handed), now);
    assert_eq!(first[0], Action::SendAdvert { priority: 150 });
    peer.handle(Input::Advert { from, advert: &a }, now);
    actions.extend(first);
    // The new master runs on; the peer never times out.
    for _ in 0..10 {
        let d = new.deadline().unwrap();
        now = d;
        assert!(peer.deadline().unwrap() > now, "peer would take over");
        actions.extend(new.handle(Input::Timer, now));
        peer.handle(Input::Advert { from, advert: &a }, now);
    }
    assert_eq!(peer.state(), State::Backup);
    assert_eq!(new.state(), State::Master);
    assert!(!actions.contains(&Action::RemoveVips), "{actions:?}");
}

/// An old process whose successor failed resumes where it stopped: a master adverts at
/// once, makes sure of its addresses and announces them; a backup rearms its timer.
#[test]
fn resume_after_a_handover_that_did_not_happen() {
    let t0 = Instant::now();
    let mut m = machine(11, 255, VrrpVersion::V3, 100 * MS);
    m.handle(Input::Startup, t0);
    assert_eq!(m.state(), State::Master);
    let later = t0 + 5 * 100 * MS;
    assert_eq!(
        m.handle(Input::Resume, later),
        [
            Action::SendAdvert { priority: 255 },
            Action::AddVips,
            Action::Announce
        ]
    );
    assert_eq!(m.deadline(), Some(later + 100 * MS));

    let mut b = machine(12, 100, VrrpVersion::V3, 100 * MS);
    b.handle(Input::Startup, t0);
    assert!(b.handle(Input::Resume, later).is_empty());
    assert_eq!(b.deadline(), Some(later + b.master_down_interval()));
}
