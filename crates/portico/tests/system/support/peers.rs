//! Third-party peers installed by `scripts/test.sh`: node with the `ws` and `wscat` modules
//! in `tests/peers` (`$PORTICO_PEERS`), and the Python venv with `websockets` and `kosoku`
//! (`$PORTICO_VENV`, default `.peers/venv`).
//!
//! The rule: a test that needs a missing peer fails under CI and otherwise skips with a
//! printed reason: `let Some(node) = portico_testkit::require(Node::find()) else { return };`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::process::ChildGuard;
use super::repo_root;

/// `tests/peers` (node scripts, node_modules, Python scripts).
pub fn peers_dir() -> PathBuf {
    std::env::var_os("PORTICO_PEERS")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("tests/peers"))
}

/// The Python venv with the peers' modules.
pub fn venv_dir() -> PathBuf {
    std::env::var_os("PORTICO_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".peers/venv"))
}

fn runs(program: &Path, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Node with the `ws` module (and `wscat`), or why not.
pub struct Node {
    pub dir: PathBuf,
}

impl Node {
    pub fn find() -> Result<Node, String> {
        if !runs(Path::new("node"), &["--version"]) {
            return Err("`node` not found on PATH".into());
        }
        let dir = peers_dir();
        if !dir.join("node_modules/ws/package.json").is_file() {
            return Err(format!(
                "node module `ws` missing in {} (npm ci)",
                dir.display()
            ));
        }
        Ok(Node { dir })
    }

    /// `node tests/peers/SCRIPT ARGS...`
    pub fn script(&self, script: &str, args: &[&str]) -> Command {
        let mut cmd = Command::new("node");
        cmd.arg(self.dir.join(script))
            .args(args)
            .current_dir(&self.dir);
        cmd
    }

    /// Start `echo-server.mjs` on 127.0.0.1:PORT (`conformance`: WS_CONFORMANCE=1) and
    /// wait until it listens.
    pub fn start_echo(&self, port: u16, conformance: bool, log_dir: &Path) -> ChildGuard {
        let mut cmd = self.script("echo-server.mjs", &[&port.to_string()]);
        if conformance {
            cmd.env("WS_CONFORMANCE", "1");
        }
        let mut child = ChildGuard::spawn(&format!("ws-echo-{port}"), cmd, log_dir);
        child.wait_for_port(SocketAddr::from(([127, 0, 0, 1], port)), secs(10));
        child
    }

    /// The `wscat` executable, if installed.
    pub fn wscat(&self) -> Result<PathBuf, String> {
        let p = self.dir.join("node_modules/.bin/wscat");
        if p.is_file() {
            Ok(p)
        } else {
            Err(format!("wscat missing in {} (npm ci)", self.dir.display()))
        }
    }
}

/// The venv's Python with `websockets` (and maybe `kosoku`), or why not.
pub struct Python {
    pub venv: PathBuf,
}

impl Python {
    pub fn find() -> Result<Python, String> {
        let venv = venv_dir();
        let py = venv.join("bin/python");
        if !runs(&py, &["-c", "import websockets"]) {
            return Err(format!(
                "Python venv with `websockets` missing at {}",
                venv.display()
            ));
        }
        Ok(Python { venv })
    }

    pub fn python(&self) -> PathBuf {
        self.venv.join("bin/python")
    }

    /// `python tests/peers/SCRIPT ARGS...`
    pub fn script(&self, script: &str, args: &[&str]) -> Command {
        let mut cmd = Command::new(self.python());
        cmd.arg(peers_dir().join(script)).args(args);
        cmd
    }

    /// The `kosoku` executable (Autobahn test suite runner), if installed.
    pub fn kosoku(&self) -> Result<PathBuf, String> {
        let p = self.venv.join("bin/kosoku");
        if p.is_file() {
            Ok(p)
        } else {
            Err(format!("kosoku missing in {}", self.venv.display()))
        }
    }
}

fn secs(n: u64) -> std::time::Duration {
    std::time::Duration::from_secs(n)
}
