//! A site's `error_pages` replace the bodies of Portico's own error responses (a dead
//! upstream's 502, no route's 404, `access`'s 403), keep their status and extra headers,
//! and never touch a server's answer or a `respond` route.

#![allow(clippy::unwrap_used)]

use crate::common;

use common::*;
use portico_testkit::proxy::TestProxy;

#[test]
fn own_errors_get_the_site_pages_and_other_answers_are_untouched() {
    let backend = echo("b1");
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_addr = dead.local_addr().unwrap();
    drop(dead);
    let proxy = TestProxy::builder(&format!(
        r#"
[upstreams.dead]
servers = ["{dead_addr}"]
retries = 0

[upstreams.app]
servers = ["{}"]

[[sites]]
listen = ["127.0.0.1:0"]
error_pages = {{ 502 = "errors/502.html", 404 = "errors/404.txt", 403 = "errors/403.html", 503 = "errors/502.html" }}
routes = [
  {{ path = "/dead", proxy = "dead" }},
  {{ path = "/app", proxy = "app", strip_prefix = true }},
  {{ path = "/says502", respond = "mine\n", status = 502 }},
  {{ path = "/closed", respond = "x", access = ["deny all"] }},
  {{ path = "/limited", respond = "x", limit_rate = {{ rate = "1r/m" }} }},
]
"#,
        backend.addr
    ))
    .file("errors/502.html", "<h1>down for a moment</h1>\n")
    .file("errors/404.txt", "nothing here\n")
    .file("errors/403.html", "<p>not for you</p>\n")
    .start()
    .unwrap();
    let addr = proxy.addr();

    let r = get(addr, "example.com", "/dead");
    assert_eq!(r.status, 502);
    assert_eq!(r.text(), "<h1>down for a moment</h1>\n");
    assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
    let r = get(addr, "example.com", "/nowhere");
    assert_eq!((r.status, r.text().as_str()), (404, "nothing here\n"));
    assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
    let r = get(addr, "example.com", "/closed");
    assert_eq!((r.status, r.text().as_str()), (403, "<p>not for you</p>\n"));

    // Not Portico's own errors: a respond route's 502 and the server's own 404.
    let r = get(addr, "example.com", "/says502");
    assert_eq!((r.status, r.text().as_str()), (502, "mine\n"));
    let r = get(addr, "example.com", "/app/_echo/status?code=404");
    assert_eq!(r.status, 404);
    assert!(r.text().starts_with("b1\n"), "{}", r.text());

    // A status without a page keeps Portico's text and its headers.
    assert_eq!(get(addr, "example.com", "/limited").status, 200);
    let r = get(addr, "example.com", "/limited");
    assert_eq!(
        (r.status, r.text().as_str()),
        (429, "429 Too Many Requests\n")
    );
    assert!(r.header("retry-after").is_some());
}
