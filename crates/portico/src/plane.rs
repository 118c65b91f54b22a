//! The data planes one process runs: HTTP sites (`portico-proxy`) and TCP streams
//! (`portico-stream`), started, stopped and awaited together.
//!
//! TLS for sites: a `portico_tls::TlsRuntime` (the SNI resolver every TLS listener shares,
//! the certificate-file poller, the ACME manager of `[acme]`, the HTTP-01 answers) runs on a
//! small runtime of its own (one thread, `portico-tls`), started before the HTTP plane and
//! handed to it as a `TlsContext`. It is started even without TLS sites, so a reload that
//! adds one finds it; a reload applies the new sites to it before the HTTP plane swaps.
//! With `[cluster]`, the ACME manager shares its state through etcd (`crate::cluster_acme`).

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use portico_balance::Registry;
use portico_config::Config;
use portico_net::Plumbing;
use portico_proxy::{RunningServer, Server, TlsContext};
use portico_stream::{RunningStreams, StreamOptions, StreamServer};
use portico_tls::TlsRuntime;
use portico_tls::acme::{AcmeSettings, Http01Challenges};

/// What a reload changed, for the log and `portico reload`.
#[derive(Debug, Clone)]
pub struct ReloadSummary {
    /// One line: listeners added/removed, servers removed.
    pub changes: String,
    /// Changes that apply only after a restart.
    pub needs_restart: Vec<String>,
}

/// Both data planes, on the process's plumbing (`portico_net::Plumbing`: the `threads`
/// workers, the `max_connections` gate, the access log, the resolver).
pub struct DataPlane {
    http: RunningServer,
    streams: RunningStreams,
    tls: TlsPlane,
    plumbing: Plumbing,
}

/// The TLS runtime of the sites and the tokio runtime its tasks run on.
struct TlsPlane {
    runtime: Option<tokio::runtime::Runtime>,
    /// Shared with the admin API, which reads the certificates' status.
    tls: Arc<std::sync::Mutex<TlsRuntime>>,
}

impl TlsPlane {
    /// Load the sites' certificate files, start the poller and the ACME tasks (`acme`:
    /// from `[acme]`). A missing or broken certificate file is an error here.
    fn start(config: &Config, acme: Option<AcmeSettings>) -> anyhow::Result<TlsPlane> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("portico-tls")
            .enable_all()
            .build()
            .context("cannot start the TLS runtime")?;
        let shared = crate::cluster_acme::shared_acme(config, &runtime)?;
        let tls = {
            let _inside = runtime.enter();
            TlsRuntime::start_with_shared(
                &config.sites,
                &config.base_dir,
                acme,
                Http01Challenges::new(),
                shared,
            )
            .context("cannot load the certificates")?
        };
        Ok(TlsPlane {
            runtime: Some(runtime),
            tls: Arc::new(std::sync::Mutex::new(tls)),
        })
    }

    fn context(&self) -> TlsContext {
        TlsContext::from_runtime(&self.lock())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, TlsRuntime> {
        self.tls
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Apply a reloaded config's sites (certificates loaded and watched anew, ACME groups
    /// started/stopped). On `Err` the running certificates stay.
    fn reload(&self, config: &Config) -> anyhow::Result<()> {
        let _inside = self.runtime.as_ref().map(|rt| rt.enter());
        self.lock()
            .reload_with_acme(
                &config.sites,
                &config.base_dir,
                AcmeSettings::for_config(config),
            )
            .map(|_| ())
            .context("cannot load the certificates")
    }
}

impl Drop for TlsPlane {
    fn drop(&mut self) {
        self.lock().stop();
        // Never blocks, also when dropped inside another runtime.
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

impl DataPlane {
    /// Bind every listener and start the workers; a bind failure names the address. ACME
    /// settings come from the config's `[acme]` section.
    pub fn start(config: &Arc<Config>, registry: &Registry) -> anyhow::Result<DataPlane> {
        DataPlane::start_with(config, registry, AcmeSettings::for_config(config))
    }

    /// [`DataPlane::start`] with explicit ACME settings (tests shorten its timings).
    pub fn start_with(
        config: &Arc<Config>,
        registry: &Registry,
        acme: Option<AcmeSettings>,
    ) -> anyhow::Result<DataPlane> {
        let tls = TlsPlane::start(config, acme)?;
        let plumbing = Plumbing::start(&config.server).context("cannot start")?;
        let http = match Server::start_on(
            config.clone(),
            registry.clone(),
            Some(tls.context()),
            &plumbing,
        ) {
            Ok(http) => http,
            Err(err) => {
                plumbing.shutdown_and_join();
                return Err(err).context("cannot start");
            }
        };
        let streams = match StreamServer::start_on(
            config.clone(),
            registry.clone(),
            &StreamOptions::default(),
            &plumbing,
        ) {
            Ok(streams) => streams,
            Err(err) => {
                http.stop_now();
                http.wait();
                plumbing.shutdown_and_join();
                return Err(err).context("cannot start streams");
            }
        };
        Ok(DataPlane {
            http,
            streams,
            tls,
            plumbing,
        })
    }

    /// Bound addresses of the HTTP site listeners (what the VRRP `listeners` track probes).
    pub fn site_addrs(&self) -> Vec<SocketAddr> {
        self.http
            .bound_addrs()
            .into_iter()
            .map(|(_, b)| b)
            .collect()
    }

    /// Every bound listener: protocol (`http`, `https`, `stream`), configured and bound
    /// address (for the admin API).
    pub fn listeners(&self) -> Vec<(&'static str, SocketAddr, SocketAddr)> {
        let config = self.http.config();
        let tls_listen = |addr: &SocketAddr| {
            config
                .sites
                .iter()
                .any(|s| s.tls.is_some() && s.listen.contains(addr))
        };
        let sites = self.http.bound_addrs().into_iter().map(|(c, b)| {
            let protocol = if tls_listen(&c) { "https" } else { "http" };
            (protocol, c, b)
        });
        let streams = self
            .streams
            .bound_addrs()
            .into_iter()
            .map(|(c, b)| ("stream", c, b));
        sites.chain(streams).collect()
    }

    /// The sites' TLS runtime (certificate status for the admin API).
    pub fn tls_runtime(&self) -> Arc<std::sync::Mutex<TlsRuntime>> {
        Arc::clone(&self.tls.tls)
    }

    /// Drains chosen servers' WebSockets on the HTTP plane (the admin API's `disable`).
    pub fn ws_drainer(&self) -> portico_proxy::WsDrainer {
        self.http.ws_drainer()
    }

    /// Bound addresses of the stream listeners (what the VRRP `listeners` track checks
    /// besides the sites').
    pub fn stream_addrs(&self) -> Vec<SocketAddr> {
        self.streams
            .bound_addrs()
            .into_iter()
            .map(|(_, b)| b)
            .collect()
    }

    /// `(configured, bound)` address of every listener, sites first, then streams (what a
    /// binary upgrade hands over).
    pub fn handover_addrs(&self) -> Vec<(SocketAddr, SocketAddr)> {
        let mut all = self.http.bound_addrs();
        all.extend(self.streams.bound_addrs());
        all
    }

    /// Bound addresses of every listener, sites first, then streams.
    pub fn all_addrs(&self) -> Vec<SocketAddr> {
        let mut all = self.site_addrs();
        all.extend(self.stream_addrs());
        all
    }

    /// Apply a reloaded config (validated) to both planes: the HTTP plane swaps its
    /// snapshot and diffs its listeners (see `portico_proxy::RunningServer::reload`), the
    /// stream plane diffs its listeners too (`portico_stream::RunningStreams::reload`). On
    /// `Err` neither plane changed (certificates aside: see `TlsPlane::reload`).
    pub fn reload(
        &self,
        config: &Arc<Config>,
        registry: &Registry,
    ) -> anyhow::Result<ReloadSummary> {
        // Streams compiled and their new listeners bound first, applied only once the sites
        // are: a failure anywhere leaves both planes as they were.
        let streams = self
            .streams
            .prepare(config, registry)
            .context("cannot apply the streams")?;
        // Certificates first: new TLS sites have theirs before their listeners serve.
        self.tls.reload(config)?;
        let http = match self.http.reload(config.clone(), registry) {
            Ok(http) => http,
            Err(err) => {
                // The sites stay as they were: so must their certificates.
                let running = self.http.config();
                if let Err(restore) = self.tls.reload(&running) {
                    tracing::error!(error = %format!("{restore:#}"), "cannot restore the running certificates after a refused reload");
                }
                return Err(err.into());
            }
        };
        let streams = self.streams.commit(streams);
        let mut needs_restart: Vec<String> = http
            .needs_restart
            .iter()
            .map(|k| format!("{k} changed: it applies at the next start"))
            .collect();
        needs_restart.extend(streams.needs_restart);
        let mut changes = Vec::new();
        for (configured, bound) in &http.listeners_added {
            changes.push(format!("listener {configured} added (bound {bound})"));
        }
        for l in &http.listeners_removed {
            changes.push(format!("listener {l} removed (its connections drain)"));
        }
        for (configured, bound) in &streams.listeners_added {
            changes.push(format!(
                "stream listener {configured} added (bound {bound})"
            ));
        }
        for l in &streams.listeners_removed {
            changes.push(format!(
                "stream listener {l} removed (its connections drain)"
            ));
        }
        for l in &streams.listeners_updated {
            changes.push(format!(
                "stream on {l} changed (new connections use the new settings)"
            ));
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

    /// Block until both planes have stopped, then end the worker threads (what still runs
    /// on them is dropped: the hard close).
    pub fn wait(self) {
        self.http.wait();
        self.streams.wait();
        self.plumbing.shutdown_and_join();
        drop(self.tls);
    }
}
