//! Cluster mode with a real 3-member etcd and three real `portico` nodes (admin API on):
//! the nodes list each other (the one with a different upstream setting is flagged); a drain
//! through one node's API is obeyed by all three; `portico register` adds a server that
//! starts taking traffic on every node (health-checked like the listed ones; registered in
//! an upstream with `slow_start` it joins at 1/10 of its weight on every node), and once that
//! process is SIGKILLed the server leaves after its TTL, its WebSocket closed with 1001 while
//! WebSockets to the other servers keep echoing; a register process stopped with SIGTERM
//! deregisters at once; an unknown upstream is refused; an etcd member killed changes nothing for traffic; all of etcd stopped: every
//! node serves and says "degraded" (a drain then applies on its node only and the answer says
//! it was not shared), then lists the members again when etcd returns (and the cluster's
//! state replaces the local-only drain).

#![allow(clippy::unwrap_used)] // a test: a failed step is a failed test

use crate::support;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use portico_admin::client::call;
use portico_admin::status::Status;
use portico_testkit::echo::EchoServer;
use portico_testkit::etcd::EtcdCluster;
use support::http;
use support::net::{free_port, local};
use support::process::{ChildGuard, portico, run_bounded, start_portico};
use support::raw_ws::RawWs;
use support::{TempDir, eventually};

const T10: Duration = Duration::from_secs(10);
const T40: Duration = Duration::from_secs(40);

struct Node {
    name: String,
    config: PathBuf,
    admin: SocketAddr,
    listen: SocketAddr,
    proc: ChildGuard,
}

impl Node {
    fn status(&self) -> Option<Status> {
        let a = call(self.admin, "GET", "/api/v1/status", None, T10).ok()?;
        serde_json::from_str(&a.body).ok()
    }

    /// The backend name answering one GET through this node.
    fn who(&self) -> String {
        let r = http::get(self.listen, "/")
            .unwrap_or_else(|e| panic!("GET via {}: {e}\n{}", self.name, self.proc.logs()));
        assert_eq!(
            r.status,
            200,
            "{}: {}",
            self.name,
            String::from_utf8_lossy(&r.body)
        );
        String::from_utf8_lossy(&r.body)
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_string()
    }

    fn cluster_up_with(&self, members: usize) -> bool {
        self.status()
            .and_then(|s| s.cluster)
            .is_some_and(|c| c.is_up() && c.members.len() == members)
    }
}

fn config(
    endpoints: &str,
    name: &str,
    admin: SocketAddr,
    listen: SocketAddr,
    servers: &str,
    extra: &str,
) -> String {
    format!(
        "[server]\naccess_log = \"off\"\nthreads = 1\nshutdown_grace = \"2s\"\n\n\
         [admin]\nlisten = \"{admin}\"\n\n\
         [cluster]\netcd = {endpoints}\nprefix = \"/portico-system\"\nnode_name = \"{name}\"\n\n\
         [upstreams.app]\nservers = [{servers}]\ndiscover = \"cluster\"\n\
         health = {{ type = \"http\", path = \"/\", interval = \"500ms\" }}\n{extra}\n\
         [upstreams.ramp]\nservers = []\ndiscover = \"cluster\"\nslow_start = \"60s\"\n\n\
         [[sites]]\nlisten = [\"{listen}\"]\nroutes = [\n\
         {{ path = \"/ws\", proxy = \"app\", websocket = true }},\n\
         {{ path = \"/\", proxy = \"app\" }},\n]\n"
    )
}

/// WebSockets and requests in progress on `addr` through `node`.
fn active(node: &Node, addr: &str) -> u32 {
    node.status()
        .and_then(|s| {
            s.upstreams[0]
                .servers
                .iter()
                .find(|sv| sv.addr == addr)
                .map(|sv| sv.active)
        })
        .unwrap_or(0)
}

/// Open WebSockets through `node` until one reaches server `addr` (its active count grows;
/// round robin: a few tries).
fn ws_to(node: &Node, addr: &str, tries: usize) -> Option<RawWs> {
    for _ in 0..tries {
        let before = active(node, addr);
        let mut ws = RawWs::open(node.listen).ok()?;
        if ws.echo("hello") && active(node, addr) > before {
            return Some(ws);
        }
    }
    None
}

/// `portico register --upstream UPSTREAM --addr ADDR --ttl TTL -c CONFIG`, started.
fn register(
    dir: &TempDir,
    config: &std::path::Path,
    upstream: &str,
    addr: &str,
    ttl: &str,
) -> ChildGuard {
    let args = [
        "register",
        "--upstream",
        upstream,
        "--addr",
        addr,
        "--ttl",
        ttl,
        "-c",
        config.to_str().unwrap(),
    ];
    ChildGuard::spawn("register", portico(dir.path(), &args), dir.path())
}

#[test]
fn three_nodes_share_members_drains_and_registered_servers() {
    let Some(etcd_bin) = portico_testkit::require_peer("etcd") else {
        return;
    };
    let dir = TempDir::new("cluster-system");
    let mut etcd = EtcdCluster::start(&etcd_bin, &dir.path().join("etcd"), 3);
    let endpoints = etcd.endpoints_toml();
    let alpha = EchoServer::start(local(0), "alpha").unwrap();
    let beta = EchoServer::start(local(0), "beta").unwrap();
    let servers = format!("\"{}\", \"{}\"", alpha.addr, beta.addr);
    let mut nodes = Vec::new();
    for i in 1..=3 {
        let name = format!("node{i}");
        let (admin, listen) = (local(free_port()), local(free_port()));
        // node3 differs in one upstream setting: its config hash is flagged.
        let extra = if i == 3 { "keepalive = 16\n" } else { "" };
        let sub = dir.path().join(&name);
        std::fs::create_dir_all(&sub).unwrap();
        let path = sub.join("portico.toml");
        std::fs::write(
            &path,
            config(&endpoints, &name, admin, listen, &servers, extra),
        )
        .unwrap();
        let mut proc = start_portico(&path, &sub);
        proc.wait_for_port(listen, T10);
        nodes.push(Node {
            name,
            config: path,
            admin,
            listen,
            proc,
        });
    }

    // Membership: every node lists the three; node3's config is flagged.
    eventually(T40, "three members everywhere", || {
        nodes.iter().all(|n| n.cluster_up_with(3)).then_some(())
    });
    let c = nodes[0].status().and_then(|s| s.cluster).unwrap();
    let differs: Vec<(&str, bool)> = c
        .members
        .iter()
        .map(|m| (m.name.as_str(), m.config_differs))
        .collect();
    assert_eq!(
        differs,
        [("node1", false), ("node2", false), ("node3", true)],
        "{c:?}"
    );
    let out = run_bounded(
        "status",
        portico(
            dir.path(),
            &["status", "-c", nodes[0].config.to_str().unwrap()],
        ),
        dir.path(),
        T10,
        Duration::ZERO,
    );
    assert!(out.success(), "{}", out.stderr);
    assert!(
        out.stdout.contains("node1 (this node)") && out.stdout.contains("DIFFERS"),
        "{}",
        out.stdout
    );
    let metrics = call(nodes[1].admin, "GET", "/metrics", None, T10)
        .unwrap()
        .body;
    assert!(metrics.contains("portico_cluster_up 1"), "{metrics}");
    assert!(metrics.contains("portico_cluster_members 3"), "{metrics}");

    // WebSockets to the static servers, one per node, echoing throughout.
    let mut kept: Vec<RawWs> = nodes
        .iter()
        .map(|n| RawWs::open(n.listen).unwrap_or_else(|e| panic!("ws via {}: {e}", n.name)))
        .collect();
    let mut echo_all = |what: &str| {
        for (i, ws) in kept.iter_mut().enumerate() {
            assert!(
                ws.echo("still here"),
                "WebSocket via node{} stopped echoing {what}",
                i + 1
            );
        }
    };
    echo_all("at start");

    // Drain alpha through node1's API: every node obeys.
    let path = format!("/api/v1/upstreams/app/servers/{}/drain", alpha.addr);
    let a = call(nodes[0].admin, "POST", &path, None, T10).unwrap();
    assert_eq!(a.status, 200, "{}", a.body);
    assert!(a.body.contains("\"scope\": \"cluster\""), "{}", a.body);
    for n in &nodes {
        eventually(T10, "alpha draining on every node", || {
            let s = n.status()?;
            let sv = s.upstreams[0]
                .servers
                .iter()
                .find(|sv| sv.addr == alpha.addr.to_string())?;
            (sv.admin_state == "draining").then_some(())
        });
        for _ in 0..10 {
            assert_eq!(
                n.who(),
                "beta",
                "{} sent traffic to a drained server",
                n.name
            );
        }
    }
    let c = nodes[2].status().and_then(|s| s.cluster).unwrap();
    assert_eq!(c.server_states.len(), 1, "{c:?}");
    let path = format!("/api/v1/upstreams/app/servers/{}/enable", alpha.addr);
    let a = call(nodes[1].admin, "POST", &path, None, T10).unwrap();
    assert_eq!(a.status, 200, "{}", a.body);
    for n in &nodes {
        eventually(T10, "alpha back on every node", || {
            (0..6).any(|_| n.who() == "alpha").then_some(())
        });
    }
    echo_all("after the drain");

    // `portico register`: a third server joins every node without a reload.
    let reg_backend = EchoServer::start(local(0), "gamma").unwrap();
    let reg_addr = reg_backend.addr.to_string();
    let started = Instant::now();
    let mut first = register(&dir, &nodes[0].config, "app", &reg_addr, "3s");
    for n in &nodes {
        eventually(
            T10,
            "the registered server takes traffic on every node",
            || (0..6).any(|_| n.who() == "gamma").then_some(()),
        );
    }
    let join = started.elapsed();
    eprintln!("FIGURE registered server served by all 3 nodes after {join:?}");
    // Health checks cover it as they cover the listed servers.
    eventually(T10, "the registered server health-checked", || {
        let s = nodes[2].status()?;
        let sv = s.upstreams[0]
            .servers
            .iter()
            .find(|sv| sv.addr == reg_addr)?;
        (sv.health.checked && sv.health.probes > 0 && sv.health.healthy).then_some(())
    });
    let c = nodes[2].status().and_then(|s| s.cluster).unwrap();
    assert_eq!(c.registered.len(), 1, "{c:?}");

    // Registered in `ramp` too (`slow_start = "60s"`): there it joins cold on every node, its
    // effective weight ramping up from 1/10 (the admin API shows it), while in `app` (no
    // slow start) it has its full weight. SIGTERM deregisters it.
    let mut cold = register(&dir, &nodes[0].config, "ramp", &reg_addr, "3s");
    for n in &nodes {
        let sv = eventually(T10, "the registered server in `ramp` on every node", || {
            let s = n.status()?;
            let ramp = s.upstreams.iter().find(|u| u.name == "ramp")?;
            ramp.servers.iter().find(|sv| sv.addr == reg_addr).cloned()
        });
        eprintln!(
            "FIGURE {}: registered server joined `ramp` at effective weight {:.2} of {} (slow start {:.2} along)",
            n.name, sv.effective_weight, sv.weight, sv.slow_start_progress
        );
        assert!(
            sv.slow_start_progress < 0.5 && sv.effective_weight < 0.6 * f64::from(sv.weight),
            "{}: not ramping: {sv:?}",
            n.name
        );
        let s = n.status().unwrap();
        let app = s.upstreams.iter().find(|u| u.name == "app").unwrap();
        let warm = app.servers.iter().find(|sv| sv.addr == reg_addr).unwrap();
        assert_eq!(warm.slow_start_progress, 1.0, "{}: {warm:?}", n.name);
    }
    cold.stop(T10).expect("register exits on SIGTERM");
    eventually(T10, "the `ramp` registration gone", || {
        let c = nodes[2].status()?.cluster?;
        (c.registered.len() == 1).then_some(())
    });

    // node3's config fixed and reloaded: the registered server stays (merged into the
    // reloaded config) and node3's new hash reaches the others: nothing flagged any more.
    let fixed = std::fs::read_to_string(&nodes[2].config)
        .unwrap()
        .replace("keepalive = 16\n", "");
    std::fs::write(&nodes[2].config, fixed).unwrap();
    let a = call(nodes[2].admin, "POST", "/api/v1/reload", None, T10).unwrap();
    assert_eq!(a.status, 200, "{}", a.body);
    assert!(
        (0..6).any(|_| nodes[2].who() == "gamma"),
        "registered server lost by a reload"
    );
    eventually(T10, "no member flagged after the reload", || {
        let c = nodes[0].status()?.cluster?;
        c.members.iter().all(|m| !m.config_differs).then_some(())
    });
    let mut to_gamma =
        ws_to(&nodes[1], &reg_addr, 12).expect("a WebSocket to the registered server");
    echo_all("after the registration");

    // Its register process killed: the server leaves after the TTL, its WebSocket gets 1001.
    first.kill();
    let killed = Instant::now();
    for n in &nodes {
        eventually(T40, "the registered server gone from every node", || {
            (0..12).all(|_| n.who() != "gamma").then_some(())
        });
    }
    let leave = killed.elapsed();
    eprintln!(
        "FIGURE registered server left all 3 nodes {leave:?} after its register process was killed (ttl 3s)"
    );
    assert!(
        leave >= Duration::from_secs(2),
        "left before its lease could expire: {leave:?}"
    );
    to_gamma.set_read_timeout(T10).unwrap();
    let close = loop {
        match to_gamma.recv() {
            Ok((8, p)) => break p,
            Ok(_) => continue,
            Err(e) => panic!("no close frame on the removed server's WebSocket: {e}"),
        }
    };
    assert_eq!(
        close.get(..2),
        Some(&1001u16.to_be_bytes()[..]),
        "{close:?}"
    );
    echo_all("after the registered server left");

    // Registered again, then stopped with SIGTERM: it deregisters, gone at once (no TTL wait).
    let mut again = register(&dir, &nodes[0].config, "app", &reg_addr, "10s");
    eventually(T10, "registered again", || {
        (0..6).any(|_| nodes[2].who() == "gamma").then_some(())
    });
    let stopped = Instant::now();
    let status = again.stop(T10).expect("register exits on SIGTERM");
    assert!(status.success(), "{status:?}\n{}", again.logs());
    for n in &nodes {
        eventually(T10, "deregistered server gone", || {
            (0..12).all(|_| n.who() != "gamma").then_some(())
        });
    }
    let gone = stopped.elapsed();
    eprintln!("FIGURE deregistered server (SIGTERM) left all 3 nodes after {gone:?}");
    assert!(
        gone < Duration::from_secs(8),
        "waited for the TTL: {gone:?}"
    );

    // Refused: an unknown upstream: exit 1, nothing registered.
    let mut refused = register(&dir, &nodes[0].config, "nope", &reg_addr, "10s");
    let code = refused.wait_timeout(T10).expect("refusal exits");
    assert_eq!(code.code(), Some(1), "{}", refused.logs());
    assert!(
        refused.logs().contains("no upstream `nope`"),
        "{}",
        refused.logs()
    );

    // One etcd member killed: traffic does not notice.
    let leader = etcd.leader().expect("an etcd leader");
    etcd.kill(leader);
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        for n in &nodes {
            let _ = n.who();
        }
    }
    echo_all("with an etcd member down");
    eventually(T40, "three members listed with an etcd member down", || {
        nodes.iter().all(|n| n.cluster_up_with(3)).then_some(())
    });

    // All of etcd stopped: every node serves and says degraded; back: members listed again.
    etcd.stop_all();
    for n in &nodes {
        eventually(T40, "degraded", || {
            n.status()
                .and_then(|s| s.cluster)
                .filter(|c| !c.is_up() && c.members.len() == 3)
        });
        let _ = n.who();
    }
    let m = call(nodes[0].admin, "GET", "/metrics", None, T10)
        .unwrap()
        .body;
    assert!(m.contains("portico_cluster_up 0"), "{m}");
    echo_all("with etcd stopped");
    // A drain while etcd is down: applied on that node only, and the answer says so.
    let path = format!("/api/v1/upstreams/app/servers/{}/drain", beta.addr);
    let a = call(nodes[1].admin, "POST", &path, None, T10).unwrap();
    assert_eq!(a.status, 200, "{}", a.body);
    assert!(
        a.body.contains("\"scope\": \"node\"") && a.body.contains("not shared with the cluster"),
        "{}",
        a.body
    );
    let beta_state = |n: &Node| {
        n.status().and_then(|s| {
            s.upstreams[0]
                .servers
                .iter()
                .find(|sv| sv.addr == beta.addr.to_string())
                .map(|sv| sv.admin_state.clone())
        })
    };
    assert_eq!(beta_state(&nodes[1]).as_deref(), Some("draining"));
    assert_eq!(beta_state(&nodes[0]).as_deref(), Some("enabled"));
    etcd.restart_all();
    let back = Instant::now();
    eventually(Duration::from_secs(60), "members listed again", || {
        nodes.iter().all(|n| n.cluster_up_with(3)).then_some(())
    });
    eprintln!(
        "FIGURE nodes caught up {:?} after etcd returned",
        back.elapsed()
    );
    echo_all("after etcd returned");
    // The cluster's state (beta enabled) replaced the local-only drain.
    eventually(
        T10,
        "the local-only drain replaced by the cluster's state",
        || (beta_state(&nodes[1]).as_deref() == Some("enabled")).then_some(()),
    );
    for n in &mut nodes {
        n.proc.assert_running();
    }
}

/// `examples/seed-001-cluster/`: the three node configs pass `portico check`, and differ only
/// in what is per node (their config hashes match, so no node is flagged).
#[test]
fn seed001_cluster_example_checks_and_nodes_share_a_config_hash() {
    let dir = support::repo_root().join("examples/seed-001-cluster");
    let logs = TempDir::new("seed001-cluster-check");
    let mut hashes = Vec::new();
    for i in 1..=3 {
        let file = dir.join(format!("node{i}.toml"));
        let out = run_bounded(
            "check",
            portico(logs.path(), &["check", "-c", file.to_str().unwrap()]),
            logs.path(),
            T10,
            Duration::ZERO,
        );
        assert!(out.success(), "{}: {}", file.display(), out.stderr);
        let text = std::fs::read_to_string(&file).unwrap();
        let config = portico_config::parse(&text, &file).unwrap();
        assert_eq!(
            config.cluster.as_ref().and_then(|c| c.node_name.clone()),
            Some(format!("edge-{i}"))
        );
        hashes.push(portico_cluster::config_hash(&config));
    }
    assert!(hashes.windows(2).all(|w| w[0] == w[1]), "{hashes:?}");
}

/// A node of `examples/seed-001-cluster/` on loopback (ports, state, CA and app servers
/// swapped for local ones; etcd and the CA unreachable): it serves anyway, the load
/// balancer's health route on the plain port answers 200 and everything else there is
/// redirected to https.
#[test]
fn seed001_cluster_node_answers_health_on_port_80_and_redirects_the_rest() {
    let dir = TempDir::new("seed001-cluster-run");
    let (p80, p443) = (free_port(), free_port());
    let app = EchoServer::start(local(0), "app").unwrap();
    let text =
        std::fs::read_to_string(support::repo_root().join("examples/seed-001-cluster/node1.toml"))
            .unwrap()
            .replace("\"/var/lib/portico\"", "\"state\"")
            .replace("listen = \"127.0.0.1:9900\"", "listen = \"off\"")
            .replace(
                "[\"http://10.0.0.5:2379\", \"http://10.0.0.6:2379\", \"http://10.0.0.7:2379\"]",
                "[\"http://127.0.0.1:1\"]",
            )
            .replace(
                "email = \"ops@example.com\"",
                "email = \"ops@example.com\"\ndirectory = \"https://127.0.0.1:1/dir\"",
            )
            .replace(
                "[\"10.0.1.11:9001\", \"10.0.1.12:9001\"]",
                &format!("[\"{}\"]", app.addr),
            )
            .replace("0.0.0.0:80", &format!("127.0.0.1:{p80}"))
            .replace("0.0.0.0:443", &format!("127.0.0.1:{p443}"));
    assert!(
        !text.contains("10.0.1.") && !text.contains(":2379"),
        "{text}"
    );
    let config = dir.write("portico.toml", text);
    let mut node = start_portico(&config, dir.path());
    node.wait_for_port(local(p80), T10);
    let mut c = http::Conn::connect(local(p80)).unwrap();
    let r = c
        .request_raw("GET /healthz HTTP/1.1\r\nHost: 10.0.0.9\r\n\r\n", b"")
        .unwrap();
    assert_eq!((r.status, r.body.as_slice()), (200, &b"ok"[..]));
    let r = c
        .request_raw(
            "GET /chat?room=1 HTTP/1.1\r\nHost: app.example.com\r\n\r\n",
            b"",
        )
        .unwrap();
    assert_eq!(r.status, 301);
    assert_eq!(
        r.header("location"),
        Some("https://app.example.com/chat?room=1")
    );
    node.assert_running();
}
