//! Drains narrower than the whole server: one listener removed by a reload, or the
//! WebSockets a reload leaves without their route or their server.
//!
//! A [`Trigger`] is a worker-local run state of its own (`Running`, `Draining(deadline)`,
//! `Stopped`) that a task's [`crate::worker::state::StopWatch`] combines with the worker's: the
//! connection or WebSocket pipe then behaves exactly as in a graceful stop (finish the request
//! in flight, or close 1001 at a frame boundary) without the rest of the worker noticing.
//!
//! - Listener triggers are shared by the accept loop and every connection of that listener;
//!   firing one wakes every stop watcher of the worker (rare: only when a reload removes a
//!   listener).
//! - WebSocket triggers belong to one pipe (its [`WsTicket`]) and wake only that task. The
//!   worker keeps a registry of live WebSockets keyed by [`WsOrigin`]: the server the pipe
//!   goes to ([`ServerId`], upstream name + address as written) and where its upgrade came
//!   from (listener, `Host`, path). After a reload every distinct origin is routed again
//!   against the new snapshot ([`WsOrigin::still_routed`]): a WebSocket stays untouched
//!   exactly when the same upgrade request, sent now, would reach a WebSocket proxy route of
//!   the same upstream and that upstream still has its server. Otherwise (its server, site or
//!   route removed, the route now proxying to another upstream or no longer proxying
//!   WebSockets) it drains. WebSockets with the same origin share one key (the registry
//!   keeps no copy per WebSocket) and a reload checks each origin once.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::task::Waker;
use std::time::{Duration, Instant};

use portico_balance::ServerId;

use crate::snapshot::Snapshot;
use crate::worker::conn::ConnCtx;
use crate::worker::state::{RunState, StopWatch, Worker};

/// A drain signal for one listener or one WebSocket (see the module doc).
#[derive(Debug)]
pub(crate) struct Trigger {
    state: Cell<RunState>,
    waker: RefCell<Option<Waker>>,
}

impl Trigger {
    pub fn new() -> Rc<Trigger> {
        Rc::new(Trigger {
            state: Cell::new(RunState::Running),
            waker: RefCell::new(None),
        })
    }

    pub fn state(&self) -> RunState {
        self.state.get()
    }

    /// Move to `state` (never back to `Running`) and wake the registered task.
    pub fn fire(&self, state: RunState) {
        let next = combine(self.state.get(), state);
        if self.state.replace(next) != next
            && let Some(waker) = self.waker.borrow_mut().take()
        {
            waker.wake();
        }
    }

    /// Remember the task to wake on [`Trigger::fire`] (one task per trigger).
    pub fn register(&self, waker: &Waker) {
        let mut slot = self.waker.borrow_mut();
        if !slot.as_ref().is_some_and(|w| w.will_wake(waker)) {
            *slot = Some(waker.clone());
        }
    }
}

/// The stricter of two run states: `Stopped` over `Draining` (earliest deadline) over
/// `Running`.
pub(crate) fn combine(a: RunState, b: RunState) -> RunState {
    match (a, b) {
        (RunState::Stopped, _) | (_, RunState::Stopped) => RunState::Stopped,
        (RunState::Draining(x), RunState::Draining(y)) => RunState::Draining(x.min(y)),
        (RunState::Draining(x), RunState::Running) | (RunState::Running, RunState::Draining(x)) => {
            RunState::Draining(x)
        }
        (RunState::Running, RunState::Running) => RunState::Running,
    }
}

/// Where a WebSocket's upgrade came from: enough to route the same upgrade again against a
/// newer snapshot.
#[derive(Debug, PartialEq, Eq, Hash)]
pub(crate) struct UpgradeFrom {
    /// The connection's listener (configured address).
    listener: SocketAddr,
    /// `Host` (header, else the URI's) and path of the upgrade request; `None` when the
    /// site was chosen by something a reload cannot replay (a TLS handshake's SNI for a
    /// request without `Host`): then only the server is checked.
    request: Option<UpgradeRequest>,
}

/// `Host` and path of an upgrade request, as received.
#[derive(Debug, PartialEq, Eq, Hash)]
struct UpgradeRequest {
    host: Option<Box<[u8]>>,
    path: Box<str>,
}

impl UpgradeFrom {
    /// The origin of an upgrade request on `ctx`'s connection, taken before the request is
    /// rewritten for the server (`Host`, `strip_prefix`).
    pub fn new(ctx: &ConnCtx, req: &http::request::Parts) -> UpgradeFrom {
        let host = req
            .headers
            .get(http::header::HOST)
            .map(|h| h.as_bytes())
            .or_else(|| req.uri.host().map(str::as_bytes));
        // As `handler::handle` picks the site: without `Host`, a TLS request's SNI decides.
        let request = match (host, ctx.sni_site.get()) {
            (None, Some(_)) => None,
            _ => Some(UpgradeRequest {
                host: host.map(Box::from),
                path: Box::from(req.uri.path()),
            }),
        };
        UpgradeFrom {
            listener: ctx.listener,
            request,
        }
    }
}

/// A WebSocket's registry key: where its upgrade came from and the server it went to.
#[derive(Debug, PartialEq, Eq, Hash)]
pub(crate) struct WsOrigin {
    server: ServerId,
    from: UpgradeFrom,
}

impl WsOrigin {
    /// Whether `snap` still sends this upgrade where it went: the listener exists, the
    /// request's site and route proxy WebSockets to the upstream of the same name (not an
    /// https redirect), and that upstream still has the server.
    pub fn still_routed(&self, snap: &Snapshot) -> bool {
        let name = &*self.server.upstream;
        let upstream = match &self.from.request {
            Some(r) => snap.websocket_upstream(self.from.listener, r.host.as_deref(), &r.path),
            None => snap.upstreams.iter().find(|u| u.config.name == name),
        };
        upstream.is_some_and(|u| {
            u.config.name == name && u.pool.members().iter().any(|m| m.id == self.server)
        })
    }
}

/// The triggers of the WebSockets of one origin, by ticket id.
type Triggers = HashMap<u64, Rc<Trigger>>;

/// The worker's live WebSockets by origin (WebSockets with equal origins share the key).
#[derive(Debug, Default)]
pub(crate) struct WsRegistry {
    by_origin: RefCell<HashMap<Rc<WsOrigin>, Triggers>>,
    next: Cell<u64>,
}

impl WsRegistry {
    /// The triggers of every WebSocket to one of `servers` or whose origin `snap` no longer
    /// routes to its server.
    fn triggers_to_drain(&self, servers: &HashSet<ServerId>, snap: &Snapshot) -> Vec<Rc<Trigger>> {
        self.by_origin
            .borrow()
            .iter()
            .filter(|(o, _)| servers.contains(&o.server) || !o.still_routed(snap))
            .flat_map(|(_, m)| m.values().cloned())
            .collect()
    }
}

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
        let origin = WsOrigin { server, from };
        let reg = &worker.websockets;
        let id = reg.next.get();
        reg.next.set(id + 1);
        let trigger = Trigger::new();
        worker.shared.websockets.fetch_add(1, Ordering::Relaxed);
        let origin = {
            let mut map = reg.by_origin.borrow_mut();
            let key = match map.get_key_value(&origin) {
                Some((key, _)) => key.clone(),
                None => Rc::new(origin),
            };
            map.entry(key.clone())
                .or_default()
                .insert(id, trigger.clone());
            key
        };
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
    pub async fn stop_watch(&self, listener: std::net::SocketAddr) -> StopWatch {
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
        let mut map = self.worker.websockets.by_origin.borrow_mut();
        if let Some(m) = map.get_mut(&self.origin) {
            m.remove(&self.id);
            if m.is_empty() {
                map.remove(&self.origin);
            }
        }
    }
}

/// Drain the WebSockets on this worker that go to one of `servers` (removed by a reload) or
/// whose origin the current snapshot no longer routes to their server (see the module doc):
/// close 1001 to the i-th of n at `start + window * i / n`, each with the hard cap
/// `deadline`. Returns how many.
pub(crate) fn drain_websockets(
    worker: &Worker,
    servers: &HashSet<ServerId>,
    start: Instant,
    window: Duration,
    deadline: Instant,
) -> usize {
    let snap = worker.snapshot();
    let triggers = worker.websockets.triggers_to_drain(servers, &snap);
    let n = triggers.len();
    if n == 0 {
        return 0;
    }
    tokio::task::spawn_local(async move {
        for (i, trigger) in triggers.into_iter().enumerate() {
            let at = start + spread(window, i, n);
            tokio::time::sleep_until(at.into()).await;
            trigger.fire(RunState::Draining(deadline));
        }
    });
    n
}

/// Offset of the i-th of n drains spread evenly over `window`.
fn spread(window: Duration, i: usize, n: usize) -> Duration {
    let n = u32::try_from(n.max(1)).unwrap_or(u32::MAX);
    let i = u32::try_from(i).unwrap_or(u32::MAX).min(n);
    window / n * i
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::sync::Arc;

    const APP1: &str = "127.0.0.1:9001";
    const APP2: &str = "127.0.0.1:9002";

    /// A snapshot of: upstreams `app` (`app_servers`) and `other`; one site on
    /// 127.0.0.1:0 with `routes`, and `extra` appended. Nothing is bound.
    fn snap(app_servers: &[&str], routes: &str, extra: &str) -> Snapshot {
        let list: Vec<String> = app_servers.iter().map(|a| format!("\"{a}\"")).collect();
        let toml = format!(
            "[upstreams.app]\nservers = [{}]\n\n[upstreams.other]\nservers = [\"127.0.0.1:9003\"]\n\n\
             [[sites]]\nlisten = [\"127.0.0.1:0\"]\nroutes = [{routes}]\n\n{extra}",
            list.join(", ")
        );
        let config = portico_config::parse(&toml, std::path::Path::new("portico.toml")).unwrap();
        Snapshot::build(&Arc::new(config), &portico_balance::Registry::default()).unwrap()
    }

    const WS: &str = "{ path = \"/ws\", proxy = \"app\" }";

    fn origin(server: &str, host: Option<&str>, path: &str) -> WsOrigin {
        WsOrigin {
            server: ServerId {
                upstream: "app".into(),
                addr: server.into(),
            },
            from: UpgradeFrom {
                listener: "127.0.0.1:0".parse().unwrap(),
                request: Some(UpgradeRequest {
                    host: host.map(|h| Box::from(h.as_bytes())),
                    path: path.into(),
                }),
            },
        }
    }

    #[test]
    fn an_origin_stays_routed_while_its_route_and_server_stay() {
        let o = origin(APP1, Some("h"), "/ws/chat");
        assert!(o.still_routed(&snap(&[APP1, APP2], WS, "")));
        // Other changes: another server, another route, header rules on its own route.
        assert!(o.still_routed(&snap(
            &[APP1],
            "{ path = \"/ws\", proxy = \"app\", request_headers = { set = { x-a = \"1\" } } }, \
             { path = \"/api\", proxy = \"other\" }",
            ""
        )));
        // Replaced by a route that still proxies its upgrade to the same upstream.
        assert!(o.still_routed(&snap(&[APP1], "{ path = \"/\", proxy = \"app\" }", "")));
    }

    #[test]
    fn an_origin_is_no_longer_routed_when_its_route_server_or_listener_goes() {
        let o = origin(APP1, Some("h"), "/ws/chat");
        let gone = [
            (
                "route removed",
                snap(&[APP1], "{ path = \"/other\", proxy = \"app\" }", ""),
            ),
            (
                "to another upstream",
                snap(&[APP1], "{ path = \"/ws\", proxy = \"other\" }", ""),
            ),
            (
                "no longer a proxy route",
                snap(&[APP1], "{ path = \"/ws\", respond = \"no\" }", ""),
            ),
            (
                "websocket = false",
                snap(
                    &[APP1],
                    "{ path = \"/ws\", proxy = \"app\", websocket = false }",
                    "",
                ),
            ),
            (
                "a longer route takes the path elsewhere",
                snap(
                    &[APP1],
                    &format!("{WS}, {{ path = \"/ws/chat\", proxy = \"other\" }}"),
                    "",
                ),
            ),
            ("server removed", snap(&[APP2], WS, "")),
        ];
        for (what, s) in &gone {
            assert!(!o.still_routed(s), "{what}");
        }
        let mut moved = o;
        moved.from.listener = "127.0.0.2:0".parse().unwrap();
        assert!(!moved.still_routed(&snap(&[APP1], WS, "")), "listener gone");
    }

    #[test]
    fn the_site_is_chosen_by_host_again() {
        let site2 = "[[sites]]\nlisten = [\"127.0.0.1:0\"]\nhosts = [\"b.test\"]\n\
                     routes = [{ path = \"/\", proxy = \"app\" }]\n";
        let o = origin(APP1, Some("B.Test:8080"), "/chat");
        let with = snap(&[APP1], "{ path = \"/ws\", respond = \"no\" }", site2);
        assert!(o.still_routed(&with));
        let without = snap(&[APP1], "{ path = \"/ws\", respond = \"no\" }", "");
        assert!(!o.still_routed(&without), "its site is gone");
        // Without Host and without SNI: the listener's first site, as for a request.
        let no_host = origin(APP1, None, "/ws");
        assert!(no_host.still_routed(&snap(&[APP1], WS, site2)));
        assert!(!no_host.still_routed(&with));
    }

    #[test]
    fn an_origin_picked_by_sni_checks_only_its_server() {
        let mut o = origin(APP1, None, "/");
        o.from.request = None;
        assert!(o.still_routed(&snap(&[APP1], "{ path = \"/x\", respond = \"no\" }", "")));
        assert!(!o.still_routed(&snap(&[APP2], WS, "")));
    }

    #[test]
    fn combine_prefers_the_stricter_state() {
        let t0 = Instant::now();
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(
            combine(RunState::Running, RunState::Running),
            RunState::Running
        );
        assert_eq!(
            combine(RunState::Running, RunState::Draining(t1)),
            RunState::Draining(t1)
        );
        assert_eq!(
            combine(RunState::Draining(t1), RunState::Draining(t0)),
            RunState::Draining(t0)
        );
        assert_eq!(
            combine(RunState::Draining(t0), RunState::Stopped),
            RunState::Stopped
        );
    }

    #[test]
    fn a_trigger_never_goes_back_to_running() {
        let t = Trigger::new();
        let d = Instant::now();
        t.fire(RunState::Draining(d));
        t.fire(RunState::Running);
        assert_eq!(t.state(), RunState::Draining(d));
        t.fire(RunState::Stopped);
        assert_eq!(t.state(), RunState::Stopped);
    }

    #[test]
    fn drains_are_spread_over_the_window() {
        let w = Duration::from_secs(10);
        assert_eq!(spread(w, 0, 4), Duration::ZERO);
        assert_eq!(spread(w, 2, 4), Duration::from_secs(5));
        assert!(spread(w, 3, 4) < w);
        assert_eq!(spread(w, 0, 1), Duration::ZERO);
    }
}
