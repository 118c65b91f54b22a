//! Active health checks against real backends: each probe kind, its failure modes, and the
//! timing of ejection (`interval` x `fall`) and return (`interval` x `rise`).

use crate::support::*;
use portico_balance::{HealthChecks, Pool, Registry};
use portico_config::HealthKind;

#[test]
fn http_check_ejects_a_dead_server_and_brings_it_back() {
    let a = echo("alpha");
    let b = echo("beta");
    let (a_addr, b_addr) = (a.addr, b.addr);
    let cfg = with_check(
        config(&[plain(a_addr), plain(b_addr)], ""),
        check(HealthKind::Http, "/"),
    );
    let registry = Registry::new();
    let pool = Pool::new(&cfg.upstreams["app"], &registry);
    let checks = HealthChecks::start(&cfg, &registry).expect("start");
    let (sa, sb) = (
        state(&registry, &a_addr.to_string()),
        state(&registry, &b_addr.to_string()),
    );
    wait_probes(&a, 0, u64::from(FALL) + 1);
    assert!(sa.is_healthy() && sb.is_healthy(), "both answer 200");

    a.stop();
    let eject = time_until(WAIT, || !sa.is_healthy()).expect("dead server never ejected");
    let bound = INTERVAL * FALL + TIMEOUT + SLACK;
    eprintln!(
        "measured eject time: {eject:?} (interval {INTERVAL:?} x fall {FALL}; bound {bound:?})"
    );
    // `fall` failed probes span (fall - 1) intervals; the first may have started just before
    // the stop (then failed mid-exchange), hence half an interval of tolerance.
    assert!(
        eject >= INTERVAL * (FALL - 1) - INTERVAL / 2,
        "ejected after fewer than fall probes: {eject:?}"
    );
    assert!(eject <= bound, "ejection took {eject:?} > {bound:?}");
    assert!(sb.is_healthy(), "the live server stays healthy");
    let status = checks.status();
    assert_eq!(status.len(), 2);
    let dead = &status[usize::from(status[0].id.addr.as_ref() != a_addr.to_string())];
    assert!(
        !dead.healthy && dead.failed_probes >= u64::from(FALL),
        "{dead:?}"
    );
    let reason = dead.last_error.as_deref().unwrap_or_default();
    assert!(reason.starts_with("connect failed"), "{reason}");
    assert_eq!(
        pick_counts(&pool, 100),
        [0, 100],
        "picks avoid the dead server"
    );

    let a = echo_again(a_addr, "alpha");
    let back = time_until(WAIT, || sa.is_healthy()).expect("revived server never returned");
    let bound = INTERVAL * RISE + TIMEOUT + SLACK;
    eprintln!(
        "measured return time: {back:?} (interval {INTERVAL:?} x rise {RISE}; bound {bound:?})"
    );
    assert!(back <= bound, "return took {back:?} > {bound:?}");
    assert!(
        a.connections_accepted() >= u64::from(RISE),
        "return needs rise probes"
    );
    assert!(
        checks
            .status()
            .iter()
            .all(|c| c.healthy && c.last_error.is_none()),
        "{:?}",
        checks.status()
    );
    let counts = pick_counts(&pool, 100);
    assert!(
        counts[0] > 30 && counts[1] > 30,
        "both serve again: {counts:?}"
    );
    checks.stop();
}

#[test]
fn http_status_outside_expect_status_marks_unhealthy() {
    let bad = echo("bad");
    let good = echo("good");
    let cfg = with_check(
        config(&[plain(bad.addr), plain(good.addr)], ""),
        check(HealthKind::Http, "/_echo/status?code=500"),
    );
    let registry = Registry::new();
    let checks = HealthChecks::start(&cfg, &registry).expect("start");
    let s = state(&registry, &bad.addr.to_string());
    assert!(
        time_until(WAIT, || !s.is_healthy()).is_some(),
        "500 never marked unhealthy"
    );
    checks.stop();

    // The same backends with 500 accepted, and a 204 path with the default range: healthy.
    let registry = Registry::new();
    let mut ok500 = check(HealthKind::Http, "/_echo/status?code=500");
    ok500.expect_status = vec![(200, 299), (500, 500)];
    let checks = HealthChecks::start(&with_check(cfg.clone(), ok500), &registry).expect("start");
    let before = bad.connections_accepted();
    wait_probes(&bad, before, u64::from(FALL) + 2);
    assert!(
        state(&registry, &bad.addr.to_string()).is_healthy(),
        "500 is expected"
    );
    checks.stop();
    let checks = HealthChecks::start(
        &with_check(cfg, check(HealthKind::Http, "/_echo/status?code=204")),
        &registry,
    )
    .expect("start");
    let before = good.connections_accepted();
    wait_probes(&good, before, u64::from(FALL) + 2);
    assert!(
        state(&registry, &good.addr.to_string()).is_healthy(),
        "204 is in 200-399"
    );
    checks.stop();
}

#[test]
fn expect_body_and_host_header() {
    let a = echo("alpha");
    let registry = Registry::new();
    let base = config(&[plain(a.addr)], "");
    let sa = state(&registry, &a.addr.to_string());

    // The default Host is the server address as written; the body must contain it.
    let mut c = check(HealthKind::Http, "/_echo/headers");
    c.expect_body = Some(format!("host: {}", a.addr));
    let checks = HealthChecks::start(&with_check(base.clone(), c), &registry).expect("start");
    let before = a.connections_accepted();
    wait_probes(&a, before, u64::from(FALL) + 2);
    assert!(sa.is_healthy(), "body has the default host");

    // `host` replaces it: the old expectation no longer matches -> unhealthy.
    let mut c = check(HealthKind::Http, "/_echo/headers");
    c.host = Some("health.example".into());
    c.expect_body = Some(format!("host: {}", a.addr));
    checks.replace(&with_check(base.clone(), c));
    assert!(
        time_until(WAIT, || !sa.is_healthy()).is_some(),
        "mismatch never ejected"
    );

    // And matching the configured host brings it back.
    let mut c = check(HealthKind::Http, "/_echo/headers");
    c.host = Some("health.example".into());
    c.expect_body = Some("host: health.example".into());
    checks.replace(&with_check(base, c));
    assert!(
        time_until(WAIT, || sa.is_healthy()).is_some(),
        "match never revived"
    );
    checks.stop();
}

#[test]
fn http_probe_times_out_on_a_silent_server() {
    let silent = Raw::start(None);
    let cfg = with_check(
        config(&[plain(silent.addr)], ""),
        check(HealthKind::Http, "/"),
    );
    let registry = Registry::new();
    let checks = HealthChecks::start(&cfg, &registry).expect("start");
    let s = state(&registry, &silent.addr.to_string());
    let took = time_until(WAIT, || !s.is_healthy()).expect("silent server never ejected");
    // Each probe waits the full timeout: at least fall - 1 timeouts pass before ejection.
    assert!(
        took >= TIMEOUT * (FALL - 1),
        "ejected after {took:?}, before the timeouts"
    );
    assert!(silent.accepted() >= u64::from(FALL));
    checks.stop();
}

#[test]
fn tcp_check_needs_only_a_connect() {
    // A server that answers garbage to HTTP is still healthy for a tcp check.
    let raw = Raw::start(Some(b"not http\r\n"));
    let dead = echo("dead");
    let dead_addr = dead.addr;
    dead.stop();
    let cfg = with_check(
        config(&[plain(raw.addr), plain(dead_addr)], ""),
        check(HealthKind::Tcp, "/"),
    );
    let registry = Registry::new();
    let checks = HealthChecks::start(&cfg, &registry).expect("start");
    let (sr, sd) = (
        state(&registry, &raw.addr.to_string()),
        state(&registry, &dead_addr.to_string()),
    );
    assert!(
        time_until(WAIT, || !sd.is_healthy()).is_some(),
        "refused connect never ejected"
    );
    assert!(
        time_until(WAIT, || raw.accepted() > u64::from(FALL) + 1).is_some(),
        "raw server not probed"
    );
    assert!(sr.is_healthy(), "a connect is enough");
    checks.stop();
}

#[test]
fn websocket_check_needs_a_real_upgrade() {
    let ws = echo("ws");
    let http_only = Raw::start(Some(
        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok",
    ));
    let bad_accept = Raw::start(Some(
        b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\n\
          sec-websocket-accept: s3pPLMBiTxaQ9kQcGs2O0YlIPzo=\r\n\r\n",
    ));
    let cfg = with_check(
        config(
            &[
                plain(ws.addr),
                plain(http_only.addr),
                plain(bad_accept.addr),
            ],
            "",
        ),
        check(HealthKind::WebSocket, "/chat"),
    );
    let registry = Registry::new();
    let checks = HealthChecks::start(&cfg, &registry).expect("start");
    let s_http = state(&registry, &http_only.addr.to_string());
    let s_bad = state(&registry, &bad_accept.addr.to_string());
    assert!(
        time_until(WAIT, || !s_http.is_healthy()).is_some(),
        "200 is not an upgrade"
    );
    assert!(
        time_until(WAIT, || !s_bad.is_healthy()).is_some(),
        "wrong accept key passed"
    );
    let before = ws.connections_accepted();
    wait_probes(&ws, before, u64::from(FALL) + 2);
    assert!(
        state(&registry, &ws.addr.to_string()).is_healthy(),
        "echo speaks WebSocket"
    );
    ws.stop();
    let s_ws = state(&registry, &ws.addr.to_string());
    assert!(
        time_until(WAIT, || !s_ws.is_healthy()).is_some(),
        "dead ws server stays up"
    );
    checks.stop();
}

#[test]
fn names_are_resolved_and_down_servers_are_not_probed() {
    let named = echo("named");
    let off = echo("off");
    let name = format!("localhost:{}", named.addr.port());
    let servers = [
        format!("\"{name}\""),
        format!("{{ addr = \"{}\", down = true }}", off.addr),
    ];
    let cfg = with_check(config(&servers, ""), check(HealthKind::Http, "/"));
    let registry = Registry::new();
    let checks = HealthChecks::start(&cfg, &registry).expect("start");
    assert_eq!(
        checks.checked().len(),
        1,
        "only the server that is not down"
    );
    wait_probes(&named, 0, u64::from(FALL) + 2);
    assert!(state(&registry, &name).is_healthy());
    assert_eq!(off.connections_accepted(), 0, "down server probed");
    named.stop();
    let s = state(&registry, &name);
    assert!(
        time_until(WAIT, || !s.is_healthy()).is_some(),
        "localhost server never ejected"
    );
    checks.stop();
}

#[test]
fn ipv6_servers_are_probed_with_a_bracketed_host() {
    // IPv6 loopback is a peer: without it, a failure under CI, a visible skip elsewhere.
    let Some(v6) = portico_testkit::require(
        portico_testkit::echo::EchoServer::start("[::1]:0".parse().expect("addr"), "v6")
            .map_err(|e| format!("cannot bind [::1]:0 (no IPv6 loopback here): {e}")),
    ) else {
        return;
    };
    let addr = v6.addr.to_string();
    assert!(addr.starts_with("[::1]:"), "{addr}");
    let mut c = check(HealthKind::Http, "/_echo/headers");
    c.expect_body = Some(format!("host: {addr}"));
    let cfg = with_check(config(&[format!("\"{addr}\"")], ""), c);
    let registry = Registry::new();
    let checks = HealthChecks::start(&cfg, &registry).expect("start");
    wait_probes(&v6, 0, u64::from(FALL) + 2);
    let s = state(&registry, &addr);
    assert!(s.is_healthy(), "{:?}", checks.status());
    v6.stop();
    assert!(
        time_until(WAIT, || !s.is_healthy()).is_some(),
        "never ejected"
    );
    checks.stop();
}
