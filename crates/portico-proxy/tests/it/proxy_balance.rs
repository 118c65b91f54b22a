//! Balancers through the proxy: distribution, ip_hash stickiness and failover.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;

use crate::common::*;
use portico_testkit::proxy::TestProxy;

fn names(proxy: &TestProxy, n: usize) -> HashMap<String, usize> {
    let mut seen = HashMap::new();
    let mut conn = Conn::open(proxy.addr());
    for _ in 0..n {
        let r = conn.get("h", "/");
        assert_eq!(r.status, 200);
        let name = r.text().lines().next().unwrap().to_string();
        *seen.entry(name).or_default() += 1;
    }
    seen
}

#[test]
fn round_robin_spreads_evenly_and_by_weight() {
    let (a, b, c) = (echo("a"), echo("b"), echo("c"));
    let proxy = TestProxy::start(&proxy_config(&[a.addr, b.addr, c.addr], "", "")).unwrap();
    let seen = names(&proxy, 30);
    assert_eq!(seen.get("a"), Some(&10), "{seen:?}");
    assert_eq!(seen.get("b"), Some(&10), "{seen:?}");
    assert_eq!(seen.get("c"), Some(&10), "{seen:?}");
    let toml = format!(
        "[upstreams.app]\nservers = [{{ addr = \"{}\", weight = 3 }}, \"{}\"]\n[[sites]]\nlisten = [\"127.0.0.1:0\"]\nroutes = [{{ path = \"/\", proxy = \"app\" }}]\n",
        a.addr, b.addr
    );
    let proxy = TestProxy::start(&toml).unwrap();
    let seen = names(&proxy, 40);
    assert_eq!(seen.get("a"), Some(&30), "{seen:?}");
    assert_eq!(seen.get("b"), Some(&10), "{seen:?}");
}

#[test]
fn least_conn_random_two_and_hash_reach_every_server() {
    let (a, b) = (echo("a"), echo("b"));
    for balance in ["least_conn", "random_two"] {
        let proxy = TestProxy::start(&proxy_config(
            &[a.addr, b.addr],
            &format!("balance = \"{balance}\""),
            "",
        ))
        .unwrap();
        let seen = names(&proxy, 60);
        assert_eq!(seen.len(), 2, "{balance}: {seen:?}");
    }
    // hash on a query parameter: the same key always reaches the same server.
    let proxy = TestProxy::start(&proxy_config(
        &[a.addr, b.addr],
        "balance = \"hash\"\nhash_key = \"query:user\"",
        "",
    ))
    .unwrap();
    let mut per_key = HashMap::new();
    let mut conn = Conn::open(proxy.addr());
    for round in 0..3 {
        for user in 0..20 {
            let r = conn.get("h", &format!("/?user=u{user}"));
            let name = r.text().lines().next().unwrap().to_string();
            let first = per_key.entry(user).or_insert_with(|| name.clone());
            assert_eq!(*first, name, "round {round} user {user}");
        }
    }
    let distinct: std::collections::HashSet<_> = per_key.values().collect();
    assert_eq!(distinct.len(), 2, "20 keys use both servers");
}

#[test]
fn ip_hash_is_sticky_and_fails_over_when_the_server_dies() {
    let (a, b) = (echo("a"), echo("b"));
    let proxy = TestProxy::start(&proxy_config(
        &[a.addr, b.addr],
        "balance = \"ip_hash\"\nretries = 1",
        "",
    ))
    .unwrap();
    let seen = names(&proxy, 10);
    assert_eq!(
        seen.len(),
        1,
        "one client IP sticks to one server: {seen:?}"
    );
    let chosen = seen.keys().next().unwrap().clone();
    let (dying, other) = if chosen == "a" { (&a, "b") } else { (&b, "a") };
    dying.stop();
    let seen = names(&proxy, 5);
    assert_eq!(
        seen.get(other),
        Some(&5),
        "failover to the other server: {seen:?}"
    );
}
