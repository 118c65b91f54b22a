//! Active health checks: probe every server of every upstream that has a `health` table and
//! record the verdict in the [`Registry`] ([`ServerState::set_healthy`]).
//!
//! # Shape
//!
//! [`HealthChecks::start`] spawns one thread (`portico-health`) running a current-thread
//! tokio runtime, separate from the proxy workers so that slow probes never compete with
//! requests. On it, one task per checked server probes every `interval`, each probe bounded
//! by `timeout` (resolution, connect and exchange together), and feeds the outcome to a
//! `rise`/`fall` counter (see `tracker`). Verdict changes go to the shared
//! [`ServerState`], which every [`crate::Pool`] built from the same registry reads on its
//! next pick: no pool rebuild, no lock on the pick path.
//!
//! # Rules
//!
//! - Checked: every server of an upstream with `health`, except servers with `down = true`.
//! - Probes (see `probe`): `tcp` connects; `http` sends `GET path` with `Host` = `host` (else
//!   the server address as written) and wants a status in `expect_status` and, if set,
//!   `expect_body` within the first 64 KiB of the body; `websocket` performs a real upgrade
//!   (version 13, random key), wants `101` with the right `Sec-WebSocket-Accept`, then sends a
//!   close frame. Every probe uses a new connection and resolves the host again.
//! - Upstreams with `tls`: `http` and `websocket` probes do not speak TLS yet, so those
//!   servers get a `tcp` probe instead (a warning says so at start).
//! - Start state: a server never checked before is **healthy** until `fall` probes fail in a
//!   row, so starting or restarting Portico never blackholes traffic while the first probes
//!   run (HAProxy's default; nginx plus's default without `mandatory`). A server already
//!   marked unhealthy (state kept across a reload) needs `rise` successes to come back.
//! - Transitions are logged: `warn` when a server goes down (with the probe's failure
//!   reason), `info` when it comes back; individual failed probes below `fall` at `debug`.
//! - A server turning healthy starts the upstream's `slow_start` ramp (done by
//!   [`ServerState::set_healthy`]).
//! - Active and passive health combine by AND: a pick uses a server only when active health
//!   says healthy and passive health (`max_fails`) has not taken it out.
//!
//! # Reloads
//!
//! [`HealthChecks::replace`] applies a new config: tasks whose server and check settings are
//! unchanged keep running (and keep their streak); changed ones restart from the current
//! verdict; servers no longer checked (check removed, server removed or set `down`) are
//! marked healthy again, since nothing would ever revive them otherwise. The verdicts live
//! in the [`Registry`], so they survive a reload and a stop + start alike (but only
//! `replace` knows which servers stopped being checked: use it for reloads).
//!
//! [`HealthChecks::status`] reports, per checked server, the verdict, the probe counts and
//! the latest failure reason (for the admin API and metrics).

mod probe;
mod status;
mod tracker;

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use portico_config::{Config, HealthKind, ServerAddr, Upstream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle as TaskHandle;
use tokio::time::MissedTickBehavior;

use crate::{Registry, ServerId, ServerState};
use probe::{ProbeError, ProbeSpec};
pub use status::CheckStatus;
use status::{Checked, ProbeLog};
use tracker::Tracker;

/// Longest a stop waits for the probe thread's blocking work (name lookups).
const SHUTDOWN_WAIT: Duration = Duration::from_millis(500);

/// Everything that defines how one server is probed; a change restarts its task.
#[derive(Debug, Clone, PartialEq)]
struct Settings {
    addr: ServerAddr,
    probe: ProbeSpec,
    interval: Duration,
    timeout: Duration,
    rise: u32,
    fall: u32,
}

/// One checked server.
#[derive(Debug)]
struct Target {
    id: ServerId,
    settings: Settings,
    state: Arc<ServerState>,
    log: Arc<ProbeLog>,
}

enum Command {
    Replace(Vec<Target>),
    Stop,
}

/// The running active health checks of a process. Dropping it stops them like
/// [`HealthChecks::stop`].
#[derive(Debug)]
pub struct HealthChecks {
    commands: mpsc::UnboundedSender<Command>,
    thread: Option<JoinHandle<()>>,
    registry: Registry,
    /// Servers currently checked, sorted.
    checked: Mutex<BTreeMap<ServerId, Checked>>,
}

impl HealthChecks {
    /// Start checking every server of every upstream of `config` that has a `health` table.
    /// Fails only when the thread or its runtime cannot be created.
    pub fn start(config: &Config, registry: &Registry) -> io::Result<HealthChecks> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let (commands, rx) = mpsc::unbounded_channel();
        let thread = std::thread::Builder::new()
            .name("portico-health".into())
            .spawn(move || {
                runtime.block_on(supervise(rx));
                // A probe may sit in a blocking name lookup; do not wait for it.
                runtime.shutdown_timeout(SHUTDOWN_WAIT);
            })?;
        let checks = HealthChecks {
            commands,
            thread: Some(thread),
            registry: registry.clone(),
            checked: Mutex::new(BTreeMap::new()),
        };
        checks.replace(config);
        Ok(checks)
    }

    /// Apply a reloaded config (see the module doc for what is kept and what restarts).
    /// Returns at once; the probe thread applies it within moments.
    pub fn replace(&self, config: &Config) {
        let mut targets = targets(config, &self.registry);
        let mut checked = self.checked.lock().unwrap_or_else(|e| e.into_inner());
        let mut next = BTreeMap::new();
        for t in &mut targets {
            // A server that stays checked keeps its probe counters.
            if let Some(old) = checked.remove(&t.id) {
                t.log = old.log;
            }
            let entry = Checked {
                kind: t.settings.probe.kind,
                state: Arc::clone(&t.state),
                log: Arc::clone(&t.log),
            };
            next.insert(t.id.clone(), entry);
        }
        *checked = next;
        // The thread only ends through `stop`/drop, which take `self`: the send succeeds.
        let _ = self.commands.send(Command::Replace(targets));
    }

    /// Servers being probed now, sorted (for the admin API).
    pub fn checked(&self) -> Vec<ServerId> {
        let checked = self.checked.lock().unwrap_or_else(|e| e.into_inner());
        checked.keys().cloned().collect()
    }

    /// Verdict, probe counts and the latest failure of every checked server, sorted by id
    /// (for `GET /api/v1/status` and metrics).
    pub fn status(&self) -> Vec<CheckStatus> {
        let checked = self.checked.lock().unwrap_or_else(|e| e.into_inner());
        checked
            .iter()
            .map(|(id, c)| CheckStatus::of(id, c))
            .collect()
    }

    /// Stop probing and wait for the thread to end. Verdicts stay in the registry as they
    /// are (a later [`HealthChecks::start`] continues from them).
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        let _ = self.commands.send(Command::Stop);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for HealthChecks {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// The servers `config` asks to check.
fn targets(config: &Config, registry: &Registry) -> Vec<Target> {
    config
        .upstreams
        .values()
        .flat_map(|up| upstream_targets(up, registry))
        .collect()
}

fn upstream_targets(up: &Upstream, registry: &Registry) -> Vec<Target> {
    let Some(check) = &up.health else {
        return Vec::new();
    };
    let mut kind = check.kind;
    if up.tls.is_some() && kind != HealthKind::Tcp {
        tracing::warn!(upstream = %up.name, check = ?kind,
            "upstream uses tls: health probes do not speak TLS yet, using tcp (connect) probes");
        kind = HealthKind::Tcp;
    }
    let name: Arc<str> = Arc::from(up.name.as_str());
    up.servers
        .iter()
        .filter(|s| !s.down)
        .map(|s| {
            // Same id as `Pool::new`, so both share one `ServerState`.
            let id = ServerId {
                upstream: Arc::clone(&name),
                addr: Arc::from(s.addr.to_string()),
            };
            let mut probe = ProbeSpec::new(check, &s.addr);
            probe.kind = kind;
            Target {
                state: registry.state(&id),
                log: Arc::default(),
                id,
                settings: Settings {
                    addr: s.addr.clone(),
                    probe,
                    interval: check.interval,
                    timeout: check.timeout,
                    rise: check.rise,
                    fall: check.fall,
                },
            }
        })
        .collect()
}

/// A probing task and what it was started with.
struct Running {
    settings: Settings,
    state: Arc<ServerState>,
    task: TaskHandle<()>,
}

/// The thread's main task: owns one probing task per target until told to stop.
async fn supervise(mut rx: mpsc::UnboundedReceiver<Command>) {
    let mut tasks: HashMap<ServerId, Running> = HashMap::new();
    while let Some(Command::Replace(targets)) = rx.recv().await {
        let mut next = HashMap::with_capacity(targets.len());
        for target in targets {
            match tasks.remove(&target.id) {
                Some(run) if run.settings == target.settings && !run.task.is_finished() => {
                    next.insert(target.id, run);
                }
                old => {
                    if let Some(run) = old {
                        run.task.abort();
                    }
                    let id = target.id.clone();
                    let running = Running {
                        settings: target.settings.clone(),
                        state: Arc::clone(&target.state),
                        task: tokio::spawn(check_loop(target)),
                    };
                    next.insert(id, running);
                }
            }
        }
        // Servers no longer checked. Their tasks are aborted first: on this single thread an
        // aborted task is never polled again, so none can mark the server down afterwards.
        for (id, run) in tasks.drain() {
            run.task.abort();
            if !run.state.is_healthy() {
                tracing::info!(upstream = %id.upstream, server = %id.addr,
                    "server no longer health-checked: marked healthy");
                run.state.set_healthy(true);
            }
        }
        tasks = next;
    }
    // Stop (or every sender gone): the runtime's shutdown cancels the tasks; abort anyway.
    for run in tasks.into_values() {
        run.task.abort();
    }
}

/// Probe one server forever.
async fn check_loop(target: Target) {
    let Target {
        id,
        settings,
        state,
        log,
    } = target;
    let mut tracker = Tracker::new(state.is_healthy(), settings.rise, settings.fall);
    let mut ticker = tokio::time::interval(settings.interval.max(Duration::from_millis(1)));
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let outcome = match tokio::time::timeout(
            settings.timeout,
            probe::probe(&settings.probe, &settings.addr),
        )
        .await
        {
            Ok(result) => result,
            Err(_) => Err(ProbeError::Timeout(settings.timeout)),
        };
        log.record(outcome.as_ref().err());
        let transition = tracker.record(outcome.is_ok());
        report(&id, &state, &settings, outcome.err(), transition);
    }
}

/// Apply and log one probe outcome.
fn report(
    id: &ServerId,
    state: &ServerState,
    settings: &Settings,
    failure: Option<ProbeError>,
    transition: Option<bool>,
) {
    let check = kind_name(settings.probe.kind);
    match (transition, failure) {
        (Some(true), _) => {
            state.set_healthy(true);
            tracing::info!(upstream = %id.upstream, server = %id.addr, check,
                rise = settings.rise, "server is UP: active health check passed");
        }
        (Some(false), failure) => {
            state.set_healthy(false);
            let reason = failure.map(|e| e.to_string()).unwrap_or_default();
            tracing::warn!(upstream = %id.upstream, server = %id.addr, check,
                fall = settings.fall, %reason, "server is DOWN: active health check failed");
        }
        (None, Some(e)) => {
            tracing::debug!(upstream = %id.upstream, server = %id.addr, check,
                reason = %e, "health probe failed");
        }
        (None, None) => {}
    }
}

fn kind_name(kind: HealthKind) -> &'static str {
    match kind {
        HealthKind::Http => "http",
        HealthKind::Tcp => "tcp",
        HealthKind::WebSocket => "websocket",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Pool;
    use portico_config::{HealthCheck, UpstreamTls};

    fn config() -> Config {
        let text = r#"
[upstreams.app]
servers = ["127.0.0.1:8001", { addr = "localhost:8002", down = true }, { addr = "[::1]:8003", backup = true }]

[upstreams.plain]
servers = ["127.0.0.1:9001"]

[[sites]]
listen = ["127.0.0.1:1"]
routes = [{ path = "/a", proxy = "app" }, { path = "/", proxy = "plain" }]
"#;
        let mut config =
            portico_config::parse(text, std::path::Path::new("t.toml")).expect("config");
        let app = config.upstreams.get_mut("app").expect("app");
        app.health = Some(HealthCheck {
            kind: HealthKind::WebSocket,
            path: "/ws".into(),
            host: None,
            interval: Duration::from_secs(2),
            timeout: Duration::from_secs(1),
            rise: 2,
            fall: 3,
            expect_status: vec![(200, 399)],
            expect_body: None,
        });
        config
    }

    #[test]
    fn targets_skip_down_servers_and_unchecked_upstreams_and_share_pool_state() {
        let config = config();
        let registry = Registry::new();
        let targets = targets(&config, &registry);
        let ids: Vec<&str> = targets.iter().map(|t| &*t.id.addr).collect();
        assert_eq!(ids, ["127.0.0.1:8001", "[::1]:8003"]);
        assert_eq!(targets[1].settings.probe.host, "[::1]:8003", "default Host");
        assert_eq!(targets[0].settings.probe.kind, HealthKind::WebSocket);
        let pool = Pool::new(&config.upstreams["app"], &registry);
        for t in &targets {
            let i = pool.index_of(&t.id.addr).expect("member");
            assert!(
                Arc::ptr_eq(&t.state, &pool.members()[i].state),
                "same live state"
            );
        }
    }

    #[test]
    fn tls_upstreams_fall_back_to_tcp_probes() {
        let mut config = config();
        config.upstreams.get_mut("app").expect("app").tls = Some(UpstreamTls {
            server_name: None,
            verify: true,
            ca_file: None,
            client_cert: None,
            client_key: None,
        });
        let targets = targets(&config, &Registry::new());
        assert!(
            targets
                .iter()
                .all(|t| t.settings.probe.kind == HealthKind::Tcp)
        );
    }

    #[test]
    fn health_checks_are_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<HealthChecks>();
    }
}
