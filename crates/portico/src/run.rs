//! `portico run` (and the serving loop `portico demo` reuses): load the config, start the
//! data plane and VRRP, then follow signals until a stop: SIGHUP reloads, SIGUSR1 reopens
//! the access log files (log rotation), SIGUSR2 hands over to a new binary and drains
//! (`crate::upgrade`), SIGTERM/SIGINT stop. The pid file is written once serving and
//! removed at exit only while it still names this process.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;
use portico_balance::{HealthChecks, Pool, Registry};
use portico_config::Config;

use crate::exit::Failure;
use crate::handover::Handover;
use crate::plane::DataPlane;
use crate::reload::Running;
use crate::signals::{Event, Signals};
use crate::{check, ha, logging};

/// `portico run -c FILE` (`handover`: what an upgrading old process handed over, if any).
pub fn run(path: &Path, mut handover: Handover) -> Result<(), Failure> {
    let result = check::load(path).and_then(|config| {
        logging::init();
        if handover.is_upgrade() {
            tracing::info!("started by a binary upgrade: adopting the old process's listeners");
        }
        handover.provide()?;
        serve(config, &mut handover, |_, _| {})
    });
    if let Err(failure) = &result {
        // Started by an upgrade and not serving: the old process says why and serves on.
        handover.fail(failure);
    }
    result
}

/// How the control loop ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ended {
    Stopped,
    /// A new binary serves on the same sockets: this process drained.
    HandedOver,
}

/// `portico reload [-c FILE]`: validate FILE, SIGHUP the running instance, wait for its
/// answer (see [`crate::reload`]).
pub fn reload(path: &Path) -> Result<(), Failure> {
    crate::reload::request(path)
}

/// Start everything `config` asks for (as a binary upgrade's new process: taking over what
/// `handover` brings), call `ready` with the running server and the admin API's address,
/// then serve until SIGTERM/SIGINT (graceful; a second one stops at once).
pub fn serve(
    config: Config,
    handover: &mut Handover,
    ready: impl FnOnce(&DataPlane, Option<SocketAddr>),
) -> Result<(), Failure> {
    let config = Arc::new(config);
    crate::fdlimit::raise(config.server.max_connections);
    let registry = Registry::default();
    let server = DataPlane::start(&config, &registry)?;
    let health =
        Arc::new(HealthChecks::start(&config, &registry).context("cannot start health checks")?);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the control runtime")?;
    let outcome = runtime.block_on(control(
        &config, &registry, &server, &health, handover, ready,
    ));
    // Whatever happened, the data plane must stop before the process exits.
    server.stop_now();
    server.wait();
    // The admin API (the only other holder) has stopped with the control loop.
    if let Ok(health) = Arc::try_unwrap(health) {
        health.stop();
    }
    if outcome.as_ref().ok() != Some(&Ended::HandedOver) {
        remove_pid_file(&config);
    }
    outcome.map(|_| ()).map_err(Failure::Runtime)
}

/// The control loop: VRRP and signals, while workers serve on their own threads.
async fn control(
    config: &Arc<Config>,
    registry: &Registry,
    server: &DataPlane,
    health: &Arc<HealthChecks>,
    handover: &mut Handover,
    ready: impl FnOnce(&DataPlane, Option<SocketAddr>),
) -> anyhow::Result<Ended> {
    let mut signals = Signals::new()?;
    // A fresh start names itself in the pid file as soon as its signals are registered: the
    // listeners already accept, so `portico reload` may come now (a SIGHUP waits for the
    // loop below). A new binary of an upgrade writes it only once it has fully started: the
    // old process keeps its pid file until then.
    if !handover.is_upgrade() {
        write_pid_file(config).context("cannot write the pid file")?;
    }
    // A binary upgrade: the old process pauses its instances and hands their roles over
    // now, as late as possible (a master's adverts pause only until ours start).
    let inherited = handover.vrrp(&config.vrrp);
    let mut ha = ha::start(config, track_env(config, registry, server), &inherited).await?;
    let started = crate::cluster::Cluster::start(config, registry, server, ha.watchers())
        .await
        .and_then(|cluster| {
            let admin = crate::admin::start(
                config,
                registry,
                health,
                server,
                ha.watchers(),
                cluster.clone(),
            )?;
            if handover.is_upgrade() {
                write_pid_file(config).context("cannot write the pid file")?;
            }
            Ok((admin, cluster))
        });
    let ((admin, mut api_reloads), cluster) = match started {
        Ok(a) => a,
        Err(e) => {
            if inherited.is_empty() {
                ha.shutdown().await;
            } else {
                // Not serving after all: the old process resumes what it handed over.
                ha.release().await;
            }
            return Err(e);
        }
    };
    tracing::info!(config = %config.source.display(), "portico started");
    let mut running = Running {
        plane: server,
        health,
        registry,
        config: config.clone(),
        state_dir: config.server.state_dir.clone(),
        generation: 0,
        cluster: cluster.clone(),
    };
    running.publish_start();
    ready(server, admin.addr());
    handover.ready();
    let notify = crate::notify::Notifier::from_env();
    notify.ready(&format!("serving {}", config.source.display()));
    let mut watchdog = notify.spawn_watchdog().map(AbortOnDrop);
    let mut ended = Ended::Stopped;
    // SIGUSR1: reopen the access log files (log rotation), for sites and streams at once
    // (they share one writer per target).
    let mut reopen = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::user_defined1())
        .context("cannot handle SIGUSR1")?;
    loop {
        tokio::select! {
            event = signals.next() => match event {
                Event::Stop => break,
                // Blocking (name resolution, binds) on the control thread; workers keep serving.
                Event::Reload => {
                    notify.reloading();
                    admin.reload(&mut running, server);
                    notify.ready(&reload_status(&running));
                }
                Event::Upgrade => {
                    if crate::upgrade::hand_over(&running.config, server, &mut ha, &notify).await {
                        ended = Ended::HandedOver;
                        // Not the main process any more: the new one keeps the watchdog.
                        watchdog = None;
                        break;
                    }
                }
            },
            request = api_reloads.next() => {
                notify.reloading();
                let outcome = admin.reload(&mut running, server);
                notify.ready(&reload_status(&running));
                request.answer(outcome);
            }
            _ = reopen.recv() => {
                tracing::info!("SIGUSR1: reopening the access log");
                portico_proxy::access_log::reopen_all();
            }
            () = registry_changed(cluster.as_deref()) => {
                if let Some(c) = &cluster {
                    c.apply_registered(&mut running, &admin);
                }
            }
        }
    }
    drop(watchdog);
    if ended == Ended::Stopped {
        notify.stopping();
        tracing::info!("stopping: finishing requests in flight (a second signal stops at once)");
    } else {
        tracing::info!(
            "upgraded: draining, finishing requests in flight (a stop signal stops at once)"
        );
    }
    server.shutdown();
    ha.shutdown().await;
    if let Some(c) = &cluster {
        c.stop().await;
    }
    tokio::select! {
        _ = server.closed() => {}
        _ = signals.next_stop() => tracing::warn!("second stop signal: stopping now"),
    }
    admin.stop();
    Ok(ended)
}

/// Resolves when the cluster's registered servers changed (never without `[cluster]`).
async fn registry_changed(cluster: Option<&crate::cluster::Cluster>) {
    match cluster {
        Some(c) => c.registry_changed().await,
        None => std::future::pending().await,
    }
}

/// What VRRP's tracks look at: every bound listener, sites and streams (a stream-only node's
/// `listeners` track must be able to fail too), and the upstreams' live health.
fn track_env(config: &Config, registry: &Registry, server: &DataPlane) -> ha::TrackEnv {
    ha::TrackEnv {
        listener_addrs: server.site_addrs(),
        stream_addrs: server.stream_addrs(),
        upstream_usable: upstream_usable(config, registry),
    }
}

/// The `STATUS=` line after a reload: the outcome it published.
fn reload_status(running: &Running<'_>) -> String {
    crate::reload::Status::read(&running.state_dir)
        .map_or_else(|| "reload done".to_string(), |s| s.text)
}

/// Stops the watchdog task with the control loop.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// VRRP's `track = [{ upstream = "NAME" }]`: whether any server of NAME can serve (not down,
/// not failed by active or passive health, enabled). The pools built here share live state
/// with the data plane through the registry.
fn upstream_usable(
    config: &Config,
    registry: &Registry,
) -> Arc<dyn Fn(&str) -> bool + Send + Sync> {
    let pools: HashMap<String, Pool> = config
        .upstreams
        .values()
        .map(|u| (u.name.clone(), Pool::new(u, registry)))
        .collect();
    Arc::new(move |name| pools.get(name).is_some_and(Pool::any_serving))
}

fn pid_file(config: &Config) -> std::path::PathBuf {
    config.server.state_dir.join("portico.pid")
}

/// Write the pid file atomically (temporary file + rename): after an upgrade it names the
/// new process, never a half-written number.
fn write_pid_file(config: &Config) -> anyhow::Result<()> {
    let dir = &config.server.state_dir;
    let path = pid_file(config);
    crate::statefile::write(
        dir,
        "portico.pid",
        format!("{}\n", std::process::id()).as_bytes(),
    )
    .with_context(|| format!("cannot write {}", path.display()))
}

/// Remove the pid file and the reload status, if the pid file still names this process (a
/// new binary that failed to start must not remove the old one's).
fn remove_pid_file(config: &Config) {
    let path = pid_file(config);
    let ours =
        std::fs::read_to_string(&path).is_ok_and(|s| s.trim() == std::process::id().to_string());
    if ours {
        let _ = std::fs::remove_file(path);
        crate::reload::remove_status(&config.server.state_dir);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// On a node with streams only, the `listeners` track probes the stream listeners (it
    /// probed site listeners only: nothing, so it could never fail).
    #[test]
    fn the_listeners_track_covers_stream_listeners() {
        let dir = std::env::temp_dir().join(format!("portico-track-{}", std::process::id()));
        let text = "[server]\naccess_log = \"off\"\nthreads = 1\n[admin]\nlisten = \"off\"\n\
                    [upstreams.app]\nservers = [\"127.0.0.1:9\"]\n\
                    [[streams]]\nlisten = [\"127.0.0.1:0\"]\nupstream = \"app\"\n";
        let config = Arc::new(portico_config::parse(text, &dir.join("p.toml")).unwrap());
        let registry = Registry::default();
        let plane = DataPlane::start(&config, &registry).unwrap();
        let stream = plane.all_addrs();
        let env = track_env(&config, &registry, &plane);
        assert_eq!(stream.len(), 1, "{stream:?}");
        assert_eq!(env.stream_addrs, stream);
        assert!(env.listener_addrs.is_empty(), "{:?}", env.listener_addrs);
        // The check passes while the stream listens and fails once it is gone.
        assert!(portico_vrrp::track::is_listening(stream[0]));
        plane.stop_now();
        plane.wait();
        assert!(!portico_vrrp::track::is_listening(stream[0]));
    }
}
