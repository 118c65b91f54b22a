//! Certificates and ACME across a cluster (issue 13, item 2): three real `portico`
//! processes sharing `[cluster]` on a real 3-member etcd, a real pebble, and a round-robin
//! TCP balancer in front of the nodes' plain listeners that pebble's validator goes through
//! (so most validations land on a node that did not order; a backend that refuses the
//! connection is skipped, as HAProxy's `redispatch` does).
//!
//! - `cluster_acme_three_nodes`: three sites (three names) are issued, each by exactly one
//!   order (pebble's "Issued certificate" lines, and the nodes' "ACME certificate issued"
//!   lines per name), every node serves the same certificate for each name; a fourth node
//!   joining later serves them without ordering; with all of etcd stopped every node keeps
//!   serving, and a node restarted meanwhile serves from its local copy.
//! - `cluster_acme_orderer_killed_mid_order`: validations held at the balancer while the
//!   first node holds the locks; that node is SIGKILLed; another node completes every
//!   certificate once the locks expire, still one issuance per name.
//! - `cluster_acme_renewals_tls_alpn_01`: TLS-ALPN-01 (the balancer in front of the TLS
//!   listeners) with 45-second certificates: each renewal is done once for the cluster, every
//!   node swaps it in while a WebSocket through each node keeps echoing, and the etcd leader
//!   is SIGKILLed just before the renewals with no failed handshake.
//! - `check_warns_without_secret_file`: `portico check` warns (exit 0) when `[cluster]` has
//!   no `secret_file`.

use std::io::{Read as _, Write as _};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use portico_testkit::etcd::EtcdCluster;
use portico_testkit::pebble::Pebble;
use portico_testkit::{require, require_peer};

use crate::support::net::{free_port, local};
use crate::support::pebble_clients::{roots, served_leaf, unverified, verifying, wss};
use crate::support::process::{ChildGuard, portico, start_portico_echo};
use crate::support::{TempDir, eventually, report};

const TEST: &str = "system_cluster_acme";
const NAMES: [&str; 3] = ["a.cluster.test", "b.cluster.test", "c.cluster.test"];

/// A round-robin TCP balancer on 127.0.0.1 with a switch that holds new connections
/// (accepted, not forwarded) until released.
struct Balancer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    hold: Arc<AtomicBool>,
    held: Arc<AtomicUsize>,
    per_backend: Arc<Mutex<Vec<usize>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Balancer {
    fn start(backends: Vec<SocketAddr>, hold: bool) -> Balancer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind balancer");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("addr");
        let stop = Arc::new(AtomicBool::new(false));
        let hold = Arc::new(AtomicBool::new(hold));
        let held = Arc::new(AtomicUsize::new(0));
        let per_backend = Arc::new(Mutex::new(vec![0; backends.len()]));
        let (s, h, hd, pb) = (
            stop.clone(),
            hold.clone(),
            held.clone(),
            per_backend.clone(),
        );
        let thread = std::thread::spawn(move || {
            let next = AtomicUsize::new(0);
            while !s.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((client, _)) => {
                        let _ = client.set_nonblocking(false);
                        let first = next.fetch_add(1, Ordering::SeqCst);
                        let (backends, h, hd, pb) =
                            (backends.clone(), h.clone(), hd.clone(), pb.clone());
                        std::thread::spawn(move || forward(client, &backends, first, &h, &hd, &pb));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        Balancer {
            addr,
            stop,
            hold,
            held,
            per_backend,
            thread: Some(thread),
        }
    }

    fn release(&self) {
        self.hold.store(false, Ordering::SeqCst);
    }

    fn counts(&self) -> Vec<usize> {
        self.per_backend.lock().expect("counts").clone()
    }
}

impl Drop for Balancer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.release();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One client connection: wait while held (at most 60 s), then the first backend from
/// `first` (round robin) that accepts; copy both ways.
fn forward(
    client: TcpStream,
    backends: &[SocketAddr],
    first: usize,
    hold: &AtomicBool,
    held: &AtomicUsize,
    per_backend: &Mutex<Vec<usize>>,
) {
    if hold.load(Ordering::SeqCst) {
        held.fetch_add(1, Ordering::SeqCst);
        let start = Instant::now();
        while hold.load(Ordering::SeqCst) && start.elapsed() < Duration::from_secs(60) {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    for k in 0..backends.len() {
        let i = (first + k) % backends.len();
        let Ok(server) = TcpStream::connect_timeout(&backends[i], Duration::from_secs(1)) else {
            continue;
        };
        per_backend.lock().expect("counts")[i] += 1;
        let _ = client.set_read_timeout(Some(Duration::from_secs(30)));
        let _ = server.set_read_timeout(Some(Duration::from_secs(30)));
        let (Ok(c2), Ok(s2)) = (client.try_clone(), server.try_clone()) else {
            return;
        };
        let up = std::thread::spawn(move || pipe(c2, s2));
        pipe(server, client);
        let _ = up.join();
        return;
    }
}

fn pipe(mut from: TcpStream, mut to: TcpStream) {
    let mut buf = [0u8; 16 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}

/// One node's ports.
#[derive(Clone, Copy)]
struct NodePorts {
    https: u16,
    http: u16,
}

struct Cluster {
    dir: TempDir,
    etcd: EtcdCluster,
    pebble: Pebble,
    balancer: Balancer,
    ports: Vec<NodePorts>,
    mode: Mode,
    /// The sites' upstream: an HTTP + WebSocket echo server.
    _echo: ChildGuard,
    echo_port: u16,
}

/// How a scenario runs: HTTP-01 (the balancer in front of the plain listeners) or
/// TLS-ALPN-01 (in front of the TLS listeners); pebble's certificate lifetime.
#[derive(Clone, Copy)]
struct Mode {
    alpn: bool,
    validity_secs: Option<u64>,
}

const HTTP01: Mode = Mode {
    alpn: false,
    validity_secs: None,
};

/// etcd (3 members), the nodes' ports (`n` of them; the balancer sends to the first three),
/// the balancer (holding validations when `hold`), pebble validating through it.
fn setup(tag: &str, n: usize, hold: bool, mode: Mode) -> Option<Cluster> {
    let etcd_bin = require_peer("etcd")?;
    require(portico_testkit::pebble::find())?;
    let dir = TempDir::new(tag);
    let etcd = EtcdCluster::start(&etcd_bin, &dir.path().join("etcd"), 3);
    let ports: Vec<NodePorts> = (0..n)
        .map(|_| NodePorts {
            https: free_port(),
            http: free_port(),
        })
        .collect();
    let backends = ports
        .iter()
        .take(3)
        .map(|p| local(if mode.alpn { p.https } else { p.http }))
        .collect();
    let balancer = Balancer::start(backends, hold);
    let (http_port, tls_port) = if mode.alpn {
        (free_port(), balancer.addr.port())
    } else {
        (balancer.addr.port(), free_port())
    };
    let pebble = Pebble::start_temp(http_port, tls_port, mode.validity_secs);
    std::fs::write(dir.path().join("pebble-tls-ca.pem"), pebble.tls_ca_pem()).expect("write");
    dir.write("cluster.secret", [0x5au8; 32]);
    let echo_port = free_port();
    let echo = start_portico_echo(local(echo_port), "app", dir.path());
    Some(Cluster {
        _echo: echo,
        echo_port,
        dir,
        etcd,
        pebble,
        balancer,
        ports,
        mode,
    })
}

impl Cluster {
    /// Write node `i`'s config (node-`i+1`, its own state_dir) and return its path.
    fn config(&self, i: usize) -> PathBuf {
        let p = self.ports[i];
        let mut text = format!(
            "[server]\nstate_dir = \"state-{n}\"\naccess_log = \"off\"\n\n\
             [admin]\nlisten = \"off\"\n\n\
             [acme]\nemail = \"ops@cluster.test\"\ndirectory = \"{dir}\"\n\
             directory_ca = \"pebble-tls-ca.pem\"\n{challenge}\n\
             [cluster]\netcd = {etcd}\nnode_name = \"node-{n}\"\nsecret_file = \"cluster.secret\"\n\n\
             [upstreams.echo]\nservers = [\"127.0.0.1:{echo}\"]\n\n",
            echo = self.echo_port,
            n = i + 1,
            dir = self.pebble.directory_url(),
            etcd = self.etcd.endpoints_toml(),
            challenge = if self.mode.alpn {
                "challenge = \"tls-alpn-01\"\n"
            } else {
                ""
            },
        );
        for name in NAMES {
            text.push_str(&format!(
                "[[sites]]\nlisten = [\"127.0.0.1:{https}\"]\nhosts = [\"{name}\"]\ntls = \"acme\"\n\
                 http_listen = [\"127.0.0.1:{http}\"]\n\
                 [[sites.routes]]\npath = \"/\"\nproxy = \"echo\"\nwebsocket = true\n\n",
                https = p.https,
                http = p.http,
            ));
        }
        self.dir.write(&format!("node-{}.toml", i + 1), text)
    }

    fn start(&self, i: usize) -> ChildGuard {
        let cfg = self.config(i);
        let mut child = ChildGuard::spawn(
            &format!("node-{}", i + 1),
            portico(
                self.dir.path(),
                &["run", "-c", cfg.to_str().expect("utf-8")],
            ),
            self.dir.path(),
        );
        child.wait_for_port(local(self.ports[i].http), Duration::from_secs(20));
        child
    }

    /// The leaf node `i` serves for `name`, verified against pebble's root.
    fn leaf(
        &self,
        i: usize,
        name: &str,
        verify: &Arc<portico_tls::rustls::ClientConfig>,
    ) -> Option<Vec<u8>> {
        served_leaf(self.ports[i].https, name, verify)
            .ok()
            .map(|c| c.as_ref().to_vec())
    }

    /// Wait until every node in `nodes` serves every name with one and the same certificate
    /// per name; returns them.
    fn all_serving(
        &self,
        nodes: &mut [(usize, &mut ChildGuard)],
        verify: &Arc<portico_tls::rustls::ClientConfig>,
        timeout: Duration,
    ) -> Vec<Vec<u8>> {
        eventually(timeout, "every node serving every certificate", || {
            let mut per_name = Vec::new();
            for name in NAMES {
                let mut seen: Option<Vec<u8>> = None;
                for (i, child) in nodes.iter_mut() {
                    child.assert_running();
                    let leaf = self.leaf(*i, name, verify)?;
                    if seen.as_ref().is_some_and(|s| *s != leaf) {
                        return None;
                    }
                    seen = Some(leaf);
                }
                per_name.push(seen?);
            }
            Some(per_name)
        })
    }

    /// Issuances in pebble's log.
    fn issued(&self) -> usize {
        self.pebble
            .logs()
            .lines()
            .filter(|l| l.contains("Issued certificate serial"))
            .count()
    }
}

/// "ACME certificate issued" lines per name in one node's log.
fn orders_per_name(log: &str) -> Vec<usize> {
    NAMES
        .iter()
        .map(|name| {
            log.lines()
                .filter(|l| {
                    l.contains("ACME certificate issued") && l.contains(&format!("\"{name}\""))
                })
                .count()
        })
        .collect()
}

/// The ACME and cluster lines of the nodes' logs, for assertion messages.
fn acme_lines(nodes: &[&ChildGuard]) -> String {
    let mut out = String::new();
    for n in nodes {
        out.push_str(&format!("--- {}\n", n.name()));
        for line in n.stderr().lines() {
            if line.contains("ACME") || line.contains("cluster") || line.contains("lock") {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    out
}

fn sum(a: &[Vec<usize>]) -> Vec<usize> {
    (0..NAMES.len())
        .map(|k| a.iter().map(|v| v[k]).sum())
        .collect()
}

#[test]
fn cluster_acme_three_nodes() {
    let Some(mut c) = setup("cluster-acme", 5, false, HTTP01) else {
        return;
    };
    let verify = verifying(roots(&c.pebble.root_pem()), &["http/1.1"]);

    let started = Instant::now();
    let mut n1 = c.start(0);
    let mut n2 = c.start(1);
    let mut n3 = c.start(2);
    let first = c.all_serving(
        &mut [(0, &mut n1), (1, &mut n2), (2, &mut n3)],
        &verify,
        Duration::from_secs(90),
    );
    let all_serving_ms = started.elapsed().as_millis();
    let logs = [n1.stderr(), n2.stderr(), n3.stderr()];
    let per_node: Vec<Vec<usize>> = logs.iter().map(|l| orders_per_name(l)).collect();
    let orders = sum(&per_node);
    assert_eq!(
        orders,
        vec![1, 1, 1],
        "one order per name: per node {per_node:?}"
    );
    let issued = eventually(Duration::from_secs(10), "pebble's issuance lines", || {
        let n = c.issued();
        (n >= NAMES.len()).then_some(n)
    });
    assert_eq!(
        issued,
        NAMES.len(),
        "pebble issued one certificate per name"
    );
    let validations = c.balancer.counts();
    assert!(
        validations.iter().all(|&v| v > 0),
        "validations reached every node through the balancer: {validations:?}"
    );
    report(&format!(
        "{TEST}: 3 nodes, 3 names: all nodes serve every certificate {all_serving_ms} ms after \
         the first start; orders per name {orders:?} (per node {per_node:?}); pebble issuances \
         {issued}; validation connections per node {validations:?}"
    ));

    // A fourth node joining later serves the stored certificates without ordering.
    let joined = Instant::now();
    let mut n4 = c.start(3);
    let fourth = c.all_serving(&mut [(3, &mut n4)], &verify, Duration::from_secs(20));
    assert_eq!(
        fourth, first,
        "the fourth node serves the cluster's certificates"
    );
    let log4 = n4.stderr();
    assert_eq!(orders_per_name(&log4), vec![0, 0, 0], "{}", n4.logs());
    assert!(!log4.contains("ACME order started"), "{}", n4.logs());
    assert_eq!(
        c.issued(),
        NAMES.len(),
        "no new issuance for the fourth node"
    );
    report(&format!(
        "{TEST}: a fourth node serves all 3 certificates {} ms after its start, without ordering",
        joined.elapsed().as_millis()
    ));

    // All of etcd stopped: every node keeps serving.
    c.etcd.stop_all();
    let any = unverified();
    std::thread::sleep(Duration::from_secs(2));
    for (i, child) in [(0, &mut n1), (1, &mut n2), (2, &mut n3), (3, &mut n4)] {
        child.assert_running();
        for (k, name) in NAMES.iter().enumerate() {
            let leaf = served_leaf(c.ports[i].https, name, &any).expect("served with etcd down");
            assert_eq!(leaf.as_ref(), first[k].as_slice(), "node {} {name}", i + 1);
        }
    }
    // A node restarted while etcd is down serves from its local copy.
    n2.stop(Duration::from_secs(10));
    let restarted = Instant::now();
    let mut n2 = c.start(1);
    let local_copy = c.all_serving(&mut [(1, &mut n2)], &verify, Duration::from_secs(20));
    assert_eq!(local_copy, first);
    report(&format!(
        "{TEST}: etcd fully stopped: 4/4 nodes keep serving; node-2 restarted meanwhile serves \
         its local copy {} ms after its start",
        restarted.elapsed().as_millis()
    ));

    // etcd back: a fifth node joining serves the stored certificates (the cluster caught up,
    // nothing was ordered again).
    c.etcd.restart_all();
    let mut n5 = c.start(4);
    let fifth = c.all_serving(&mut [(4, &mut n5)], &verify, Duration::from_secs(30));
    assert_eq!(fifth, first);
    assert_eq!(c.issued(), NAMES.len(), "nothing ordered again");
    for child in [&mut n1, &mut n2, &mut n3, &mut n4, &mut n5] {
        child.assert_running();
    }
}

#[test]
fn cluster_acme_orderer_killed_mid_order() {
    let Some(c) = setup("cluster-acme-kill", 3, true, HTTP01) else {
        return;
    };
    let verify = verifying(roots(&c.pebble.root_pem()), &["http/1.1"]);

    // node-1 alone: it takes every lock and publishes; pebble's validations are held.
    let mut n1 = c.start(0);
    eventually(
        Duration::from_secs(30),
        "node-1 mid-order, validations held",
        || {
            n1.assert_running();
            let started = n1.stderr().matches("ACME order started").count();
            (started >= NAMES.len() && c.balancer.held.load(Ordering::SeqCst) >= 1).then_some(())
        },
    );
    let mut n2 = c.start(1);
    let mut n3 = c.start(2);
    // Give them a moment to find the locks taken (they must not order meanwhile).
    std::thread::sleep(Duration::from_secs(1));
    assert!(!n2.stderr().contains("ACME order started"), "{}", n2.logs());
    assert!(!n3.stderr().contains("ACME order started"), "{}", n3.logs());

    let killed = Instant::now();
    n1.kill();
    c.balancer.release();
    let served = c.all_serving(
        &mut [(1, &mut n2), (2, &mut n3)],
        &verify,
        Duration::from_secs(90),
    );
    let completed_ms = killed.elapsed().as_millis();
    let per_node = vec![orders_per_name(&n2.stderr()), orders_per_name(&n3.stderr())];
    let orders = sum(&per_node);
    assert_eq!(
        orders,
        vec![1, 1, 1],
        "one completed order per name: {per_node:?}"
    );
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        c.issued(),
        NAMES.len(),
        "pebble issued one certificate per name"
    );
    assert_eq!(served.len(), NAMES.len());
    report(&format!(
        "{TEST}: orderer SIGKILLed mid-order (validations held): the other nodes completed all \
         3 certificates {completed_ms} ms after the kill (lock TTL 10 s); orders per name \
         {orders:?} (node-2, node-3: {per_node:?}); pebble issuances {}",
        c.issued()
    ));
}

#[test]
fn cluster_acme_renewals_tls_alpn_01() {
    // Certificates of 45 s: renewal is due with 15 s left, 30 s after issuance.
    const VALIDITY: u64 = 45;
    let mode = Mode {
        alpn: true,
        validity_secs: Some(VALIDITY),
    };
    let Some(mut c) = setup("cluster-acme-alpn", 3, false, mode) else {
        return;
    };
    let verify = verifying(roots(&c.pebble.root_pem()), &["http/1.1"]);
    let started = Instant::now();
    let mut n1 = c.start(0);
    let mut n2 = c.start(1);
    let mut n3 = c.start(2);
    let first = c.all_serving(
        &mut [(0, &mut n1), (1, &mut n2), (2, &mut n3)],
        &verify,
        Duration::from_secs(90),
    );
    let issued_at = Instant::now();
    assert_eq!(c.issued(), NAMES.len(), "one TLS-ALPN-01 issuance per name");
    let validations = c.balancer.counts();
    assert!(validations.iter().all(|&v| v > 0), "{validations:?}");
    report(&format!(
        "{TEST}: tls-alpn-01 through the balancer: all nodes serve every certificate {} ms after \
         the first start; validation connections per node {validations:?}",
        started.elapsed().as_millis()
    ));

    // An open WebSocket through every node, kept across the renewal.
    let mut held: Vec<_> = (0..3)
        .map(|i| {
            let mut ws = wss(c.ports[i].https, NAMES[0], &verify).expect("held wss");
            assert_eq!(ws.roundtrip("before").expect("echo"), "before");
            ws
        })
        .collect();

    // Shortly before renewals are due, the etcd leader is SIGKILLed; clients keep
    // handshaking with every node for every name meanwhile.
    let any = unverified();
    let mut handshakes = 0u32;
    let mut failed = Vec::new();
    let mut killed = None;
    let renewed = eventually(
        Duration::from_secs(VALIDITY * 2),
        "every node serving renewed certificates",
        || {
            if killed.is_none() && issued_at.elapsed() >= Duration::from_secs(25) {
                let leader = c.etcd.leader().expect("an etcd leader");
                c.etcd.kill(leader);
                killed = Some(leader);
            }
            let mut per_name = Vec::new();
            for (k, name) in NAMES.iter().enumerate() {
                let mut seen: Option<Vec<u8>> = None;
                let mut same = true;
                for (i, child) in [(0, &mut n1), (1, &mut n2), (2, &mut n3)] {
                    child.assert_running();
                    handshakes += 1;
                    match served_leaf(c.ports[i].https, name, &any) {
                        Ok(leaf) => {
                            let leaf = leaf.as_ref().to_vec();
                            same &= seen.as_ref().is_none_or(|s| *s == leaf);
                            seen = Some(leaf);
                        }
                        Err(e) => failed.push(format!("node-{} {name}: {e}", i + 1)),
                    }
                }
                let leaf = seen?;
                if !same || leaf == first[k] {
                    return None;
                }
                per_name.push(leaf);
            }
            Some(per_name)
        },
    );
    assert!(
        killed.is_some(),
        "the etcd leader was killed before the renewals"
    );
    assert!(
        failed.is_empty(),
        "handshakes failed during renewals: {failed:?}"
    );
    assert_eq!(renewed.len(), NAMES.len());
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        c.issued(),
        2 * NAMES.len(),
        "each renewal done once for the cluster\n{}",
        acme_lines(&[&n1, &n2, &n3])
    );
    for (i, ws) in held.iter_mut().enumerate() {
        let echoed = ws
            .roundtrip("after-renewal")
            .unwrap_or_else(|e| panic!("held WebSocket on node-{}: {e}", i + 1));
        assert_eq!(echoed, "after-renewal");
    }
    let renewals_per_node: Vec<Vec<usize>> = [&n1, &n2, &n3]
        .iter()
        .map(|n| orders_per_name(&n.stderr()))
        .collect();
    report(&format!(
        "{TEST}: renewals (etcd leader SIGKILLed {} s after issuance): every node serves the \
         renewed certificates, {handshakes} handshakes and 0 failures meanwhile, the held \
         WebSockets kept echoing; orders per node per name {renewals_per_node:?}; pebble \
         issuances {}",
        25,
        c.issued()
    ));
}

#[test]
fn check_warns_without_secret_file() {
    let dir = TempDir::new("cluster-acme-check");
    let base = "[admin]\nlisten = \"off\"\n[cluster]\netcd = [\"127.0.0.1:2379\"]\n";
    let without = dir.write("without.toml", base);
    dir.write("secret", [1u8; 32]);
    let with = dir.write("with.toml", format!("{base}secret_file = \"secret\"\n"));
    for (cfg, warns) in [(&without, true), (&with, false)] {
        let out = crate::support::process::run_bounded(
            "portico-check",
            portico(dir.path(), &["check", "-c", cfg.to_str().expect("utf-8")]),
            dir.path(),
            Duration::from_secs(20),
            Duration::ZERO,
        );
        assert!(out.success(), "{out:?}");
        assert!(out.stdout.contains("configuration is valid"), "{out:?}");
        assert_eq!(
            out.stderr.contains("warning: [cluster] has no secret_file"),
            warns,
            "{out:?}"
        );
    }
}
