//! The data planes one process runs: HTTP sites (`portico-proxy`) and TCP streams
//! (`portico-stream`), started, stopped and awaited together.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use portico_balance::Registry;
use portico_config::Config;
use portico_proxy::{RunningServer, Server};
use portico_stream::{RunningStreams, StreamServer};

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
