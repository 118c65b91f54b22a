//! Start the real proxy in-process from TOML text, on `127.0.0.1:0` listeners.
//!
//! ```no_run
//! # fn main() -> anyhow::Result<()> {
//! let proxy = portico_testkit::proxy::TestProxy::start(r#"
//!     [upstreams.app]
//!     servers = ["127.0.0.1:9"]
//!     [[sites]]
//!     listen = ["127.0.0.1:0"]
//!     routes = [{ path = "/", proxy = "app" }]
//! "#)?;
//! let addr = proxy.addr();
//! # Ok(()) }
//! ```
//!
//! The TOML is written to `portico.toml` in a fresh temporary folder (extra files can be
//! added with [`TestProxyBuilder::file`]), parsed with `portico_config::parse`, and served
//! with one worker thread unless the TOML sets `threads`; the access log is off unless the
//! TOML sets `access_log`. Dropping the proxy stops it at once and waits for its threads.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;
use portico_balance::Registry;
use portico_config::{AccessLogTarget, Config};
use portico_proxy::{RunningServer, Server};

/// A running in-process proxy.
pub struct TestProxy {
    server: Option<RunningServer>,
    config: Arc<Config>,
    registry: Registry,
    dir: tempfile::TempDir,
}

impl std::fmt::Debug for TestProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestProxy")
            .field("addrs", &self.addrs())
            .finish()
    }
}

/// Builds a [`TestProxy`] with extra files next to the config.
#[derive(Debug)]
pub struct TestProxyBuilder {
    toml: String,
    files: Vec<(PathBuf, Vec<u8>)>,
}

impl TestProxyBuilder {
    /// Add a file (path relative to the config folder) before the proxy starts.
    pub fn file(mut self, path: impl AsRef<Path>, contents: impl AsRef<[u8]>) -> Self {
        self.files
            .push((path.as_ref().to_path_buf(), contents.as_ref().to_vec()));
        self
    }

    /// Write everything, parse, start.
    pub fn start(self) -> anyhow::Result<TestProxy> {
        let dir = tempfile::tempdir().context("cannot create a temporary folder")?;
        for (path, contents) in &self.files {
            let full = dir.path().join(path);
            if let Some(parent) = full.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::write(&full, contents)
                .with_context(|| format!("cannot write {}", full.display()))?;
        }
        let path = dir.path().join("portico.toml");
        std::fs::write(&path, &self.toml)?;
        let mut config = portico_config::parse(&self.toml, &path)
            .map_err(|e| anyhow::anyhow!("invalid test config:\n{e}"))?;
        if !mentions_key(&self.toml, "threads") {
            config.server.threads = 1;
        }
        if !mentions_key(&self.toml, "access_log") {
            config.server.access_log = AccessLogTarget::Off;
        }
        let config = Arc::new(config);
        let registry = Registry::default();
        let server = Server::start(config.clone(), registry.clone())?;
        Ok(TestProxy {
            server: Some(server),
            config,
            registry,
            dir,
        })
    }
}

fn mentions_key(toml: &str, key: &str) -> bool {
    toml.lines()
        .any(|l| l.trim_start().starts_with(key) && l.contains('='))
}

impl TestProxy {
    /// Start a proxy from TOML text.
    pub fn start(toml: &str) -> anyhow::Result<TestProxy> {
        TestProxy::builder(toml).start()
    }

    /// A builder, to add files next to the config first.
    pub fn builder(toml: &str) -> TestProxyBuilder {
        TestProxyBuilder {
            toml: toml.to_string(),
            files: Vec::new(),
        }
    }

    /// The bound address of the first listener.
    pub fn addr(&self) -> SocketAddr {
        self.addrs()[0]
    }

    /// Bound addresses of every listener, in config order.
    pub fn addrs(&self) -> Vec<SocketAddr> {
        self.server
            .as_ref()
            .map(|s| s.bound_addrs().into_iter().map(|(_, b)| b).collect())
            .unwrap_or_default()
    }

    /// The running server (shutdown, connection count).
    pub fn server(&self) -> &RunningServer {
        // Only `Drop` and `wait` take the server out; both consume or end `self`.
        self.server
            .as_ref()
            .unwrap_or_else(|| unreachable!("server taken"))
    }

    /// The parsed config.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The live per-server state shared with the proxy.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The temporary folder holding the config and extra files.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Start a graceful stop and wait until the workers exit.
    pub fn shutdown_and_wait(mut self) {
        if let Some(server) = self.server.take() {
            server.shutdown();
            server.wait();
        }
    }
}

impl Drop for TestProxy {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            server.stop_now();
            server.wait();
        }
    }
}
