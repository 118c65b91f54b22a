//! Basic HTTP/1.1 proxying: keep-alive on both sides, headers, hop-by-hop, routing.

#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use portico_testkit::proxy::TestProxy;

#[test]
fn get_is_proxied_and_both_sides_keep_alive() {
    let backend = echo("b1");
    let proxy = TestProxy::start(&proxy_config(&[backend.addr], "", "")).unwrap();
    let mut conn = Conn::open(proxy.addr());
    for i in 0..20 {
        let r = conn.get("example.com", &format!("/hello/{i}?x=1"));
        assert_eq!(r.status, 200);
        assert_eq!(r.text(), format!("b1\nGET /hello/{i}?x=1 HTTP/1.1\n"));
    }
    // A second client connection reuses the pooled upstream connection too.
    let r = get(proxy.addr(), "example.com", "/again");
    assert_eq!(r.status, 200);
    assert_eq!(
        backend.connections_accepted(),
        1,
        "one upstream connection for all requests"
    );
}
