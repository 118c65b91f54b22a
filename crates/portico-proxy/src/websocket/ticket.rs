//! A live WebSocket's ticket: its place in the worker's registry
//! ([`crate::worker::websockets`]) and its own drain trigger, followed by the pipe's stop
//! watch. Dropping the ticket unregisters the WebSocket.

use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use portico_balance::ServerId;

use crate::snapshot::Snapshot;
use crate::worker::state::{StopWatch, Worker};
use crate::worker::stop::{RunState, Trigger};
use crate::worker::websockets::{UpgradeFrom, WsOrigin};

/// One live WebSocket's place in the worker's registry; dropping it unregisters.
pub(crate) struct WsTicket {
    worker: Rc<Worker>,
    origin: Rc<WsOrigin>,
    id: u64,
    trigger: Rc<Trigger>,
}

impl WsTicket {
    /// Register a WebSocket upgraded `from` there to `server`, routed by `snap`. When a
    /// reload published a newer snapshot meanwhile (its drain may have run before this
    /// registration), the origin is checked against that one now and drains at once if it
    /// is no longer routed there.
    pub fn new(
        worker: &Rc<Worker>,
        snap: &Snapshot,
        from: UpgradeFrom,
        server: ServerId,
    ) -> WsTicket {
        let trigger = Trigger::new();
        worker.shared.websockets.fetch_add(1, Ordering::Relaxed);
        let (origin, id) = worker.websockets.register(server, from, &trigger);
        let current = worker.snapshot();
        if !std::ptr::eq(snap, &**current) && !origin.still_routed(&current) {
            let grace = current.server.shutdown_grace;
            trigger.fire(RunState::Draining(Instant::now() + grace));
        }
        WsTicket {
            worker: worker.clone(),
            origin,
            id,
            trigger,
        }
    }

    /// A stop watch over the worker's run state, the connection's listener and this
    /// WebSocket's own trigger.
    pub async fn stop_watch(&self, listener: SocketAddr) -> StopWatch {
        self.worker
            .stop_watch_with(Some(listener), Some(self.trigger.clone()))
            .await
    }
}

impl Drop for WsTicket {
    fn drop(&mut self) {
        self.worker
            .shared
            .websockets
            .fetch_sub(1, Ordering::Relaxed);
        self.worker.websockets.unregister(&self.origin, self.id);
    }
}
