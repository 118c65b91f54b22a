//! The sans-IO VRRP state machine (RFC 5798 section 6, with the RFC 3768 differences for v2).
//!
//! Inputs ([`Input`]) come in with an explicit `now`; outputs are [`Action`]s for a driver to
//! carry out (send an advert, add or remove the virtual addresses, announce them, run the
//! notify hook). The machine never reads a clock and never touches a socket, so tests drive
//! it with a virtual clock (see `sim_tests.rs`). Its one timer is [`Machine::deadline`]: the
//! driver feeds [`Input::Timer`] when that instant is reached.
//!
//! States: `Initialize` (not started or stopped), `Backup`, `Master`, and `Fault` (a tracked
//! check with weight 0 is failing: no adverts, no addresses, ignore the group).
//!
//! A binary upgrade hands an instance from one process to the next without a state change
//! the group could see: the old process stops feeding its machine (the driver's pause) and
//! reports [`Machine::inherited`]; the new one starts with [`Input::Adopt`] instead of
//! [`Input::Startup`] (a master stays master: advert at once, addresses kept), and an old
//! process whose successor failed picks up again with [`Input::Resume`].

use std::net::IpAddr;
use std::time::{Duration, Instant};

use portico_config::VrrpVersion;

use crate::packet::{Advert, Auth};

/// A VRRP router state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    Initialize,
    Backup,
    Master,
    Fault,
}

impl State {
    /// The name used by keepalived and by the `notify` hook.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Initialize => "INIT",
            State::Backup => "BACKUP",
            State::Master => "MASTER",
            State::Fault => "FAULT",
        }
    }
}

impl std::fmt::Display for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The priority tracked checks leave us with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effective {
    /// 1-254, or 255 for the address owner while nothing fails.
    Priority(u8),
    /// A weight-0 check is failing.
    Fault,
}

/// Effective priority = `base` + the weights of the failing checks, clamped to 1..=254; the
/// owner (255) stays 255 while nothing fails; a failing weight-0 check means FAULT.
/// `tracks` is `(weight, failing)`.
pub fn effective_priority(base: u8, tracks: &[(i32, bool)]) -> Effective {
    let mut sum: i64 = 0;
    let mut any = false;
    for &(weight, failing) in tracks {
        if failing {
            if weight == 0 {
                return Effective::Fault;
            }
            any = true;
            sum += i64::from(weight);
        }
    }
    if base == 255 && !any {
        return Effective::Priority(255);
    }
    let p = (i64::from(base) + sum).clamp(1, 254);
    Effective::Priority(p as u8) // clamped to 1..=254 above
}

/// The static parameters of one VRRP instance.
#[derive(Debug, Clone)]
pub struct Params {
    pub name: String,
    pub version: VrrpVersion,
    pub vrid: u8,
    /// The configured priority (1-255).
    pub priority: u8,
    pub advert_interval: Duration,
    pub virtual_ips: Vec<IpAddr>,
    /// v2 only; `Auth::None` when no `auth_pass` is set.
    pub auth: Auth,
    pub preempt: bool,
    pub preempt_delay: Duration,
    /// Our primary address on the interface: the advert source and the election tie-break.
    pub primary: IpAddr,
}

impl Params {
    /// The advertisement interval in centiseconds, as carried on the wire.
    pub fn interval_cs(&self) -> u16 {
        let cs = self.advert_interval.as_millis() / 10;
        cs.clamp(1, 0x0fff) as u16 // clamped to the 12-bit field
    }
}

/// What a previous process of this node ran an instance as (a binary upgrade hands it to
/// the next process: [`Input::Adopt`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Inherited {
    pub state: State,
    /// v3: the interval learned from the master's adverts (a backup's master-down timer
    /// depends on it); v2: the configured one.
    pub master_adver_interval: Duration,
}

/// One thing the machine was told.
#[derive(Debug, Clone, Copy)]
pub enum Input<'a> {
    /// Start the protocol (leave Initialize).
    Startup,
    /// Start the protocol as a previous process of this node left it (binary upgrade): from
    /// Master, stay Master (advert at once, the addresses kept: [`Action::AddVips`] only
    /// makes sure they are there) without passing through Backup and without a notify; from
    /// Backup, stay Backup (a fresh master-down timer). Anything else, or a failing weight-0
    /// check: as [`Input::Startup`].
    Adopt(Inherited),
    /// Start feeding again after the driver stopped (a handover that did not happen): a
    /// master adverts at once and makes sure of its addresses; a backup rearms its timer.
    Resume,
    /// A decoded advert that passed the IP-level checks (TTL), from `from`.
    Advert { from: IpAddr, advert: &'a Advert },
    /// [`Machine::deadline`] was reached.
    Timer,
    /// The tracked checks changed the effective priority.
    Track(Effective),
    /// Graceful stop: resign with priority 0 and release the addresses.
    Shutdown,
}

/// One thing the driver must do, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Send an advert with this priority (0 = resign).
    SendAdvert { priority: u8 },
    /// Add the virtual addresses to the interface.
    AddVips,
    /// Remove the virtual addresses from the interface.
    RemoveVips,
    /// Gratuitous ARP / unsolicited NA for every virtual address.
    Announce,
    /// The state changed: log it and run the `notify` hook.
    Notify(State),
}

/// Why an advert was dropped (kept for logs and tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    OtherVrid,
    Version,
    Auth,
    Interval,
    NotRunning,
    OwnPacket,
}

/// The state machine of one VRRP instance.
#[derive(Debug)]
pub struct Machine {
    p: Params,
    state: State,
    effective: Effective,
    /// v3: learned from the master's adverts; v2: our own interval.
    master_adver_interval: Duration,
    deadline: Option<Instant>,
    /// Preempt delay: when we first saw a lower-priority master while preempting is delayed.
    lower_master_since: Option<Instant>,
    warned_addresses: bool,
    warned_interval: bool,
    last_drop: Option<DropReason>,
    /// VRRPv2 authentication mismatches: logged at most once per [`AUTH_LOG_EVERY`].
    auth_log: LogLimit,
}

/// How often an authentication mismatch is logged (one per packet could flood the log:
/// a peer with another password sends one every advert interval, an attacker far more).
pub const AUTH_LOG_EVERY: Duration = Duration::from_secs(60);

/// At most one log line per period; counts what it held back.
#[derive(Debug, Default)]
pub(crate) struct LogLimit {
    last: Option<Instant>,
    held: u64,
    logged: u64,
}

impl LogLimit {
    /// `Some(held back since the last line)` when a line may be logged at `now`.
    pub(crate) fn allow(&mut self, now: Instant, every: Duration) -> Option<u64> {
        if self
            .last
            .is_some_and(|t| now.saturating_duration_since(t) < every)
        {
            self.held += 1;
            return None;
        }
        self.last = Some(now);
        self.logged += 1;
        Some(std::mem::take(&mut self.held))
    }
}

impl Machine {
    pub fn new(p: Params) -> Self {
        let effective = effective_priority(p.priority, &[]);
        let mai = p.advert_interval;
        Machine {
            p,
            state: State::Initialize,
            effective,
            master_adver_interval: mai,
            deadline: None,
            lower_master_since: None,
            warned_addresses: false,
            warned_interval: false,
            last_drop: None,
            auth_log: LogLimit::default(),
        }
    }

    /// Authentication-mismatch log lines written so far (rate-limited).
    pub fn auth_mismatch_logs(&self) -> u64 {
        self.auth_log.logged
    }

    pub fn state(&self) -> State {
        self.state
    }

    pub fn params(&self) -> &Params {
        &self.p
    }

    /// The priority we advertise (0 while in Fault).
    pub fn priority(&self) -> u8 {
        match self.effective {
            Effective::Priority(p) => p,
            Effective::Fault => 0,
        }
    }

    /// When the driver must feed [`Input::Timer`].
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// Why the last dropped advert was dropped.
    pub fn last_drop(&self) -> Option<DropReason> {
        self.last_drop
    }

    /// The skew time for our current priority.
    pub fn skew(&self) -> Duration {
        let prio = u32::from(self.priority());
        match self.p.version {
            VrrpVersion::V3 => self.master_adver_interval * (256 - prio) / 256,
            VrrpVersion::V2 => Duration::from_secs(1) * (256 - prio) / 256,
        }
    }

    /// 3 x Master_Adver_Interval + skew.
    pub fn master_down_interval(&self) -> Duration {
        self.master_adver_interval * 3 + self.skew()
    }

    /// What this instance runs as now, for a successor process ([`Input::Adopt`]).
    pub fn inherited(&self) -> Inherited {
        Inherited {
            state: self.state,
            master_adver_interval: self.master_adver_interval,
        }
    }

    /// Feeds one input; returns what the driver must do.
    pub fn handle(&mut self, input: Input<'_>, now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        match input {
            Input::Startup => self.startup(now, &mut out),
            Input::Adopt(from) => self.adopt(from, now, &mut out),
            Input::Resume => self.resume(now, &mut out),
            Input::Timer => self.timer(now, &mut out),
            Input::Advert { from, advert } => self.advert(from, advert, now, &mut out),
            Input::Track(e) => self.track(e, now, &mut out),
            Input::Shutdown => self.shutdown(&mut out),
        }
        out
    }

    fn startup(&mut self, now: Instant, out: &mut Vec<Action>) {
        if self.state != State::Initialize {
            return;
        }
        if self.effective == Effective::Fault {
            self.state = State::Fault;
            out.push(Action::Notify(State::Fault));
        } else if self.priority() == 255 {
            self.become_master(now, out);
        } else {
            self.become_backup(now, out);
        }
    }

    fn adopt(&mut self, from: Inherited, now: Instant, out: &mut Vec<Action>) {
        if self.state != State::Initialize {
            return;
        }
        match (from.state, self.effective) {
            (_, Effective::Fault) => self.startup(now, out),
            (State::Master, _) => {
                self.state = State::Master;
                self.lower_master_since = None;
                out.push(Action::SendAdvert {
                    priority: self.priority(),
                });
                out.push(Action::AddVips);
                self.deadline = Some(now + self.p.advert_interval);
            }
            (State::Backup, _) if self.priority() != 255 => {
                self.state = State::Backup;
                if self.p.version == VrrpVersion::V3 && !from.master_adver_interval.is_zero() {
                    self.master_adver_interval = from.master_adver_interval;
                }
                self.deadline = Some(now + self.master_down_interval());
            }
            _ => self.startup(now, out),
        }
    }

    fn resume(&mut self, now: Instant, out: &mut Vec<Action>) {
        match self.state {
            State::Master => {
                out.push(Action::SendAdvert {
                    priority: self.priority(),
                });
                // The successor may have lost them meanwhile (a peer won, then it failed).
                out.push(Action::AddVips);
                out.push(Action::Announce);
                self.deadline = Some(now + self.p.advert_interval);
            }
            State::Backup => self.deadline = Some(now + self.master_down_interval()),
            State::Initialize | State::Fault => {}
        }
    }

    fn become_master(&mut self, now: Instant, out: &mut Vec<Action>) {
        self.state = State::Master;
        self.lower_master_since = None;
        out.push(Action::SendAdvert {
            priority: self.priority(),
        });
        out.push(Action::AddVips);
        out.push(Action::Announce);
        out.push(Action::Notify(State::Master));
        self.deadline = Some(now + self.p.advert_interval);
    }

    fn become_backup(&mut self, now: Instant, out: &mut Vec<Action>) {
        let was_master = self.state == State::Master;
        self.state = State::Backup;
        self.master_adver_interval = self.p.advert_interval;
        if was_master {
            out.push(Action::RemoveVips);
        }
        out.push(Action::Notify(State::Backup));
        self.deadline = Some(now + self.master_down_interval());
    }

    fn timer(&mut self, now: Instant, out: &mut Vec<Action>) {
        match self.deadline {
            Some(d) if d <= now => {}
            _ => return,
        }
        match self.state {
            State::Backup => self.become_master(now, out),
            State::Master => {
                out.push(Action::SendAdvert {
                    priority: self.priority(),
                });
                self.deadline = Some(now + self.p.advert_interval);
            }
            State::Initialize | State::Fault => self.deadline = None,
        }
    }

    fn shutdown(&mut self, out: &mut Vec<Action>) {
        if self.state == State::Master {
            out.push(Action::SendAdvert { priority: 0 });
            out.push(Action::RemoveVips);
        }
        self.state = State::Initialize;
        self.deadline = None;
    }

    fn track(&mut self, e: Effective, now: Instant, out: &mut Vec<Action>) {
        if e == self.effective {
            return;
        }
        self.effective = e;
        match (self.state, e) {
            (State::Initialize, _) => {}
            (State::Master, Effective::Fault) => {
                out.push(Action::SendAdvert { priority: 0 });
                out.push(Action::RemoveVips);
                self.enter_fault(out);
            }
            (State::Backup, Effective::Fault) => self.enter_fault(out),
            (State::Fault, Effective::Priority(p)) => {
                if p == 255 {
                    self.become_master(now, out);
                } else {
                    self.become_backup(now, out);
                }
            }
            (State::Master, Effective::Priority(_)) => {
                // Tell the group at once so a better backup can preempt without waiting.
                out.push(Action::SendAdvert {
                    priority: self.priority(),
                });
                self.deadline = Some(now + self.p.advert_interval);
            }
            // Backup: the new skew applies from the next advert on (RFC 5798 6.4.2).
            (State::Backup, Effective::Priority(_)) | (State::Fault, Effective::Fault) => {}
        }
    }

    fn enter_fault(&mut self, out: &mut Vec<Action>) {
        self.state = State::Fault;
        self.deadline = None;
        out.push(Action::Notify(State::Fault));
    }

    fn drop_advert(&mut self, why: DropReason) {
        self.last_drop = Some(why);
    }

    fn advert(&mut self, from: IpAddr, a: &Advert, now: Instant, out: &mut Vec<Action>) {
        if a.vrid != self.p.vrid {
            return self.drop_advert(DropReason::OtherVrid);
        }
        if !matches!(self.state, State::Backup | State::Master) {
            return self.drop_advert(DropReason::NotRunning);
        }
        if from == self.p.primary {
            return self.drop_advert(DropReason::OwnPacket);
        }
        if a.version != self.p.version {
            tracing::debug!(instance = %self.p.name, %from, "VRRP version mismatch: dropped");
            return self.drop_advert(DropReason::Version);
        }
        if self.p.version == VrrpVersion::V2 && a.auth != self.p.auth {
            if let Some(held) = self.auth_log.allow(now, AUTH_LOG_EVERY) {
                tracing::warn!(instance = %self.p.name, %from, more_since_last = held,
                    "VRRPv2 authentication mismatch: dropped (logged at most once a minute)");
            }
            return self.drop_advert(DropReason::Auth);
        }
        if a.interval_cs != self.p.interval_cs() {
            if !self.warned_interval {
                self.warned_interval = true;
                tracing::warn!(instance = %self.p.name, %from, theirs_cs = a.interval_cs,
                    ours_cs = self.p.interval_cs(), "advert interval mismatch");
            }
            // RFC 3768 7.1: a v2 router discards it; v3 adopts the master's interval.
            if self.p.version == VrrpVersion::V2 {
                return self.drop_advert(DropReason::Interval);
            }
        }
        if !self.warned_addresses && !same_set(&a.addresses, &self.p.virtual_ips) {
            self.warned_addresses = true;
            tracing::warn!(instance = %self.p.name, %from, theirs = ?a.addresses,
                "virtual address list differs from ours (kept going)");
        }
        match self.state {
            State::Backup => self.advert_in_backup(a, now),
            State::Master => self.advert_in_master(from, a, now, out),
            State::Initialize | State::Fault => {}
        }
    }

    fn advert_in_backup(&mut self, a: &Advert, now: Instant) {
        if a.priority == 0 {
            // The master resigned: wait only the skew.
            self.deadline = Some(now + self.skew());
            return;
        }
        let ours = self.priority();
        let accept = !self.p.preempt || a.priority >= ours || self.preempt_delayed(now);
        if accept {
            if a.priority >= ours {
                self.lower_master_since = None;
            }
            if self.p.version == VrrpVersion::V3 {
                self.master_adver_interval = a.interval();
            }
            self.deadline = Some(now + self.master_down_interval());
        }
        // Otherwise discard it: the master-down timer runs out and we preempt.
    }

    /// With `preempt_delay`, a lower-priority master is still accepted until the delay since
    /// we first saw it has passed.
    fn preempt_delayed(&mut self, now: Instant) -> bool {
        if self.p.preempt_delay.is_zero() {
            return false;
        }
        let since = *self.lower_master_since.get_or_insert(now);
        now < since + self.p.preempt_delay
    }

    fn advert_in_master(&mut self, from: IpAddr, a: &Advert, now: Instant, out: &mut Vec<Action>) {
        let ours = self.priority();
        if a.priority == 0 {
            out.push(Action::SendAdvert { priority: ours });
            self.deadline = Some(now + self.p.advert_interval);
            return;
        }
        let they_win = a.priority > ours || (a.priority == ours && ip_gt(from, self.p.primary));
        if they_win {
            self.become_backup(now, out);
            if self.p.version == VrrpVersion::V3 {
                self.master_adver_interval = a.interval();
                self.deadline = Some(now + self.master_down_interval());
            }
        }
        if !they_win {
            // Another master with a lower priority (a healed partition): assert ourselves
            // now and refresh the segment's ARP caches, as keepalived does.
            out.push(Action::SendAdvert { priority: ours });
            out.push(Action::Announce);
            self.deadline = Some(now + self.p.advert_interval);
        }
    }
}

fn ip_gt(a: IpAddr, b: IpAddr) -> bool {
    match (a, b) {
        (IpAddr::V4(a), IpAddr::V4(b)) => u32::from(a) > u32::from(b),
        (IpAddr::V6(a), IpAddr::V6(b)) => u128::from(a) > u128::from(b),
        _ => false,
    }
}

fn same_set(a: &[IpAddr], b: &[IpAddr]) -> bool {
    a.len() == b.len() && a.iter().all(|x| b.contains(x))
}

#[cfg(test)]
#[path = "sim_tests.rs"]
mod sim_tests;

#[cfg(test)]
#[path = "adopt_tests.rs"]
mod adopt_tests;
