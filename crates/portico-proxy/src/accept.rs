//! Accept phase: listener sockets and the accept loop with the `max_connections` gate.
//!
//! Every worker has its own `SO_REUSEPORT` socket per listen address (backlog 4096), so the
//! kernel spreads connections over workers without a shared accept lock. For port 0 the
//! first socket picks the port and the others bind to the same one. Past
//! `max_connections` (counted over all listeners and workers) accepting pauses: connections
//! wait in the kernel backlog and are served once the count drops.

use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::Ordering;

use tokio::net::TcpListener;

use crate::error::ProxyError;
use crate::worker::{RunState, Worker};

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
    loop {
        if *state.borrow_and_update() != RunState::Running || stop.state() != RunState::Running {
            return;
        }
        // The max_connections gate: wait for a slot before accepting.
        if !wait_for_slot(&worker, &mut state).await {
            return;
        }
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = state.changed() => continue,
            _ = stop.changed() => continue,
        };
        match accepted {
            Ok((stream, peer)) => {
                worker.shared.connections.fetch_add(1, Ordering::Relaxed);
                let _ = stream.set_nodelay(true);
                let w = worker.clone();
                tokio::task::spawn_local(crate::conn::serve(w, stream, peer, id));
            }
            Err(e) => {
                // EMFILE and friends: back off briefly instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
        }
    }
}

/// Returns false when the server stops while waiting.
async fn wait_for_slot(
    worker: &Worker,
    state: &mut tokio::sync::watch::Receiver<RunState>,
) -> bool {
    let shared = &worker.shared;
    loop {
        let notified = shared.slot_freed.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if shared.connections.load(Ordering::Relaxed) < shared.max_connections {
            return true;
        }
        tokio::select! {
            _ = notified => {}
            _ = state.changed() => {
                if *state.borrow_and_update() != RunState::Running {
                    return false;
                }
            }
        }
    }
}
