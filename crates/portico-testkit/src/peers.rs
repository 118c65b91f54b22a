//! The one rule for tests that need a third-party peer (a program such as `pebble`, `curl`,
//! `openssl`, `keepalived`, node's `ws`, root for network namespaces...): under CI
//! (`CI=true` or `CI=1`) a missing peer FAILS the test; elsewhere the test skips with a
//! visible `SKIP` line on the real stderr (past libtest's capture), naming the test and
//! what is missing.
//!
//! ```no_run
//! # fn t() {
//! let Some(curl) = portico_testkit::require_peer("curl") else { return };
//! # }
//! ```
//!
//! `scripts/test.sh` installs every peer (under `CI=true` a peer it cannot install is an
//! error there too).

use std::io::Write as _;
use std::path::{Path, PathBuf};

/// True under CI (`CI=true` or `CI=1`): missing peers are failures, never skips.
pub fn is_ci() -> bool {
    ci_value(std::env::var("CI").ok().as_deref())
}

fn ci_value(v: Option<&str>) -> bool {
    matches!(v, Some("true" | "1"))
}

/// Print a line to the real stderr, bypassing libtest's output capture, so that skip
/// reasons and measured figures show in `cargo test` / `scripts/test.sh` output.
pub fn report(msg: &str) {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "{msg}");
}

/// The running test's name (libtest names each test's thread after it).
fn test_name() -> String {
    std::thread::current()
        .name()
        .filter(|n| *n != "main")
        .unwrap_or("this test")
        .to_string()
}

/// A requirement is missing: panic under CI, else print why the test skips. Returns
/// normally only when skipping (the caller then returns).
#[track_caller]
pub fn skip_or_fail(reason: &str) {
    skip_or_fail_in(is_ci(), reason);
}

#[track_caller]
fn skip_or_fail_in(ci: bool, reason: &str) {
    let test = test_name();
    if ci {
        panic!("{test}: required peer missing under CI: {reason} (scripts/test.sh installs it)");
    }
    report(&format!(
        "SKIP {test}: {reason} (install with scripts/test.sh; under CI=true this fails)"
    ));
}

/// A peer found by some probe: `Ok` passes it through; `Err(why)` fails under CI, else
/// skips visibly and gives `None` (the caller returns):
/// `let Some(node) = require(Node::find()) else { return };`.
#[track_caller]
pub fn require<T>(found: Result<T, String>) -> Option<T> {
    match found {
        Ok(v) => Some(v),
        Err(why) => {
            skip_or_fail(&why);
            None
        }
    }
}

/// The program `name` on `PATH` (or in `/usr/sbin`, `/sbin`, where Debian puts daemons
/// such as keepalived), or `None`.
pub fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/local/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    p.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The program `name`, or (missing) a failure under CI / a visible skip elsewhere.
#[track_caller]
pub fn require_peer(name: &str) -> Option<PathBuf> {
    require(find_program(name).ok_or_else(|| format!("`{name}` not found on PATH")))
}

/// Every program in `names` (all found), or a failure under CI / a visible skip naming
/// every missing one.
#[track_caller]
pub fn require_peers(names: &[&str]) -> Option<Vec<PathBuf>> {
    let found: Vec<Option<PathBuf>> = names.iter().map(|n| find_program(n)).collect();
    let missing: Vec<&str> = names
        .iter()
        .zip(&found)
        .filter(|(_, f)| f.is_none())
        .map(|(n, _)| *n)
        .collect();
    if missing.is_empty() {
        return Some(found.into_iter().flatten().collect());
    }
    skip_or_fail(&format!("not found on PATH: {}", missing.join(", ")));
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_a_program_on_path_and_not_a_missing_one() {
        assert!(find_program("sh").is_some());
        assert!(find_program("portico-no-such-program").is_none());
    }

    #[test]
    fn ci_is_true_or_1() {
        assert!(ci_value(Some("true")) && ci_value(Some("1")));
        assert!(!ci_value(None) && !ci_value(Some("false")) && !ci_value(Some("")));
    }

    #[test]
    fn a_missing_peer_fails_under_ci() {
        let r = std::panic::catch_unwind(|| skip_or_fail_in(true, "`x` not found"));
        let msg = r.expect_err("under CI a missing peer must fail");
        let msg = msg.downcast_ref::<String>().expect("a formatted message");
        assert!(
            msg.contains("a_missing_peer_fails_under_ci") && msg.contains("`x` not found"),
            "{msg}"
        );
    }
}
