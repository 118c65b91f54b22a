//! The client reaches a real 3-member etcd, and keeps working after its leader is killed.

use std::time::{Duration, Instant};

use portico_testkit::etcd::EtcdCluster;

fn config(endpoints: Vec<String>) -> portico_config::ClusterConfig {
    portico_config::ClusterConfig {
        etcd: endpoints,
        prefix: "/portico-test".into(),
        node_name: Some("n1".into()),
        ca_file: None,
        cert: None,
        key: None,
        username: None,
        password_file: None,
        secret_file: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_get_through_a_leader_loss() {
    let Some(etcd) = portico_testkit::require_peer("etcd") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = EtcdCluster::start(&etcd, dir.path(), 3);
    let conn = portico_cluster::connect(&config(cluster.endpoints()))
        .await
        .unwrap();
    let key = conn.keys.member(&conn.node);
    let mut kv = conn.client.kv_client();
    kv.put(key.clone(), "one", None).await.unwrap();
    let got = kv.get(key.clone(), None).await.unwrap();
    assert_eq!(got.kvs()[0].value(), b"one");

    let leader = cluster.leader().expect("a leader");
    cluster.kill(leader);
    let start = Instant::now();
    loop {
        match kv.put(key.clone(), "two", None).await {
            Ok(_) => break,
            Err(e) if start.elapsed() < Duration::from_secs(20) => {
                eprintln!("after leader loss: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("no write 20 s after the leader was killed: {e}"),
        }
    }
    eprintln!(
        "write accepted {:?} after the leader was killed",
        start.elapsed()
    );
    // The balanced channel may still route a request to the dead member: retry the read
    // like the write.
    let got = loop {
        match kv.get(key.clone(), None).await {
            Ok(got) => break got,
            Err(e) if start.elapsed() < Duration::from_secs(20) => {
                eprintln!("read after leader loss: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("no read 20 s after the leader was killed: {e}"),
        }
    };
    assert_eq!(got.kvs()[0].value(), b"two");
}
