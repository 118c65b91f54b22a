//! Shared helpers for Portico's system tests (the `system` test binary): they run the real
//! `portico` binary next to real third-party peers.
//!
//! - [`process`]: spawn `portico` and peers with logs in a temp dir, kill by PID on drop,
//!   SIGTERM, bounded waits and bounded runs.
//! - [`net`]: free ports, wait-for-port, the fixed-ports lock for scenario tests.
//! - [`http`]: a minimal blocking HTTP/1.1 client (keep-alive, Content-Length and chunked).
//! - [`peers`]: where node `ws`/`wscat`, the Python venv and kosoku are (a missing one is
//!   a failure under CI, a visible skip elsewhere: [`portico_testkit::require`]).
//! - [`procfs`]: a process's RSS and descriptors, the sockets on a port (`/proc`).
//! - [`pebble_clients`]: TLS, WebSocket and curl clients of the ACME scenarios (the pebble
//!   harness itself is [`portico_testkit::pebble::Pebble`]).

pub mod http;
pub mod net;
pub mod pebble_clients;
pub mod peers;
pub mod process;
pub mod procfs;
pub mod raw_ws;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The `portico` binary cargo built for these tests.
pub fn portico_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_portico"))
}

/// The repository root (two levels above this crate's manifest), without `..` parts.
pub fn repo_root() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    std::fs::canonicalize(&root).unwrap_or(root)
}

/// `examples/NAME` in the repository.
pub fn example(name: &str) -> PathBuf {
    repo_root().join("examples").join(name)
}

pub use portico_testkit::report;

/// Poll `f` until it returns `Some`, or panic with `what` after `timeout`.
pub fn eventually<T>(timeout: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        if Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for: {what}");
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// A fresh directory under the system temp dir, removed (recursively) on drop.
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: AtomicU32 = AtomicU32::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let name = format!(
            "portico-{tag}-{}-{}-{nanos}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        let path = std::env::temp_dir().join(name);
        std::fs::create_dir_all(&path).expect("create temp dir");
        TempDir { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Write `contents` to `name` inside the dir and return its path.
    pub fn write(&self, name: &str, contents: impl AsRef<[u8]>) -> PathBuf {
        let p = self.path.join(name);
        std::fs::write(&p, contents).expect("write temp file");
        p
    }

    /// A certificate for `localhost` from a new test CA named `ca`, written as `site.pem`
    /// (the chain) and `site.key` (what a site's `tls = { cert, key }` names).
    pub fn write_localhost_cert(&self, ca: &str) {
        let leaf = portico_testkit::certs::TestCa::new(ca).leaf(&["localhost"]);
        self.write("site.pem", &leaf.chain_pem);
        self.write("site.key", &leaf.key_pem);
    }

    /// Copy `src` into the dir under its own file name, byte for byte; return the copy.
    pub fn copy_in(&self, src: &Path) -> PathBuf {
        let name = src.file_name().expect("source has a file name");
        let dst = self.path.join(name);
        std::fs::copy(src, &dst).unwrap_or_else(|e| panic!("copy {}: {e}", src.display()));
        dst
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::env::var_os("PORTICO_KEEP_TMP").is_some() {
            report(&format!("kept {}", self.path.display()));
            return;
        }
        let _ = std::fs::remove_dir_all(&self.path);
    }
}
