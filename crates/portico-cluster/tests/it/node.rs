//! Two nodes on a real etcd: both list both members; a drain shared by one is applied by the
//! other; a registered server appears and goes with its registration; with etcd stopped the
//! nodes are degraded and keep their state, and catch up when it returns.

use std::sync::Arc;
use std::time::{Duration, Instant};

use portico_balance::{AdminState, Registry, ServerId};
use portico_cluster::node::Node;
use portico_cluster::{MemberInfo, Registration};
use portico_testkit::etcd::EtcdCluster;

fn config(endpoints: Vec<String>, node: &str) -> portico_config::ClusterConfig {
    portico_config::ClusterConfig {
        etcd: endpoints,
        prefix: "/portico-node-test".into(),
        node_name: Some(node.into()),
        ca_file: None,
        cert: None,
        key: None,
        username: None,
        password_file: None,
        secret_file: None,
    }
}

async fn node(endpoints: &[String], name: &str, hash: &str, registry: &Registry) -> Node {
    let cfg = config(endpoints.to_vec(), name);
    let conn = portico_cluster::connect(&cfg).await.unwrap();
    let clients = portico_cluster::connect_each(&cfg).await.unwrap();
    let info = MemberInfo {
        name: name.into(),
        version: "test".into(),
        listen: vec![],
        admin: None,
        config_hash: hash.into(),
        vrrp: vec![],
        started_unix: 1,
    };
    Node::start(
        conn,
        cfg.etcd.clone(),
        clients,
        registry.clone(),
        Arc::new(move || info.clone()),
        Arc::new(|_| {}),
    )
}

async fn until(what: &str, timeout: Duration, mut ok: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ok() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!("{what}: {:?}", start.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_states_registry_and_an_outage() {
    let Some(etcd) = portico_testkit::require_peer("etcd") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = EtcdCluster::start(&etcd, dir.path(), 1);
    let endpoints = cluster.endpoints();
    let (reg_a, reg_b) = (Registry::new(), Registry::new());
    let id = ServerId {
        upstream: "app".into(),
        addr: "127.0.0.1:9001".into(),
    };
    let state_b = reg_b.state(&id);
    let a = node(&endpoints, "a", "h1", &reg_a).await;
    let b = node(&endpoints, "b", "h2", &reg_b).await;
    let t = Duration::from_secs(15);
    until("both members listed", t, || {
        [&a, &b].iter().all(|n| {
            let s = n.snapshot();
            s.reachable && s.members.len() == 2
        })
    })
    .await;
    assert_eq!(b.snapshot().members["a"].config_hash, "h1");

    // A drain written through node a reaches node b's live state.
    a.share(id.clone(), AdminState::Draining).await.unwrap();
    until("drain applied on b", t, || {
        state_b.admin_state() == AdminState::Draining
    })
    .await;
    a.share(id.clone(), AdminState::Enabled).await.unwrap();
    until("enable applied on b", t, || {
        state_b.admin_state() == AdminState::Enabled
    })
    .await;

    // A registration appears on b and goes when it stops.
    let conn = portico_cluster::connect(&config(endpoints.clone(), "r"))
        .await
        .unwrap();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let reg = Registration {
        addr: "127.0.0.1:9100".into(),
        weight: 3,
        host: "h".into(),
        pid: 1,
        since_unix: 1,
    };
    let registering = tokio::spawn(async move {
        portico_cluster::registry::register(
            &conn,
            "app",
            &reg,
            Duration::from_secs(4),
            async {
                let _ = stop_rx.await;
            },
            |_| {},
        )
        .await
    });
    let seen = b.registered();
    until("registration seen", t, || {
        seen.borrow()
            .get("app")
            .is_some_and(|m| m.get("127.0.0.1:9100").is_some_and(|r| r.weight == 3))
    })
    .await;
    stop_tx.send(()).unwrap();
    registering.await.unwrap().unwrap();
    until("deregistration seen", t, || seen.borrow().is_empty()).await;

    // etcd stopped: degraded, members kept; back: reachable again without a restart.
    cluster.stop_all();
    until("degraded", Duration::from_secs(30), || {
        !b.snapshot().reachable
    })
    .await;
    assert_eq!(b.snapshot().members.len(), 2, "last known members kept");
    cluster.restart_all();
    until("caught up", Duration::from_secs(40), || {
        [&a, &b].iter().all(|n| {
            let s = n.snapshot();
            s.reachable && s.members.len() == 2
        })
    })
    .await;
    a.stop().await;
    until("a left the member list", t, || {
        b.snapshot().members.len() == 1
    })
    .await;
    b.stop().await;
}
