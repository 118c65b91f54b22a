//! The `portico` binary as a child process, through the tests' one process helper
//! ([`portico_testkit::process`]: logs in files, bounded waits, stop and kill by PID).

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;

pub use portico_testkit::process::{ChildGuard, RunOutput, run_bounded};

/// `portico ARGS...` as a [`Command`] (current dir = `cwd`).
pub fn portico(cwd: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(super::portico_bin());
    cmd.args(args).current_dir(cwd);
    cmd
}

/// Start `portico run -c CONFIG` in the config's folder.
pub fn start_portico(config: &Path, log_dir: &Path) -> ChildGuard {
    let dir = config.parent().expect("config has a folder");
    let cfg = config.to_str().expect("utf-8 path");
    ChildGuard::spawn("portico-run", portico(dir, &["run", "-c", cfg]), log_dir)
}

/// Start `portico echo --listen ADDR --name NAME`.
pub fn start_portico_echo(addr: SocketAddr, name: &str, log_dir: &Path) -> ChildGuard {
    let listen = addr.to_string();
    let cmd = portico(log_dir, &["echo", "--listen", &listen, "--name", name]);
    ChildGuard::spawn(&format!("echo-{name}"), cmd, log_dir)
}
