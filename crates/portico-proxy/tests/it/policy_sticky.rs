//! `sticky_cookie` through the in-process proxy with real echo backends: the
//! `sticky_cookie_max_age` attribute, and a cookie naming a server the operator drains or
//! disables is not honoured: the request is balanced as usual and a new cookie pins the
//! client to the server that answered (the cookie is honoured again once the server is
//! enabled).

#![allow(clippy::unwrap_used)]

use crate::common;

use std::io::Write;

use common::*;
use portico_balance::{AdminState, ServerId};
use portico_testkit::proxy::TestProxy;

fn get_with(addr: std::net::SocketAddr, cookie: Option<&str>) -> Resp {
    let mut c = Conn::open(addr);
    let cookie = cookie
        .map(|c| format!("Cookie: {c}\r\n"))
        .unwrap_or_default();
    c.stream()
        .write_all(format!("GET / HTTP/1.1\r\nHost: app.test\r\n{cookie}\r\n").as_bytes())
        .unwrap();
    c.read_response(false)
}

fn name(r: &Resp) -> String {
    r.header("x-echo-name").unwrap().to_string()
}

#[test]
fn max_age_is_set_and_a_drained_or_disabled_server_is_re_picked_and_re_pinned() {
    let (a, b) = (echo("a"), echo("b"));
    let proxy = TestProxy::start(&proxy_config(
        &[a.addr, b.addr],
        "sticky_cookie = \"srv\"\nsticky_cookie_max_age = \"2h\"",
        "",
    ))
    .unwrap();
    let addr = proxy.addr();
    let first = get_with(addr, None);
    assert_eq!(first.status, 200);
    let set = first.header("set-cookie").unwrap().to_string();
    assert!(
        set.ends_with("; Path=/; HttpOnly; SameSite=Lax; Max-Age=7200"),
        "{set}"
    );
    let cookie = set.split(';').next().unwrap().to_string();
    let pinned = name(&first);
    for _ in 0..4 {
        let r = get_with(addr, Some(&cookie));
        assert_eq!(name(&r), pinned, "honoured");
        assert!(r.header("set-cookie").is_none());
    }
    let pinned_addr = if pinned == "a" { a.addr } else { b.addr };
    let state = proxy.registry().state(&ServerId {
        upstream: "app".into(),
        addr: pinned_addr.to_string().into(),
    });
    for admin in [AdminState::Draining, AdminState::Disabled] {
        state.set_admin_state(admin);
        let r = get_with(addr, Some(&cookie));
        assert_ne!(name(&r), pinned, "{admin:?}: re-picked");
        let reset = r.header("set-cookie").expect("re-pinned");
        assert!(reset.ends_with("; Max-Age=7200"), "{reset}");
        assert_ne!(reset.split(';').next().unwrap(), cookie, "{admin:?}");
    }
    state.set_admin_state(AdminState::Enabled);
    let r = get_with(addr, Some(&cookie));
    assert_eq!(name(&r), pinned, "honoured again once enabled");
}
