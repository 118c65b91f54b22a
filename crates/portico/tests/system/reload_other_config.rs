//! `portico reload -c FILE` refuses an instance started with another config file: a reload
//! re-reads the instance's own file, so FILE would be validated and another file applied.
//! Both ways `portico reload` reaches an instance: the pid file and `reload.status` of the
//! shared `state_dir` (admin API off), and the admin API on a shared address (the instance's
//! `GET /api/v1/status` names its file). Each refusal exits 2 naming both files, and the
//! instance was not reloaded (its generation did not move); `-c` with its own file still
//! reloads it.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use crate::support::net::{free_port, local};
use crate::support::process::{portico, run_bounded, start_portico};
use crate::support::{TempDir, eventually};

fn reload(dir: &Path, config: &Path) -> portico_testkit::process::RunOutput {
    let c = config.to_str().expect("utf-8 path");
    run_bounded(
        "portico-reload",
        portico(dir, &["reload", "-c", c]),
        dir,
        Duration::from_secs(20),
        Duration::ZERO,
    )
}

/// The generation in `state_dir/reload.status` (0 at start).
fn generation(state_dir: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(state_dir.join("reload.status")).ok()?;
    text.lines()
        .next()?
        .strip_prefix("generation ")?
        .parse()
        .ok()
}

fn site(listen: SocketAddr, state: &str, admin: &str) -> String {
    format!(
        "[server]\nstate_dir = \"{state}\"\naccess_log = \"off\"\n[admin]\nlisten = \"{admin}\"\n\
         [[sites]]\nlisten = [\"{listen}\"]\nroutes = [{{ path = \"/\", respond = \"hi\" }}]\n"
    )
}

fn assert_refused(out: &portico_testkit::process::RunOutput, running: &Path, asked: &Path) {
    assert_eq!(out.code(), 2, "{out:?}");
    let running = running.canonicalize().expect("running config");
    let asked = asked.canonicalize().expect("asked config");
    assert!(
        out.stderr.contains("not reloading")
            && out
                .stderr
                .contains(&format!("started with {}", running.display()))
            && out.stderr.contains(&asked.display().to_string()),
        "{out:?}"
    );
}

#[test]
fn reload_refuses_an_instance_of_another_config_through_the_pid_file() {
    let dir = TempDir::new("reload-other-config");
    let listen = local(free_port());
    let a = dir.write("a.toml", site(listen, "state", "off"));
    // Same state_dir (same pid file and status file), another site.
    let b = dir.write("b.toml", site(local(free_port()), "state", "off"));
    let mut proxy = start_portico(&a, dir.path());
    proxy.wait_for_port(listen, Duration::from_secs(15));
    let state = dir.path().join("state");
    eventually(Duration::from_secs(10), "reload.status at start", || {
        (generation(&state) == Some(0)).then_some(())
    });
    assert_refused(&reload(dir.path(), &b), &a, &b);
    assert_eq!(
        generation(&state),
        Some(0),
        "the instance was not signalled"
    );
    let out = reload(dir.path(), &a);
    assert_eq!(out.code(), 0, "its own file reloads: {out:?}");
    assert_eq!(generation(&state), Some(1));
    proxy.assert_running();
}

#[test]
fn reload_refuses_an_instance_of_another_config_through_the_admin_api() {
    let dir = TempDir::new("reload-other-config-api");
    let (listen, admin) = (local(free_port()), local(free_port()));
    let a = dir.write("a.toml", site(listen, "state-a", &admin.to_string()));
    // Another state_dir, the same admin address: only the API can tell.
    let b = dir.write(
        "b.toml",
        site(local(free_port()), "state-b", &admin.to_string()),
    );
    let mut proxy = start_portico(&a, dir.path());
    proxy.wait_for_port(listen, Duration::from_secs(15));
    proxy.wait_for_port(admin, Duration::from_secs(15));
    let state = dir.path().join("state-a");
    eventually(Duration::from_secs(10), "reload.status at start", || {
        (generation(&state) == Some(0)).then_some(())
    });
    assert_refused(&reload(dir.path(), &b), &a, &b);
    assert_eq!(generation(&state), Some(0), "the instance was not reloaded");
    let out = reload(dir.path(), &a);
    assert_eq!(out.code(), 0, "its own file reloads: {out:?}");
    eventually(Duration::from_secs(10), "generation 1", || {
        (generation(&state) == Some(1)).then_some(())
    });
    proxy.assert_running();
}
