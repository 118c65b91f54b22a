//! The data planes one process runs: HTTP sites (`portico-proxy`) and TCP streams
//! (`portico-stream`), started, stopped and awaited together.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use portico_balance::Registry;
use portico_config::Config;
use portico_proxy::{RunningServer, Server};
use portico_stream::{RunningStreams, StreamServer};

/// What a reload changed, for the log and `portico reload`.
#[derive(Debug, Clone)]
pub struct ReloadSummary {
    /// One line: listeners added/removed, servers removed.
    pub changes: String,
    /// Changes that apply only after a restart.
    pub needs_restart: Vec<String>,
}

/// Both data planes, running on their own worker threads.
pub struct DataPlane {
    http: RunningServer,
    streams: RunningStreams,
}

impl DataPlane {
    /// Bind every listener and start the workers; a bind failure names the address.
    pub fn start(config: &Arc<Config>, registry: &Registry) -> anyhow::Result<DataPlane> {
        let http = Server::start(config.clone(), registry.clone()).context("cannot start")?;
        let streams = match StreamServer::start(config.clone(), registry.clone()) {
            Ok(streams) => streams,
            Err(err) => {
                http.stop_now();
                http.wait();
                return Err(err).context("cannot start streams");
            }
        };
        Ok(DataPlane { http, streams })
    }

    /// Bound addresses of the HTTP site listeners (what the VRRP `listeners` track probes).
    pub fn site_addrs(&self) -> Vec<SocketAddr> {
        self.http
            .bound_addrs()
            .into_iter()
            .map(|(_, b)| b)
            .collect()
    }

    /// Bound addresses of every listener, sites first, then streams.
    pub fn all_addrs(&self) -> Vec<SocketAddr> {
        let streams = self.streams.bound_addrs().into_iter().map(|(_, b)| b);
        self.site_addrs().into_iter().chain(streams).collect()
    }

    /// Apply a reloaded config (validated) to both planes: the HTTP plane swaps its
    /// snapshot and diffs its listeners (see `portico_proxy::RunningServer::reload`); the
    /// stream plane keeps running and reports what needs a restart. On `Err` nothing
    /// changed.
    pub fn reload(
        &self,
        config: &Arc<Config>,
        registry: &Registry,
    ) -> anyhow::Result<ReloadSummary> {
        let http = self.http.reload(config.clone(), registry)?;
        let mut needs_restart: Vec<String> = http
            .needs_restart
            .iter()
            .map(|k| format!("{k} changed: it applies at the next start"))
            .collect();
        needs_restart.extend(self.streams.reload(config));
        let mut changes = Vec::new();
        for (configured, bound) in &http.listeners_added {
            changes.push(format!("listener {configured} added (bound {bound})"));
        }
        for l in &http.listeners_removed {
            changes.push(format!("listener {l} removed (its connections drain)"));
        }
        for s in &http.servers_removed {
            changes.push(format!(
                "server {} of upstream {} removed (its WebSockets drain)",
                s.addr, s.upstream
            ));
        }
        let changes = if changes.is_empty() {
            "listeners unchanged".to_string()
        } else {
            changes.join("; ")
        };
        Ok(ReloadSummary {
            changes,
            needs_restart,
        })
    }

    /// Graceful stop: stop accepting, let connections finish within `shutdown_grace`.
    pub fn shutdown(&self) {
        self.http.shutdown();
        self.streams.shutdown();
    }

    /// Stop at once.
    pub fn stop_now(&self) {
        self.http.stop_now();
        self.streams.stop_now();
    }

    /// Resolves when both planes have stopped.
    pub async fn closed(&self) {
        tokio::join!(self.http.closed(), self.streams.closed());
    }

    /// Block until every worker thread has exited.
    pub fn wait(self) {
        self.http.wait();
        self.streams.wait();
    }
}
