//! Seed 001, end to end: `examples/seed-001-ws-cluster-acme.toml` UNCHANGED, with a real
//! pebble issuing short-lived certificates (`certificateValidityPeriod`), HTTP-01 through
//! Portico's :14080 side, and node `ws` echo servers on 9001 and 9002.
//!
//! Checks (the scenario's header, and issue #3): http://app.example.test:14080/ answers 301
//! to https://app.example.test:8443/; HTTPS responses carry the site's HSTS header;
//! wss://app.example.test:8443 echoes and one client always reaches the same app server
//! (ip_hash); the certificate is renewed and the new one served without a restart while an
//! open WebSocket keeps working; with the ACME server down, renewals fail, are retried and
//! logged, the old certificate keeps serving and nothing crashes.
//!
//! Other tests: a copy with one added line, `challenge = "tls-alpn-01"`, with pebble's
//! validator sent to the TLS listener (:8443): the other challenge type; the CA down when
//! Portico starts (handshakes fail cleanly, plain side answers, the certificate arrives once
//! the CA is up); the scenario reached by SIGHUP from a plain config (`[acme]` added by
//! reload).

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use portico_tls::rustls::ClientConfig;
use portico_tls::rustls::pki_types::CertificateDer;

use crate::support::net::{FixedPortsLock, local};
use crate::support::pebble_clients::{
    curl, logged_orders, roots, served_leaf, unverified, verifying, wss,
};
use crate::support::peers::Node;
use crate::support::process::{ChildGuard, RunOutput, start_portico};
use crate::support::{TempDir, eventually, example, report};
use portico_testkit::pebble::Pebble;
use portico_testkit::{require, require_peer};

const TEST: &str = "system_seed001";
const HTTPS: u16 = 8443;
const HTTP: u16 = 14080;
const ACME: u16 = 14000;
const APPS: [u16; 2] = [9001, 9002];
/// The admin API's default listener (the seed config does not set `[admin]`).
const ADMIN_DEFAULT: u16 = 9900;
const NAME: &str = "app.example.test";
/// Lifetime of pebble's certificates here: renewal is due when a third is left (10 s).
const VALIDITY_SECS: u64 = 30;

struct Setup {
    dir: TempDir,
    pebble: Pebble,
    _apps: Vec<ChildGuard>,
    _lock: FixedPortsLock,
}

/// Lock the ports, copy the scenario (with `edit` applied), start the app servers and
/// pebble (its validator's HTTP-01 and TLS-ALPN-01 ports; pebble itself only if `run`).
/// `None` when skipping.
fn setup(
    tag: &str,
    edit: impl FnOnce(String) -> String,
    validation: (u16, u16),
    run: bool,
) -> Option<Setup> {
    require(portico_testkit::pebble::find())?;
    require_peer("curl")?;
    let node = require(Node::find())?;
    let lock = FixedPortsLock::acquire(&[HTTPS, HTTP, ACME, APPS[0], APPS[1], ADMIN_DEFAULT]);
    let dir = TempDir::new(tag);
    let src = example("seed-001-ws-cluster-acme.toml");
    let text = std::fs::read_to_string(&src).expect("read example");
    std::fs::write(dir.path().join("seed-001-ws-cluster-acme.toml"), edit(text)).expect("copy");
    let apps = APPS
        .iter()
        .map(|&p| node.start_echo(p, false, dir.path()))
        .collect();
    let mut pebble = Pebble::new(
        &dir.path().join("pebble"),
        dir.path(),
        ACME,
        validation.0,
        validation.1,
        Some(VALIDITY_SECS),
    );
    if run {
        pebble.start_pebble();
    }
    std::fs::write(dir.path().join("pebble-tls-ca.pem"), pebble.tls_ca_pem()).expect("write");
    Some(Setup {
        dir,
        pebble,
        _apps: apps,
        _lock: lock,
    })
}

fn count(log: &str, needle: &str) -> usize {
    log.lines().filter(|l| l.contains(needle)).count()
}

/// `curl -o /dev/null -w WRITE_OUT` of `http://NAME:HTTP{path}` (the plain side).
fn plain_get(dir: &Path, write_out: &str, path: &str) -> RunOutput {
    curl(
        &[(NAME, HTTP)],
        &[
            "-o",
            "/dev/null",
            "-w",
            write_out,
            &format!("http://{NAME}:{HTTP}{path}"),
        ],
        dir,
    )
}

/// The certificate `proxy` serves for NAME on HTTPS, verified with `h1`, once there is one
/// (within `timeout`); `proxy` must keep running meanwhile.
fn served_when_ready(
    proxy: &mut ChildGuard,
    h1: &Arc<ClientConfig>,
    timeout: Duration,
    what: &str,
) -> CertificateDer<'static> {
    eventually(timeout, what, || {
        proxy.assert_running();
        served_leaf(HTTPS, NAME, h1).ok()
    })
}

#[test]
fn seed_001_ws_cluster_acme() {
    let Some(mut s) = setup("seed001", |t| t, (HTTP, HTTPS), true) else {
        return;
    };
    let cfg = s.dir.path().join("seed-001-ws-cluster-acme.toml");
    assert_eq!(
        std::fs::read(&cfg).expect("read copy"),
        std::fs::read(example("seed-001-ws-cluster-acme.toml")).expect("read example"),
        "the scenario must run unchanged"
    );
    let root = s.pebble.root_pem();
    let h1 = verifying(roots(&root), &["http/1.1"]);
    let root_file = s.dir.write("pebble-root.pem", &root);
    let root_arg = root_file.to_str().expect("utf-8");

    let started = Instant::now();
    let mut proxy = start_portico(&cfg, s.dir.path());
    proxy.wait_for_port(local(HTTPS), Duration::from_secs(15));
    let first = served_when_ready(
        &mut proxy,
        &h1,
        Duration::from_secs(60),
        "a pebble certificate",
    );
    report(&format!(
        "{TEST}: certificate served {} ms after start; order times {:?} ms",
        started.elapsed().as_millis(),
        logged_orders(|| proxy.stderr(), 1)
    ));

    // 1. 301 to https, port kept as configured; HSTS on the HTTPS side.
    let out = plain_get(s.dir.path(), "%{http_code} %{redirect_url}", "/");
    assert_eq!(
        out.stdout,
        format!("301 https://{NAME}:{HTTPS}/"),
        "{out:?}"
    );
    let out = curl(
        &[(NAME, HTTPS)],
        &[
            "-o",
            "/dev/null",
            "-D",
            "-",
            "--cacert",
            root_arg,
            &format!("https://{NAME}:{HTTPS}/"),
        ],
        s.dir.path(),
    );
    assert!(
        out.success()
            && out.stdout.starts_with("HTTP/")
            && out
                .stdout
                .to_ascii_lowercase()
                .contains("strict-transport-security: max-age=31536000"),
        "HTTPS with HSTS: {out:?}"
    );

    // 2. wss echo with affinity: every connection from this client reaches one app server.
    let mut ports = Vec::new();
    for _ in 0..6 {
        let mut ws = wss(HTTPS, NAME, &h1).expect("wss");
        ports.push(ws.roundtrip("whoami").expect("whoami"));
    }
    assert!(
        ports.iter().all(|p| *p == ports[0]),
        "ip_hash affinity: {ports:?}"
    );
    let pinned = ports[0].clone();
    report(&format!("{TEST}: 6/6 wss connections on {pinned}"));

    // 3. An open WebSocket across a renewal; the renewed certificate serves without restart.
    let mut held = wss(HTTPS, NAME, &h1).expect("held wss");
    assert_eq!(held.roundtrip("before").expect("echo"), "before");
    let pid = proxy.pid();
    let renewed = eventually(
        Duration::from_secs(VALIDITY_SECS * 2),
        "a renewed certificate",
        || {
            proxy.assert_running();
            served_leaf(HTTPS, NAME, &h1).ok().filter(|c| *c != first)
        },
    );
    assert_eq!(proxy.pid(), pid);
    assert_eq!(
        held.roundtrip("after-renewal").expect("held echo"),
        "after-renewal"
    );
    assert_eq!(held.roundtrip("whoami").expect("held whoami"), pinned);
    let orders = logged_orders(|| proxy.stderr(), 2);
    assert!(orders.len() >= 2, "{orders:?}\n{}", proxy.logs());
    report(&format!(
        "{TEST}: renewed certificate served without restart; the open WebSocket kept working; \
         order times {orders:?} ms"
    ));

    // 4. ACME server down: the renewal fails and is retried (logged), the current
    //    certificate keeps serving, the process keeps running.
    s.pebble.stop_pebble();
    let any = unverified();
    eventually(
        Duration::from_secs(VALIDITY_SECS + 30),
        "two failed renewal attempts in the log",
        || {
            proxy.assert_running();
            let served = served_leaf(HTTPS, NAME, &any).expect("handshake while CA down");
            assert_eq!(served, renewed, "the last certificate keeps serving");
            (count(&proxy.stderr(), "ACME renewal failed") >= 2).then_some(())
        },
    );
    assert_eq!(held.roundtrip("ca-down").expect("held echo"), "ca-down");
    let out = plain_get(s.dir.path(), "%{http_code}", "/x");
    assert_eq!(out.stdout, "301", "plain side with the CA down: {out:?}");
    proxy.assert_running();
    let log = proxy.stderr();
    let failures: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("ACME renewal failed"))
        .collect();
    report(&format!(
        "{TEST}: CA down -> {} failed renewals logged, certificate kept, no crash; last: {}",
        failures.len(),
        failures.last().copied().unwrap_or("")
    ));
}

#[test]
fn seed_001_tls_alpn_01_variant() {
    let add_challenge = |t: String| {
        t.replacen(
            "directory_ca = \"pebble-tls-ca.pem\"\n",
            "directory_ca = \"pebble-tls-ca.pem\"\nchallenge = \"tls-alpn-01\"\n",
            1,
        )
    };
    // The validator's HTTP-01 port is a free one nobody serves: only TLS-ALPN-01 can pass.
    let unused = crate::support::net::free_port();
    let Some(s) = setup("seed001-alpn", add_challenge, (unused, HTTPS), true) else {
        return;
    };
    let cfg = s.dir.path().join("seed-001-ws-cluster-acme.toml");
    let text = std::fs::read_to_string(&cfg).expect("read");
    assert!(text.contains("challenge = \"tls-alpn-01\""), "edit applied");
    let h1 = verifying(roots(&s.pebble.root_pem()), &["http/1.1"]);
    let mut proxy = start_portico(&cfg, s.dir.path());
    proxy.wait_for_port(local(HTTPS), Duration::from_secs(15));
    served_when_ready(
        &mut proxy,
        &h1,
        Duration::from_secs(60),
        "a certificate by TLS-ALPN-01",
    );
    let log = s.pebble.logs();
    assert!(
        // pebble names the type only for HTTP-01 ("Attempting to validate w/ HTTP: ...").
        log.contains("Starting 3 validations") && !log.contains("validate w/ HTTP"),
        "pebble validated by TLS-ALPN-01:\n{}",
        s.pebble.logs()
    );
    let mut ws = wss(HTTPS, NAME, &h1).expect("wss");
    assert_eq!(ws.roundtrip("alpn").expect("echo"), "alpn");
    report(&format!(
        "{TEST}: tls-alpn-01 order times {:?} ms",
        logged_orders(|| proxy.stderr(), 1)
    ));
}

/// The CA is down when Portico starts: the site's TLS handshakes fail cleanly, the plain
/// side keeps answering, the failed order is logged and retried; once the CA is up, the
/// certificate arrives without a restart.
#[test]
fn seed_001_ca_down_at_start() {
    let Some(mut s) = setup("seed001-down", |t| t, (HTTP, HTTPS), false) else {
        return;
    };
    let cfg = s.dir.path().join("seed-001-ws-cluster-acme.toml");
    let mut proxy = start_portico(&cfg, s.dir.path());
    proxy.wait_for_port(local(HTTPS), Duration::from_secs(15));
    proxy.wait_for_port(local(HTTP), Duration::from_secs(15));
    eventually(
        Duration::from_secs(15),
        "a failed ACME order in the log",
        || {
            proxy.assert_running();
            (count(&proxy.stderr(), "ACME order failed") >= 1).then_some(())
        },
    );
    let any = unverified();
    let err = served_leaf(HTTPS, NAME, &any).expect_err("no certificate yet");
    report(&format!(
        "{TEST}: CA down at start, handshake for {NAME}: {err}"
    ));
    let out = plain_get(s.dir.path(), "%{http_code}", "/");
    assert_eq!(
        out.stdout, "301",
        "plain side without a certificate: {out:?}"
    );

    s.pebble.start_pebble();
    let h1 = verifying(roots(&s.pebble.root_pem()), &["http/1.1"]);
    let t0 = Instant::now();
    served_when_ready(
        &mut proxy,
        &h1,
        Duration::from_secs(45),
        "the certificate once the CA is up",
    );
    report(&format!(
        "{TEST}: CA up -> certificate served {} ms later (retry backoff), no restart",
        t0.elapsed().as_millis()
    ));
}

/// Reaching the scenario by reload: Portico runs a plain config, the file is replaced by the
/// unchanged scenario and SIGHUP applies it: the `[acme]` section, the TLS listener and the
/// plain-HTTP side arrive without a restart and the certificate is ordered.
#[test]
fn seed_001_reached_by_reload() {
    let plain_port = crate::support::net::free_port();
    let plain = format!(
        "[admin]\nlisten = \"off\"\n[[sites]]\nlisten = [\"127.0.0.1:{plain_port}\"]\n\
         [[sites.routes]]\npath = \"/\"\nrespond = \"before\"\n"
    );
    let Some(s) = setup("seed001-reload", |_| plain, (HTTP, HTTPS), true) else {
        return;
    };
    let cfg = s.dir.path().join("seed-001-ws-cluster-acme.toml");
    let mut proxy = start_portico(&cfg, s.dir.path());
    proxy.wait_for_port(local(plain_port), Duration::from_secs(15));
    let pid = proxy.pid();

    let src = example("seed-001-ws-cluster-acme.toml");
    std::fs::copy(&src, &cfg).expect("replace the config");
    assert_eq!(
        std::fs::read(&cfg).expect("read"),
        std::fs::read(&src).expect("read example"),
        "the scenario must run unchanged"
    );
    proxy.signal("HUP");
    let h1 = verifying(roots(&s.pebble.root_pem()), &["http/1.1"]);
    served_when_ready(
        &mut proxy,
        &h1,
        Duration::from_secs(60),
        "a certificate after the reload",
    );
    assert_eq!(proxy.pid(), pid, "no restart");
    let mut ws = wss(HTTPS, NAME, &h1).expect("wss after reload");
    assert_eq!(ws.roundtrip("reloaded").expect("echo"), "reloaded");
    let out = plain_get(s.dir.path(), "%{http_code} %{redirect_url}", "/");
    assert_eq!(
        out.stdout,
        format!("301 https://{NAME}:{HTTPS}/"),
        "{out:?}"
    );
    report(&format!(
        "{TEST}: plain config -> seed 001 by SIGHUP: certificate ordered ({:?} ms), wss and 301 served, same process",
        logged_orders(|| proxy.stderr(), 1)
    ));
}
