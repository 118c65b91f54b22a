//! Test harness for the HA system tests (the `ha` test binary): network namespaces, processes inside
//! them, and probes.
//!
//! Topology (as in `examples/README.md`): a bridge `br0` inside its own namespace `P-sw`,
//! and one namespace per node, each with `eth0` (a veth created straight into the
//! namespaces, so the root namespace is never touched) on 10.200.0.0/24:
//! client `P-c` 10.200.0.2, `P-n1` 10.200.0.11, `P-n2` 10.200.0.12. `P` is unique per test
//! (`pt<pid>x<counter>`). [`Net`]'s `Drop` deletes every namespace, [`Proc`]'s `Drop` kills
//! its process by PID; declare the `Net` first so it is dropped last.
//!
//! Under CI a missing `ip`, `curl` or `keepalived`, or not being root, fails the test;
//! otherwise the test is skipped with a printed reason ([`requirements`]).

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use portico_testkit::process::ChildGuard;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

pub const VIP: &str = "10.200.0.100";
pub const PORT: u16 = 8080;
/// The two Portico nodes of [`Net::standard`].
pub const NODES: [&str; 2] = ["n1", "n2"];

pub fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

/// Waits up to `within` until `node` is the only one of [`NODES`] holding the VIP.
pub fn only_holder(net: &Net, node: &str, within: Duration) {
    eventually(within, &format!("{node} alone holds the VIP"), || {
        (net.holders(&NODES) == [node]).then_some(())
    });
}

/// HA tests of one binary run one at a time: timings at 100 ms adverts must not compete
/// for the two cores with another namespace test.
static SERIAL: Mutex<()> = Mutex::new(());

pub fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

pub fn portico_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_portico"))
}

pub use portico_testkit::report;

/// `true` when the test can run: every program in `tools` found and running as root
/// (network namespaces, CAP_NET_RAW, CAP_NET_ADMIN). Otherwise a failure under CI, a
/// visible skip elsewhere ([`portico_testkit::skip_or_fail`]) and `false`.
pub fn requirements(tools: &[&str]) -> bool {
    let mut missing: Vec<String> = tools
        .iter()
        .filter(|t| portico_testkit::peers::find_program(t).is_none())
        .map(|t| t.to_string())
        .collect();
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"));
    if !root {
        missing.push("root (network namespaces, CAP_NET_RAW, CAP_NET_ADMIN)".into());
    }
    if missing.is_empty() {
        return true;
    }
    portico_testkit::skip_or_fail(&format!("missing {}", missing.join(", ")));
    false
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn ip(args: &[&str]) -> Output {
    run(Command::new("ip").args(args))
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A folder for configs and logs, removed on drop unless `PORTICO_KEEP_TEST_DIR` is set.
pub struct TempDir(PathBuf);

impl TempDir {
    fn new(prefix: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!("portico-ha-{prefix}"));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        TempDir(p)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::env::var_os("PORTICO_KEEP_TEST_DIR").is_none() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// The namespaces of one test.
pub struct Net {
    pub prefix: String,
    pub dir: TempDir,
    nodes: Vec<(String, String)>,
}

impl Net {
    /// Builds the bridge namespace and one namespace per `(node, address)`.
    pub fn new(nodes: &[(&str, &str)]) -> Net {
        let prefix = format!(
            "pt{}x{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        );
        let net = Net {
            prefix: prefix.clone(),
            dir: TempDir::new(&prefix),
            nodes: nodes
                .iter()
                .map(|(n, a)| (n.to_string(), a.to_string()))
                .collect(),
        };
        let sw = net.ns("sw");
        ip(&["netns", "add", &sw]);
        ip(&["-n", &sw, "link", "add", "br0", "type", "bridge"]);
        ip(&["-n", &sw, "link", "set", "br0", "up"]);
        for (i, (node, addr)) in net.nodes.iter().enumerate() {
            let ns = net.ns(node);
            let port = format!("port{}", i + 1);
            ip(&["netns", "add", &ns]);
            // No duplicate address detection: IPv6 addresses are usable at once.
            let dad = "net.ipv6.conf.default.accept_dad=0";
            run(Command::new("ip").args(["netns", "exec", &ns, "sysctl", "-qw", dad]));
            ip(&[
                "link", "add", "name", "eth0", "netns", &ns, "type", "veth", "peer", "name", &port,
                "netns", &sw,
            ]);
            ip(&["-n", &sw, "link", "set", &port, "master", "br0", "up"]);
            ip(&["-n", &ns, "link", "set", "lo", "up"]);
            ip(&[
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{addr}/24"),
                "dev",
                "eth0",
            ]);
            ip(&["-n", &ns, "link", "set", "eth0", "up"]);
        }
        net
    }

    /// The standard three: client, node1, node2.
    pub fn standard() -> Net {
        Net::new(&[
            ("c", "10.200.0.2"),
            ("n1", "10.200.0.11"),
            ("n2", "10.200.0.12"),
        ])
    }

    /// With `PORTICO_HA_PCAP` set (and `tcpdump` installed): capture VRRP and ARP in the
    /// client namespace into `capture.pcap` in the test folder (keep it with
    /// `PORTICO_KEEP_TEST_DIR`). A debugging aid; tests never depend on it.
    pub fn capture(&self) -> Option<Proc> {
        std::env::var_os("PORTICO_HA_PCAP")?;
        let mut c = self.cmd("c", "tcpdump");
        c.args(["-i", "eth0", "-n", "-U", "-w"])
            .arg(self.path("capture.pcap"));
        c.arg("ip proto 112 or arp");
        let p = self.spawn(c, "tcpdump.out");
        std::thread::sleep(Duration::from_millis(300));
        Some(p)
    }

    pub fn ns(&self, node: &str) -> String {
        format!("{}-{node}", self.prefix)
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A command run inside `node`'s namespace.
    pub fn cmd(&self, node: &str, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.ns(node)]).arg(program);
        c
    }

    /// Spawns `cmd` with stdout+stderr to `log` in the test folder.
    pub fn spawn(&self, cmd: Command, log: &str) -> Proc {
        let path = self.path(log);
        let child = ChildGuard::spawn_combined(log, cmd, &path);
        Proc { child, log: path }
    }

    /// `portico run -c FILE` in `node`.
    pub fn portico(&self, node: &str, config: &Path) -> Proc {
        self.portico_log(node, config, &format!("portico-{node}.log"))
    }

    /// `portico run -c FILE` in `node`, logging to `log`.
    pub fn portico_log(&self, node: &str, config: &Path, log: &str) -> Proc {
        let mut c = self.cmd(node, portico_bin());
        c.arg("run").arg("-c").arg(config).env("RUST_LOG", "info");
        self.spawn(c, log)
    }

    /// `portico echo` on 0.0.0.0:PORT in `node`, answering its node name.
    pub fn echo(&self, node: &str) -> Proc {
        let mut c = self.cmd(node, portico_bin());
        c.args([
            "echo",
            "--listen",
            &format!("0.0.0.0:{PORT}"),
            "--name",
            node,
        ]);
        let p = self.spawn(c, &format!("echo-{node}.log"));
        eventually(
            Duration::from_secs(10),
            &format!("echo server in {node}"),
            || {
                self.get_from(node, "127.0.0.1", PORT)
                    .filter(|b| b.starts_with(node))
                    .map(|_| ())
            },
        );
        p
    }

    /// The body of `GET http://ADDR:PORT/` from inside `node`, if it answered within 150 ms.
    pub fn get_from(&self, node: &str, addr: &str, port: u16) -> Option<String> {
        self.get_within(node, addr, port, "0.15")
    }

    /// Like [`Net::get_from`] with a curl `--max-time` of `secs`.
    pub fn get_within(&self, node: &str, addr: &str, port: u16, secs: &str) -> Option<String> {
        let out = self
            .cmd(node, "curl")
            .args(["-s", "--max-time", secs, &url(addr, port)])
            .output()
            .ok()?;
        (out.status.success() && !out.stdout.is_empty())
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Whether `node` has `addr` on its eth0.
    pub fn has_addr(&self, node: &str, addr: &str) -> bool {
        let out = ip(&["-n", &self.ns(node), "-br", "addr", "show", "dev", "eth0"]);
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .any(|w| w.split('/').next() == Some(addr))
    }

    /// The nodes holding the VIP.
    pub fn holders(&self, nodes: &[&str]) -> Vec<String> {
        nodes
            .iter()
            .filter(|n| self.has_addr(n, VIP))
            .map(|n| n.to_string())
            .collect()
    }

    /// Cuts (`up = false`) or heals `node`'s link to the bridge, both directions at once.
    pub fn link(&self, node: &str, up: bool) {
        let i = self
            .nodes
            .iter()
            .position(|(n, _)| n == node)
            .unwrap_or_else(|| panic!("no node {node}"));
        let port = format!("port{}", i + 1);
        ip(&[
            "-n",
            &self.ns("sw"),
            "link",
            "set",
            &port,
            if up { "up" } else { "down" },
        ]);
    }

    /// Polls the client until the VIP answers with a body starting with `node`; returns the
    /// time since `since`.
    pub fn wait_vip(&self, node: &str, port: u16, since: Instant, limit: Duration) -> Duration {
        self.wait_answer(VIP, port, |b| b.starts_with(node), node, since, limit)
    }

    /// Polls the client until `addr:port` answers with a body `ok` accepts.
    pub fn wait_answer(
        &self,
        addr: &str,
        port: u16,
        ok: impl Fn(&str) -> bool,
        node: &str,
        since: Instant,
        limit: Duration,
    ) -> Duration {
        loop {
            if self.get_from("c", addr, port).is_some_and(|b| ok(&b)) {
                return since.elapsed();
            }
            if since.elapsed() > limit {
                panic!(
                    "{addr}:{port} never answered {node} within {limit:?} (last: {:?})\n{}",
                    self.get_from("c", addr, port),
                    self.logs()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Asserts every answer from the VIP during `d` came from `node`.
    pub fn hold_vip(&self, node: &str, port: u16, d: Duration) {
        let end = Instant::now() + d;
        while Instant::now() < end {
            // A generous timeout: a slow answer under load is not a moved VIP.
            let got = self.get_within("c", VIP, port, "2");
            assert!(
                got.as_deref().is_some_and(|b| b.starts_with(node)),
                "VIP answered {got:?}, want {node}\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// All logs of the test folder, for failure messages.
    pub fn logs(&self) -> String {
        let mut s = String::new();
        if let Ok(rd) = std::fs::read_dir(self.dir.path()) {
            let mut files: Vec<_> = rd
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "log"))
                .collect();
            files.sort();
            for f in files {
                let text = std::fs::read_to_string(&f).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(40).collect();
                s.push_str(&format!("--- {} (last lines)\n", f.display()));
                for l in tail.into_iter().rev() {
                    s.push_str(l);
                    s.push('\n');
                }
            }
        }
        s
    }

    /// Whether `node` holds `addr` on eth0, for each node.
    pub fn holders_of(&self, addr: &str, nodes: &[&str]) -> Vec<String> {
        nodes
            .iter()
            .filter(|n| self.has_addr(n, addr))
            .map(|n| n.to_string())
            .collect()
    }

    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.path(name);
        std::fs::write(&p, text).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        p
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        let mut names: Vec<String> = self.nodes.iter().map(|(n, _)| self.ns(n)).collect();
        names.push(self.ns("sw"));
        for ns in names {
            let _ = Command::new("ip")
                .args(["netns", "del", &ns])
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// A process the test started (the tests' one process helper,
/// [`portico_testkit::process::ChildGuard`], with stdout and stderr in one log); killed
/// (SIGKILL, by PID) on drop.
pub struct Proc {
    child: ChildGuard,
    pub log: PathBuf,
}

impl Proc {
    /// The PID while the process runs; 0 once it has exited (and was reaped).
    pub fn pid(&mut self) -> u32 {
        if self.child.try_status().is_some() {
            0
        } else {
            self.child.pid()
        }
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self) {
        self.child.kill();
    }

    /// SIGTERM without waiting.
    pub fn term(&mut self) {
        self.child.signal("TERM");
    }

    /// SIGTERM, then wait up to `limit` for the exit; SIGKILL past it. Returns the status.
    pub fn stop(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        self.child.stop(limit)
    }

    /// Waits up to `limit` for the process to exit on its own (SIGKILL past it).
    pub fn stop_after_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        self.child.stop_after_exit(limit)
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

fn url(addr: &str, port: u16) -> String {
    if addr.contains(':') {
        format!("http://[{addr}]:{port}/")
    } else {
        format!("http://{addr}:{port}/")
    }
}

/// Adds an extra address (e.g. IPv6) to `node`'s eth0.
pub fn add_addr(net: &Net, node: &str, prefix: &str) {
    ip(&[
        "-n",
        &net.ns(node),
        "addr",
        "add",
        prefix,
        "dev",
        "eth0",
        "nodad",
    ]);
}

/// Copies the folder `from` to `to`, recursively.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap_or_else(|e| panic!("{}: {e}", to.display()));
    let entries = std::fs::read_dir(from).unwrap_or_else(|e| panic!("{}: {e}", from.display()));
    for e in entries.flatten() {
        let dst = to.join(e.file_name());
        if e.path().is_dir() {
            copy_dir(&e.path(), &dst);
        } else {
            std::fs::copy(e.path(), &dst).unwrap_or_else(|err| panic!("{}: {err}", dst.display()));
        }
    }
}

/// `examples/NAME` in the repository.
pub fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples")
        .join(name)
}

/// Polls `f` until `Some`, or panics with `what` after `timeout`.
pub fn eventually<T>(timeout: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for: {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Options of a Portico node's `[[vrrp]]` instance.
#[derive(Clone)]
pub struct Vrrp {
    pub priority: u8,
    pub version: u8,
    pub advert: &'static str,
    pub preempt: bool,
    pub vrid: u8,
    pub auth: Option<&'static str>,
    /// The `virtual_ips` entry.
    pub vip: &'static str,
    pub extra: String,
}

impl Vrrp {
    pub fn v3(priority: u8, advert: &'static str) -> Self {
        Vrrp {
            priority,
            version: 3,
            advert,
            preempt: true,
            vrid: 51,
            auth: None,
            vip: "10.200.0.100/24",
            extra: String::new(),
        }
    }

    pub fn v2(priority: u8) -> Self {
        Vrrp {
            version: 2,
            auth: Some("s3cr3t"),
            ..Vrrp::v3(priority, "1s")
        }
    }

    /// The `[[vrrp]]` table.
    pub fn toml(&self) -> String {
        let mut s = format!(
            "[[vrrp]]\nname = \"VI_1\"\ninterface = \"eth0\"\nvrid = {}\npriority = {}\n\
             advert_interval = \"{}\"\nversion = {}\npreempt = {}\nvirtual_ips = [\"{}\"]\n",
            self.vrid, self.priority, self.advert, self.version, self.preempt, self.vip
        );
        if let Some(a) = self.auth {
            s.push_str(&format!("auth_pass = \"{a}\"\n"));
        }
        s.push_str(&self.extra);
        s
    }
}

impl Net {
    /// `portico echo` answering its name on [`PORT`] in n1 and in n2.
    pub fn echoes(&self) -> (Proc, Proc) {
        (self.echo("n1"), self.echo("n2"))
    }

    /// Waits until n1 answers on the VIP (up to 10 s), then until it alone holds the VIP
    /// (up to 2 s).
    pub fn n1_elected(&self) {
        self.wait_vip("n1", PORT, Instant::now(), secs(10.0));
        only_holder(self, "n1", secs(2.0));
    }

    /// A node config with only the VRRP instance (plus state dir and admin off) written to
    /// the test folder.
    pub fn node_config(&self, node: &str, v: &Vrrp, sites: &str) -> PathBuf {
        let state = self.path(&format!("state-{node}"));
        let text = format!(
            "[server]\nstate_dir = \"{}\"\naccess_log = \"off\"\n\n[admin]\nlisten = \"off\"\n\n{sites}\n{}",
            state.display(),
            v.toml()
        );
        self.write(&format!("{node}.toml"), &text)
    }
}

/// A keepalived node: config, pid files and log in the test folder.
pub struct Keepalived {
    pub proc: Proc,
    vrrp_pid: PathBuf,
}

impl Keepalived {
    /// keepalived's config for the same instance as [`Vrrp`].
    pub fn config(v: &Vrrp, node: &str) -> String {
        let auth = match v.auth {
            Some(a) if v.version == 2 => {
                format!("  authentication {{\n    auth_type PASS\n    auth_pass {a}\n  }}\n")
            }
            _ => String::new(),
        };
        let advert = match v.advert {
            "1s" => "1",
            "100ms" => "0.1",
            other => panic!("advert {other} not mapped for keepalived"),
        };
        format!(
            "global_defs {{\n  router_id {node}\n  vrrp_version {}\n  vrrp_garp_master_delay 1\n  vrrp_garp_master_repeat 3\n}}\n\
             vrrp_instance VI_1 {{\n  state BACKUP\n  interface eth0\n  virtual_router_id {}\n  priority {}\n  advert_int {advert}\n{}{auth}  virtual_ipaddress {{\n    {VIP}/24 dev eth0\n  }}\n}}\n",
            v.version,
            v.vrid,
            v.priority,
            if v.preempt { "" } else { "  nopreempt\n" },
        )
    }

    pub fn start(net: &Net, node: &str, v: &Vrrp) -> Keepalived {
        let conf = net.write(
            &format!("keepalived-{node}.conf"),
            &Keepalived::config(v, node),
        );
        let p = |ext: &str| net.path(&format!("keepalived-{node}.{ext}"));
        let vrrp_pid = p("vrrp.pid");
        for ext in ["pid", "vrrp.pid", "chk.pid", "bfd.pid"] {
            let _ = std::fs::remove_file(p(ext));
        }
        let mut c = net.cmd(node, "keepalived");
        c.args(["-n", "-l", "-D", "-f"])
            .arg(&conf)
            .arg("-p")
            .arg(p("pid"))
            .arg("-r")
            .arg(&vrrp_pid)
            .arg("-c")
            .arg(p("chk.pid"))
            .arg("-b")
            .arg(p("bfd.pid"));
        let proc = net.spawn(c, &format!("keepalived-{node}.log"));
        Keepalived { proc, vrrp_pid }
    }

    /// Hard crash: SIGKILL the VRRP child and the parent (by PID). Like the real thing, it
    /// leaves the VIP on the interface.
    pub fn crash(&mut self) {
        if let Ok(pid) = std::fs::read_to_string(&self.vrrp_pid) {
            let pid = pid.trim();
            if !pid.is_empty() {
                let _ = Command::new("kill").args(["-KILL", pid]).status();
            }
        }
        self.proc.kill();
    }

    /// Graceful stop (SIGTERM to the parent: it resigns with priority 0), waited for.
    pub fn stop(&mut self) {
        self.proc.stop(Duration::from_secs(10));
    }
}

impl Drop for Keepalived {
    fn drop(&mut self) {
        // The VRRP child dies with its parent on SIGTERM; on SIGKILL of the parent it could
        // linger, so it is killed by its own PID first.
        if let Ok(pid) = std::fs::read_to_string(&self.vrrp_pid) {
            let pid = pid.trim();
            if !pid.is_empty() && self.proc.pid() != 0 {
                let _ = Command::new("kill").args(["-TERM", pid]).status();
            }
        }
        self.proc.stop(Duration::from_secs(5));
    }
}
