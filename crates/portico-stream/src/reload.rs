//! Stream reloads: [`RunningStreams::reload`] = [`RunningStreams::prepare`] (compile the
//! streams, bind new listen addresses: fallible, changes nothing) + [`RunningStreams::commit`]
//! (apply: infallible). Listeners are identified by their configured address; a kept one whose
//! stream and upstreams are unchanged is not touched at all. `[server] header_timeout` and
//! `shutdown_grace` apply at commit (new connections, the next drain), as on the HTTP plane;
//! `threads`, `max_connections` and the access log belong to the process's plumbing and need
//! a restart (the HTTP plane's reload reports them).
//!
//! Floor: above `running`, `listeners` and `snapshot`; below `server`.

use std::net::SocketAddr;
use std::sync::Arc;

use portico_balance::Registry;
use portico_config::{Config, ServerConfig};
use portico_net::{Plumbing, RunState};

use crate::error::StreamError;
use crate::listeners::{Bound, Inputs, Slot, bind, stream_inputs};
use crate::running::{Pending, RunningStreams};
use crate::shared::lock;
use crate::snapshot::{Snapshot, StreamRt};

/// A compiled, bound, not yet applied stream reload (see [`RunningStreams::prepare`]).
#[derive(Debug)]
pub struct PreparedStreams {
    inner: Option<Prepared>,
}

#[derive(Debug)]
struct Prepared {
    /// Per stream of the new config: what it was compiled from, its listen addresses.
    layout: Vec<(Inputs, Vec<SocketAddr>)>,
    streams: Vec<Arc<StreamRt>>,
    cert_files: Vec<Option<portico_tls::FileCerts>>,
    /// Sockets bound for addresses that are new (one per worker).
    fresh: Vec<Bound>,
    /// `[server]` of the new config (`header_timeout`, `shutdown_grace` apply at commit).
    server: ServerConfig,
    /// The plane, built when none runs yet (the first streams).
    pending: Option<Pending>,
}

/// What a stream reload changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamReload {
    /// `(configured, bound)` stream listeners bound by the reload.
    pub listeners_added: Vec<(SocketAddr, SocketAddr)>,
    /// Stream listeners that stopped accepting (their connections run on, at most until
    /// `shutdown_grace`).
    pub listeners_removed: Vec<SocketAddr>,
    /// Listeners kept whose stream (or an upstream it uses) changed: new connections use the
    /// new settings.
    pub listeners_updated: Vec<SocketAddr>,
    /// What only a restart applies.
    pub needs_restart: Vec<String>,
}

impl RunningStreams {
    /// Apply a reloaded config: listeners are diffed by configured address. A kept listener
    /// whose stream and upstreams are unchanged is not touched at all (its persistence table
    /// stays); a kept one whose stream changed serves new connections with the new settings;
    /// new ones are bound and accept at once; removed ones stop accepting, and their
    /// connections run on, closed if still open at `shutdown_grace`. Connections never move.
    /// On `Err` (a name does not resolve, certificates unusable, a bind fails) nothing
    /// changed. Without streams at start, the first reload that adds some starts the stream
    /// plane (on the process's plumbing; started alone, on plumbing of its own built from the
    /// start-up `[server]`: threads, `max_connections`, access log); removing every stream
    /// leaves it running idle, ready for the next ones. `header_timeout` and
    /// `shutdown_grace` of the new config apply to new connections and the next drain.
    /// [`prepare`](RunningStreams::prepare) then [`commit`](RunningStreams::commit).
    pub fn reload(
        &self,
        config: &Config,
        registry: &Registry,
    ) -> Result<StreamReload, StreamError> {
        let prepared = self.prepare(config, registry)?;
        Ok(self.commit(prepared))
    }

    /// The fallible half of a reload: compile the streams, bind the new listeners. Nothing
    /// changes until [`commit`](RunningStreams::commit); dropping the result undoes it
    /// (closes what it bound), so a caller can apply several planes all or nothing.
    pub fn prepare(
        &self,
        config: &Config,
        registry: &Registry,
    ) -> Result<PreparedStreams, StreamError> {
        let running = self.plane.get();
        if running.is_none() && config.streams.is_empty() {
            return Ok(PreparedStreams { inner: None });
        }
        // The plumbing: the running plane's, the process's, or (started alone) a new one.
        let pending = match running {
            Some(_) => None,
            None => Some(match &self.plumbing {
                Some(p) => Pending::launch(p.clone(), false, &self.server),
                None => Pending::launch(Plumbing::start(&self.server)?, true, &self.server),
            }),
        };
        let Some(workers) = running
            .or_else(|| pending.as_ref().and_then(Pending::plane))
            .map(|p| p.workers().clone())
        else {
            return Ok(PreparedStreams { inner: None });
        };
        let resolver = self
            .plumbing
            .as_ref()
            .map_or_else(portico_net::Resolver::system, |p| p.resolver().clone());
        let mut snapshot = Snapshot::build(config, registry, &self.options, &resolver)?;
        let mut cert_files: Vec<Option<portico_tls::FileCerts>> =
            (0..snapshot.streams.len()).map(|_| None).collect();
        for (i, f) in std::mem::take(&mut snapshot.cert_files) {
            cert_files[i] = Some(f);
        }
        // Bind what is new.
        let kept: Vec<SocketAddr> = running.map_or_else(Vec::new, |p| {
            lock(&p.control).slots.iter().map(|s| s.listen).collect()
        });
        let mut fresh = Vec::new();
        for s in &config.streams {
            for &addr in &s.listen {
                if !kept.contains(&addr) {
                    fresh.push(bind(addr, workers.len())?);
                }
            }
        }
        let layout = config
            .streams
            .iter()
            .map(|s| (stream_inputs(config, s), s.listen.clone()))
            .collect();
        Ok(PreparedStreams {
            inner: Some(Prepared {
                layout,
                streams: snapshot.streams,
                cert_files,
                fresh,
                server: config.server.clone(),
                pending,
            }),
        })
    }

    /// The infallible half of a reload (see [`reload`](RunningStreams::reload)).
    pub fn commit(&self, prepared: PreparedStreams) -> StreamReload {
        let mut out = StreamReload::default();
        let Some(mut p) = prepared.inner else {
            return out;
        };
        if *self.state_rx.borrow() != RunState::Running {
            // Stopping: dropping `p` closes what it bound and ends a pending runtime.
            return out;
        }
        if let Some(pending) = p.pending.take()
            && let Some(plane) = pending.go(&self.state_rx)
        {
            // Reloads are serialized by the caller: the plane cannot be set already.
            let _ = self.plane.set(plane);
        }
        let Some(plane) = self.plane.get() else {
            return out;
        };
        let shared = &plane.shared;
        shared.apply(&p.server);
        *lock(&self.grace) = p.server.shutdown_grace;
        let grace = p.server.shutdown_grace;
        let mut c = lock(&plane.control);
        if *self.state_rx.borrow() != RunState::Running {
            return out;
        }
        let mut old: Vec<Slot> = std::mem::take(&mut c.slots);
        let mut fresh = p.fresh.into_iter();
        let mut used_new = vec![false; p.streams.len()];
        for (i, (inputs, listen)) in p.layout.into_iter().enumerate() {
            for addr in listen {
                if let Some(pos) = old.iter().position(|sl| sl.listen == addr) {
                    let mut slot = old.swap_remove(pos);
                    if slot.inputs != inputs {
                        slot.rt.send_replace(Arc::clone(&p.streams[i]));
                        slot.inputs = inputs.clone();
                        used_new[i] = true;
                        out.listeners_updated.push(addr);
                    }
                    c.slots.push(slot);
                } else if let Some(socket) = fresh.next() {
                    out.listeners_added.push((socket.0, socket.2));
                    let slot = c.spawn_slot(
                        shared,
                        &self.state_rx,
                        socket,
                        inputs.clone(),
                        Arc::clone(&p.streams[i]),
                    );
                    used_new[i] = true;
                    c.slots.push(slot);
                }
            }
        }
        for slot in old {
            out.listeners_removed.push(slot.listen);
            c.retire(slot, grace);
        }
        // Certificate pollers: one per compiled TLS stream still in use.
        let in_use = c.current();
        c.pollers.retain(|(rt, task)| {
            let keep = in_use.iter().any(|r| Arc::ptr_eq(r, rt));
            if !keep {
                task.abort();
            }
            keep
        });
        for (i, files) in p.cert_files.into_iter().enumerate() {
            if let Some(files) = files
                && used_new[i]
            {
                c.spawn_poller(Arc::clone(&p.streams[i]), files);
            }
        }
        *lock(&self.bound) = c.slots.iter().map(|s| (s.listen, s.bound)).collect();
        out
    }
}
