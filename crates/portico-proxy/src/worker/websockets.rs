//! The worker's registry of live WebSockets, so that a reload can drain exactly the ones it
//! leaves without their route or their server.
//!
//! Every WebSocket pipe holds a ticket (`WsTicket`, in `websocket::ticket`) with its
//! own [`Trigger`]. The registry keys the triggers by [`WsOrigin`]: the server the pipe goes
//! to ([`ServerId`], upstream name + address as written) and where its upgrade came from
//! (listener, `Host`, path). After a reload every distinct origin is routed again against the
//! new snapshot ([`WsOrigin::still_routed`]): a WebSocket stays untouched exactly when the
//! same upgrade request, sent now, would reach a WebSocket proxy route of the same upstream
//! and that upstream still has its server. Otherwise (its server, site or route removed, the
//! route now proxying to another upstream or no longer proxying WebSockets) it drains.
//! WebSockets with the same origin share one key (the registry keeps no copy per WebSocket)
//! and a reload checks each origin once.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::rc::Rc;

use portico_balance::ServerId;

use crate::snapshot::Snapshot;
use crate::worker::stop::Trigger;

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
    /// The origin of an upgrade request on a connection of `listener` (whose TLS handshake's
    /// SNI chose `sni_site`), taken before the request is rewritten for the server (`Host`,
    /// `strip_prefix`).
    pub fn new(
        listener: SocketAddr,
        sni_site: Option<usize>,
        req: &http::request::Parts,
    ) -> UpgradeFrom {
        let host = req
            .headers
            .get(http::header::HOST)
            .map(|h| h.as_bytes())
            .or_else(|| req.uri.host().map(str::as_bytes));
        // As `handler::handle` picks the site: without `Host`, a TLS request's SNI decides.
        let request = match (host, sni_site) {
            (None, Some(_)) => None,
            _ => Some(UpgradeRequest {
                host: host.map(Box::from),
                // The form the router matched (`;` parameters dropped, `%2F` read as `/`),
                // so that a reload routes the origin again exactly as the upgrade was routed.
                path: match crate::proto::path::match_form(req.uri.path()) {
                    Ok(p) => Box::from(p.as_ref()),
                    Err(_) => Box::from(req.uri.path()),
                },
            }),
        };
        UpgradeFrom { listener, request }
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
    pub fn triggers_to_drain(
        &self,
        servers: &HashSet<ServerId>,
        snap: &Snapshot,
    ) -> Vec<Rc<Trigger>> {
        self.by_origin
            .borrow()
            .iter()
            .filter(|(o, _)| servers.contains(&o.server) || !o.still_routed(snap))
            .flat_map(|(_, m)| m.values().cloned())
            .collect()
    }

    /// Register the `trigger` of a WebSocket upgraded `from` there to `server`: its origin
    /// (shared with the WebSockets of the same origin) and its id in the registry.
    pub fn register(
        &self,
        server: ServerId,
        from: UpgradeFrom,
        trigger: &Rc<Trigger>,
    ) -> (Rc<WsOrigin>, u64) {
        let origin = WsOrigin { server, from };
        let id = self.next.get();
        self.next.set(id + 1);
        let mut map = self.by_origin.borrow_mut();
        let key = match map.get_key_value(&origin) {
            Some((key, _)) => key.clone(),
            None => Rc::new(origin),
        };
        map.entry(key.clone())
            .or_default()
            .insert(id, trigger.clone());
        (key, id)
    }

    /// Forget the WebSocket `id` of `origin` (the origin too when it was the last).
    pub fn unregister(&self, origin: &WsOrigin, id: u64) {
        let mut map = self.by_origin.borrow_mut();
        if let Some(m) = map.get_mut(origin) {
            m.remove(&id);
            if m.is_empty() {
                map.remove(origin);
            }
        }
    }
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
}
