//! The public face of the L4 data plane: [`StreamServer::start`] and friends, returning a
//! [`RunningStreams`] (mirroring `portico-proxy`'s `Server` / `RunningServer`).
//!
//! Start is synchronous: it compiles the streams (resolving server names), binds every
//! stream listener (one `SO_REUSEPORT` socket per worker, so a restarted process can bind
//! beside the old one) and starts accepting on the workers, then returns. Any failure is
//! returned before anything serves. The workers, the connection gate, the access log and the
//! resolver are the process's [`Plumbing`] ([`StreamServer::start_on`], what the binary does,
//! so sites and streams share `threads` workers and one `max_connections`); started alone
//! ([`StreamServer::start`], [`StreamServer::start_with`]) the plane builds plumbing of its
//! own from `[server]` with its first streams. With no `[[streams]]` it binds nothing, starts
//! nothing and returns an idle handle whose `closed()` completes when `shutdown()` or
//! `stop_now()` is called; the first reload that adds streams starts the plane then. Start
//! is itself "prepare + commit" on the idle handle (`reload.rs`).
//!
//! Floor: the top of the crate (imports `running` and `reload`; nothing imports it).

use std::sync::Arc;

use portico_balance::Registry;
use portico_config::Config;
use portico_net::Plumbing;

use crate::error::StreamError;
use crate::running::RunningStreams;
use crate::shared::StreamOptions;

/// Starts the stream listeners.
#[derive(Debug)]
pub struct StreamServer;

impl StreamServer {
    /// Bind every stream listener, start serving on plumbing of the plane's own, return. A
    /// bind failure names the address; unusable certificate files name the stream and the
    /// file.
    pub fn start(config: Arc<Config>, registry: Registry) -> Result<RunningStreams, StreamError> {
        StreamServer::start_with(config, registry, &StreamOptions::default())
    }

    /// [`start`](StreamServer::start) with non-default [`StreamOptions`].
    pub fn start_with(
        config: Arc<Config>,
        registry: Registry,
        options: &StreamOptions,
    ) -> Result<RunningStreams, StreamError> {
        StreamServer::start_inner(&config, &registry, options, None)
    }

    /// Start on the process's `plumbing` (its workers, connection gate, access log and
    /// resolver, shared with the HTTP plane). The caller shuts the plumbing down once every
    /// plane on it has stopped.
    pub fn start_on(
        config: Arc<Config>,
        registry: Registry,
        options: &StreamOptions,
        plumbing: &Plumbing,
    ) -> Result<RunningStreams, StreamError> {
        StreamServer::start_inner(&config, &registry, options, Some(plumbing.clone()))
    }

    fn start_inner(
        config: &Config,
        registry: &Registry,
        options: &StreamOptions,
        plumbing: Option<Plumbing>,
    ) -> Result<RunningStreams, StreamError> {
        let streams = RunningStreams::new(&config.server, options, plumbing);
        if !config.streams.is_empty() {
            // The same path as a reload adding the first streams: all or nothing.
            let prepared = streams.prepare(config, registry)?;
            streams.commit(prepared);
        }
        Ok(streams)
    }
}
