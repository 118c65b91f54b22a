//! Health transitions are logged: `warn` with the failure reason when a server goes down,
//! `info` when it comes back (own test binary: it installs the global subscriber).

use std::io::Write;
use std::sync::{Arc, Mutex};

use crate::support::*;
use portico_balance::{HealthChecks, Registry};
use portico_config::HealthKind;
use tracing_subscriber::fmt::MakeWriter;

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("log buffer").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Capture {
    type Writer = Capture;
    fn make_writer(&'a self) -> Capture {
        self.clone()
    }
}

impl Capture {
    fn lines(&self, containing: &str) -> Vec<String> {
        let text = String::from_utf8_lossy(&self.0.lock().expect("log buffer")).into_owned();
        text.lines()
            .filter(|l| l.contains(containing))
            .map(str::to_owned)
            .collect()
    }
}

#[test]
fn transitions_are_logged_with_upstream_server_and_reason() {
    let capture = Capture::default();
    tracing_subscriber::fmt()
        .with_ansi(false)
        .with_max_level(tracing::Level::INFO)
        .with_writer(capture.clone())
        .init();

    let a = echo("alpha");
    let addr = a.addr;
    let cfg = with_check(
        config(&[plain(addr)], ""),
        check(HealthKind::Http, "/_echo/status?code=503"),
    );
    let registry = Registry::new();
    let checks = HealthChecks::start(&cfg, &registry).expect("start");
    let s = state(&registry, &addr.to_string());
    assert!(time_until(WAIT, || !s.is_healthy()).is_some());
    // The state flips just before the line is written (on the checker's thread).
    assert!(time_until(WAIT, || !capture.lines("server is DOWN").is_empty()).is_some());
    let down = capture.lines("server is DOWN");
    assert_eq!(down.len(), 1, "one transition, one line: {down:?}");
    let line = &down[0];
    for part in [
        "WARN",
        "upstream=app",
        &format!("server={addr}"),
        "status 503 is not in expect_status 200-399",
    ] {
        assert!(line.contains(part), "{part:?} missing in {line}");
    }
    assert!(
        capture.lines("health probe failed").is_empty(),
        "debug lines are filtered"
    );

    checks.replace(&with_check(cfg, check(HealthKind::Http, "/")));
    assert!(time_until(WAIT, || s.is_healthy()).is_some());
    assert!(time_until(WAIT, || !capture.lines("server is UP").is_empty()).is_some());
    let up = capture.lines("server is UP");
    for line in capture.lines("portico_balance") {
        eprintln!("captured: {line}");
    }
    assert_eq!(up.len(), 1, "{up:?}");
    assert!(
        up[0].contains("INFO") && up[0].contains(&format!("server={addr}")),
        "{}",
        up[0]
    );
    checks.stop();
}
