//! `portico check -c FILE` on every shipped example, on a typo'd copy and on garbage.
//!
//! Contract (SPEC "Command line"): every problem as `FILE:LINE:COL: reason` plus a hint,
//! exit 0 valid / 1 invalid, never a panic or another exit code. Every shipped example is
//! valid.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::support::process::{RunOutput, portico, run_bounded};
use crate::support::{TempDir, repo_root};

fn check(file: &Path, logs: &TempDir, tag: &str) -> RunOutput {
    let f = file.to_str().expect("utf-8 path");
    let cmd = portico(logs.path(), &["check", "-c", f]);
    run_bounded(
        &format!("check-{tag}"),
        cmd,
        logs.path(),
        Duration::from_secs(20),
        Duration::ZERO,
    )
}

/// Lines of the form `FILE:LINE:COL: msg` for this file.
fn diagnostics<'a>(out: &'a RunOutput, file: &Path) -> Vec<&'a str> {
    let prefix = format!("{}:", file.display());
    out.stderr
        .lines()
        .filter(|l| {
            l.strip_prefix(&prefix).is_some_and(|rest| {
                let mut it = rest.splitn(3, ':');
                let line = it.next().unwrap_or("");
                let col = it.next().unwrap_or("");
                !line.is_empty()
                    && line.bytes().all(|b| b.is_ascii_digit())
                    && !col.is_empty()
                    && col.bytes().all(|b| b.is_ascii_digit())
            })
        })
        .collect()
}

fn assert_no_panic(out: &RunOutput, what: &str) {
    assert!(
        !out.stderr.contains("panicked") && !out.stdout.contains("panicked"),
        "{what}: portico check panicked\n{}",
        out.stderr
    );
    assert!(
        out.code() == 0 || out.code() == 1,
        "{what}: exit code must be 0 or 1, got {} (status {:?})\nstderr:\n{}",
        out.code(),
        out.status,
        out.stderr
    );
}

fn examples() -> Vec<PathBuf> {
    let dir = repo_root().join("examples");
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("read examples/")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    v.sort();
    assert!(!v.is_empty(), "no examples/*.toml found");
    v
}

/// Every shipped example is valid: `portico check` exits 0 with no diagnostic at all (a
/// "not supported yet" is a failure too: an example must run as its header says, and the
/// seed tests run them). Each is also run by a scenario test (`seed000`...`seed003`,
/// `stream_seed003`, `ha::seed003`, `ha::seed004`).
#[test]
fn every_example_is_valid() {
    let logs = TempDir::new("examples-check");
    let mut failures = Vec::new();
    for file in examples() {
        let name = file
            .file_name()
            .and_then(|n| n.to_str())
            .expect("utf-8 name")
            .to_string();
        let out = check(&file, &logs, &name);
        assert_no_panic(&out, &name);
        let diags = diagnostics(&out, &file);
        if out.code() != 0 || !diags.is_empty() || out.stderr.contains("not supported yet") {
            failures.push(format!(
                "{name}: expected valid (exit 0, no diagnostics), got exit {}:\n{}",
                out.code(),
                out.stderr
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// Every example is started by a scenario test (its name appears in one of this crate's
/// test sources other than this file), which checks it behaves as its header says.
#[test]
fn every_example_is_run_by_a_scenario_test() {
    let tests = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests");
    let mut sources = String::new();
    for sub in ["system", "ha"] {
        for e in std::fs::read_dir(tests.join(sub)).expect("read tests/") {
            let p = e.expect("entry").path();
            if p.extension().is_some_and(|x| x == "rs") && !p.ends_with("examples_check.rs") {
                sources.push_str(&std::fs::read_to_string(&p).expect("read test source"));
            }
        }
    }
    let unrun: Vec<String> = examples()
        .iter()
        .filter_map(|f| f.file_name()?.to_str().map(str::to_string))
        .filter(|name| !sources.contains(name.as_str()))
        .collect();
    assert!(
        unrun.is_empty(),
        "examples no scenario test runs: {unrun:?}"
    );
}

#[test]
fn typo_names_line_column_and_the_closest_key() {
    let dir = TempDir::new("examples-typo");
    let original = std::fs::read_to_string(crate::support::example("seed-003-http-lb.toml"))
        .expect("read seed-003-http-lb.toml");
    // Insert `balanse = ...` right after the `[upstreams.tomcat]` header.
    let mut lines: Vec<&str> = original.lines().collect();
    let header = lines
        .iter()
        .position(|l| l.trim() == "[upstreams.tomcat]")
        .expect("seed-003 has [upstreams.tomcat]");
    lines.insert(header + 1, "balanse = \"round_robin\"");
    let typo_line = header + 2; // 1-based line number of the inserted line
    let file = dir.write("typo.toml", lines.join("\n") + "\n");

    let out = check(&file, &dir, "typo");
    assert_no_panic(&out, "typo");
    assert_eq!(out.code(), 1, "typo must be invalid\n{}", out.stderr);
    let want = format!("{}:{typo_line}:1:", file.display());
    let diag = out
        .stderr
        .lines()
        .find(|l| l.starts_with(&want))
        .unwrap_or_else(|| panic!("no diagnostic starting with {want:?}\n{}", out.stderr));
    assert!(
        out.stderr.contains("did you mean `balance`"),
        "expected a hint `did you mean `balance``; diagnostic {diag:?}\n{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("hint:"),
        "expected a `hint:` line\n{}",
        out.stderr
    );
}

#[test]
fn garbage_bytes_are_rejected_cleanly() {
    let dir = TempDir::new("examples-garbage");
    let mut bytes = Vec::with_capacity(4096);
    let mut x: u32 = 0x1234_5678;
    for _ in 0..4096 {
        // xorshift: deterministic junk, including NULs and invalid UTF-8
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        bytes.push((x & 0xff) as u8);
    }
    let file = dir.write("garbage.toml", &bytes);
    let out = check(&file, &dir, "garbage");
    assert_no_panic(&out, "garbage");
    assert_eq!(out.code(), 1, "garbage must be invalid\n{}", out.stderr);
    assert!(
        !out.stderr.trim().is_empty(),
        "garbage: expected a reason on stderr"
    );

    // Valid UTF-8 that is not TOML.
    let file = dir.write("notoml.toml", "[[[sites\nlisten = = 3\n\u{0}\n");
    let out = check(&file, &dir, "notoml");
    assert_no_panic(&out, "not TOML");
    assert_eq!(out.code(), 1, "not TOML must be invalid\n{}", out.stderr);
    assert!(
        out.stderr.contains(&format!("{}:", file.display())),
        "not TOML: expected a FILE:LINE:COL diagnostic\n{}",
        out.stderr
    );
}
