//! `retries` as documented (0-1000): a request tries more than 16 servers when the
//! upstream has them (the tries are no longer capped at 16).

#![allow(clippy::unwrap_used)]

use crate::common;

use common::*;
use portico_testkit::proxy::TestProxy;

#[test]
fn twenty_dead_servers_then_a_live_one_with_retries_20() {
    let backend = echo("live");
    // All twenty are bound at once (so each gets its own port) and closed together:
    // a listener closed right after binding can hand its port to the next bind.
    let listeners: Vec<std::net::TcpListener> = (0..20)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    let dead: Vec<String> = listeners
        .iter()
        .map(|l| format!("\"{}\"", l.local_addr().unwrap()))
        .collect();
    drop(listeners);
    let servers = format!("{}, \"{}\"", dead.join(", "), backend.addr);
    let proxy = TestProxy::start(&format!(
        r#"
[upstreams.app]
servers = [{servers}]
retries = 20
max_fails = 0

[[sites]]
listen = ["127.0.0.1:0"]
routes = [{{ path = "/", proxy = "app" }}]
"#
    ))
    .unwrap();
    // Every request starts its round robin somewhere else; each one reaches the live
    // server however many dead ones come first (up to 20 of them).
    for i in 0..21 {
        let r = get(proxy.addr(), "example.com", &format!("/{i}"));
        assert_eq!(r.status, 200, "request {i}: {}", r.text());
        assert!(r.text().starts_with("live\n"));
    }
}
