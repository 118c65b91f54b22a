//! The new process's side of a binary upgrade (see [`crate::upgrade`] for the old one's).
//!
//! Started by the old process with [`UPGRADE_FD_ENV`] (the handover socket) and
//! `PORTICO_LISTEN_FDS` (its listening sockets, `portico_net::inherit`), `portico run`:
//! 1. takes both at the very start of `main` ([`Handover::take_from_env`]), checking every
//!    descriptor and marking it close-on-exec again;
//! 2. offers the sockets to the binds of both planes ([`Handover::provide`]): the planes
//!    adopt them instead of binding, so the new process accepts on the very sockets the old
//!    one accepts on;
//! 3. right before it starts VRRP, asks the old process for its instances' roles
//!    ([`Handover::vrrp`], [`crate::vrrp_handover`]): the old one pauses them and the new one
//!    starts them as they were, a master as a master (no VIP flap);
//! 4. once the config is loaded, both planes serve and VRRP started, closes the inherited
//!    sockets its config no longer listens on, writes `READY <pid>` and waits (bounded) for
//!    the old process's `OK`: by then the old one told systemd the new main PID, so this
//!    process's own `READY=1`/watchdog notifications are accepted ([`Handover::ready`]);
//! 5. on any failure before that, writes `FAIL` and the reason, which the old process logs
//!    and publishes for `portico upgrade` ([`Handover::fail`]) before it resumes the VRRP
//!    instances it paused, and exits as `portico run` does.

use std::collections::HashMap;
use std::io::{Read as _, Write as _};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use portico_config::VrrpInstance;
use portico_net::inherit::{self, Group, LISTEN_FDS_ENV};
use portico_vrrp::Inherited;

use crate::exit::Failure;

/// The environment variable naming the handover socket's descriptor.
pub const UPGRADE_FD_ENV: &str = "PORTICO_UPGRADE_FD";

/// How long the new process waits for the old one's `OK` after `READY`.
const CONFIRM_WAIT: Duration = Duration::from_secs(10);

/// How long the new process waits for the old one's VRRP roles.
const VRRP_WAIT: Duration = Duration::from_secs(10);

/// What the old process handed over (nothing for a plain `portico run`).
#[derive(Debug, Default)]
pub struct Handover {
    socket: Option<UnixStream>,
    groups: Vec<Group>,
    /// The old process hands its VRRP instances over ([`crate::vrrp_handover::OFFER_ENV`]).
    vrrp_offered: bool,
    /// Why the inherited descriptors cannot be used (the upgrade then fails).
    problem: Option<String>,
}

impl Handover {
    /// Take the handed-over descriptors named in the environment. Call first thing in
    /// `main`, before any thread starts or any file is opened.
    pub fn take_from_env() -> Handover {
        let mut handover = Handover::default();
        if let Ok(fd) = std::env::var(UPGRADE_FD_ENV) {
            match fd
                .trim()
                .parse()
                .map_err(|_| "not a number".to_string())
                .and_then(|fd| crate::fds::adopt_unix(fd).map_err(|e| e.to_string()))
            {
                Ok(s) => handover.socket = Some(s),
                // Nobody to report to: log it (logging starts later) through stderr.
                Err(e) => eprintln!("portico: ignoring {UPGRADE_FD_ENV}={fd}: {e}"),
            }
        }
        handover.vrrp_offered = handover.socket.is_some()
            && std::env::var(crate::vrrp_handover::OFFER_ENV).is_ok_and(|v| v == "1");
        if let Ok(value) = std::env::var(LISTEN_FDS_ENV) {
            match adopt_all(&value) {
                Ok(groups) => handover.groups = groups,
                Err(e) => handover.problem = Some(e),
            }
        }
        handover
    }

    /// Whether this process was started by an upgrade.
    pub fn is_upgrade(&self) -> bool {
        self.socket.is_some()
    }

    /// Offer the inherited sockets to the planes' binds; `Err` when they were unusable.
    pub fn provide(&mut self) -> anyhow::Result<()> {
        if let Some(problem) = self.problem.take() {
            anyhow::bail!("cannot use the inherited listening sockets: {problem}");
        }
        inherit::provide(std::mem::take(&mut self.groups));
        Ok(())
    }

    /// Right before VRRP starts: the roles the old process hands over for `instances` (it
    /// pauses those it had unchanged). Empty for a plain start, an old process that does
    /// not offer it, or no answer (logged): the instances then start afresh.
    pub fn vrrp(&mut self, instances: &[VrrpInstance]) -> HashMap<String, Inherited> {
        if !self.vrrp_offered || instances.is_empty() {
            return HashMap::new();
        }
        let Some(socket) = self.socket.as_mut() else {
            return HashMap::new();
        };
        let asked = socket
            .write_all(crate::vrrp_handover::request(instances).as_bytes())
            .and_then(|()| socket.set_read_timeout(Some(VRRP_WAIT)))
            .and_then(|()| read_line(socket));
        match asked
            .map_err(|e| e.to_string())
            .and_then(|line| crate::vrrp_handover::parse_reply(&line))
        {
            Ok(handed) => {
                for (name, from) in &handed {
                    tracing::info!(instance = %name, state = %from.state, "upgrade: VRRP instance handed over");
                }
                handed
            }
            Err(e) => {
                tracing::warn!(error = %e, "upgrade: no VRRP roles from the old process: starting the instances afresh");
                HashMap::new()
            }
        }
    }

    /// Serving: close the inherited sockets no listener took, tell the old process, wait
    /// for its `OK` (it has named this process the main one to systemd by then).
    pub fn ready(&mut self) {
        for group in inherit::take_unclaimed() {
            tracing::info!(listen = %group.bound, "not in the config any more: closing the inherited listener");
        }
        let Some(mut socket) = self.socket.take() else {
            return;
        };
        let pid = std::process::id();
        if let Err(e) = socket.write_all(format!("READY {pid}\n").as_bytes()) {
            tracing::warn!(error = %e, "cannot tell the old process this one is ready");
            return;
        }
        let _ = socket.set_read_timeout(Some(CONFIRM_WAIT));
        let mut answer = [0u8; 3];
        match socket.read_exact(&mut answer) {
            Ok(()) if &answer == b"OK\n" => {
                tracing::info!("upgrade: the old process hands over and drains");
            }
            Ok(()) | Err(_) => tracing::warn!(
                "upgrade: no OK from the old process within {} s",
                CONFIRM_WAIT.as_secs()
            ),
        }
    }

    /// This process cannot serve: tell the old one why (it keeps serving).
    pub fn fail(&mut self, failure: &Failure) {
        if let Some(mut socket) = self.socket.take() {
            let _ = socket.write_all(format!("FAIL\n{failure}\n").as_bytes());
        }
    }
}

/// One line from the old process, read a byte at a time (the socket is read again later:
/// nothing may stay in a buffer).
fn read_line(socket: &mut UnixStream) -> std::io::Result<String> {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while line.len() < 64 * 1024 {
        socket.read_exact(&mut byte)?;
        if byte[0] == b'\n' {
            return String::from_utf8(line).map_err(std::io::Error::other);
        }
        line.push(byte[0]);
    }
    Err(std::io::Error::other("line too long"))
}

/// Every listener group of `value` ([`LISTEN_FDS_ENV`]), each descriptor checked and owned.
fn adopt_all(value: &str) -> Result<Vec<Group>, String> {
    let entries = inherit::parse(value)?;
    let mut seen = std::collections::HashSet::new();
    let mut groups = Vec::with_capacity(entries.len());
    for e in entries {
        let mut sockets = Vec::with_capacity(e.fds.len());
        for fd in e.fds {
            if !seen.insert(fd) {
                return Err(format!("descriptor {fd} is listed twice"));
            }
            sockets.push(crate::fds::adopt_listener(fd, e.bound).map_err(|err| err.to_string())?);
        }
        groups.push(Group {
            configured: e.configured,
            bound: e.bound,
            sockets,
        });
    }
    Ok(groups)
}
