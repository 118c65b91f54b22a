//! The one process helper of the tests: a child (the `portico` binary or a peer) with
//! stdout/stderr in log files (never pipes that could fill up), a bounded wait until it
//! listens, a stop by PID (SIGTERM, then SIGKILL past a grace), a kill by PID when its
//! guard drops, and bounded runs of commands that must end.

use std::fs::File;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// A running child process with its logs; killed (SIGKILL, by PID) and reaped on drop.
pub struct ChildGuard {
    name: String,
    child: Child,
    stdin: Option<ChildStdin>,
    stdout_log: PathBuf,
    stderr_log: PathBuf,
    status: Option<ExitStatus>,
}

impl ChildGuard {
    /// Spawn `cmd` with its output in `LOGDIR/NAME.out` / `NAME.err` and stdin null.
    pub fn spawn(name: &str, mut cmd: Command, log_dir: &Path) -> ChildGuard {
        Self::spawn_inner(name, &mut cmd, log_dir, false)
    }

    /// Like [`ChildGuard::spawn`], with stdin a pipe kept open until
    /// [`ChildGuard::close_stdin`] or drop.
    pub fn spawn_with_stdin(name: &str, mut cmd: Command, log_dir: &Path) -> ChildGuard {
        Self::spawn_inner(name, &mut cmd, log_dir, true)
    }

    /// Spawn `cmd` with stdout and stderr both appended to the one file `log` (lines in
    /// the order written), stdin null.
    pub fn spawn_combined(name: &str, mut cmd: Command, log: &Path) -> ChildGuard {
        let file = File::options()
            .create(true)
            .append(true)
            .open(log)
            .unwrap_or_else(|e| panic!("{}: {e}", log.display()));
        let err = file.try_clone().expect("clone the log file");
        Self::start(name, &mut cmd, (file, err), (log, log), false)
    }

    fn spawn_inner(name: &str, cmd: &mut Command, log_dir: &Path, stdin: bool) -> ChildGuard {
        let stdout_log = log_dir.join(format!("{name}.out"));
        let stderr_log = log_dir.join(format!("{name}.err"));
        let out = File::create(&stdout_log).expect("create stdout log");
        let err = File::create(&stderr_log).expect("create stderr log");
        Self::start(name, cmd, (out, err), (&stdout_log, &stderr_log), stdin)
    }

    fn start(
        name: &str,
        cmd: &mut Command,
        (out, err): (File, File),
        (stdout_log, stderr_log): (&Path, &Path),
        stdin: bool,
    ) -> ChildGuard {
        cmd.stdout(out).stderr(err);
        cmd.stdin(if stdin { Stdio::piped() } else { Stdio::null() });
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {name} ({:?}): {e}", cmd.get_program()));
        let stdin = child.stdin.take();
        ChildGuard {
            name: name.to_string(),
            child,
            stdin,
            stdout_log: stdout_log.to_path_buf(),
            stderr_log: stderr_log.to_path_buf(),
            status: None,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Everything the child wrote to stdout so far.
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(&self.stdout_log).unwrap_or_default()).into()
    }

    /// Everything the child wrote to stderr so far.
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(&self.stderr_log).unwrap_or_default()).into()
    }

    /// The tail of both logs, for assertion messages.
    pub fn logs(&self) -> String {
        fn tail(s: &str) -> String {
            let lines: Vec<&str> = s.lines().collect();
            lines[lines.len().saturating_sub(40)..].join("\n")
        }
        if self.stdout_log == self.stderr_log {
            return format!("--- {} log (tail)\n{}", self.name, tail(&self.stdout()));
        }
        format!(
            "--- {} stdout (tail)\n{}\n--- {} stderr (tail)\n{}",
            self.name,
            tail(&self.stdout()),
            self.name,
            tail(&self.stderr())
        )
    }

    /// Write to the child's stdin (spawned with [`ChildGuard::spawn_with_stdin`]).
    pub fn write_stdin(&mut self, data: &[u8]) {
        if let Some(s) = self.stdin.as_mut() {
            let _ = s.write_all(data);
        }
    }

    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// The exit status if the child has exited.
    pub fn try_status(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.child.try_wait().ok().flatten();
        }
        self.status
    }

    /// Wait at most `timeout` for the child to exit.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self.try_status() {
                return Some(s);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Send a signal by PID (`TERM`, `INT`, `HUP`, `KILL`...), through `sh`'s `kill`
    /// builtin (no unsafe code, no extra dependency).
    pub fn signal(&mut self, sig: &str) {
        if self.try_status().is_some() {
            return;
        }
        let ok = Command::new("sh")
            .args([
                "-c",
                "kill -s \"$1\" \"$2\"",
                "sh",
                sig,
                &self.pid().to_string(),
            ])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "kill -s {sig} {} ({}) failed", self.pid(), self.name);
    }

    /// SIGKILL by PID and reap.
    pub fn kill(&mut self) {
        if self.try_status().is_none() {
            let _ = self.child.kill();
            self.status = self.child.wait().ok();
        }
    }

    /// Wait at most `limit` for the child to exit on its own; SIGKILL past it. The exit
    /// status, `None` when it had to be killed.
    pub fn stop_after_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let st = self.wait_timeout(limit);
        if st.is_none() {
            self.kill();
        }
        st
    }

    /// Stop by PID: SIGTERM, then SIGKILL if it has not exited within `grace`. The exit
    /// status, `None` when it had to be killed.
    pub fn stop(&mut self, grace: Duration) -> Option<ExitStatus> {
        if let Some(s) = self.try_status() {
            return Some(s);
        }
        self.signal("TERM");
        self.stop_after_exit(grace)
    }

    /// Wait until `addr` accepts TCP connections; panic (with the logs) if the child exits
    /// first or `timeout` passes.
    pub fn wait_for_port(&mut self, addr: SocketAddr, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self.try_status() {
                panic!(
                    "{} exited ({s}) before {addr} was listening\n{}",
                    self.name,
                    self.logs()
                );
            }
            if is_listening(addr) {
                return;
            }
            if Instant::now() >= deadline {
                panic!(
                    "{} not listening on {addr} after {timeout:?}\n{}",
                    self.name,
                    self.logs()
                );
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// Panic with the logs if the child has exited.
    pub fn assert_running(&mut self) {
        if let Some(s) = self.try_status() {
            panic!("{} exited unexpectedly ({s})\n{}", self.name, self.logs());
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.stdin = None;
        self.kill();
    }
}

/// The result of a bounded run.
#[derive(Debug)]
pub struct RunOutput {
    /// `None` when the command was killed at its time limit.
    pub status: Option<ExitStatus>,
    pub stdout: String,
    pub stderr: String,
}

impl RunOutput {
    /// The exit code, or -1 for a timeout or a death by signal.
    pub fn code(&self) -> i32 {
        self.status.and_then(|s| s.code()).unwrap_or(-1)
    }

    pub fn success(&self) -> bool {
        self.status.is_some_and(|s| s.success())
    }
}

/// Run `cmd` to completion within `timeout` (killed past it), stdin held open for
/// `hold_stdin` (then closed; `Duration::ZERO` = stdin null).
pub fn run_bounded(
    name: &str,
    cmd: Command,
    log_dir: &Path,
    timeout: Duration,
    hold_stdin: Duration,
) -> RunOutput {
    let t0 = Instant::now();
    let mut child = if hold_stdin.is_zero() {
        ChildGuard::spawn(name, cmd, log_dir)
    } else {
        ChildGuard::spawn_with_stdin(name, cmd, log_dir)
    };
    let deadline = t0 + timeout;
    let mut status = None;
    while Instant::now() < deadline {
        if t0.elapsed() >= hold_stdin {
            child.close_stdin();
        }
        if let Some(s) = child.try_status() {
            status = Some(s);
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill();
    RunOutput {
        status,
        stdout: child.stdout(),
        stderr: child.stderr(),
    }
}

/// True if something accepts TCP connections on `addr` (200 ms connect timeout).
pub fn is_listening(addr: SocketAddr) -> bool {
    std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
}

/// Wait until nothing listens on `addr` any more (e.g. after killing a backend).
#[track_caller]
pub fn wait_closed(addr: SocketAddr, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while is_listening(addr) {
        assert!(
            Instant::now() < deadline,
            "{addr} still accepting after {timeout:?}"
        );
        std::thread::sleep(Duration::from_millis(25));
    }
}
