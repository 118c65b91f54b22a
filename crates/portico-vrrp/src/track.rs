//! Tracked checks that lower an instance's priority while they fail.
//!
//! - listeners: connect to each of the node's own HTTP listeners (a wildcard address is
//!   probed on loopback), send `HEAD / HTTP/1.0`, and expect an HTTP status line back (a TLS
//!   alert record also counts: the listener is alive and speaks TLS); each TCP stream
//!   listener must be bound and listening (checked without connecting: a connection would
//!   reach a server and write an access-log line every interval, and a stream has no
//!   protocol of its own to answer with);
//! - upstream: asks a callback whether the named upstream has a usable server;
//! - script: keepalived semantics: run it every `interval`, exit status 0 = ok, killed and
//!   failed when it takes longer than the interval. As keepalived's
//!   `enable_script_security`, a script that others could change is never run (it fails):
//!   the file and every folder above it (symlinks resolved) must belong to root or to the
//!   user Portico runs as and not be writable by group or others (a sticky folder owned by
//!   root, such as `/tmp`, is fine).
//!
//! Each check runs in its own task; a combiner task turns the set of failing checks into an
//! [`Effective`] priority (see [`crate::machine::effective_priority`]), logs every change and
//! publishes it on a `watch` channel that the instance driver follows.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::machine::{Effective, effective_priority};

/// Tells whether an upstream (by name) has at least one usable server.
pub type UpstreamUsable = Arc<dyn Fn(&str) -> bool + Send + Sync>;

/// What a tracked check looks at.
#[derive(Clone)]
pub enum Check {
    /// The node's own listeners: `http` ones answer an HTTP probe, `tcp` (stream) ones are
    /// bound and listening.
    Listeners {
        http: Vec<SocketAddr>,
        tcp: Vec<SocketAddr>,
    },
    Upstream {
        name: String,
        usable: UpstreamUsable,
    },
    Script {
        path: PathBuf,
        interval: Duration,
    },
}

impl fmt::Debug for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Check::Listeners { http, tcp } if tcp.is_empty() => write!(f, "listeners {http:?}"),
            Check::Listeners { http, tcp } => write!(f, "listeners {http:?} streams {tcp:?}"),
            Check::Upstream { name, .. } => write!(f, "upstream {name}"),
            Check::Script { path, .. } => write!(f, "script {}", path.display()),
        }
    }
}

/// A check and the weight added to the priority while it fails (0 = FAULT).
#[derive(Debug, Clone)]
pub struct Tracked {
    pub check: Check,
    pub weight: i32,
}

/// One tracked check and whether it fails now (for the admin API).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackState {
    /// What it looks at, e.g. `upstream app` or `script /usr/local/bin/check`.
    pub check: String,
    pub weight: i32,
    pub failing: bool,
}

/// Running checks: the effective priority, each check's verdict, and the tasks to abort on
/// shutdown.
#[derive(Debug)]
pub struct Tracker {
    pub effective: watch::Receiver<Effective>,
    pub checks: watch::Receiver<Vec<TrackState>>,
    tasks: Vec<JoinHandle<()>>,
}

impl Tracker {
    pub fn stop(&self) {
        self.tasks.iter().for_each(JoinHandle::abort);
    }
}

impl Drop for Tracker {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Starts the checks of instance `name` (configured priority `base`). Listener and upstream
/// checks run every `every` (the advert interval, at least 100 ms). Must run inside tokio.
pub fn start(name: &str, base: u8, tracked: Vec<Tracked>, every: Duration) -> Tracker {
    let every = every.max(Duration::from_millis(100));
    let (tx, effective) = watch::channel(effective_priority(base, &[]));
    let (ch_tx, mut ch_rx) = mpsc::channel::<(usize, bool)>(16);
    let mut state: Vec<(i32, bool)> = tracked.iter().map(|t| (t.weight, false)).collect();
    let names: Vec<String> = tracked.iter().map(|t| t.check.to_string()).collect();
    let (checks_tx, checks) = watch::channel(verdicts(&names, &state));
    let mut tasks = Vec::new();
    for (i, t) in tracked.into_iter().enumerate() {
        if let Check::Script { path, .. } = &t.check
            && let Some(why) = script_insecure(path)
        {
            tracing::warn!(instance = %name, script = %path.display(), reason = %why,
                "track script refused (as keepalived's enable_script_security): it counts as failing");
        }
        let ch_tx = ch_tx.clone();
        tasks.push(tokio::spawn(async move {
            let period = match &t.check {
                Check::Script { interval, .. } => *interval,
                _ => every,
            };
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut last = None;
            loop {
                tick.tick().await;
                let ok = run_check(&t.check, period).await;
                if last != Some(ok) {
                    last = Some(ok);
                    if ch_tx.send((i, !ok)).await.is_err() {
                        return;
                    }
                }
            }
        }));
    }
    drop(ch_tx);
    let name = name.to_owned();
    tasks.push(tokio::spawn(async move {
        while let Some((i, failing)) = ch_rx.recv().await {
            if state[i].1 != failing {
                state[i].1 = failing;
                let what = if failing { "failing" } else { "ok again" };
                tracing::info!(instance = %name, check = %names[i], weight = state[i].0, "tracked check {what}");
                checks_tx.send_replace(verdicts(&names, &state));
            }
            let e = effective_priority(base, &state);
            if *tx.borrow() != e {
                tracing::info!(instance = %name, old = ?*tx.borrow(), new = ?e, "effective priority changed");
                tx.send_replace(e);
            }
        }
    }));
    Tracker {
        effective,
        checks,
        tasks,
    }
}

/// Each check's name, weight and verdict.
fn verdicts(names: &[String], state: &[(i32, bool)]) -> Vec<TrackState> {
    names
        .iter()
        .zip(state)
        .map(|(check, &(weight, failing))| TrackState {
            check: check.clone(),
            weight,
            failing,
        })
        .collect()
}

async fn run_check(check: &Check, period: Duration) -> bool {
    match check {
        Check::Listeners { http, tcp } => {
            let timeout = period.clamp(Duration::from_millis(500), Duration::from_secs(2));
            for a in http {
                if !probe_listener(*a, timeout).await {
                    return false;
                }
            }
            tcp.iter().all(|a| is_listening(*a))
        }
        Check::Upstream { name, usable } => usable(name),
        Check::Script { path, interval } => run_script(path, *interval).await,
    }
}

/// Where to probe a listener bound to `addr` (wildcards are probed on loopback).
pub fn probe_target(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V4(a) if a.is_unspecified() => {
            SocketAddr::new(Ipv4Addr::LOCALHOST.into(), addr.port())
        }
        IpAddr::V6(a) if a.is_unspecified() => {
            SocketAddr::new(Ipv6Addr::LOCALHOST.into(), addr.port())
        }
        _ => addr,
    }
}

/// True when the listener accepts and answers `HEAD / HTTP/1.0` within `timeout`.
pub async fn probe_listener(addr: SocketAddr, timeout: Duration) -> bool {
    let probe = async {
        let mut s = TcpStream::connect(probe_target(addr)).await.ok()?;
        s.write_all(b"HEAD / HTTP/1.0\r\n\r\n").await.ok()?;
        let mut buf = [0u8; 8];
        let mut n = 0;
        while n < 5 {
            let k = s.read(&mut buf[n..]).await.ok()?;
            if k == 0 {
                break;
            }
            n += k;
            if buf[0] == 0x15 {
                break; // TLS alert: alive, speaks TLS
            }
        }
        Some(buf[..n].starts_with(b"HTTP/") || (n > 0 && buf[0] == 0x15))
    };
    matches!(tokio::time::timeout(timeout, probe).await, Ok(Some(true)))
}

/// Whether a socket listens on `addr` (a TCP stream listener), without connecting: a probe
/// socket (`SO_REUSEADDR`, no `SO_REUSEPORT`) cannot bind an address a listener holds.
/// An address that is not (or no longer) local fails too. (A socket bound there without
/// `SO_REUSEADDR`, listening or not, counts as a listener: no Portico listener is such.)
pub fn is_listening(addr: SocketAddr) -> bool {
    let Ok(probe) = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    ) else {
        return false;
    };
    if addr.is_ipv6() && probe.set_only_v6(true).is_err() {
        return false;
    }
    if probe.set_reuse_address(true).is_err() {
        return false;
    }
    matches!(probe.bind(&addr.into()), Err(e) if e.kind() == std::io::ErrorKind::AddrInUse)
}

/// Why `path` may not run as a track script: someone other than root or this process's
/// user could change it (see the module doc). `None`: safe.
pub fn script_insecure(path: &std::path::Path) -> Option<String> {
    use std::os::unix::fs::MetadataExt as _;
    let real = match path.canonicalize() {
        Ok(p) => p,
        Err(e) => return Some(format!("cannot resolve {}: {e}", path.display())),
    };
    let me = std::fs::metadata("/proc/self").map(|m| m.uid()).ok();
    let mut at = Some(real.as_path());
    let mut is_file = true;
    while let Some(p) = at {
        let meta = match std::fs::metadata(p) {
            Ok(m) => m,
            Err(e) => return Some(format!("cannot read {}: {e}", p.display())),
        };
        let owner_ok = meta.uid() == 0 || Some(meta.uid()) == me;
        let sticky_root = !is_file && meta.mode() & 0o1000 != 0 && meta.uid() == 0;
        if !owner_ok {
            return Some(format!("{} belongs to uid {}", p.display(), meta.uid()));
        }
        if meta.mode() & 0o022 != 0 && !sticky_root {
            return Some(format!(
                "{} is writable by group or others (mode {:o})",
                p.display(),
                meta.mode() & 0o7777
            ));
        }
        is_file = false;
        at = p.parent();
    }
    None
}

/// keepalived's `vrrp_script`: exit 0 within `timeout` = ok. A script others could change
/// ([`script_insecure`]) is not run and fails.
pub async fn run_script(path: &std::path::Path, timeout: Duration) -> bool {
    if let Some(why) = script_insecure(path) {
        tracing::debug!(script = %path.display(), reason = %why, "track script refused");
        return false;
    }
    let child = tokio::process::Command::new(path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn();
    let Ok(mut child) = child else {
        tracing::warn!(script = %path.display(), "track script cannot be started");
        return false;
    };
    match tokio::time::timeout(timeout, child.wait()).await {
        Ok(Ok(status)) => status.success(),
        _ => {
            let _ = child.kill().await;
            false
        }
    }
}

#[cfg(test)]
#[path = "track_tests.rs"]
mod tests;
