//! Running Portico as a service: sd_notify messages seen on a real `NOTIFY_SOCKET` (path and
//! abstract), the unit file in `dist/` checked by `systemd-analyze verify`, the shell
//! completions and the man page generated from the command line, and (ignored by default:
//! it builds a release binary) the Debian package unpacked into a temporary root and
//! installed with `dpkg -i` in a throwaway overlay root.

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::net::{free_port, is_listening, local};
use crate::support::process::{ChildGuard, portico, run_bounded};
use crate::support::{TempDir, repo_root};

const T20: Duration = Duration::from_secs(20);

/// Read datagrams until one satisfies `want`; every message seen is returned in order.
fn wait_for(sock: &UnixDatagram, seen: &mut Vec<String>, want: &str, child: &mut ChildGuard) {
    let deadline = Instant::now() + T20;
    let mut buf = vec![0u8; 4096];
    while Instant::now() < deadline {
        // After STOPPING=1 the process may exit; until then a dead child shows in the panic.
        let _ = child.try_status();
        match sock.recv(&mut buf) {
            Ok(n) => {
                let msg = String::from_utf8_lossy(&buf[..n]).to_string();
                let hit = msg.lines().any(|l| l == want);
                seen.push(msg);
                if hit {
                    return;
                }
            }
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(e) => panic!("recv: {e}"),
        }
    }
    panic!(
        "no {want} within {T20:?}; messages: {seen:?}\n{}",
        child.logs()
    );
}

fn config(dir: &TempDir, port: u16) -> PathBuf {
    dir.write(
        "portico.toml",
        format!(
            "[admin]\nlisten = \"off\"\n[server]\nstate_dir = \"state\"\naccess_log = \"off\"\n\n[[sites]]\nlisten = [\"127.0.0.1:{port}\"]\n\
             [[sites.routes]]\npath = \"/\"\nrespond = \"ok\\n\"\n"
        ),
    )
}

fn run_with_socket(
    dir: &TempDir,
    cfg: &Path,
    notify_socket: &str,
    watchdog_usec: Option<&str>,
) -> ChildGuard {
    let mut cmd = portico(dir.path(), &["run", "-c", cfg.to_str().expect("utf-8")]);
    cmd.env("NOTIFY_SOCKET", notify_socket);
    if let Some(w) = watchdog_usec {
        cmd.env("WATCHDOG_USEC", w);
    }
    ChildGuard::spawn("portico-run", cmd, dir.path())
}

#[test]
fn sd_notify_ready_reloading_stopping() {
    let dir = TempDir::new("notify");
    let port = free_port();
    let cfg = config(&dir, port);
    let sock_path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).expect("bind notify socket");
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let mut child = run_with_socket(
        &dir,
        &cfg,
        sock_path.to_str().expect("utf-8"),
        Some("400000"),
    );
    let mut seen = Vec::new();

    wait_for(&sock, &mut seen, "READY=1", &mut child);
    // READY=1 comes after the listeners are bound: the port answers at once.
    assert!(
        is_listening(local(port)),
        "READY=1 before 127.0.0.1:{port} accepts"
    );
    let ready = seen.last().expect("ready");
    assert!(ready.contains("STATUS=serving"), "{ready}");
    assert!(
        ready.contains(&format!("MAINPID={}", child.pid())),
        "{ready}"
    );

    // WATCHDOG_USEC=400ms: pings every 200ms.
    let before = seen.len();
    wait_for(&sock, &mut seen, "WATCHDOG=1", &mut child);
    wait_for(&sock, &mut seen, "WATCHDOG=1", &mut child);
    assert!(seen.len() >= before + 2);

    // SIGHUP: RELOADING=1 then READY=1 with the outcome.
    child.signal("HUP");
    wait_for(&sock, &mut seen, "RELOADING=1", &mut child);
    wait_for(&sock, &mut seen, "READY=1", &mut child);
    let after = seen.last().expect("ready after reload");
    assert!(after.contains("reloaded"), "{after}");

    // A reload that fails keeps serving and still says READY=1, with why.
    std::fs::write(&cfg, "[[sites]]\nlisten = 42\n").expect("break config");
    child.signal("HUP");
    wait_for(&sock, &mut seen, "RELOADING=1", &mut child);
    wait_for(&sock, &mut seen, "READY=1", &mut child);
    let after = seen.last().expect("ready after failed reload");
    assert!(
        after.contains("STATUS=") && after.contains("portico.toml"),
        "{after}"
    );
    assert!(is_listening(local(port)));

    // SIGTERM: STOPPING=1, then a clean exit.
    child.signal("TERM");
    wait_for(&sock, &mut seen, "STOPPING=1", &mut child);
    let status = child
        .wait_timeout(T20)
        .expect("portico exits after SIGTERM");
    assert!(status.success(), "{status}\n{}", child.logs());
    let order: Vec<&str> = seen
        .iter()
        .filter_map(|m| {
            m.lines().find(|l| {
                !l.starts_with("WATCHDOG") && !l.starts_with("STATUS") && !l.starts_with("MAINPID")
            })
        })
        .collect();
    assert_eq!(
        order,
        [
            "READY=1",
            "RELOADING=1",
            "READY=1",
            "RELOADING=1",
            "READY=1",
            "STOPPING=1"
        ],
        "{seen:?}"
    );
}

#[test]
fn sd_notify_abstract_socket() {
    use std::os::linux::net::SocketAddrExt as _;
    let dir = TempDir::new("notify-abstract");
    let port = free_port();
    let cfg = config(&dir, port);
    let name = format!("portico-test-notify-{}-{port}", std::process::id());
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).expect("addr");
    let sock = UnixDatagram::bind_addr(&addr).expect("bind abstract");
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let mut child = run_with_socket(&dir, &cfg, &format!("@{name}"), None);
    let mut seen = Vec::new();
    wait_for(&sock, &mut seen, "READY=1", &mut child);
    child.signal("TERM");
    wait_for(&sock, &mut seen, "STOPPING=1", &mut child);
    assert!(child.wait_timeout(T20).is_some_and(|s| s.success()));
    assert!(
        !seen.iter().any(|m| m.contains("WATCHDOG")),
        "no WATCHDOG_USEC, no pings: {seen:?}"
    );
}

/// `systemd-analyze verify` on dist/portico.service, with the binary path pointed at the
/// test build; any warning fails. `scripts/test.sh` installs systemd under CI.
#[test]
fn unit_file_passes_systemd_analyze_verify() {
    let Some(analyze) = portico_testkit::require_peer("systemd-analyze") else {
        return;
    };
    let dir = TempDir::new("unit");
    let unit = std::fs::read_to_string(repo_root().join("dist/portico.service")).expect("unit");
    for want in [
        "Type=notify",
        "ExecReload=/usr/bin/portico reload",
        "AmbientCapabilities=CAP_NET_BIND_SERVICE CAP_NET_ADMIN CAP_NET_RAW\n",
        "CapabilityBoundingSet=CAP_NET_BIND_SERVICE CAP_NET_ADMIN CAP_NET_RAW\n",
        "ProtectSystem=strict",
        "StateDirectory=portico",
        "WatchdogSec=",
    ] {
        assert!(unit.contains(want), "dist/portico.service lacks {want:?}");
    }
    let bin = crate::support::portico_bin();
    let local_unit = dir.write(
        "portico.service",
        unit.replace("/usr/bin/portico", bin.to_str().expect("utf-8")),
    );
    let out = run_bounded(
        "systemd-analyze",
        {
            let mut c = Command::new(analyze);
            c.args(["verify", "--man=no"]).arg(&local_unit);
            c
        },
        dir.path(),
        T20,
        Duration::ZERO,
    );
    assert!(out.success(), "{out:?}");
    assert!(
        out.stdout.trim().is_empty() && out.stderr.trim().is_empty(),
        "systemd-analyze verify warns: {out:?}"
    );
}

/// The packaged default configuration is valid.
#[test]
fn default_config_passes_check() {
    let dir = TempDir::new("default-config");
    let cfg = repo_root().join("dist/portico.toml");
    let out = run_bounded(
        "check",
        portico(dir.path(), &["check", "-c", cfg.to_str().expect("utf-8")]),
        dir.path(),
        T20,
        Duration::ZERO,
    );
    assert!(out.success(), "{out:?}");
}

#[test]
fn completions_and_man_page_generate() {
    let dir = TempDir::new("completions");
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let out = run_bounded(
            shell,
            portico(dir.path(), &["completions", shell]),
            dir.path(),
            T20,
            Duration::ZERO,
        );
        assert!(out.success(), "{shell}: {out:?}");
        for sub in ["import", "reload", "completions"] {
            assert!(out.stdout.contains(sub), "{shell} completions lack `{sub}`");
        }
    }
    // The bash script is valid bash.
    let out = run_bounded(
        "bash",
        portico(dir.path(), &["completions", "bash"]),
        dir.path(),
        T20,
        Duration::ZERO,
    );
    let script = dir.write("portico.bash", out.stdout);
    let syntax = run_bounded(
        "bash-n",
        {
            let mut c = Command::new("bash");
            c.arg("-n").arg(&script);
            c
        },
        dir.path(),
        T20,
        Duration::ZERO,
    );
    assert!(syntax.success(), "bash -n: {syntax:?}");
    let man = run_bounded(
        "man",
        portico(dir.path(), &["man"]),
        dir.path(),
        T20,
        Duration::ZERO,
    );
    assert!(man.success(), "{man:?}");
    assert!(
        man.stdout.contains(".TH portico 1"),
        "{}",
        &man.stdout[..man.stdout.len().min(300)]
    );
    for sub in ["import", "run", "check", "reload", "completions", "man"] {
        assert!(man.stdout.contains(sub), "man page lacks `{sub}`");
    }
}

/// The Debian package: built by `scripts/deb.sh` (a release build: several minutes, hence
/// ignored by default; run `cargo test -p portico --test system service:: -- --ignored`, or set
/// PORTICO_DEB to a built .deb). Checks its control data, unpacks it with `dpkg --unpack`
/// into an empty dpkg root (the package is then registered there, half-installed), and runs
/// the unpacked binary's `check` on the unpacked default configuration; then installs it for
/// real with `dpkg -i` in a throwaway overlay root (see below) and purges it.
#[test]
#[ignore = "needs a release build (minutes): scripts/deb.sh, or PORTICO_DEB=path.deb"]
fn deb_package_unpacks_into_a_clean_root() {
    let deb = match std::env::var_os("PORTICO_DEB") {
        Some(p) => repo_root().join(p),
        None => {
            let out = Command::new("bash")
                .arg(repo_root().join("scripts/deb.sh"))
                .output()
                .expect("run scripts/deb.sh");
            assert!(
                out.status.success(),
                "scripts/deb.sh: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            PathBuf::from(
                String::from_utf8_lossy(&out.stdout)
                    .lines()
                    .last()
                    .expect("deb path")
                    .trim(),
            )
        }
    };
    assert!(deb.is_file(), "{}", deb.display());
    let dir = TempDir::new("deb");
    let run = |args: &[&str]| {
        let out = Command::new(args[0])
            .args(&args[1..])
            .output()
            .expect("run");
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let d = deb.to_str().expect("utf-8");
    let info = run(&["dpkg-deb", "-I", d]);
    assert!(info.contains("Package: portico"), "{info}");
    assert!(info.contains("adduser"), "Depends on adduser: {info}");
    let ctrl = dir.path().join("control");
    run(&["dpkg-deb", "-e", d, ctrl.to_str().expect("utf-8")]);
    let cf = std::fs::read_to_string(ctrl.join("conffiles")).expect("conffiles");
    assert!(cf.contains("/etc/portico/portico.toml"), "{cf}");
    for script in ["postinst", "postrm"] {
        run(&["sh", "-n", ctrl.join(script).to_str().expect("utf-8")]);
    }
    // An empty dpkg database under ROOT, then --unpack (no maintainer script runs).
    let root = dir.path().join("root");
    for sub in ["var/lib/dpkg/info", "var/lib/dpkg/updates"] {
        std::fs::create_dir_all(root.join(sub)).expect("dpkg dirs");
    }
    for f in ["var/lib/dpkg/status", "var/lib/dpkg/available"] {
        std::fs::write(root.join(f), "").expect("dpkg files");
    }
    let r = format!("--root={}", root.display());
    run(&[
        "dpkg",
        &r,
        "--force-depends",
        "--force-script-chrootless",
        "--unpack",
        d,
    ]);
    let status = std::fs::read_to_string(root.join("var/lib/dpkg/status")).expect("status");
    assert!(status.contains("Package: portico"), "{status}");
    for f in [
        "usr/bin/portico",
        "usr/lib/systemd/system/portico.service",
        "usr/share/man/man1/portico.1.gz",
        "usr/share/bash-completion/completions/portico",
        "usr/share/zsh/vendor-completions/_portico",
        "usr/share/fish/vendor_completions.d/portico.fish",
    ] {
        assert!(root.join(f).exists(), "{f} not installed");
    }
    // dpkg leaves a conffile as FILE.dpkg-new until the package is configured.
    let conf = root.join("etc/portico/portico.toml.dpkg-new");
    assert!(conf.exists(), "the default configuration is not unpacked");
    let out = Command::new(root.join("usr/bin/portico"))
        .args(["check", "-c"])
        .arg(&conf)
        .output()
        .expect("run unpacked portico");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
