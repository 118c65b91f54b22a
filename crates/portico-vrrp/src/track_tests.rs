//! Tracked checks against real sockets on 127.0.0.1:0 and real scripts.

#![allow(clippy::unwrap_used)] // tests may unwrap

use std::os::unix::fs::PermissionsExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use tokio::net::TcpListener;

use super::*;

/// A listener that answers every connection with `reply` (or nothing, holding it open).
async fn server(reply: Option<&'static [u8]>) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 64];
                let _ = s.read(&mut buf).await;
                match reply {
                    Some(r) => {
                        let _ = s.write_all(r).await;
                    }
                    None => tokio::time::sleep(Duration::from_secs(5)).await,
                }
            });
        }
    });
    addr
}

const T: Duration = Duration::from_millis(300);

#[tokio::test]
async fn listener_probe_wants_an_http_answer() {
    assert!(probe_listener(server(Some(b"HTTP/1.1 200 OK\r\n\r\n")).await, T).await);
    assert!(probe_listener(server(Some(b"HTTP/1.0 503 Busy\r\n\r\n")).await, T).await);
    assert!(probe_listener(server(Some(b"\x15\x03\x03\x00\x02\x02\x46")).await, T).await);
    assert!(!probe_listener(server(Some(b"SSH-2.0-x\r\n")).await, T).await);
    let started = Instant::now();
    assert!(!probe_listener(server(None).await, T).await);
    assert!(started.elapsed() < Duration::from_secs(2));
    let closed = {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        l.local_addr().unwrap()
    };
    assert!(!probe_listener(closed, T).await);
}

#[test]
fn a_stream_listener_is_checked_bound_and_listening() {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    assert!(is_listening(addr));
    drop(l);
    assert!(!is_listening(addr));
}

#[test]
fn wildcards_are_probed_on_loopback() {
    assert_eq!(
        probe_target("0.0.0.0:88".parse().unwrap()),
        "127.0.0.1:88".parse().unwrap()
    );
    assert_eq!(
        probe_target("[::]:88".parse().unwrap()),
        "[::1]:88".parse().unwrap()
    );
    assert_eq!(
        probe_target("10.0.0.1:88".parse().unwrap()),
        "10.0.0.1:88".parse().unwrap()
    );
}

fn script(dir: &tempfile::TempDir, name: &str, body: &str) -> PathBuf {
    let p = dir.path().join(name);
    std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    p
}

#[tokio::test]
async fn scripts_follow_keepalived_semantics() {
    let dir = tempfile::tempdir().unwrap();
    assert!(run_script(&script(&dir, "ok", "exit 0"), T).await);
    assert!(!run_script(&script(&dir, "bad", "exit 1"), T).await);
    let started = Instant::now();
    assert!(!run_script(&script(&dir, "slow", "sleep 5"), T).await);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "a slow script is killed at the timeout"
    );
    assert!(!run_script(&dir.path().join("missing"), T).await);
}

async fn wait_for(rx: &mut watch::Receiver<Effective>, want: Effective) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while *rx.borrow_and_update() != want {
        tokio::time::timeout_at(deadline, rx.changed())
            .await
            .unwrap_or_else(|_| panic!("effective priority never became {want:?}"))
            .unwrap();
    }
}

#[tokio::test]
async fn tracker_combines_failing_weights() {
    let up = Arc::new(AtomicBool::new(true));
    let up2 = up.clone();
    let usable: UpstreamUsable =
        Arc::new(move |name: &str| name == "app" && up2.load(Ordering::SeqCst));
    let dir = tempfile::tempdir().unwrap();
    let flag = dir.path().join("fault");
    let check_script = script(&dir, "chk", &format!("test ! -e {}", flag.display()));
    let tracker = start(
        "VI_1",
        100,
        vec![
            Tracked {
                check: Check::Upstream {
                    name: "app".into(),
                    usable,
                },
                weight: -30,
            },
            Tracked {
                check: Check::Script {
                    path: check_script,
                    interval: Duration::from_millis(100),
                },
                weight: 0,
            },
        ],
        Duration::from_millis(100),
    );
    let mut rx = tracker.effective.clone();
    assert_eq!(*rx.borrow(), Effective::Priority(100));
    up.store(false, Ordering::SeqCst);
    wait_for(&mut rx, Effective::Priority(70)).await;
    std::fs::write(&flag, "").unwrap();
    wait_for(&mut rx, Effective::Fault).await;
    std::fs::remove_file(&flag).unwrap();
    wait_for(&mut rx, Effective::Priority(70)).await;
    up.store(true, Ordering::SeqCst);
    wait_for(&mut rx, Effective::Priority(100)).await;
}
