//! Accept phase: listener sockets and the accept loop with the `max_connections` gate.
//!
//! Every worker has its own `SO_REUSEPORT` socket per listen address (backlog 4096), so the
//! kernel spreads connections over workers without a shared accept lock. For port 0 the
//! first socket picks the port and the others bind to the same one. Past
//! `max_connections` (counted over all listeners and workers) accepting pauses: connections
//! wait in the kernel backlog and are served once the count drops.
//!
//! The count is the process's (`portico_net::Gate`, shared with the stream plane's
//! listeners) and never passes `max_connections`, without a lock: an accept loop accepts
//! only while the count is below the limit, then takes its slot with a compare-and-swap that
//! fails at the limit. Several loops (workers, listeners, planes) may see the last free slot
//! and each accept one connection; the first takes the slot, the others hold their accepted
//! connection unserved (as if still in the backlog) until a slot frees. So at most one
//! connection per accept loop waits in user space, and none is served past the limit.

use std::net::SocketAddr;
use std::rc::Rc;

use tokio::net::{TcpListener, TcpStream};

use crate::client::http::{Timeouts, serve_h1};
use crate::client::tls;
use crate::error::ProxyError;
use crate::worker::conn::{ConnCounted, ConnCtx};
use crate::worker::state::Worker;
use crate::worker::stop::RunState;

/// Bind `threads` `SO_REUSEPORT` sockets to `addr` (see `portico_net::bind_group`, which
/// also refuses an address another process already listens on). Returns them and the bound
/// address.
pub(crate) fn bind_group(
    addr: SocketAddr,
    threads: usize,
) -> Result<(Vec<std::net::TcpListener>, SocketAddr), ProxyError> {
    portico_net::bind_group(addr, threads).map_err(|source| ProxyError::Bind { addr, source })
}

/// Accept connections on one listener (`id`: its configured address) until the server
/// stops accepting or a reload removes the listener (its trigger fires).
pub(crate) async fn accept_loop(worker: Rc<Worker>, listener: TcpListener, id: SocketAddr) {
    let mut state = worker.shared.state.subscribe();
    let mut stop = worker.stop_watch_with(Some(id), None).await;
    let mut short_of_fds = false;
    loop {
        if *state.borrow_and_update() != RunState::Running || stop.state() != RunState::Running {
            return;
        }
        // The max_connections gate: wait for a free slot before accepting.
        if !wait_for_slot(&worker, &mut state, Slot::Free).await {
            return;
        }
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = state.changed() => continue,
            _ = stop.changed() => continue,
        };
        match accepted {
            Ok((stream, peer)) => {
                short_of_fds = false;
                // Another loop may have taken the last slot since the check: then this
                // connection waits for one (closed if the server stops meanwhile).
                if !wait_for_slot(&worker, &mut state, Slot::Take).await {
                    return;
                }
                let _ = stream.set_nodelay(true);
                let w = worker.clone();
                tokio::task::spawn_local(serve(w, stream, peer, id));
            }
            Err(e) => {
                // Out of descriptors (EMFILE, ENFILE) or buffers: pause accepting for a
                // while as nginx does (the connections wait in the backlog), warning once
                // per episode; other errors (a peer gone before accept) retry soon.
                let pause = accept_pause(&e);
                if pause.is_some() && !short_of_fds {
                    tracing::warn!(error = %e, "accept: out of file descriptors, pausing accepts for 500 ms at a time (see the fd limit logged at start)");
                } else {
                    tracing::debug!(error = %e, "accept failed");
                }
                short_of_fds = pause.is_some();
                tokio::time::sleep(pause.unwrap_or(std::time::Duration::from_millis(10))).await;
            }
        }
    }
}

/// How long to stop accepting after `e`: `Some` when the process or host is out of
/// descriptors or buffers (nginx waits 500 ms too), `None` for errors of one connection.
fn accept_pause(e: &std::io::Error) -> Option<std::time::Duration> {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
    .then_some(std::time::Duration::from_millis(500))
}

/// What [`wait_for_slot`] waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    /// A slot is free (nothing taken: before accepting).
    Free,
    /// A slot was taken for an accepted connection (counted in `connections`; the
    /// connection gives it back when it closes, see `conn::ConnCtx`).
    Take,
}

/// Serve one accepted client connection until it closes: TLS listeners go through the
/// handshake first ([`tls`]).
pub(crate) async fn serve(
    worker: Rc<Worker>,
    stream: TcpStream,
    peer: SocketAddr,
    listener: SocketAddr,
) {
    let (timeouts, tls, series) = {
        let (snap, index) = worker.snapshot_for(listener);
        let tls = index.is_some_and(|i| snap.listeners[i].tls);
        (
            Timeouts {
                header: snap.server.header_timeout,
                keepalive: snap.server.keepalive_timeout,
                send: snap.server.send_timeout,
                send_min_rate: snap.server.send_min_rate,
                max_requests: snap.server.keepalive_requests,
            },
            tls,
            index.and_then(|i| snap.listeners[i].metrics),
        )
    };
    // Accepted now, closed when this task ends (however it ends).
    let _counted = series.map(|(id, _)| ConnCounted::new(&worker, id));
    let stop = worker.stop_watch_with(Some(listener), None).await;
    let ctx = Rc::new(ConnCtx::new(worker, peer, listener, tls));
    if tls {
        // Boxed: the TLS state machine (handshake, h2) would otherwise size every plain
        // connection's task too (~7 KiB each).
        Box::pin(tls::serve(ctx, stream, stop, timeouts)).await;
    } else {
        serve_h1(ctx, stream, stop, timeouts).await;
    }
}

/// Wait until a slot is free (or taken, see [`Slot`]) at the process's gate
/// (`portico_net::Gate`, shared with the stream plane); false when the server stops while
/// waiting.
async fn wait_for_slot(
    worker: &Worker,
    state: &mut tokio::sync::watch::Receiver<RunState>,
    slot: Slot,
) -> bool {
    let gate = &worker.shared.gate;
    loop {
        let got = async {
            match slot {
                Slot::Free => gate.wait_room().await,
                Slot::Take => gate.wait_take_counted().await,
            }
        };
        tokio::select! {
            () = got => return true,
            _ = state.changed() => {
                if *state.borrow_and_update() != RunState::Running {
                    return false;
                }
            }
        }
    }
}
