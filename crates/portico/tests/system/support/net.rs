//! Ports: free ones for configs the test writes, and a lock for scenario tests whose
//! configs (kept unchanged) name fixed ports.

use std::collections::BTreeSet;
use std::fs::File;
use std::net::{SocketAddr, TcpListener};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// A port that was free a moment ago on 127.0.0.1 (bind `:0`, read it, release it), and
/// never one this process was given before: the kernel may hand a port just released to
/// the next bind, and two addresses of one config (a site and the admin API, say) must
/// differ. For configs that must name a port; prefer `:0` where the component accepts it.
pub fn free_port() -> u16 {
    static GIVEN: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    let mut given = GIVEN.lock().unwrap_or_else(PoisonError::into_inner);
    for _ in 0..1000 {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let port = l.local_addr().expect("local addr").port();
        if given.insert(port) {
            return port;
        }
    }
    panic!("no port this process was not given already, after 1000 binds");
}

/// `127.0.0.1:PORT`.
pub fn local(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

pub use portico_testkit::process::{is_listening, wait_closed};

/// An exclusive lock (`flock`) on `$TMPDIR/portico-fixed-ports.lock`, held by every test
/// that runs a scenario with fixed ports (8080, 6101, 9900...), so concurrent test
/// binaries or checkouts on one machine do not collide. Released on drop.
pub struct FixedPortsLock {
    _file: File,
}

impl FixedPortsLock {
    /// Take the lock (waiting at most 5 minutes), then check every port in `ports` can be
    /// bound on 127.0.0.1, waiting up to 20 s for a previous user to let go.
    pub fn acquire(ports: &[u16]) -> FixedPortsLock {
        let path = std::env::temp_dir().join("portico-fixed-ports.lock");
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
        let deadline = Instant::now() + Duration::from_secs(300);
        let mut told = false;
        loop {
            match file.try_lock() {
                Ok(()) => break,
                Err(std::fs::TryLockError::WouldBlock) => {
                    if !told {
                        super::report(&format!("waiting for {}", path.display()));
                        told = true;
                    }
                    assert!(
                        Instant::now() < deadline,
                        "{} held by another test for 5 minutes",
                        path.display()
                    );
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(std::fs::TryLockError::Error(e)) => panic!("lock {}: {e}", path.display()),
            }
        }
        for &port in ports {
            let deadline = Instant::now() + Duration::from_secs(20);
            while TcpListener::bind(local(port)).is_err() {
                assert!(
                    Instant::now() < deadline,
                    "fixed port 127.0.0.1:{port} is in use by another process \
                     (this scenario test needs it free)"
                );
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        FixedPortsLock { _file: file }
    }
}
