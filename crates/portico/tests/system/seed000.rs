//! Seed 000, end to end: `examples/seed-000-wss-lb-acme.toml` UNCHANGED, with a real pebble
//! (ACME directory https://127.0.0.1:14000/dir, HTTP-01 validation sent to :14080, names
//! resolved to 127.0.0.1 by pebble-challtestsrv) and node `ws` echo servers: TLS on 8091 and
//! 8092 (certificate for "localhost" from a test CA written to `backend-ca.pem`), plain on
//! 8090. `pebble-tls-ca.pem` (the CA of pebble's own HTTPS) is written beside the copy.
//!
//! Checks (the scenario's header): each of ws.example.test, local.example.test and
//! tools.example.test gets a certificate from pebble by HTTP-01 through Portico's :14080
//! side, verified against pebble's issuing root; wss://ws.example.test:8443 echoes through
//! the TLS upstream pool (both servers reached); wss://local.example.test:8443 reaches the
//! plain backend; https://tools.example.test:8443/ serves www/bts_tools/index.html (HTTP/1.1
//! and h2 with curl); http://ANY:14080/x answers 301 to https while challenges are answered; the
//! account and keys are kept in state_dir with mode 0600, and a restart serves the stored
//! certificates at once without ordering. Prints the ACME order times.

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::support::net::{FixedPortsLock, local};
use crate::support::pebble_clients::{curl, logged_orders, roots, served_leaf, verifying, wss};
use crate::support::peers::{Node, Python};
use crate::support::process::{ChildGuard, start_portico};
use crate::support::{TempDir, eventually, example, repo_root, report};
use portico_testkit::certs::TestCa;
use portico_testkit::pebble::Pebble;
use portico_testkit::{require, require_peer};

const TEST: &str = "system_seed000";
const HTTPS: u16 = 8443;
const HTTP: u16 = 14080;
const ACME: u16 = 14000;
const PLAIN_BACKEND: u16 = 8090;
const TLS_BACKENDS: [u16; 2] = [8091, 8092];
/// The admin API's default listener (the seed config does not set `[admin]`).
const ADMIN_DEFAULT: u16 = 9900;
const NAMES: [&str; 3] = [
    "ws.example.test",
    "local.example.test",
    "tools.example.test",
];

#[test]
fn seed_000_wss_lb_acme() {
    let (Some(()), Some(_curl), Some(node)) = (
        require(portico_testkit::pebble::find()),
        require_peer("curl"),
        require(Node::find()),
    ) else {
        return;
    };
    let _lock = FixedPortsLock::acquire(&[
        HTTPS,
        HTTP,
        ACME,
        PLAIN_BACKEND,
        TLS_BACKENDS[0],
        TLS_BACKENDS[1],
        ADMIN_DEFAULT,
    ]);
    let dir = TempDir::new("seed000");
    let src = example("seed-000-wss-lb-acme.toml");
    let cfg = dir.copy_in(&src);
    assert_eq!(
        std::fs::read(&cfg).expect("read copy"),
        std::fs::read(&src).expect("read example"),
        "the scenario must run unchanged"
    );
    std::fs::copy(
        repo_root().join("examples/bts_tools.htpasswd"),
        dir.path().join("bts_tools.htpasswd"),
    )
    .expect("copy bts_tools.htpasswd");
    let www = dir.path().join("www/bts_tools");
    std::fs::create_dir_all(&www).expect("www dir");
    let index = std::fs::read_to_string(repo_root().join("examples/www/bts_tools/index.html"))
        .expect("examples/www/bts_tools/index.html");
    std::fs::write(www.join("index.html"), &index).expect("write index");

    // Backends: TLS ws echo with a "localhost" certificate from backend-ca.pem, plain ws echo.
    let backend_ca = TestCa::new("portico system test: backend CA");
    let leaf = backend_ca.leaf(&["localhost"]);
    std::fs::write(dir.path().join("backend-ca.pem"), &backend_ca.cert_pem).expect("write");
    let (cert, key) = (
        dir.path().join("backend.pem"),
        dir.path().join("backend.key"),
    );
    std::fs::write(&cert, &leaf.chain_pem).expect("write");
    std::fs::write(&key, &leaf.key_pem).expect("write");
    let mut backends: Vec<ChildGuard> = Vec::new();
    for port in TLS_BACKENDS {
        let cmd = node.script(
            "echo-server.mjs",
            &[
                &port.to_string(),
                cert.to_str().expect("utf-8"),
                key.to_str().expect("utf-8"),
            ],
        );
        let mut child = ChildGuard::spawn(&format!("wss-echo-{port}"), cmd, dir.path());
        child.wait_for_port(local(port), Duration::from_secs(10));
        backends.push(child);
    }
    backends.push(node.start_echo(PLAIN_BACKEND, false, dir.path()));

    // pebble: its validator sends HTTP-01 to the scenario's http_listen port.
    let pebble = Pebble::start(
        &dir.path().join("pebble"),
        dir.path(),
        ACME,
        HTTP,
        HTTPS,
        None,
    );
    std::fs::write(dir.path().join("pebble-tls-ca.pem"), pebble.tls_ca_pem()).expect("write");
    let root = pebble.root_pem();
    let h1 = verifying(roots(&root), &["http/1.1"]);

    let started = Instant::now();
    let mut proxy = start_portico(&cfg, dir.path());
    proxy.wait_for_port(local(HTTPS), Duration::from_secs(15));
    proxy.wait_for_port(local(HTTP), Duration::from_secs(15));

    // 1. Every name gets a certificate from pebble, verified against pebble's root.
    let mut leaves = Vec::new();
    for name in NAMES {
        let leaf = eventually(
            Duration::from_secs(60),
            &format!("a pebble certificate for {name}"),
            || {
                proxy.assert_running();
                served_leaf(HTTPS, name, &h1).ok()
            },
        );
        leaves.push(leaf);
    }
    let all_served = started.elapsed();
    let orders = logged_orders(|| proxy.stderr(), NAMES.len());
    assert_eq!(
        orders.len(),
        NAMES.len(),
        "one order per site expected:\n{}",
        proxy.logs()
    );
    report(&format!(
        "{TEST}: 3 certificates from pebble served {} ms after start; ACME order times \
         (account+order+HTTP-01+finalize+download, from Portico's log) {orders:?} ms",
        all_served.as_millis()
    ));
    // certbot needs 2.6 s for one order against the same pebble (mostly its own sleeps).
    assert!(
        orders.iter().all(|&ms| ms < 2600),
        "an ACME order took longer than certbot's 2.6 s: {orders:?}"
    );
    for name in NAMES {
        let validated = format!(
            "Attempting to validate w/ HTTP: http://{name}:{HTTP}/.well-known/acme-challenge/"
        );
        assert!(
            pebble.logs().contains(&validated),
            "pebble validated {name} by HTTP-01 through :{HTTP}:\n{}",
            pebble.logs()
        );
    }

    // 2. wss://ws.example.test:8443 echoes through the TLS upstream pool (both servers).
    let mut seen = Vec::new();
    for i in 0..4 {
        let mut ws = wss(HTTPS, "ws.example.test", &h1)
            .unwrap_or_else(|e| panic!("wss ws.example.test: {e}\n{}", proxy.logs()));
        let msg = format!("hello-{i}");
        assert_eq!(ws.roundtrip(&msg).expect("echo"), msg);
        let who = ws.roundtrip("whoami").expect("whoami");
        seen.push(who);
    }
    for port in TLS_BACKENDS {
        assert!(
            seen.contains(&format!("port:{port}")),
            "round robin over the wss pool must reach :{port}: {seen:?}"
        );
    }
    report(&format!(
        "{TEST}: wss ws.example.test echo via TLS pool: {seen:?}"
    ));

    // A second, independent client stack: Python `websockets` over OpenSSL, verifying
    // against pebble's root.
    let root_file = dir.write("pebble-root.pem", &root);
    // The Python client is one more peer: a visible skip of this part, a failure under CI.
    if let Some(py) = require(Python::find()) {
        let echo = crate::support::pebble_clients::python_wss(
            &py.python(),
            HTTPS,
            "ws.example.test",
            &root_file,
            "hello-from-python",
            dir.path(),
        )
        .unwrap_or_else(|e| panic!("python websockets wss: {e}\n{}", proxy.logs()));
        assert_eq!(echo, "hello-from-python");
        report(&format!("{TEST}: python websockets wss echo OK"));
    }

    // 3. wss://local.example.test:8443 reaches the plain backend.
    let mut ws = wss(HTTPS, "local.example.test", &h1).expect("wss local.example.test");
    assert_eq!(ws.roundtrip("plain?").expect("echo"), "plain?");
    assert_eq!(
        ws.roundtrip("whoami").expect("whoami"),
        format!("port:{PLAIN_BACKEND}")
    );

    // 4. https://tools.example.test:8443/ serves the static page, with curl verifying
    //    against pebble's root, HTTP/1.1 and h2.
    let root_arg = root_file.to_str().expect("utf-8");
    for version in ["--http1.1", "--http2"] {
        let out = curl(
            &[("tools.example.test", HTTPS)],
            &[
                version,
                "-u",
                "bts:change-me",
                "--cacert",
                root_arg,
                "-w",
                "\n%{http_code} %{http_version}",
                "https://tools.example.test:8443/",
            ],
            dir.path(),
        );
        assert!(out.success(), "curl {version}: {out:?}\n{}", proxy.logs());
        let (body, tail) = out.stdout.rsplit_once('\n').expect("curl -w line");
        let expected = if version == "--http2" {
            "200 2"
        } else {
            "200 1.1"
        };
        assert_eq!(tail, expected, "curl {version}");
        assert_eq!(body, index, "static page");
    }

    // 4b. The original's protections: bts_tools wants the password (401 and the realm
    //     without it, or with a wrong one) ...
    for user in [None, Some("bts:wrong")] {
        let mut args = vec!["--cacert", root_arg, "-s", "-o", "/dev/null", "-D", "-"];
        if let Some(u) = user {
            args.extend(["-u", u]);
        }
        args.push("https://tools.example.test:8443/");
        let out = curl(&[("tools.example.test", HTTPS)], &args, dir.path());
        assert!(
            out.stdout.starts_with("HTTP/1.1 401") || out.stdout.starts_with("HTTP/2 401"),
            "{out:?}"
        );
        assert!(
            out.stdout
                .to_ascii_lowercase()
                .contains("www-authenticate: basic realm=\"bts_tools\""),
            "{out:?}"
        );
    }
    // ... and WebSocket upgrades past 1r/s with a burst of 5 get 429 with Retry-After
    // (this client already opened five on ws.example.test above).
    let mut refused = None;
    for _ in 0..10 {
        match wss(HTTPS, "ws.example.test", &h1) {
            Ok(_) => {}
            Err(e) => {
                refused = Some(e);
                break;
            }
        }
    }
    let refused = refused.expect("a burst of upgrades past the limit is refused");
    assert!(refused.contains("429"), "{refused}");
    assert!(
        refused.to_ascii_lowercase().contains("retry-after"),
        "{refused}"
    );
    report(&format!("{TEST}: upgrade past the rate limit: {refused}"));

    // 5. Plain side: 301 to https (port kept), except challenge paths.
    for name in ["ws.example.test", "tools.example.test", "any.example.test"] {
        let out = curl(
            &[(name, HTTP)],
            &[
                "-o",
                "/dev/null",
                "-w",
                "%{http_code} %{redirect_url}",
                &format!("http://{name}:{HTTP}/x?y=1"),
            ],
            dir.path(),
        );
        assert_eq!(
            out.stdout,
            format!("301 https://{name}:{HTTPS}/x?y=1"),
            "{out:?}"
        );
    }
    // Challenge paths: the pending ones were answered on this side, not redirected: pebble
    // validated every name through :14080 (above), and a redirect would have led its
    // validator to the https site, whose routes (the wss pool, the plain backend, the
    // static folder) cannot produce the key authorization. A token that is not pending
    // is left to the plain side's normal answer (reported, not asserted).
    let out = curl(
        &[("ws.example.test", HTTP)],
        &[
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            &format!("http://ws.example.test:{HTTP}/.well-known/acme-challenge/not-pending"),
        ],
        dir.path(),
    );
    report(&format!(
        "{TEST}: plain side: 301 to https for ordinary paths; a token that is not pending gets {}",
        out.stdout
    ));

    // 6. The account and the keys in state_dir, private files 0600.
    let state = dir.path().join("portico-data");
    let mut private = Vec::new();
    collect_files(&state, &mut private);
    let keys: Vec<_> = private
        .iter()
        .filter(|p| {
            let n = p.to_string_lossy();
            n.ends_with("/account.json") || n.ends_with("/key.pem")
        })
        .collect();
    let chains = private
        .iter()
        .filter(|p| p.to_string_lossy().ends_with("/fullchain.pem"))
        .count();
    assert_eq!(chains, NAMES.len(), "{private:?}");
    assert_eq!(
        keys.len(),
        1 + NAMES.len(),
        "account + one key per certificate in {}: {private:?}",
        state.display()
    );
    for p in keys {
        let mode = std::fs::metadata(p).expect("stat").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", p.display());
    }
    proxy.assert_running();

    // 7. A restart uses what state_dir keeps: the same certificates at once, no new order,
    //    no new account.
    proxy.signal("TERM");
    assert!(
        proxy
            .wait_timeout(Duration::from_secs(40))
            .is_some_and(|s| s.success()),
        "graceful stop\n{}",
        proxy.logs()
    );
    let mut again = start_portico(&cfg, dir.path());
    again.wait_for_port(local(HTTPS), Duration::from_secs(15));
    for (name, leaf) in NAMES.iter().zip(&leaves) {
        let served = served_leaf(HTTPS, name, &h1)
            .unwrap_or_else(|e| panic!("{name} after restart: {e}\n{}", again.logs()));
        assert_eq!(
            &served, leaf,
            "{name}: the stored certificate serves after a restart"
        );
    }
    // The served certificates are the stored ones (compared above); the log says so too.
    let log = eventually(
        Duration::from_secs(10),
        "3 stored certificates loaded",
        || {
            let log = again.stderr();
            let loaded = log
                .lines()
                .filter(|l| l.contains("certificate loaded") && l.contains("fullchain.pem"))
                .count();
            (loaded == NAMES.len()).then_some(log)
        },
    );
    assert!(
        !log.contains("ACME certificate issued") && !log.contains("ACME account created"),
        "nothing ordered or registered after a restart:\n{log}"
    );
    report(&format!(
        "{TEST}: restart: stored certificates served at once, no new order"
    ));
    report(&format!("{TEST}: OK"));
}

fn collect_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            collect_files(&p, out);
        } else {
            out.push(p);
        }
    }
}
