//! HTTP/2 Rapid Reset (CVE-2023-44487) against the real binary with a real HTTP/2 client
//! (Python `h2`, `tests/peers/h2_rapid_reset.py`): on one TLS connection, HEADERS then
//! RST_STREAM for up to 5,000 streams as fast as possible, each asking for a response that
//! takes 500 ms upstream (three connections, one after the other). Portico must end each
//! connection (GOAWAY, ENHANCE_YOUR_CALM, then the close) long before that, send
//! (almost) nothing upstream (the JSON access log's `upstream_addr`), stay within a memory
//! bound, and serve a normal HTTP/2 client (curl) afterwards.
//! Under `CI=true` a venv without `h2` (scripts/test.sh installs it) or no curl fails.

use std::time::Duration;

use crate::support::net::{free_port, local};
use crate::support::peers::Python;
use crate::support::process::{ChildGuard, run_bounded, start_portico, start_portico_echo};
use crate::support::procfs::{rss_kib, sockets_on};
use crate::support::{TempDir, report};
use portico_testkit::{require, require_peer};

/// The project's Python venv, with the `h2` module the attack clients need.
fn python_with_h2() -> Result<Python, String> {
    let p = Python::find()?;
    let ok = std::process::Command::new(p.python())
        .args(["-c", "import h2"])
        .status()
        .is_ok_and(|s| s.success());
    if ok {
        Ok(p)
    } else {
        Err("Python `h2` missing in the venv".to_string())
    }
}

#[test]
fn rapid_reset_gets_goaway_and_starts_no_upstream_work() {
    let Some(py) = require(python_with_h2()) else {
        return;
    };
    let Some(curl) = require_peer("curl") else {
        return;
    };
    let dir = TempDir::new("h2-rapid-reset");
    let (port, echo_port) = (free_port(), free_port());
    let mut echo: ChildGuard = start_portico_echo(local(echo_port), "b1", dir.path());
    echo.wait_for_port(local(echo_port), Duration::from_secs(15));
    dir.write_localhost_cert("h2 CA");
    let config = dir.write(
        "portico.toml",
        format!(
            "[server]\naccess_log = \"access.json\"\naccess_log_format = \"json\"\n\
             [admin]\nlisten = \"off\"\n\
             [upstreams.app]\nservers = [\"127.0.0.1:{echo_port}\"]\n\
             [[sites]]\nlisten = [\"127.0.0.1:{port}\"]\n\
             tls = {{ cert = \"site.pem\", key = \"site.key\" }}\nhttp_redirect = false\n\
             routes = [{{ path = \"/\", proxy = \"app\" }}]\n"
        ),
    );
    let mut proxy = start_portico(&config, dir.path());
    proxy.wait_for_port(local(port), Duration::from_secs(15));
    let rss_before = rss_kib(proxy.pid());

    let mut runs = Vec::new();
    for _ in 0..3 {
        let out = run_bounded(
            "h2-rapid-reset",
            py.script(
                "h2_rapid_reset.py",
                &[
                    "127.0.0.1",
                    &port.to_string(),
                    "5000",
                    "/_echo/sleep?ms=500",
                ],
            ),
            dir.path(),
            Duration::from_secs(30),
            Duration::ZERO,
        );
        assert!(out.success(), "{out:?}");
        let v: serde_json::Value =
            serde_json::from_str(out.stdout.trim()).unwrap_or_else(|e| panic!("{e}: {out:?}"));
        runs.push(v);
    }
    let rss_after = rss_kib(proxy.pid());
    // A normal HTTP/2 client afterwards.
    let normal = run_bounded(
        "curl",
        {
            let mut c = std::process::Command::new(&curl);
            c.args([
                "-sk",
                "--http2",
                "--max-time",
                "10",
                "-o",
                "/dev/null",
                "-w",
                "%{http_version} %{http_code}",
            ])
            .arg(format!("https://localhost:{port}/ok"))
            .args(["--resolve", &format!("localhost:{port}:127.0.0.1")]);
            c
        },
        dir.path(),
        Duration::from_secs(15),
        Duration::ZERO,
    );
    proxy.assert_running();
    std::thread::sleep(Duration::from_millis(700));
    let log = std::fs::read_to_string(dir.path().join("access.json")).unwrap_or_default();
    let upstream = log
        .lines()
        .filter(|l| l.contains("\"upstream_addr\":\"") && !l.contains("/ok"))
        .count();
    report(&format!(
        "h2 rapid reset: {runs:?}; requests that reached the server: {upstream}; Portico RSS \
         {rss_before} KiB before, {rss_after} KiB after; normal client: {}",
        normal.stdout
    ));
    for r in &runs {
        // The GOAWAY may be lost to the reset of a connection closed under the client's
        // feet (it keeps writing): then the end of the connection is what it sees.
        assert!(
            !r["goaway"].is_null() || r["closed"] == true,
            "the connection went on: {runs:?}"
        );
        assert!(
            r["opened"].as_u64().unwrap_or(u64::MAX) < 5000,
            "all 5000 streams went through: {runs:?}"
        );
    }
    assert!(
        upstream <= 100,
        "{upstream} cancelled requests reached the server"
    );
    assert!(
        rss_after < rss_before + 50 * 1024,
        "RSS grew from {rss_before} to {rss_after} KiB"
    );
    assert_eq!(normal.stdout.trim(), "2 200", "{normal:?}");
}

/// Never-reading HTTP/2 windows: 200 streams (as many as Portico allows: 128) asking for
/// 400 KB each, with windows that never close, then no reads for 30 s. Portico buffers at
/// most 64 KiB per stream (8 MiB per connection) and, once its writes to the client stall
/// for `send_timeout` (3 s here), resets the connection: the socket is gone well before the
/// client gives up, and Portico's RSS grows by far less than the 80 MB asked for.
#[test]
fn never_reading_windows_are_bounded_and_reset() {
    let Some(py) = require(python_with_h2()) else {
        return;
    };
    let dir = TempDir::new("h2-never-read");
    let (port, echo_port) = (free_port(), free_port());
    let mut echo: ChildGuard = start_portico_echo(local(echo_port), "b1", dir.path());
    echo.wait_for_port(local(echo_port), Duration::from_secs(15));
    dir.write_localhost_cert("h2 CA");
    let config = dir.write(
        "portico.toml",
        format!(
            "[server]\nsend_timeout = \"3s\"\naccess_log = \"off\"\n[admin]\nlisten = \"off\"\n\
             [upstreams.app]\nservers = [\"127.0.0.1:{echo_port}\"]\n\
             [[sites]]\nlisten = [\"127.0.0.1:{port}\"]\n\
             tls = {{ cert = \"site.pem\", key = \"site.key\" }}\nhttp_redirect = false\n\
             routes = [{{ path = \"/\", proxy = \"app\" }}]\n"
        ),
    );
    let mut proxy = start_portico(&config, dir.path());
    proxy.wait_for_port(local(port), Duration::from_secs(15));
    let rss_before = rss_kib(proxy.pid());
    let mut client = ChildGuard::spawn(
        "h2-never-read",
        py.script(
            "h2_never_read.py",
            &[
                "127.0.0.1",
                &port.to_string(),
                "200",
                "/_echo/bytes?n=400000",
                "30",
            ],
        ),
        dir.path(),
    );
    let started = std::time::Instant::now();
    crate::support::eventually(Duration::from_secs(15), "streams sent", || {
        client.stdout().contains("opened").then_some(())
    });
    let (mut rss_peak, mut gone_after) = (0, None);
    while started.elapsed() < Duration::from_secs(25) {
        rss_peak = rss_peak.max(rss_kib(proxy.pid()));
        if sockets_on(port) == 0 {
            gone_after = Some(started.elapsed());
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    let opened = client.stdout();
    client.kill();
    proxy.assert_running();
    report(&format!(
        "h2 never-read: {} ; Portico RSS {rss_before} KiB before, peak {rss_peak} KiB; \
         connection gone after {gone_after:?}",
        opened.trim()
    ));
    assert!(
        gone_after.is_some_and(|t| t < Duration::from_secs(20)),
        "the never-reading connection was still there after 25 s"
    );
    assert!(
        rss_peak < rss_before + 40 * 1024,
        "RSS grew from {rss_before} to {rss_peak} KiB"
    );
}
