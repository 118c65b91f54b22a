//! [`Plumbing`]: the pieces of one process that both data planes run on, built once from
//! `[server]` (by the binary, or by a plane started alone) and handed to each plane.

use std::sync::Arc;

use portico_config::ServerConfig;

use crate::access_log::AccessLog;
use crate::gate::Gate;
use crate::resolve::Resolver;
use crate::workers::Workers;

/// Why the plumbing could not be built.
#[derive(Debug, thiserror::Error)]
pub enum PlumbingError {
    #[error("cannot start the worker threads: {0}")]
    Workers(std::io::Error),
    #[error("cannot open the access log: {0}")]
    AccessLog(std::io::Error),
}

/// The worker pool, the connection gate, the access log and the name resolver of one
/// process. Cheap to clone: clones share everything.
#[derive(Debug, Clone)]
pub struct Plumbing {
    workers: Workers,
    gate: Arc<Gate>,
    access_log: AccessLog,
    resolver: Resolver,
}

impl Plumbing {
    /// `[server] threads` workers, a gate of `max_connections`, the access log opened on
    /// `access_log` in `access_log_format`, the system resolver.
    pub fn start(server: &ServerConfig) -> Result<Plumbing, PlumbingError> {
        let access_log = AccessLog::open(&server.access_log, server.access_log_format)
            .map_err(PlumbingError::AccessLog)?;
        let workers = Workers::start(server.threads).map_err(PlumbingError::Workers)?;
        Ok(Plumbing {
            workers,
            gate: Gate::new(server.max_connections),
            access_log,
            resolver: Resolver::system(),
        })
    }

    /// The same plumbing resolving names with `resolver`.
    pub fn with_resolver(mut self, resolver: Resolver) -> Plumbing {
        self.resolver = resolver;
        self
    }

    pub fn workers(&self) -> &Workers {
        &self.workers
    }

    pub fn gate(&self) -> &Arc<Gate> {
        &self.gate
    }

    pub fn access_log(&self) -> &AccessLog {
        &self.access_log
    }

    pub fn resolver(&self) -> &Resolver {
        &self.resolver
    }

    /// End the worker threads and wait for them (see [`Workers::shutdown`]). Call once
    /// every plane on this plumbing has stopped; not from a worker thread.
    pub fn shutdown_and_join(&self) {
        self.workers.shutdown();
        self.workers.join();
    }
}
