//! End to end: the real proxy (`portico-testkit`) and the active checks share one registry.
//! With passive health and retries off, only the active checks keep clients away from a
//! dead server; when every server fails its checks the proxy answers 503.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use crate::support::*;
use portico_balance::HealthChecks;
use portico_config::HealthKind;
use portico_testkit::proxy::TestProxy;

/// One `GET /` through the proxy: (status, first body line).
fn get(proxy: SocketAddr) -> (u16, String) {
    let mut conn = TcpStream::connect(proxy).expect("connect to the proxy");
    conn.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    conn.write_all(b"GET / HTTP/1.1\r\nhost: test\r\nconnection: close\r\n\r\n")
        .expect("write");
    let mut answer = String::new();
    conn.read_to_string(&mut answer).expect("read the answer");
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {answer:?}"));
    let body = answer.split("\r\n\r\n").nth(1).unwrap_or_default();
    (status, body.lines().next().unwrap_or_default().to_owned())
}

fn answers(proxy: SocketAddr, n: usize) -> Vec<(u16, String)> {
    (0..n).map(|_| get(proxy)).collect()
}

#[test]
fn proxied_requests_avoid_servers_that_fail_their_checks() {
    let a = echo("alpha");
    let b = echo("beta");
    let a_addr = a.addr;
    let toml = format!(
        "[upstreams.app]\nservers = [\"{}\", \"{}\"]\nmax_fails = 0\nretries = 0\n\n\
         [[sites]]\nlisten = [\"127.0.0.1:0\"]\nroutes = [{{ path = \"/\", proxy = \"app\" }}]\n",
        a.addr, b.addr
    );
    let proxy = TestProxy::start(&toml).expect("proxy");
    let cfg = with_check(proxy.config().clone(), check(HealthKind::Http, "/"));
    let checks = HealthChecks::start(&cfg, proxy.registry()).expect("checks");
    let (sa, sb) = (
        state(proxy.registry(), &a_addr.to_string()),
        state(proxy.registry(), &b.addr.to_string()),
    );
    let both = answers(proxy.addr(), 10);
    assert!(both.contains(&(200, "alpha".into())) && both.contains(&(200, "beta".into())));

    a.stop();
    assert!(
        time_until(WAIT, || !sa.is_healthy()).is_some(),
        "alpha never ejected"
    );
    let after = answers(proxy.addr(), 20);
    assert!(
        after.iter().all(|a| *a == (200, "beta".to_owned())),
        "every request goes to the live server: {after:?}"
    );

    b.stop();
    assert!(
        time_until(WAIT, || !sb.is_healthy()).is_some(),
        "beta never ejected"
    );
    assert_eq!(get(proxy.addr()).0, 503, "no healthy server: 503");

    let _a = echo_again(a_addr, "alpha");
    assert!(
        time_until(WAIT, || sa.is_healthy()).is_some(),
        "alpha never returned"
    );
    let back = answers(proxy.addr(), 10);
    assert!(
        back.iter().all(|a| *a == (200, "alpha".to_owned())),
        "the recovered server serves: {back:?}"
    );
    checks.stop();
    proxy.shutdown_and_wait();
}
