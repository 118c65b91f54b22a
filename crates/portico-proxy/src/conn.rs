//! Connection phase: one client connection served by hyper's HTTP/1.1 server.
//!
//! hyper parses requests (malformed ones get 400 and the connection closes) and keeps the
//! connection alive; this module adds the timeouts hyper does not have in the shape the
//! config wants: `header_timeout` for the first request head, `keepalive_timeout` for an
//! idle keep-alive connection (one lazily re-armed timer per connection, never reset per
//! request), and the graceful stop (`graceful_shutdown`: finish the request in flight,
//! then close).

use std::cell::Cell;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use http::HeaderValue;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::worker::{RunState, Worker};

/// What every request of one client connection shares.
pub(crate) struct ConnCtx {
    pub worker: Rc<Worker>,
    pub peer: SocketAddr,
    /// Index of the listener (into `Snapshot::listeners`).
    pub listener: usize,
    /// The client's IP as a header value, built once per connection.
    pub real_ip: HeaderValue,
    accepted: Instant,
    /// Requests in service (head received, response body not yet finished).
    active: Cell<u32>,
    served: Cell<u64>,
    idle_since: Cell<Instant>,
}

impl ConnCtx {
    fn new(worker: Rc<Worker>, peer: SocketAddr, listener: usize) -> ConnCtx {
        worker.live.set(worker.live.get() + 1);
        let now = Instant::now();
        let real_ip = HeaderValue::from_str(&peer.ip().to_string())
            .unwrap_or_else(|_| HeaderValue::from_static("unknown"));
        ConnCtx {
            worker,
            peer,
            listener,
            real_ip,
            accepted: now,
            active: Cell::new(0),
            served: Cell::new(0),
            idle_since: Cell::new(now),
        }
    }

    /// When the connection should be closed for idleness, or `None` while busy.
    fn idle_deadline(&self, header_timeout: Duration, keepalive: Duration) -> Option<Instant> {
        if self.active.get() > 0 {
            None
        } else if self.served.get() == 0 {
            Some(self.accepted + header_timeout)
        } else {
            Some(self.idle_since.get() + keepalive)
        }
    }
}

impl Drop for ConnCtx {
    fn drop(&mut self) {
        let live = self.worker.live.get().saturating_sub(1);
        self.worker.live.set(live);
        if live == 0 {
            self.worker.all_closed.notify_waiters();
        }
        let shared = &self.worker.shared;
        let before = shared.connections.fetch_sub(1, Ordering::Relaxed);
        if before >= shared.max_connections {
            shared.slot_freed.notify_waiters();
        }
    }
}

/// Marks one request as in service from its head until its response body is done.
pub(crate) struct ActiveGuard(Rc<ConnCtx>);

impl ActiveGuard {
    pub fn new(ctx: &Rc<ConnCtx>) -> ActiveGuard {
        ctx.active.set(ctx.active.get() + 1);
        ActiveGuard(ctx.clone())
    }
}

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        let ctx = &self.0;
        ctx.active.set(ctx.active.get().saturating_sub(1));
        ctx.served.set(ctx.served.get() + 1);
        ctx.idle_since.set(Instant::now());
    }
}

/// Serve one accepted client connection until it closes.
pub(crate) async fn serve(
    worker: Rc<Worker>,
    stream: TcpStream,
    peer: SocketAddr,
    listener: usize,
) {
    let (header_timeout, keepalive_timeout) = {
        let snap = worker.snapshot();
        (snap.server.header_timeout, snap.server.keepalive_timeout)
    };
    let mut stop = worker.stop_watch().await;
    let ctx = Rc::new(ConnCtx::new(worker, peer, listener));
    let svc_ctx = ctx.clone();
    let service = hyper::service::service_fn(move |req| {
        let ctx = svc_ctx.clone();
        async move { Ok::<_, Infallible>(crate::handler::handle(ctx, req).await) }
    });
    let conn = http1::Builder::new()
        .keep_alive(true)
        .half_close(false)
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    tokio::pin!(conn);
    // Checked lazily: each firing computes the real deadline from the connection's state.
    let timer = tokio::time::sleep(header_timeout.min(keepalive_timeout));
    tokio::pin!(timer);
    let mut draining = false;
    loop {
        tokio::select! {
            biased;
            r = conn.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(peer = %ctx.peer, error = %e, "client connection ended with an error");
                }
                break;
            }
            _ = timer.as_mut() => {
                let now = Instant::now();
                match ctx.idle_deadline(header_timeout, keepalive_timeout) {
                    Some(deadline) if deadline <= now => break,
                    Some(deadline) => timer.as_mut().reset(deadline.into()),
                    None => timer.as_mut().reset((now + keepalive_timeout.min(header_timeout)).into()),
                }
            }
            now = stop.changed() => {
                if now == RunState::Stopped {
                    break;
                }
                if now != RunState::Running && !draining {
                    draining = true;
                    conn.as_mut().graceful_shutdown();
                }
            }
        }
    }
}
