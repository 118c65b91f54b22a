//! Binary upgrade without dropping connections: SIGUSR2 in the running process (as nginx's
//! `USR2`), and `portico upgrade [-c FILE]` ([`request`]). The new process's side is
//! [`crate::handover`].
//!
//! The running (old) process, on SIGUSR2 ([`start`]):
//! 1. finds the binary at its own path (`/proc/self/exe`: the file now at that path, i.e.
//!    the replaced one) and the descriptors of every listener of both planes (each
//!    `SO_REUSEPORT` group, one socket per worker);
//! 2. starts it as `portico run -c CONFIG` (its own config file, read anew), with those
//!    descriptors inherited and named in `PORTICO_LISTEN_FDS`, and one end of a unix socket
//!    pair in `PORTICO_UPGRADE_FD`;
//! 3. waits up to [`READY_WAIT`] for `READY <pid>` on it: the new process then accepts on
//!    the same sockets (they were never closed, so nothing was refused meanwhile). Before
//!    that, the new process asks for the VRRP roles (`VRRP ...`, [`crate::vrrp_handover`]):
//!    this process pauses the instances the new config has unchanged (no more adverts, the
//!    VIPs left on the interface) and answers their roles, which the new process starts
//!    as. A `FAIL` with the reason, an exit, or no answer in time: the new process is
//!    stopped if still there, the paused VRRP instances resume, the reason is logged and
//!    published, and this one keeps serving as before;
//! 4. on `READY`, names the new process the main one to systemd (`MAINPID=`), publishes the
//!    outcome, answers `OK`, and drains as on SIGTERM (the caller: `run.rs`): requests in
//!    flight finish, WebSockets get close 1001, TCP streams run until they close, all within
//!    `shutdown_grace`. It leaves the pid file (the new process wrote its own) in place, and
//!    the VIPs of the instances it handed over (the new process holds them now).
//!
//! The outcome goes to `state_dir/upgrade.status` (the reload status format, its own
//! generation counter), which `portico upgrade` waits for: exit 0 upgraded, 1 the new
//! process refused the config, 2 the new binary could not start or did not get ready.

use std::os::fd::AsRawFd as _;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use portico_config::Config;
use portico_net::inherit::{self, Entry, LISTEN_FDS_ENV};
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};

use crate::check;
use crate::exit::Failure;
use crate::ha::HaHandle;
use crate::handover::UPGRADE_FD_ENV;
use crate::notify::Notifier;
use crate::plane::DataPlane;
use crate::reload::{Outcome, Status};

/// How long the old process waits for the new one to be ready.
pub const READY_WAIT: Duration = Duration::from_secs(60);

/// How long `portico upgrade` waits for the outcome (the old process's wait, and margin).
const REQUEST_WAIT: Duration = Duration::from_secs(75);

const STATUS_FILE: &str = "upgrade.status";

/// A new process that is serving and waits for the old one's `OK`.
pub struct NewProcess {
    pub pid: u32,
    socket: tokio::net::UnixStream,
}

impl NewProcess {
    /// Tell the new process it is the main one now.
    pub async fn confirm(mut self) {
        if let Err(e) = self.socket.write_all(b"OK\n").await {
            tracing::warn!(error = %e, pid = self.pid, "cannot confirm the upgrade to the new process");
        }
    }
}

/// Why an upgrade did not happen (the old process serves on).
#[derive(Debug)]
pub struct Refused {
    /// The new process did not accept the config (exit 1 of `portico upgrade`).
    pub invalid_config: bool,
    pub reason: String,
}

impl Refused {
    fn start(reason: impl Into<String>) -> Refused {
        Refused {
            invalid_config: false,
            reason: reason.into(),
        }
    }
}

/// SIGUSR2 in the control loop: [`start`] the new binary; on success name it the main
/// process to systemd, publish the outcome and confirm (true: the caller drains and exits);
/// on failure log and publish why (false: this process serves on).
pub async fn hand_over(
    config: &Config,
    plane: &DataPlane,
    ha: &mut HaHandle,
    notify: &Notifier,
) -> bool {
    tracing::info!("SIGUSR2: binary upgrade");
    match start(config, plane, ha).await {
        Ok(new) => {
            let pid = new.pid;
            // NotifyAccess=main: only the main process may name another one main; from now on
            // the new process's notifications (READY=1, WATCHDOG=1) are accepted.
            notify.send(&format!(
                "MAINPID={pid}\nSTATUS=upgraded: process {pid} serves, {} drains",
                std::process::id()
            ));
            let text = format!(
                "upgraded: process {pid} serves on the same listeners; process {} drains (shutdown_grace {} s)\n",
                std::process::id(),
                config.server.shutdown_grace.as_secs()
            );
            tracing::info!(new_pid = pid, "{}", text.trim_end());
            publish(config, Outcome::Applied, text);
            new.confirm().await;
            true
        }
        Err(refused) => {
            tracing::error!("upgrade failed, still serving: {}", refused.reason);
            let outcome = if refused.invalid_config {
                Outcome::Invalid
            } else {
                Outcome::Failed
            };
            publish(
                config,
                outcome,
                format!("upgrade failed, still serving: {}\n", refused.reason),
            );
            false
        }
    }
}

/// SIGUSR2: start the binary at this process's path on the same listening sockets and wait
/// until it serves, handing it the VRRP instances it asks for (see the module doc). On
/// `Err` nothing changed (VRRP instances paused meanwhile act again).
pub async fn start(
    config: &Config,
    plane: &DataPlane,
    ha: &mut HaHandle,
) -> Result<NewProcess, Refused> {
    let exe = own_binary().map_err(|e| Refused::start(format!("{e:#}")))?;
    let listeners = plane.handover_addrs();
    let bound: Vec<_> = listeners.iter().map(|(_, b)| *b).collect();
    let found = crate::fds::listening(&bound)
        .map_err(|e| Refused::start(format!("cannot list this process's sockets: {e}")))?;
    let mut entries = Vec::with_capacity(listeners.len());
    for (configured, bound) in listeners {
        let fds = found
            .iter()
            .find(|(a, _)| *a == bound)
            .map(|(_, fds)| fds.clone())
            .ok_or_else(|| {
                Refused::start(format!("cannot find the sockets of listener {bound}"))
            })?;
        entries.push(Entry {
            configured,
            bound,
            fds,
        });
    }
    let (ours, theirs) = UnixStream::pair()
        .map_err(|e| Refused::start(format!("cannot open the handover socket: {e}")))?;
    let config_path = std::path::absolute(&config.source).unwrap_or_else(|_| config.source.clone());
    let mut inherited: Vec<i32> = entries.iter().flat_map(|e| e.fds.iter().copied()).collect();
    inherited.push(theirs.as_raw_fd());
    let mut cmd = tokio::process::Command::new(&exe);
    cmd.arg("run")
        .arg("-c")
        .arg(&config_path)
        .env(LISTEN_FDS_ENV, inherit::format(&entries))
        .env(UPGRADE_FD_ENV, theirs.as_raw_fd().to_string())
        .env(crate::vrrp_handover::OFFER_ENV, "1")
        // systemd's watchdog names the old main PID; the new process pings once it is main.
        .env_remove("WATCHDOG_PID")
        .stdin(std::process::Stdio::null())
        .kill_on_drop(false);
    crate::fds::inherit_in_child(&mut cmd, inherited);
    tracing::info!(binary = %exe.display(), listeners = entries.len(), "upgrade: starting the new binary");
    let mut child = cmd
        .spawn()
        .map_err(|e| Refused::start(format!("cannot start {}: {e}", exe.display())))?;
    drop(theirs);
    let pid = child.id().unwrap_or(0);
    let socket = ours
        .set_nonblocking(true)
        .and_then(|()| tokio::net::UnixStream::from_std(ours))
        .map_err(|e| Refused::start(format!("handover socket: {e}")))?;
    let mut reader = BufReader::new(socket);
    let mut line = String::new();
    let deadline = tokio::time::Instant::now() + READY_WAIT;
    let answer = loop {
        line.clear();
        let got = tokio::time::timeout_at(deadline, reader.read_line(&mut line)).await;
        if !matches!(got, Ok(Ok(n)) if n > 0 && line.starts_with("VRRP ")) {
            break got;
        }
        // The new process is about to start VRRP: pause ours, tell it the roles.
        let handed = match crate::vrrp_handover::parse_request(&line) {
            Ok(wanted) => ha.pause_for(&wanted).await,
            Err(e) => {
                tracing::warn!(error = %e, pid, "upgrade: unreadable VRRP request: nothing handed over");
                Vec::new()
            }
        };
        for (name, from) in &handed {
            tracing::info!(instance = %name, state = %from.state, new_pid = pid, "upgrade: VRRP instance handed over");
        }
        let answer = crate::vrrp_handover::reply(&handed);
        if let Err(e) = reader.get_mut().write_all(answer.as_bytes()).await {
            tracing::warn!(error = %e, pid, "upgrade: cannot send the VRRP roles");
        }
    };
    let refused = match answer {
        Ok(Ok(_)) if line.starts_with("READY") => {
            return Ok(NewProcess {
                pid,
                socket: reader.into_inner(),
            });
        }
        Ok(Ok(_)) if line.starts_with("FAIL") => {
            let mut text = String::new();
            let _ = tokio::time::timeout(Duration::from_secs(5), reader.read_to_string(&mut text))
                .await;
            let status = tokio::time::timeout(Duration::from_secs(5), child.wait()).await;
            Refused {
                invalid_config: matches!(status, Ok(Ok(s)) if s.code() == Some(1)),
                reason: format!("the new process {pid} could not start: {}", text.trim_end()),
            }
        }
        Ok(_) => {
            // EOF or a read error: the new process ended (or closed the socket) unready.
            let status = tokio::time::timeout(Duration::from_secs(5), child.wait()).await;
            let how = match status {
                Ok(Ok(s)) => format!("exited ({s})"),
                _ => "closed the handover socket".to_string(),
            };
            Refused::start(format!(
                "the new process {pid} ({}) {how} before it was ready; its output is in this log",
                exe.display()
            ))
        }
        Err(_) => Refused::start(format!(
            "the new process {pid} was not ready within {} s",
            READY_WAIT.as_secs()
        )),
    };
    // Whatever state it is in, it must not serve beside this process.
    let _ = child.start_kill();
    let _ = tokio::time::timeout(Duration::from_secs(5), child.wait()).await;
    // Only now (the new process is gone) may VRRP instances act again: never two masters.
    ha.resume();
    Err(refused)
}

/// The binary now at this process's path: `/proc/self/exe` names it, with " (deleted)" once
/// the file was replaced (the new binary renamed over it).
fn own_binary() -> anyhow::Result<PathBuf> {
    let link = std::fs::read_link("/proc/self/exe").context("cannot read /proc/self/exe")?;
    let text = link.to_string_lossy();
    let path = PathBuf::from(text.strip_suffix(" (deleted)").unwrap_or(&text));
    anyhow::ensure!(
        path.is_file(),
        "no binary at {} (this process's path) to upgrade to",
        path.display()
    );
    Ok(path)
}

/// Publish an upgrade outcome in `state_dir/upgrade.status` (the next generation).
pub fn publish(config: &Config, outcome: Outcome, text: String) {
    let dir = &config.server.state_dir;
    let generation = Status::read_file(&dir.join(STATUS_FILE)).map_or(0, |s| s.generation) + 1;
    let status = Status {
        generation,
        outcome,
        config: std::path::absolute(&config.source).unwrap_or_else(|_| config.source.clone()),
        text,
    };
    if let Err(e) = status.write_file(&dir.join(STATUS_FILE)) {
        tracing::warn!(error = %e, dir = %dir.display(), "cannot write the upgrade status");
    }
}

/// `portico upgrade [-c FILE]`: find the running instance by FILE's `state_dir`, send it
/// SIGUSR2 and wait for the outcome it publishes.
pub fn request(path: &Path) -> Result<(), Failure> {
    let config = check::load(path)?;
    let state_dir = &config.server.state_dir;
    let pid = crate::reload::running_pid(state_dir)?;
    let status_path = state_dir.join(STATUS_FILE);
    let before = Status::read_file(&status_path).map_or(0, |s| s.generation);
    crate::reload::send_signal(pid, "USR2")?;
    let deadline = Instant::now() + REQUEST_WAIT;
    while Instant::now() < deadline {
        if let Some(s) = Status::read_file(&status_path)
            && s.generation > before
        {
            return match s.outcome {
                Outcome::Applied => {
                    println!("{}", s.text.trim_end());
                    Ok(())
                }
                Outcome::Invalid => Err(Failure::InvalidConfig(s.text)),
                Outcome::Failed => Err(Failure::Runtime(anyhow::anyhow!("{}", s.text.trim_end()))),
            };
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(anyhow::anyhow!(
        "process {pid} got SIGUSR2 but published no upgrade outcome in {} within {} s",
        status_path.display(),
        REQUEST_WAIT.as_secs()
    )
    .into())
}
