//! `portico run` (and the serving loop `portico demo` reuses): load the config, start the
//! data plane and VRRP, then follow signals until a stop: SIGHUP reloads, SIGUSR1 reopens
//! the access log files (log rotation), SIGTERM/SIGINT stop.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;
use portico_balance::{HealthChecks, Pool, Registry};
use portico_config::Config;

use crate::exit::Failure;
use crate::plane::DataPlane;
use crate::reload::Running;
use crate::signals::{Event, Signals};
use crate::{check, ha, logging};

/// `portico run -c FILE`.
pub fn run(path: &Path) -> Result<(), Failure> {
    let config = check::load(path)?;
    logging::init();
    serve(config, |_, _| {})
}

/// `portico reload [-c FILE]`: validate FILE, SIGHUP the running instance, wait for its
/// answer (see [`crate::reload`]).
pub fn reload(path: &Path) -> Result<(), Failure> {
    crate::reload::request(path)
}

/// Start everything `config` asks for, call `ready` with the running server and the admin
/// API's address, then serve until SIGTERM/SIGINT (graceful; a second one stops at once).
pub fn serve(
    config: Config,
    ready: impl FnOnce(&DataPlane, Option<SocketAddr>),
) -> Result<(), Failure> {
    let config = Arc::new(config);
    let registry = Registry::default();
    let server = DataPlane::start(&config, &registry)?;
    let health =
        Arc::new(HealthChecks::start(&config, &registry).context("cannot start health checks")?);
    write_pid_file(&config).context("cannot write the pid file")?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the control runtime")?;
    let outcome = runtime.block_on(control(&config, &registry, &server, &health, ready));
    // Whatever happened, the data plane must stop before the process exits.
    server.stop_now();
    server.wait();
    // The admin API (the only other holder) has stopped with the control loop.
    if let Ok(health) = Arc::try_unwrap(health) {
        health.stop();
    }
    remove_pid_file(&config);
    outcome.map_err(Failure::Runtime)
}

/// The control loop: VRRP and signals, while workers serve on their own threads.
async fn control(
    config: &Arc<Config>,
    registry: &Registry,
    server: &DataPlane,
    health: &Arc<HealthChecks>,
    ready: impl FnOnce(&DataPlane, Option<SocketAddr>),
) -> anyhow::Result<()> {
    let mut signals = Signals::new()?;
    let ha = ha::start(config, track_env(config, registry, server)).await?;
    let (admin, mut api_reloads) =
        match crate::admin::start(config, registry, health, server, ha.watchers()) {
            Ok(a) => a,
            Err(e) => {
                ha.shutdown().await;
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
    };
    running.publish_start();
    ready(server, admin.addr());
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
                    admin.reload(&mut running, server);
                }
            },
            request = api_reloads.next() => request.answer(admin.reload(&mut running, server)),
            _ = reopen.recv() => {
                tracing::info!("SIGUSR1: reopening the access log");
                portico_proxy::access_log::reopen_all();
            }
        }
    }
    tracing::info!("stopping: finishing requests in flight (a second signal stops at once)");
    server.shutdown();
    ha.shutdown().await;
    tokio::select! {
        _ = server.closed() => {}
        _ = signals.next_stop() => tracing::warn!("second stop signal: stopping now"),
    }
    admin.stop();
    Ok(())
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

/// VRRP's `track = [{ upstream = "NAME" }]`: whether any server of NAME is usable. The pools
/// built here share live state with the data plane through the registry.
fn upstream_usable(
    config: &Config,
    registry: &Registry,
) -> Arc<dyn Fn(&str) -> bool + Send + Sync> {
    let pools: HashMap<String, Pool> = config
        .upstreams
        .values()
        .map(|u| (u.name.clone(), Pool::new(u, registry)))
        .collect();
    Arc::new(move |name| pools.get(name).is_some_and(Pool::any_usable))
}

fn pid_file(config: &Config) -> std::path::PathBuf {
    config.server.state_dir.join("portico.pid")
}

fn write_pid_file(config: &Config) -> anyhow::Result<()> {
    let dir = &config.server.state_dir;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let path = pid_file(config);
    std::fs::write(&path, format!("{}\n", std::process::id()))
        .with_context(|| format!("cannot write {}", path.display()))
}

fn remove_pid_file(config: &Config) {
    let _ = std::fs::remove_file(pid_file(config));
    crate::reload::remove_status(&config.server.state_dir);
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
