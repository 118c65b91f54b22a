//! The worker's upstream keep-alive pool: idle hyper client connections per server.
//!
//! Thread-local (one per worker, no locks). A connection goes back the moment its response
//! body ends; at most `keepalive` idle connections per server are kept (the newest are
//! reused first, the oldest dropped first), and idle ones older than
//! [`IDLE_TIMEOUT`] are closed by a periodic sweep.

use std::cell::RefCell;
use std::collections::HashMap;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use hyper::client::conn::http1::SendRequest;

use crate::bodies::ReqBody;
use crate::worker::Worker;

/// Idle upstream connections older than this are closed (nginx's upstream default).
pub(crate) const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
const SWEEP_EVERY: Duration = Duration::from_secs(5);

struct Idle {
    sender: SendRequest<ReqBody>,
    since: Instant,
}

/// Idle connections by server address.
#[derive(Default)]
pub(crate) struct ConnPool {
    idle: RefCell<HashMap<SocketAddr, VecDeque<Idle>>>,
}

impl std::fmt::Debug for ConnPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnPool")
            .field("servers", &self.idle.borrow().len())
            .finish()
    }
}

impl ConnPool {
    /// The most recently idle connection to `addr` that is still open.
    pub fn take(&self, addr: SocketAddr) -> Option<SendRequest<ReqBody>> {
        let mut idle = self.idle.borrow_mut();
        let list = idle.get_mut(&addr)?;
        while let Some(conn) = list.pop_back() {
            if !conn.sender.is_closed() {
                return Some(conn.sender);
            }
        }
        None
    }

    /// Give a connection back; dropped (closed) when `keepalive` are already idle.
    pub fn put(&self, addr: SocketAddr, sender: SendRequest<ReqBody>, keepalive: usize) {
        if keepalive == 0 || sender.is_closed() {
            return;
        }
        let mut idle = self.idle.borrow_mut();
        let list = idle.entry(addr).or_default();
        if list.len() >= keepalive {
            list.pop_front();
        }
        list.push_back(Idle {
            sender,
            since: Instant::now(),
        });
    }

    /// Close idle connections older than `max_idle` or already closed.
    pub fn sweep(&self, now: Instant, max_idle: Duration) {
        let mut idle = self.idle.borrow_mut();
        for list in idle.values_mut() {
            list.retain(|c| !c.sender.is_closed() && now.duration_since(c.since) < max_idle);
        }
        idle.retain(|_, list| !list.is_empty());
    }

    /// Close every idle connection.
    pub fn clear(&self) {
        self.idle.borrow_mut().clear();
    }
}

/// Periodically close stale idle connections of this worker.
pub(crate) async fn sweeper(worker: Rc<Worker>) {
    let mut tick = tokio::time::interval(SWEEP_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        worker.pool.sweep(Instant::now(), IDLE_TIMEOUT);
    }
}
