//! A running proxy that tests reload from TOML text (config parsed like the binary does).
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use portico_balance::Registry;
use portico_proxy::{ReloadError, ReloadOutcome, RunningServer, Server};

/// The server, its registry and the folder its config files live in.
pub struct Live {
    pub server: RunningServer,
    pub registry: Registry,
    dir: tempfile::TempDir,
}

impl Live {
    pub fn start(toml: &str) -> Result<Live, Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let config = parse(&dir, toml)?;
        let registry = Registry::default();
        let server = Server::start(Arc::new(config), registry.clone())?;
        Ok(Live {
            server,
            registry,
            dir,
        })
    }

    /// Parse `toml` and reload the running server with it.
    pub fn reload(&self, toml: &str) -> Result<ReloadOutcome, ReloadError> {
        let config = parse(&self.dir, toml).expect("valid test config");
        self.server.reload(Arc::new(config), &self.registry)
    }

    /// The bound address of the first listener.
    pub fn addr(&self) -> SocketAddr {
        self.server.bound_addrs()[0].1
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        self.server.stop_now();
    }
}

fn parse(
    dir: &tempfile::TempDir,
    toml: &str,
) -> Result<portico_config::Config, Box<dyn std::error::Error>> {
    let path = dir.path().join("portico.toml");
    std::fs::write(&path, toml)?;
    Ok(portico_config::parse(toml, &path).map_err(|e| format!("invalid test config:\n{e}"))?)
}

/// Poll `f` until it holds or `timeout` passes (then panic naming `what`).
pub fn eventually(timeout: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("timed out waiting: {what}");
}
