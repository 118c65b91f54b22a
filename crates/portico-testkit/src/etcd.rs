//! The one etcd harness of the tests: real etcd members (Debian `etcd-server`, 3.4+) on
//! loopback, started as child processes through [`crate::process::ChildGuard`] (logs in
//! files, stopped by PID, data in a folder the caller owns).
//!
//! [`EtcdCluster::start`] starts 1 or 3 members (ports chosen free below the ephemeral
//! range) and waits until every member answers `GET /health` with `"health":"true"`.
//! A member can be killed ([`EtcdCluster::kill`], SIGKILL by PID), stopped
//! ([`EtcdCluster::stop_all`]) and restarted with its data ([`EtcdCluster::restart`]).
//!
//! Gotchas (from the testbed): WAL preallocation makes each data dir ~60-120 MB, so keep
//! them under a temporary folder that the test deletes; the default election timeout (1 s)
//! sets how soon a 3-member cluster accepts writes after losing its leader, so members run
//! with `--heartbeat-interval 50 --election-timeout 500` to keep tests quick.
//!
//! For tests only: setup failures panic.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::pebble::free_tcp_port;
use crate::process::ChildGuard;

/// One member: its name, ports and process (None while killed or stopped).
struct Member {
    name: String,
    client_port: u16,
    peer_port: u16,
    child: Option<ChildGuard>,
}

/// A running etcd cluster of 1 or 3 members on 127.0.0.1.
pub struct EtcdCluster {
    etcd: PathBuf,
    dir: PathBuf,
    token: String,
    members: Vec<Member>,
}

impl EtcdCluster {
    /// Start `n` members (1 or 3) with data and logs under `dir`, and wait until all are
    /// healthy. `etcd` is the server binary (from [`crate::require_peer`]`("etcd")`).
    pub fn start(etcd: &Path, dir: &Path, n: usize) -> EtcdCluster {
        assert!(n == 1 || n == 3, "1 or 3 members");
        std::fs::create_dir_all(dir).expect("etcd dir");
        let mut members = Vec::new();
        for i in 1..=n {
            let client_port = free_tcp_port();
            let mut peer_port = free_tcp_port();
            while peer_port == client_port {
                peer_port = free_tcp_port();
            }
            members.push(Member {
                name: format!("m{i}"),
                client_port,
                peer_port,
                child: None,
            });
        }
        let mut cluster = EtcdCluster {
            etcd: etcd.to_path_buf(),
            dir: dir.to_path_buf(),
            token: format!("portico-test-{}", std::process::id()),
            members,
        };
        for i in 0..n {
            cluster.spawn(i, "new");
        }
        cluster.wait_healthy(Duration::from_secs(30));
        cluster
    }

    fn initial_cluster(&self) -> String {
        self.members
            .iter()
            .map(|m| format!("{}=http://127.0.0.1:{}", m.name, m.peer_port))
            .collect::<Vec<_>>()
            .join(",")
    }

    fn spawn(&mut self, i: usize, state: &str) {
        let initial = self.initial_cluster();
        let m = &self.members[i];
        let client = format!("http://127.0.0.1:{}", m.client_port);
        let peer = format!("http://127.0.0.1:{}", m.peer_port);
        let mut cmd = Command::new(&self.etcd);
        cmd.arg("--name")
            .arg(&m.name)
            .arg("--data-dir")
            .arg(self.dir.join(format!("{}.etcd", m.name)))
            .args(["--listen-client-urls", &client])
            .args(["--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer])
            .args(["--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &initial])
            .args(["--initial-cluster-token", &self.token])
            .args(["--initial-cluster-state", state])
            .args(["--heartbeat-interval", "50", "--election-timeout", "500"])
            .args(["--log-level", "warn"]);
        let name = format!("etcd-{}", m.name);
        let child = ChildGuard::spawn_combined(&name, cmd, &self.dir.join(format!("{name}.log")));
        self.members[i].child = Some(child);
    }

    /// The client endpoints, `http://127.0.0.1:PORT`, of every member (running or not).
    pub fn endpoints(&self) -> Vec<String> {
        self.members
            .iter()
            .map(|m| format!("http://127.0.0.1:{}", m.client_port))
            .collect()
    }

    /// The endpoints as a TOML array, for `[cluster] etcd = ...`.
    pub fn endpoints_toml(&self) -> String {
        let quoted: Vec<String> = self
            .endpoints()
            .iter()
            .map(|e| format!("\"{e}\""))
            .collect();
        format!("[{}]", quoted.join(", "))
    }

    /// The number of members.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Never true: a cluster has 1 or 3 members.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// The PID of member `i`, while it runs.
    pub fn pid(&self, i: usize) -> Option<u32> {
        self.members[i].child.as_ref().map(ChildGuard::pid)
    }

    /// SIGKILL member `i` (by PID) and reap it.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.members[i].child.take() {
            c.kill();
        }
    }

    /// Stop every member (SIGTERM, then SIGKILL after 5 s).
    pub fn stop_all(&mut self) {
        for m in &mut self.members {
            if let Some(mut c) = m.child.take() {
                c.stop(Duration::from_secs(5));
            }
        }
    }

    /// Restart member `i` with its data dir (it rejoins the cluster), without waiting.
    pub fn restart(&mut self, i: usize) {
        assert!(self.members[i].child.is_none(), "member {i} still runs");
        self.spawn(i, "existing");
    }

    /// Restart every stopped member and wait until all are healthy.
    pub fn restart_all(&mut self) {
        for i in 0..self.members.len() {
            if self.members[i].child.is_none() {
                self.spawn(i, "existing");
            }
        }
        self.wait_healthy(Duration::from_secs(30));
    }

    /// The index of the current leader, from the running members' `/v3/maintenance/status`
    /// (the gRPC gateway): the member whose `member_id` is the `leader` they report.
    pub fn leader(&self) -> Option<usize> {
        let mut ids = Vec::new();
        let mut leader = None;
        for (i, m) in self.members.iter().enumerate() {
            if m.child.is_none() {
                continue;
            }
            let Some(body) = post(m.client_port, "/v3/maintenance/status", "{}") else {
                continue;
            };
            if let Some(id) = json_str(&body, "member_id") {
                ids.push((i, id));
            }
            leader = leader.or_else(|| json_str(&body, "leader"));
        }
        let leader = leader?;
        ids.into_iter()
            .find(|(_, id)| *id == leader)
            .map(|(i, _)| i)
    }

    /// Wait until every running member answers `/health` with `"health":"true"`; panic with
    /// the logs after `timeout`.
    pub fn wait_healthy(&mut self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let mut all = true;
            for m in &mut self.members {
                let Some(c) = m.child.as_mut() else { continue };
                c.assert_running();
                all &= health(m.client_port);
            }
            if all {
                return;
            }
            if Instant::now() >= deadline {
                let logs: Vec<String> = self
                    .members
                    .iter()
                    .filter_map(|m| m.child.as_ref().map(ChildGuard::logs))
                    .collect();
                panic!("etcd not healthy after {timeout:?}\n{}", logs.join("\n"));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for m in &mut self.members {
            if let Some(mut c) = m.child.take() {
                c.kill();
            }
        }
    }
}

/// The string value of `"name":"..."` in a JSON text (the gateway quotes 64-bit ids).
fn json_str(body: &str, name: &str) -> Option<String> {
    let key = format!("\"{name}\":\"");
    let at = body.find(&key)? + key.len();
    Some(body[at..].split('"').next()?.to_string())
}

/// `GET /health` on a member's client port says `"health":"true"`.
fn health(port: u16) -> bool {
    request(port, "GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .is_some_and(|r| r.contains("\"health\":\"true\""))
}

/// POST `body` (JSON) to the member's gRPC gateway; the response body.
fn post(port: u16, path: &str, body: &str) -> Option<String> {
    let req = format!(
        "POST {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let resp = request(port, &req)?;
    Some(resp.split_once("\r\n\r\n")?.1.to_string())
}

fn request(port: u16, req: &str) -> Option<String> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    s.write_all(req.as_bytes()).ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out)
}
