//! The worker's event loop: one per worker thread of the process's pool (`portico_net::
//! Workers`, each a tokio current-thread runtime), serving its listeners (`SO_REUSEPORT`
//! sockets) until the server stops.
//!
//! A reload ([`crate::server::reload`]) publishes a new snapshot through the `ArcSwap` and
//! sends each worker [`Command`]s: start accepting on a newly bound listener, stop one that
//! was removed (its connections drain through the listener's trigger, then close at the
//! cap), drain the WebSockets of removed servers ([`crate::server::drain`]). A graceful stop
//! waits for the worker's connections up to the deadline.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use portico_balance::ServerId;
use tokio::sync::{mpsc, watch};

use crate::client::accept::accept_loop;
use crate::server::drain::drain_websockets;
use crate::worker::pool::sweeper;
use crate::worker::state::{Shared, Worker};
use crate::worker::stop::{RunState, Trigger};

/// What a reload asks of each worker.
#[derive(Debug)]
pub(crate) enum Command {
    /// Start accepting on this worker's socket of a newly bound listener.
    AddListener {
        id: SocketAddr,
        socket: std::net::TcpListener,
    },
    /// Stop accepting on a removed listener; its connections finish gracefully (requests
    /// on them see `Shared::retired`, the last snapshot that had the listener) and are
    /// closed at `deadline`.
    RemoveListener { id: SocketAddr, deadline: Instant },
    /// Send close 1001 to the WebSockets of these servers (removed by a reload, or
    /// disabled through the admin API) and to those whose upgrade the current snapshot no
    /// longer routes to their server, spread over `window`, hard close at `deadline`.
    DrainServers {
        servers: Arc<HashSet<ServerId>>,
        window: Duration,
        deadline: Instant,
    },
}

/// Start accepting on `socket` (the listener `id`).
fn add_listener(worker: &Rc<Worker>, id: SocketAddr, socket: std::net::TcpListener) {
    match tokio::net::TcpListener::from_std(socket) {
        Ok(l) => {
            worker.listeners.borrow_mut().insert(id, Trigger::new());
            tokio::task::spawn_local(accept_loop(worker.clone(), l, id));
        }
        Err(e) => tracing::error!(listen = %id, error = %e, "cannot register a listener"),
    }
}

/// Apply one reload command.
fn apply(worker: &Rc<Worker>, command: Command) {
    match command {
        Command::AddListener { id, socket } => add_listener(worker, id, socket),
        Command::RemoveListener { id, deadline } => {
            // The fired trigger stays registered until the cap, so that a connection
            // accepted just before the accept loop saw it drains too.
            let Some(trigger) = worker.listeners.borrow().get(&id).cloned() else {
                return;
            };
            trigger.fire(RunState::Draining(deadline));
            worker.wake_all();
            let owner = worker.clone();
            tokio::task::spawn_local(async move {
                tokio::time::sleep_until(deadline.into()).await;
                trigger.fire(RunState::Stopped);
                owner.wake_all();
                let mut map = owner.listeners.borrow_mut();
                if map.get(&id).is_some_and(|t| Rc::ptr_eq(t, &trigger)) {
                    map.remove(&id);
                }
            });
        }
        Command::DrainServers {
            servers,
            window,
            deadline,
        } => {
            let n = drain_websockets(worker, &servers, Instant::now(), window, deadline);
            if n > 0 {
                tracing::info!(
                    websockets = n,
                    "draining websockets (server removed or disabled, or upgrade no longer routed)"
                );
            }
        }
    }
}

/// One worker's loop (a local task on its worker thread): serve `listeners` (identity,
/// socket) until stopped. What it spawned and still runs when it returns is dropped with the
/// worker threads (the hard close).
pub(crate) async fn serve(
    shared: Arc<Shared>,
    listeners: Vec<(SocketAddr, std::net::TcpListener)>,
    mut commands: mpsc::UnboundedReceiver<Command>,
) {
    let worker = Rc::new(Worker::new(shared.clone()));
    for (id, socket) in listeners {
        add_listener(&worker, id, socket);
    }
    tokio::task::spawn_local(sweeper(worker.pool.clone()));
    let mut state = shared.state.subscribe();
    let mut commands_open = true;
    let deadline = loop {
        let now = *state.borrow_and_update();
        worker.set_run_state(now);
        match now {
            RunState::Running => {}
            RunState::Draining(deadline) => break Some(deadline),
            RunState::Stopped => break None,
        }
        tokio::select! {
            r = state.changed() => if r.is_err() {
                break None;
            },
            command = commands.recv(), if commands_open => match command {
                Some(command) => apply(&worker, command),
                None => commands_open = false,
            },
        }
    };
    if let Some(deadline) = deadline {
        drain(&worker, &mut state, deadline).await;
    }
    worker.set_run_state(RunState::Stopped);
    worker.pool.clear();
}

/// Wait until every connection of this worker has closed, the deadline passes, or a hard
/// stop arrives.
async fn drain(worker: &Worker, state: &mut watch::Receiver<RunState>, deadline: Instant) {
    let sleep = tokio::time::sleep_until(deadline.into());
    tokio::pin!(sleep);
    loop {
        let closed = worker.all_closed.notified();
        tokio::pin!(closed);
        closed.as_mut().enable();
        if worker.live.get() == 0 {
            return;
        }
        tokio::select! {
            _ = &mut sleep => return,
            _ = closed => {}
            r = state.changed() => {
                let now = if r.is_err() { RunState::Stopped } else { *state.borrow_and_update() };
                worker.set_run_state(now);
                if now == RunState::Stopped {
                    return;
                }
            }
        }
    }
}
