//! Seed 003's TCP service through the `portico` binary: the `[[streams]]` of
//! `examples/seed-003-ha-node1.toml` (LVS `virtual_server ... lb_algo rr;
//! persistence_timeout 50; protocol TCP`) with its site, on free loopback ports and without
//! the `[[vrrp]]` part (the HA tests run that in namespaces).
//!
//! Checks: GETs through the stream port reach the tomcat backends (stream -> site -> round
//! robin); and the same stream over the three backends directly: round robin with 50 s
//! persistence, verified from two client addresses (127.0.0.2 and 127.0.0.3).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use crate::support::net::{free_port, is_listening, local};
use crate::support::process::{start_portico, start_portico_echo};
use crate::support::{TempDir, eventually, example};

/// One GET from the client address `from` (curl `--interface`) through `to`; the
/// `x-echo-name` of the answer.
fn echo_name_from(from: &str, to: SocketAddr) -> String {
    let out = Command::new("curl")
        .args([
            "-sS",
            "-0",
            "--max-time",
            "5",
            "-D",
            "-",
            "-o",
            "/dev/null",
            "--interface",
            from,
        ])
        .arg(format!("http://{to}/"))
        .output()
        .expect("run curl (a test peer installed by scripts/test.sh)");
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("x-echo-name")
                .then(|| v.trim().to_string())
        })
        .unwrap_or_else(|| {
            panic!(
                "no x-echo-name from {to} ({from}): {text:?} {}",
                String::from_utf8_lossy(&out.stderr)
            )
        })
}

/// The seed file with free ports, echo backends for tomcat, and no `[[vrrp]]`.
fn seed_config(site: u16, stream: u16, backends: &[u16; 3]) -> String {
    let text = std::fs::read_to_string(example("seed-003-ha-node1.toml")).expect("read seed");
    let text = text.split("[[vrrp]]").next().expect("text before [[vrrp]]");
    let text: String = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| format!("{l}\n"))
        .collect();
    let mut text = text
        .replace("0.0.0.0:6101", &format!("127.0.0.1:{site}"))
        .replace("127.0.0.1:6101", &format!("127.0.0.1:{site}"))
        .replace("0.0.0.0:6201", &format!("127.0.0.1:{stream}"));
    for (i, port) in backends.iter().enumerate() {
        text = text.replace(
            &format!("10.200.0.21:600{}", i + 1),
            &format!("127.0.0.1:{port}"),
        );
    }
    assert!(
        !text.contains("10.200.0.") && text.contains("persistence = \"50s\""),
        "{text}"
    );
    format!("[admin]\nlisten = \"off\"\n\n{text}")
}

#[test]
fn seed_003_stream_round_robin_with_50s_persistence() {
    let dir = TempDir::new("stream-seed003");
    let ports = [free_port(), free_port(), free_port()];
    let _echos: Vec<_> = ports
        .iter()
        .enumerate()
        .map(|(i, &p)| start_portico_echo(local(p), &format!("b{}", i + 1), dir.path()))
        .collect();
    for &p in &ports {
        eventually(Duration::from_secs(10), "echo backend", || {
            is_listening(local(p)).then_some(())
        });
    }
    let (site, stream) = (free_port(), free_port());
    let config = dir.write("seed003.toml", seed_config(site, stream, &ports));
    let _portico = start_portico(&config, dir.path());
    eventually(
        Duration::from_secs(15),
        "the stream listener (is run.rs starting streams?)",
        || is_listening(local(stream)).then_some(()),
    );

    // Stream -> site -> round robin over the three backends.
    let mut seen = BTreeMap::new();
    for i in 0..9 {
        let from = if i % 2 == 0 { "127.0.0.2" } else { "127.0.0.3" };
        *seen.entry(echo_name_from(from, local(stream))).or_insert(0) += 1;
    }
    assert_eq!(
        seen.len(),
        3,
        "every tomcat backend answered through the stream: {seen:?}"
    );

    // The same stream balancing the three backends directly: rr + 50 s persistence.
    let (_, stream2) = (site, free_port());
    let direct = format!(
        "[admin]\nlisten = \"off\"\n[upstreams.tomcat]\nservers = [\"127.0.0.1:{}\", \"127.0.0.1:{}\", \"127.0.0.1:{}\"]\n\
         [[streams]]\nlisten = [\"127.0.0.1:{stream2}\"]\nupstream = \"tomcat\"\npersistence = \"50s\"\n",
        ports[0], ports[1], ports[2]
    );
    let config2 = dir.write("direct.toml", direct);
    let _portico2 = start_portico(&config2, dir.path());
    eventually(
        Duration::from_secs(15),
        "the second stream listener",
        || is_listening(local(stream2)).then_some(()),
    );
    let a = echo_name_from("127.0.0.2", local(stream2));
    let b = echo_name_from("127.0.0.3", local(stream2));
    assert_ne!(a, b, "round robin: the second client gets the next backend");
    for _ in 0..5 {
        assert_eq!(
            echo_name_from("127.0.0.2", local(stream2)),
            a,
            "127.0.0.2 keeps its backend"
        );
        assert_eq!(
            echo_name_from("127.0.0.3", local(stream2)),
            b,
            "127.0.0.3 keeps its backend"
        );
    }
}
