//! Traffic policy through the in-process proxy with real sockets: `access` rules by source
//! address (clients bound to 127.0.0.2 and 127.0.0.3), on a site and on its routes.

#![allow(clippy::unwrap_used)]

mod common;

use std::io::BufReader;
use std::net::{IpAddr, SocketAddr, TcpStream};

use common::*;
use portico_testkit::proxy::TestProxy;
use socket2::{Domain, Socket, Type};

/// A client connection to `to` from the address `from` (any port).
fn conn_from(from: &str, to: SocketAddr) -> Conn {
    let ip: IpAddr = from.parse().unwrap();
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    socket.bind(&SocketAddr::new(ip, 0).into()).unwrap();
    socket.connect(&to.into()).unwrap();
    let s: TcpStream = socket.into();
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    s.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    Conn {
        reader: BufReader::new(s),
    }
}

fn status_from(from: &str, to: SocketAddr, path: &str) -> (u16, String) {
    let r = conn_from(from, to).get("example.com", path);
    (r.status, r.text())
}

#[test]
fn access_rules_allow_and_deny_by_source_address_first_match_wins() {
    let backend = echo("b1");
    let proxy = TestProxy::start(&format!(
        r#"
[upstreams.app]
servers = ["{}"]

[[sites]]
listen = ["127.0.0.1:0"]
access = ["deny 127.0.0.3", "allow 127.0.0.0/8", "deny all"]
routes = [
  {{ path = "/", proxy = "app" }},
  {{ path = "/open", respond = "open\n", access = [] }},
  {{ path = "/only2", respond = "two\n", access = ["allow 127.0.0.2", "deny all"] }},
  {{ path = "/static", root = "www", access = ["deny 127.0.0.2/32"] }},
]
"#,
        backend.addr
    ))
    .unwrap();
    let addr = proxy.addr();
    // The site's list: 127.0.0.3 matches its first rule (deny) before the /8 allow.
    let (s, body) = status_from("127.0.0.2", addr, "/x");
    assert_eq!((s, body.as_str()), (200, "b1\nGET /x HTTP/1.1\n"));
    assert_eq!(
        status_from("127.0.0.3", addr, "/x"),
        (403, "403 Forbidden\n".into())
    );
    assert_eq!(status_from("127.0.0.1", addr, "/x").0, 200);
    // A route's empty list replaces the site's: everyone passes.
    assert_eq!(status_from("127.0.0.3", addr, "/open").0, 200);
    // A route's own list.
    assert_eq!(status_from("127.0.0.2", addr, "/only2").0, 200);
    assert_eq!(status_from("127.0.0.1", addr, "/only2").0, 403);
    assert_eq!(status_from("127.0.0.3", addr, "/only2").0, 403);
    // On a static route, checked before the file system is looked at.
    assert_eq!(status_from("127.0.0.2", addr, "/static/none").0, 403);
    assert_eq!(status_from("127.0.0.3", addr, "/static/none").0, 404);
    // A refused request keeps the connection usable (403 is an answer, not a close).
    let mut c = conn_from("127.0.0.3", addr);
    assert_eq!(c.get("example.com", "/x").status, 403);
    assert_eq!(c.get("example.com", "/open").status, 200);
    // The backend saw only the allowed proxied requests.
    assert_eq!(backend.connections_accepted(), 1);
}
