//! Reload: SIGHUP in the running instance, and `portico reload [-c FILE]`.
//!
//! The instance, on SIGHUP, re-reads the config file it was started with: parse ->
//! validate -> build -> swap ([`apply`]). A config that does not load keeps the running one
//! and logs every problem as FILE:LINE:COL. Either way the outcome is published in
//! `state_dir/reload.status` (written atomically): a generation counter that grows with
//! every reload, the result and the text to show.
//!
//! `portico reload` ([`request`]) validates FILE locally first (exit 1 with the problems),
//! then, when the admin API is on and answers, asks it (`POST /api/v1/reload`, see
//! [`crate::admin`]); otherwise it reads the instance's pid from `state_dir/portico.pid`, sends it SIGHUP (through
//! `kill(1)`: the binary has no `unsafe`), and waits up to [`WAIT`] for a newer generation in
//! the status file: exit 0 when the instance applied it, 1 when it refused the config, 2
//! when the instance could not apply a valid config (e.g. a new listener cannot be bound)
//! or did not answer.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use portico_balance::{HealthChecks, Registry};
use portico_config::{Config, VrrpTrackKind};

use crate::check;
use crate::exit::Failure;
use crate::plane::DataPlane;

/// How long `portico reload` waits for the instance's answer.
pub const WAIT: Duration = Duration::from_secs(10);

const STATUS_FILE: &str = "reload.status";

/// The result of one reload as the instance publishes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Applied (the text lists what needs a restart, if anything).
    Applied,
    /// The config did not load: the running one stays (exit 1).
    Invalid,
    /// A valid config could not be applied (e.g. bind failure): the running one stays
    /// (exit 2).
    Failed,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Outcome::Applied => "applied",
            Outcome::Invalid => "invalid",
            Outcome::Failed => "failed",
        }
    }

    fn parse(s: &str) -> Option<Outcome> {
        match s {
            "applied" => Some(Outcome::Applied),
            "invalid" => Some(Outcome::Invalid),
            "failed" => Some(Outcome::Failed),
            _ => None,
        }
    }
}

/// `state_dir/reload.status`: `generation N`, `outcome X`, `config PATH`, then the text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    pub generation: u64,
    pub outcome: Outcome,
    pub config: PathBuf,
    pub text: String,
}

impl Status {
    fn render(&self) -> String {
        format!(
            "generation {}\noutcome {}\nconfig {}\n{}",
            self.generation,
            self.outcome.as_str(),
            self.config.display(),
            self.text
        )
    }

    fn parse(s: &str) -> Option<Status> {
        let mut lines = s.splitn(4, '\n');
        let generation = lines.next()?.strip_prefix("generation ")?.parse().ok()?;
        let outcome = Outcome::parse(lines.next()?.strip_prefix("outcome ")?)?;
        let config = PathBuf::from(lines.next()?.strip_prefix("config ")?);
        let text = lines.next().unwrap_or("").to_string();
        Some(Status {
            generation,
            outcome,
            config,
            text,
        })
    }

    /// Read the status file of `state_dir` (`None`: absent or unreadable).
    pub fn read(state_dir: &Path) -> Option<Status> {
        Status::read_file(&state_dir.join(STATUS_FILE))
    }

    /// Write it atomically and privately ([`crate::statefile`]).
    pub fn write(&self, state_dir: &Path) -> std::io::Result<()> {
        self.write_file(&state_dir.join(STATUS_FILE))
    }

    /// Read a status file at `path` (also `upgrade.status`, see `crate::upgrade`).
    pub fn read_file(path: &Path) -> Option<Status> {
        Status::parse(&std::fs::read_to_string(path).ok()?)
    }

    /// Write a status file at `path` atomically and privately ([`crate::statefile`]).
    pub fn write_file(&self, path: &Path) -> std::io::Result<()> {
        let name = path
            .file_name()
            .map_or_else(|| "status".into(), |n| n.to_string_lossy().into_owned());
        let dir = path.parent().unwrap_or_else(|| Path::new("."));
        crate::statefile::write(dir, &name, self.render().as_bytes())
    }
}

/// Remove the status file (at exit, with the pid file).
pub fn remove_status(state_dir: &Path) {
    let _ = std::fs::remove_file(state_dir.join(STATUS_FILE));
}

/// What the running instance reloads: its data plane, health checks and current config.
pub struct Running<'a> {
    pub plane: &'a DataPlane,
    pub health: &'a HealthChecks,
    pub registry: &'a Registry,
    /// The config in force (replaced by a successful reload).
    pub config: Arc<Config>,
    /// Where the status file goes (the start-up `state_dir`, where the pid file is).
    pub state_dir: PathBuf,
    pub generation: u64,
    /// `[cluster]`: registered servers are merged into every reloaded config.
    pub cluster: Option<Arc<crate::cluster::Cluster>>,
}

impl Running<'_> {
    /// Publish generation 0 at start (so `portico reload` knows the config path).
    pub fn publish_start(&self) {
        self.publish(Outcome::Applied, "started".to_string());
    }

    fn publish(&self, outcome: Outcome, text: String) {
        let status = Status {
            generation: self.generation,
            outcome,
            config: std::path::absolute(&self.config.source)
                .unwrap_or_else(|_| self.config.source.clone()),
            text,
        };
        if let Err(e) = status.write(&self.state_dir) {
            tracing::warn!(error = %e, dir = %self.state_dir.display(), "cannot write the reload status");
        }
    }

    /// SIGHUP or `POST /api/v1/reload`: re-read the config file, apply it or keep the
    /// running one. Returns the outcome and its text (what changed, or the diagnostics).
    pub fn apply(&mut self) -> (Outcome, String) {
        self.generation += 1;
        let path = self.config.source.clone();
        tracing::info!(config = %path.display(), "reloading");
        let file = match check::load(&path) {
            Ok(c) => Arc::new(c),
            Err(failure) => {
                let text = failure.to_string();
                tracing::error!("reload refused, still serving the previous config:\n{text}");
                self.publish(Outcome::Invalid, text.clone());
                return (Outcome::Invalid, text);
            }
        };
        let new = match &self.cluster {
            Some(cluster) => cluster.effective(&file),
            None => Arc::clone(&file),
        };
        match self.plane.reload(&new, self.registry) {
            Ok(summary) => {
                self.health.replace(&new);
                // Forget servers of earlier configs that nothing references any more (the
                // snapshot just replaced may still be in use: its servers go next time).
                self.registry.prune();
                if let Some(cluster) = &self.cluster {
                    cluster.applied(file, &self.config, &new, self.registry);
                }
                let mut notes = summary.needs_restart;
                notes.extend(vrrp_notes(&self.config, &new));
                notes.extend(restart_notes(&self.config, &new));
                for note in &notes {
                    tracing::warn!("reload: {note}");
                }
                tracing::info!(changes = %summary.changes, "reload applied");
                let mut text = format!("{}: reloaded ({})\n", path.display(), summary.changes);
                for note in &notes {
                    text.push_str(&format!("needs restart: {note}\n"));
                }
                self.config = new;
                self.publish(Outcome::Applied, text.clone());
                (Outcome::Applied, text)
            }
            Err(err) => {
                let text =
                    format!("portico: reload failed, still serving the previous config: {err:#}");
                tracing::error!("{text}");
                self.publish(Outcome::Failed, text.clone());
                (Outcome::Failed, text)
            }
        }
    }
}

/// What a reload cannot change for VRRP: its instances and what their tracks look at are
/// fixed at start.
fn vrrp_notes(old: &Config, new: &Config) -> Vec<String> {
    let mut notes = Vec::new();
    if new.vrrp != old.vrrp {
        notes.push(
            "[[vrrp]] changed: VRRP keeps its start-up instances and tracks until a restart"
                .to_string(),
        );
    }
    let tracks = |kind: fn(&VrrpTrackKind) -> bool| {
        old.vrrp
            .iter()
            .flat_map(|v| &v.track)
            .any(|t| kind(&t.kind))
    };
    let listens = |c: &Config| -> std::collections::BTreeSet<std::net::SocketAddr> {
        c.sites
            .iter()
            .flat_map(|s| s.listen.iter().copied())
            .chain(c.streams.iter().flat_map(|s| s.listen.iter().copied()))
            .collect()
    };
    if tracks(|k| matches!(k, VrrpTrackKind::Listeners)) && listens(old) != listens(new) {
        notes.push(
            "listeners changed: VRRP `listeners` tracks probe the site and stream listeners bound at start until a restart"
                .to_string(),
        );
    }
    if tracks(|k| matches!(k, VrrpTrackKind::Upstream(_))) && old.upstreams != new.upstreams {
        notes.push(
            "upstreams changed: VRRP `upstream` tracks follow the servers the upstreams had at start until a restart"
                .to_string(),
        );
    }
    notes
}

/// `portico reload [-c FILE]`: validate, signal the instance, wait for its answer.
/// An instance started with another config file is refused: a reload re-reads the
/// instance's own file, so `-c FILE` would validate one file and apply another.
pub fn request(path: &Path) -> Result<(), Failure> {
    let config = check::load(path)?;
    if let Some((pid, running)) = crate::admin_client::running_config(&config) {
        refuse_other_config(pid, &running, path)?;
    }
    if let Some(answer) = crate::admin_client::request_reload(&config) {
        return answer;
    }
    let state_dir = &config.server.state_dir;
    let pid = running_pid(state_dir)?;
    let before = Status::read(state_dir);
    if let Some(s) = &before {
        refuse_other_config(pid, &s.config, path)?;
    }
    let before = before.map_or(0, |s| s.generation);
    send_signal(pid, "HUP")?;
    let deadline = Instant::now() + WAIT;
    while Instant::now() < deadline {
        if let Some(s) = Status::read(state_dir)
            && s.generation > before
        {
            return match s.outcome {
                Outcome::Applied => {
                    print!("{}", s.text);
                    Ok(())
                }
                Outcome::Invalid => Err(Failure::InvalidConfig(s.text)),
                Outcome::Failed => Err(Failure::Runtime(anyhow::anyhow!(
                    "{}",
                    s.text.trim_start_matches("portico: ").trim_end()
                ))),
            };
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(anyhow::anyhow!(
        "process {pid} got SIGHUP but published no reload outcome in {} within {} s",
        state_dir.join(STATUS_FILE).display(),
        WAIT.as_secs()
    )
    .into())
}

/// The running instance's pid, from `state_dir/portico.pid`, checked to be portico's.
pub fn running_pid(state_dir: &Path) -> anyhow::Result<u32> {
    let pid_path = state_dir.join("portico.pid");
    let pid: u32 = std::fs::read_to_string(&pid_path)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .ok_or_else(|| {
            anyhow::anyhow!(
                "no running instance: cannot read a pid from {}",
                pid_path.display()
            )
        })?;
    anyhow::ensure!(
        is_portico(pid),
        "no running instance: process {pid} (from {}) is not portico",
        pid_path.display()
    );
    Ok(pid)
}

/// Whether `pid` runs the portico binary (a stale pid file may name another process).
fn is_portico(pid: u32) -> bool {
    match std::fs::read(format!("/proc/{pid}/cmdline")) {
        Ok(cmd) => cmd
            .split(|b| *b == 0)
            .next()
            .is_some_and(|argv0| String::from_utf8_lossy(argv0).contains("portico")),
        // No /proc: trust the pid file.
        Err(e) => e.kind() != std::io::ErrorKind::NotFound || !Path::new("/proc/self").exists(),
    }
}

/// Err when the instance `pid` runs `running`, not `asked`.
fn refuse_other_config(pid: u32, running: &Path, asked: &Path) -> anyhow::Result<()> {
    if same_file(running, asked) {
        return Ok(());
    }
    let asked = std::path::absolute(asked).unwrap_or_else(|_| asked.to_path_buf());
    anyhow::bail!(
        "not reloading: the running instance (pid {pid}) was started with {}, not {}; a reload \
         re-reads the instance's own file. Reload that one (portico reload -c {}), or stop the \
         instance and start it with the other file",
        running.display(),
        asked.display(),
        running.display()
    )
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

/// Send SIG`name` (e.g. "HUP") to `pid` through kill(1).
pub fn send_signal(pid: u32, name: &str) -> anyhow::Result<()> {
    let status = std::process::Command::new("kill")
        .args([format!("-{name}"), pid.to_string()])
        .status()
        .with_context(|| format!("cannot run kill(1) to send SIG{name}"))?;
    anyhow::ensure!(status.success(), "cannot send SIG{name} to process {pid}");
    Ok(())
}

/// What a reload leaves for the next start.
pub fn restart_notes(old: &Config, new: &Config) -> Vec<String> {
    let mut notes = Vec::new();
    if old.admin.listen != new.admin.listen {
        notes
            .push("[admin] listen changed: the admin API keeps its address until a restart".into());
    }
    if old.cluster != new.cluster {
        notes.push(
            "[cluster] changed: the node keeps its start-up etcd connection, prefix and name until a restart"
                .into(),
        );
    }
    notes
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn config(listen: &str, vrrp_track: &str) -> Config {
        let text = format!(
            "[[sites]]\nlisten = [\"{listen}\"]\nroutes = [{{ path = \"/\", respond = \"x\" }}]\n\
             [[vrrp]]\nname = \"VI_1\"\ninterface = \"eth0\"\nvrid = 33\npriority = 90\n\
             virtual_ips = [\"10.200.0.130/24\"]\ntrack = [{vrrp_track}]\n"
        );
        portico_config::parse(&text, Path::new("/tmp/p.toml")).unwrap()
    }

    #[test]
    fn vrrp_notes_name_what_needs_a_restart() {
        let old = config("127.0.0.1:1", "{ listeners = true, weight = -20 }");
        assert!(vrrp_notes(&old, &old).is_empty());
        let moved = config("127.0.0.1:2", "{ listeners = true, weight = -20 }");
        let notes = vrrp_notes(&old, &moved);
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert!(notes[0].contains("`listeners` tracks"), "{notes:?}");
        let retracked = config("127.0.0.1:1", "{ listeners = true, weight = -10 }");
        let notes = vrrp_notes(&old, &retracked);
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert!(notes[0].contains("[[vrrp]] changed"), "{notes:?}");
    }

    #[test]
    fn restart_notes_name_admin_and_cluster_changes() {
        let plain = config("127.0.0.1:1", "");
        assert!(restart_notes(&plain, &plain).is_empty());
        let text = "[cluster]\netcd = [\"http://127.0.0.1:2379\"]\nnode_name = \"a\"\n\
                    [[sites]]\nlisten = [\"127.0.0.1:1\"]\nroutes = [{ path = \"/\", respond = \"x\" }]\n";
        let clustered = portico_config::parse(text, Path::new("/tmp/p.toml")).unwrap();
        let renamed =
            portico_config::parse(&text.replace("\"a\"", "\"b\""), Path::new("/tmp/p.toml"))
                .unwrap();
        for (old, new) in [(&plain, &clustered), (&clustered, &renamed)] {
            let notes = restart_notes(old, new);
            assert_eq!(notes.len(), 1, "{notes:?}");
            assert!(notes[0].starts_with("[cluster] changed"), "{notes:?}");
        }
        assert!(restart_notes(&clustered, &clustered).is_empty());
    }

    #[test]
    fn status_round_trips_with_multi_line_text() {
        let s = Status {
            generation: 7,
            outcome: Outcome::Invalid,
            config: PathBuf::from("/etc/portico/portico.toml"),
            text: "a.toml:3:5: bad\n  hint: x\n".to_string(),
        };
        assert_eq!(Status::parse(&s.render()), Some(s));
        assert_eq!(Status::parse("generation x\n"), None);
    }

    #[test]
    fn status_is_written_atomically_and_read_back() {
        let dir = std::env::temp_dir().join(format!("portico-reload-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let s = Status {
            generation: 1,
            outcome: Outcome::Applied,
            config: PathBuf::from("p.toml"),
            text: String::new(),
        };
        s.write(&dir).unwrap();
        assert_eq!(Status::read(&dir), Some(s));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
