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
use crate::policy::real_ip::is_trusted;
use crate::worker::conn::{ConnCounted, ConnCtx};
use crate::worker::state::Worker;
use crate::worker::stop::RunState;

/// Bind `threads` `SO_REUSEPORT` sockets to `addr` (see `portico_net::bind_group`, which
/// also refuses an address another process already listens on). Returns them and the bound
/// address.
///
/// `TCP_NODELAY` is set on the listening sockets: Linux copies it to every connection they
/// accept, which saves one `setsockopt` per client connection (what `set_nodelay` after
/// `accept` cost).
pub(crate) fn bind_group(
    addr: SocketAddr,
    threads: usize,
) -> Result<(Vec<std::net::TcpListener>, SocketAddr), ProxyError> {
    let (sockets, bound) = portico_net::bind_group(addr, threads)
        .map_err(|source| ProxyError::Bind { addr, source })?;
    for s in &sockets {
        socket2::SockRef::from(s)
            .set_tcp_nodelay(true)
            .map_err(|source| ProxyError::Bind { addr, source })?;
    }
    Ok((sockets, bound))
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
                // TCP_NODELAY comes from the listening socket (see `bind_group`).
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
    let (timeouts, tls, proxy_protocol, series) = {
        let (snap, index) = worker.snapshot_for(listener);
        let tls = index.is_some_and(|i| snap.listeners[i].tls);
        let proxy_protocol = index.is_some_and(|i| snap.listeners[i].proxy_protocol);
        (
            Timeouts {
                header: snap.server.header_timeout,
                keepalive: snap.server.keepalive_timeout,
                send: snap.server.send_timeout,
                send_min_rate: snap.server.send_min_rate,
                max_requests: snap.server.keepalive_requests,
            },
            tls,
            proxy_protocol,
            index.and_then(|i| snap.listeners[i].metrics),
        )
    };
    let mut stream = stream;
    let peer = if proxy_protocol {
        match proxy_client(&worker, &mut stream, peer, timeouts.header).await {
            Some(client) => client,
            None => {
                // No ConnCtx yet, which would give the slot back when dropped.
                worker.shared.gate.release();
                return;
            }
        }
    } else {
        peer
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

/// `accept_proxy_protocol` listeners: the client the connection's PROXY header names (the
/// peer itself for v1 `UNKNOWN` / v2 `LOCAL`), read within `header_timeout` before anything
/// else (before the TLS ClientHello on TLS listeners). `None`: close the connection: no
/// valid header in time, or a peer outside a non-empty `[server] trusted_proxies` (its
/// header is not believed, and the listener serves only connections with one, as HAProxy's
/// `accept-proxy`).
async fn proxy_client(
    worker: &Worker,
    stream: &mut TcpStream,
    peer: SocketAddr,
    header_timeout: std::time::Duration,
) -> Option<SocketAddr> {
    use portico_net::proxy_protocol::{ProxyAddrs, read_header};
    {
        let nets = &worker.snapshot().server.trusted_proxies;
        if !nets.is_empty() && !is_trusted(nets, peer.ip()) {
            tracing::info!(%peer, "PROXY header from a peer outside trusted_proxies: connection closed");
            return None;
        }
    }
    let deadline = tokio::time::Instant::now() + header_timeout;
    match read_header(stream, deadline).await {
        Ok(h) => match h.addrs {
            ProxyAddrs::Tcp { src, .. } => {
                Some(SocketAddr::new(src.ip().to_canonical(), src.port()))
            }
            ProxyAddrs::Unknown => Some(peer),
        },
        Err(e) => {
            tracing::debug!(%peer, error = %e, "no valid PROXY header: connection closed");
            None
        }
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::time::{Duration, Instant};

    /// The accept loop no longer sets `TCP_NODELAY` per connection: every connection a
    /// listener of [`super::bind_group`] accepts must have it from the listening socket.
    #[test]
    fn accepted_connections_have_tcp_nodelay_from_the_listener() {
        let (sockets, bound) = super::bind_group("127.0.0.1:0".parse().unwrap(), 2).unwrap();
        let clients: Vec<_> = (0..4)
            .map(|_| std::net::TcpStream::connect(bound).unwrap())
            .collect();
        let mut accepted = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        while accepted.len() < clients.len() && Instant::now() < deadline {
            for s in &sockets {
                // The sockets are non-blocking; SO_REUSEPORT spreads the connections.
                if let Ok((c, _)) = s.accept() {
                    accepted.push(c);
                }
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(accepted.len(), clients.len());
        for c in &accepted {
            assert!(c.nodelay().unwrap(), "accepted without TCP_NODELAY");
        }
    }
}
