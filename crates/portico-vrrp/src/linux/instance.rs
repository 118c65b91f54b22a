//! One running VRRP instance: the state machine wired to the socket, the interface's
//! addresses, announcements, tracked checks and the notify hook.
//!
//! [`start`] checks the interface, removes a virtual address a crashed run may have left
//! behind, opens the socket and spawns the instance task. The task waits on the socket, the
//! machine's deadline, the effective priority and its control channel, feeds the machine and
//! carries out its actions. [`InstanceHandle::shutdown`] resigns (priority-0 advert) and
//! removes the virtual addresses before returning.
//!
//! A binary upgrade hands the instance over without a state change the group could see:
//! the old process [`InstanceHandle::pause`]s it (no more adverts, timers or received
//! packets acted on; it reports what it runs as), the new one calls [`start`] with that
//! [`Inherited`] role (a master keeps the addresses already on the interface and adverts at
//! once), and the old one's [`InstanceHandle::shutdown`] of a paused instance then leaves
//! the network alone: no priority-0 advert, addresses kept. Should the new process fail,
//! [`InstanceHandle::resume`] picks up where the pause stopped.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use portico_config::{IpPrefix, VrrpInstance};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use super::DriverError;
use super::announce::announce;
use super::iface::Interface;
use super::netlink::{add_address, del_address};
use super::sock::VrrpSocket;
use crate::machine::{Action, Inherited, Input, Machine, Params, State};
use crate::packet::{self, Advert, Auth};
use crate::track::{self, TrackState, Tracked, Tracker};

/// Name, state and effective priority of an instance (for logs and the admin API).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    pub name: String,
    pub state: State,
    pub priority: u8,
    /// State changes since start (INIT -> BACKUP counts).
    pub transitions: u64,
}

/// What the instance task is told.
#[derive(Debug)]
enum Ctl {
    /// Stop: resign and remove the addresses unless paused.
    Stop,
    /// Stop acting (a successor process takes over); answers what it ran as.
    Pause(oneshot::Sender<Inherited>),
    /// Act again after a pause.
    Resume,
}

/// A running instance.
#[derive(Debug)]
pub struct InstanceHandle {
    status: watch::Receiver<Status>,
    tracks: watch::Receiver<Vec<TrackState>>,
    ctl: mpsc::UnboundedSender<Ctl>,
    task: JoinHandle<()>,
}

impl InstanceHandle {
    pub fn status(&self) -> Status {
        self.status.borrow().clone()
    }

    /// Each tracked check and whether it fails now.
    pub fn tracks(&self) -> Vec<TrackState> {
        self.tracks.borrow().clone()
    }

    /// A receiver that sees every change of the tracked checks' verdicts.
    pub fn watch_tracks(&self) -> watch::Receiver<Vec<TrackState>> {
        self.tracks.clone()
    }

    /// A receiver that sees every status change.
    pub fn watch(&self) -> watch::Receiver<Status> {
        self.status.clone()
    }

    /// Stop acting for a successor process (binary upgrade): no more adverts, timers or
    /// received adverts acted on, the addresses left as they are. Returns what the instance
    /// ran as (`None` if its task has ended).
    pub async fn pause(&self) -> Option<Inherited> {
        let (tx, rx) = oneshot::channel();
        self.ctl.send(Ctl::Pause(tx)).ok()?;
        rx.await.ok()
    }

    /// Act again after [`InstanceHandle::pause`] (the successor did not take over): a
    /// master adverts at once.
    pub fn resume(&self) {
        let _ = self.ctl.send(Ctl::Resume);
    }

    /// Graceful stop: priority-0 advert if master, virtual addresses removed; a paused
    /// instance (handed over) stops without touching the network.
    pub async fn shutdown(mut self) {
        let _ = self.ctl.send(Ctl::Stop);
        if tokio::time::timeout(Duration::from_secs(5), &mut self.task)
            .await
            .is_err()
        {
            self.task.abort();
        }
    }
}

/// Starts one instance; must run inside a tokio runtime. `inherited`: the role a previous
/// process of this node handed over (binary upgrade), started as instead of from INIT.
pub async fn start(
    cfg: &VrrpInstance,
    tracked: Vec<Tracked>,
    inherited: Option<Inherited>,
) -> Result<InstanceHandle, DriverError> {
    let iface = Interface::lookup(&cfg.interface)?;
    let v6 = cfg.virtual_ips.first().is_some_and(|p| p.addr.is_ipv6());
    let adopt_master = inherited.is_some_and(|i| i.state == State::Master);
    if cfg.priority != 255 && !adopt_master {
        // A crashed run (SIGKILL) leaves its addresses behind: a stale duplicate VIP. (A
        // master handed over keeps them: they are the old process's, now this one's.)
        for vip in &cfg.virtual_ips {
            del_address(iface.index, vip)?;
        }
    }
    let primary = iface.primary(v6, cfg.unicast_peers.first().copied())?;
    let sock = VrrpSocket::open(&iface, primary, &cfg.unicast_peers)?;
    let params = Params {
        name: cfg.name.clone(),
        version: cfg.version,
        vrid: cfg.vrid,
        priority: cfg.priority,
        advert_interval: cfg.advert_interval,
        virtual_ips: cfg.virtual_ips.iter().map(|p| p.addr).collect(),
        auth: cfg.auth_pass.as_deref().map_or(Auth::None, Auth::simple),
        preempt: cfg.preempt,
        preempt_delay: cfg.preempt_delay,
        primary,
    };
    let tracker = track::start(&cfg.name, cfg.priority, tracked, cfg.advert_interval);
    let machine = Machine::new(params);
    let (status_tx, status) = watch::channel(Status {
        name: cfg.name.clone(),
        state: State::Initialize,
        priority: machine.priority(),
        transitions: 0,
    });
    tracing::info!(instance = %cfg.name, interface = %cfg.interface, %primary, vrid = cfg.vrid,
        version = ?cfg.version, priority = cfg.priority, "VRRP instance starting");
    let tracks = tracker.checks.clone();
    let (ctl_tx, ctl_rx) = mpsc::unbounded_channel();
    let run = Running {
        m: machine,
        sock,
        iface,
        vips: cfg.virtual_ips.clone(),
        notify: cfg.notify.clone(),
        status: status_tx,
        announcer: None,
    };
    let task = tokio::spawn(run.run(tracker, ctl_rx, inherited));
    Ok(InstanceHandle {
        status,
        tracks,
        ctl: ctl_tx,
        task,
    })
}

struct Running {
    m: Machine,
    sock: VrrpSocket,
    iface: Interface,
    vips: Vec<IpPrefix>,
    notify: Option<PathBuf>,
    status: watch::Sender<Status>,
    announcer: Option<JoinHandle<()>>,
}

impl Running {
    async fn run(
        mut self,
        tracker: Tracker,
        mut ctl: mpsc::UnboundedReceiver<Ctl>,
        inherited: Option<Inherited>,
    ) {
        let mut effective = tracker.effective.clone();
        let initial = *effective.borrow_and_update();
        self.feed(Input::Track(initial)).await;
        match inherited {
            Some(from) => {
                tracing::info!(instance = %self.m.params().name, handed_over = %from.state,
                    "VRRP instance adopted from the previous process");
                // A fall back to a start from INIT (a failing check, the owner) logs its
                // state change as a start does.
                self.feed(Input::Adopt(from)).await;
            }
            None => self.feed(Input::Startup).await,
        }
        let mut buf = vec![0u8; 4096];
        let mut track_open = true;
        let mut paused = false;
        loop {
            if paused {
                // Handed over: only the control channel counts (queued adverts wait in the
                // socket for a resume).
                match ctl.recv().await {
                    Some(Ctl::Resume) => {
                        paused = false;
                        tracing::info!(instance = %self.m.params().name, state = %self.m.state(),
                            "VRRP instance resumed (not handed over)");
                        self.feed(Input::Resume).await;
                        let e = *effective.borrow_and_update();
                        self.feed(Input::Track(e)).await;
                    }
                    Some(Ctl::Pause(tx)) => {
                        let _ = tx.send(self.m.inherited());
                    }
                    Some(Ctl::Stop) | None => break,
                }
                continue;
            }
            let deadline = self.m.deadline().map(tokio::time::Instant::from_std);
            let sleep = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            };
            // Biased: adverts already queued in the socket are read before an expired
            // timer is acted on, so a process that was descheduled for a while does not
            // take over from a master whose adverts are sitting in its receive buffer.
            tokio::select! {
                biased;
                c = ctl.recv() => match c {
                    Some(Ctl::Stop) | None => break,
                    Some(Ctl::Pause(tx)) => {
                        paused = true;
                        let from = self.m.inherited();
                        tracing::info!(instance = %self.m.params().name, state = %from.state,
                            "VRRP instance paused: handed over to the new process");
                        let _ = tx.send(from);
                    }
                    Some(Ctl::Resume) => {}
                },
                r = self.sock.recv(&mut buf) => match r {
                    Ok(rx) => {
                        if let Some((src, advert)) = self.check(rx) {
                            self.feed(Input::Advert { from: src, advert: &advert }).await;
                        }
                    }
                    Err(e) => {
                        tracing::debug!(instance = %self.m.params().name, "VRRP receive: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
                r = effective.changed(), if track_open => match r {
                    Ok(()) => {
                        let e = *effective.borrow_and_update();
                        self.feed(Input::Track(e)).await;
                    }
                    Err(_) => track_open = false,
                },
                () = sleep => self.feed(Input::Timer).await,
            }
        }
        tracker.stop();
        if paused {
            if let Some(t) = self.announcer.take() {
                t.abort();
            }
            tracing::info!(instance = %self.m.params().name,
                "VRRP instance stopped (handed over: addresses left to the new process)");
        } else {
            self.feed(Input::Shutdown).await;
            tracing::info!(instance = %self.m.params().name, "VRRP instance stopped");
        }
    }

    /// IP-level and codec checks; returns the advert to feed.
    fn check(&self, rx: super::sock::Received<'_>) -> Option<(IpAddr, Advert)> {
        let src = rx.src;
        match admit(&rx, self.sock.accepts(src)) {
            Ok(a) => Some((src, a)),
            Err(why) => {
                tracing::debug!(instance = %self.m.params().name, %src, "VRRP packet dropped: {why}");
                None
            }
        }
    }

    async fn feed(&mut self, input: Input<'_>) {
        let actions = self.m.handle(input, Instant::now());
        for a in actions {
            self.act(a).await;
        }
        let (was, transitions) = {
            let s = self.status.borrow();
            (s.state, s.transitions)
        };
        let state = self.m.state();
        let st = Status {
            name: self.m.params().name.clone(),
            state,
            priority: self.m.priority(),
            transitions: transitions + u64::from(state != was),
        };
        self.status.send_if_modified(|s| {
            let changed = *s != st;
            *s = st;
            changed
        });
    }

    async fn act(&mut self, a: Action) {
        let name = self.m.params().name.clone();
        match a {
            Action::SendAdvert { priority } => {
                let p = self.m.params();
                let advert = Advert {
                    version: p.version,
                    vrid: p.vrid,
                    priority,
                    interval_cs: p.interval_cs(),
                    auth: p.auth,
                    addresses: p.virtual_ips.clone(),
                };
                if let Err(e) = self.sock.send(&advert).await {
                    tracing::warn!(instance = %name, "sending VRRP advert: {e}");
                }
            }
            Action::AddVips => {
                for vip in &self.vips {
                    if let Err(e) = add_address(self.iface.index, vip) {
                        tracing::error!(instance = %name, "{e}");
                    }
                }
            }
            Action::RemoveVips => {
                if let Some(t) = self.announcer.take() {
                    t.abort();
                }
                for vip in &self.vips {
                    if let Err(e) = del_address(self.iface.index, vip) {
                        tracing::error!(instance = %name, "{e}");
                    }
                }
            }
            Action::Announce => {
                if let Some(t) = self.announcer.take() {
                    t.abort();
                }
                let iface = self.iface.clone();
                let vips: Vec<IpAddr> = self.vips.iter().map(|p| p.addr).collect();
                self.announcer = Some(tokio::spawn(announce_burst(name, iface, vips)));
            }
            Action::Notify(state) => {
                let priority = self.m.priority();
                tracing::info!(instance = %name, %state, priority, "VRRP state change");
                if let Some(cmd) = &self.notify {
                    spawn_notify(cmd.clone(), name, state);
                }
            }
        }
    }
}

/// The IP-level and codec checks of one received packet (`peer_ok`: the source is allowed).
fn admit(rx: &super::sock::Received<'_>, peer_ok: bool) -> Result<Advert, String> {
    // RFC 5798 §5.1.1.3 (IPv4 TTL) and §8.1 (IPv6 hop limit): only from the link itself.
    match rx.ttl {
        Some(255) => {}
        Some(ttl) if rx.src.is_ipv6() => return Err(format!("hop limit {ttl}, not 255")),
        Some(ttl) => return Err(format!("TTL {ttl}, not 255")),
        None => return Err("no TTL / hop limit reported with the packet".into()),
    }
    if !peer_ok {
        return Err("not from a configured unicast peer".into());
    }
    packet::decode(rx.payload, rx.src, rx.dst).map_err(|e| e.to_string())
}

/// keepalived's defaults: 3 announcements now and 3 more 1 s later
/// (`vrrp_garp_master_repeat 3`, `vrrp_garp_master_delay 1`).
async fn announce_burst(name: String, iface: Interface, vips: Vec<IpAddr>) {
    for round in 0..2 {
        if round == 1 {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        for _ in 0..3 {
            for e in announce(&iface, &vips) {
                tracing::warn!(instance = %name, "gratuitous ARP / NA: {e}");
            }
        }
    }
}

/// Runs `notify INSTANCE STATE` without blocking the instance; reaps it in the background.
fn spawn_notify(cmd: PathBuf, name: String, state: State) {
    tokio::spawn(async move {
        let child = tokio::process::Command::new(&cmd)
            .arg(&name)
            .arg(state.as_str())
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn();
        match child {
            Ok(mut c) => {
                if tokio::time::timeout(Duration::from_secs(30), c.wait())
                    .await
                    .is_err()
                {
                    tracing::warn!(instance = %name, notify = %cmd.display(), "notify still running after 30 s: killed");
                    let _ = c.kill().await;
                }
            }
            Err(e) => tracing::warn!(instance = %name, notify = %cmd.display(), "notify: {e}"),
        }
    });
}

#[cfg(test)]
mod tests {
    use super::super::sock::Received;
    use super::*;

    #[test]
    fn an_ipv6_advert_needs_hop_limit_255() {
        // VRRPv3 over IPv6 from fe80::11 to ff02::12, VRID 51, priority 150, one address.
        let src: IpAddr = "fe80::11".parse().unwrap_or_else(|e| panic!("{e}"));
        let dst: IpAddr = "ff02::12".parse().unwrap_or_else(|e| panic!("{e}"));
        let vip: IpAddr = "fd00::100".parse().unwrap_or_else(|e| panic!("{e}"));
        let advert = Advert {
            version: portico_config::VrrpVersion::V3,
            vrid: 51,
            priority: 150,
            interval_cs: 100,
            auth: packet::Auth::None,
            addresses: vec![vip],
        };
        let pkt = packet::encode(&advert, src, dst).unwrap_or_else(|e| panic!("{e}"));
        let rx = |ttl| Received {
            src,
            dst,
            ttl,
            payload: &pkt,
        };
        assert!(admit(&rx(Some(255)), true).is_ok_and(|a| a.priority == 150));
        assert!(admit(&rx(Some(64)), true).is_err_and(|e| e.contains("hop limit 64")));
        assert!(admit(&rx(None), true).is_err());
    }

    #[test]
    fn admits_only_ttl_255_from_peers_with_valid_packets() {
        // keepalived, VRRPv3, VRID 51, priority 150, from 10.200.0.11 to the group.
        let pkt = [
            0x31, 0x33, 0x96, 0x01, 0x00, 0x64, 0x41, 0xd9, 0x0a, 0xc8, 0x00, 0x64,
        ];
        let src = IpAddr::from([10, 200, 0, 11]);
        let dst = IpAddr::from([224, 0, 0, 18]);
        let rx = |ttl| Received {
            src,
            dst,
            ttl,
            payload: &pkt,
        };
        assert!(admit(&rx(Some(255)), true).is_ok_and(|a| a.priority == 150));
        assert!(admit(&rx(None), true).is_err(), "not known: refused");
        assert!(admit(&rx(Some(254)), true).is_err_and(|e| e.contains("TTL 254")));
        assert!(admit(&rx(Some(255)), false).is_err());
        let bad = Received {
            src: IpAddr::from([10, 200, 0, 12]),
            ..rx(Some(255))
        };
        assert!(admit(&bad, true).is_err_and(|e| e.contains("checksum")));
    }
}
