//! The etcd side of cluster ACME (`EtcdAcme`) against a real etcd: the order lock is
//! exclusive and expires on its own when its holder stops keeping it alive; challenge
//! answers published by one node reach another node's HTTP-01 answers before `publish`
//! returns and leave with the lock; certificates are stored with the key sealed by
//! `secret_file` and other nodes are told; the account is created once, and removed only
//! when it is still the one the CA forgot.

use std::sync::Arc;
use std::time::{Duration, Instant};

use portico_cluster::acme::{EtcdAcme, Secret};
use portico_testkit::etcd::EtcdCluster;
use portico_tls::CertResolver;
use portico_tls::acme::{Http01Challenges, SharedAcme, SharedCert};

fn config(endpoints: Vec<String>, node: &str) -> portico_config::ClusterConfig {
    portico_config::ClusterConfig {
        etcd: endpoints,
        prefix: "/portico-acme-test".into(),
        node_name: Some(node.into()),
        ca_file: None,
        cert: None,
        key: None,
        username: None,
        password_file: None,
        secret_file: None,
    }
}

async fn node(cluster: &EtcdCluster, name: &str, secret: Option<&[u8]>) -> EtcdAcme {
    let conn = portico_cluster::connect(&config(cluster.endpoints(), name))
        .await
        .unwrap();
    EtcdAcme::new(conn, secret.map(|s| Secret::from_bytes(s).unwrap()))
        .with_lock_ttl(Duration::from_secs(2))
}

fn etcd() -> Option<(tempfile::TempDir, EtcdCluster)> {
    let etcd = portico_testkit::require_peer("etcd")?;
    let dir = tempfile::tempdir().unwrap();
    let cluster = EtcdCluster::start(&etcd, dir.path(), 1);
    Some((dir, cluster))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn order_lock_is_exclusive_and_expires_with_its_holder() {
    let Some((_dir, cluster)) = etcd() else {
        return;
    };
    let a = node(&cluster, "a", None).await;
    let b = node(&cluster, "b", None).await;

    let held = a
        .try_lock("x.test")
        .await
        .unwrap()
        .expect("a takes the lock");
    assert!(held.is_held());
    assert!(
        b.try_lock("x.test").await.unwrap().is_none(),
        "b must not get it"
    );
    assert!(
        b.try_lock("y.test").await.unwrap().is_some(),
        "another certificate's lock is free"
    );
    // Kept alive past its TTL while a works.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(held.is_held());
    assert!(
        b.try_lock("x.test").await.unwrap().is_none(),
        "still a's after the TTL"
    );
    held.release().await;
    let again = b
        .try_lock("x.test")
        .await
        .unwrap()
        .expect("free once released");

    // The holder "dies": its keep-alives stop (drop without release); the lock expires.
    drop(again);
    let dropped = Instant::now();
    let taken = loop {
        if let Some(lock) = a.try_lock("x.test").await.unwrap() {
            break lock;
        }
        assert!(
            dropped.elapsed() < Duration::from_secs(10),
            "the dead holder's lock never expired"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    eprintln!(
        "dead holder's lock expired after {:?} (TTL 2 s)",
        dropped.elapsed()
    );
    taken.release().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn challenge_answers_reach_other_nodes_and_leave_with_the_lock() {
    let Some((_dir, cluster)) = etcd() else {
        return;
    };
    let a = node(&cluster, "a", None).await;
    let b = node(&cluster, "b", None).await;
    let (answers_a, answers_b) = (Http01Challenges::new(), Http01Challenges::new());
    a.attach(answers_a.clone(), CertResolver::new());
    b.attach(answers_b.clone(), CertResolver::new());
    let mut b_changes = b.changes();
    // Both watchers are up once they have ticked.
    tokio::time::timeout(Duration::from_secs(10), b_changes.changed())
        .await
        .unwrap()
        .unwrap();

    let lock = a.try_lock("c.test").await.unwrap().unwrap();
    lock.publish_http01("tok-1", "tok-1.thumb").await.unwrap();
    assert_eq!(
        answers_b.get("tok-1").as_deref(),
        Some("tok-1.thumb"),
        "b answers once publish has returned"
    );
    lock.release().await;
    portico_testkit::eventually::assert_eventually(
        Duration::from_secs(5),
        "the answer leaves b with the lock",
        || answers_b.get("tok-1").is_none() && answers_a.get("tok-1").is_none(),
    );

    // A node that attaches later learns the answers already published.
    let lock = a.try_lock("c.test").await.unwrap().unwrap();
    lock.publish_http01("tok-2", "tok-2.thumb").await.unwrap();
    let c = node(&cluster, "c", None).await;
    let answers_c = Http01Challenges::new();
    c.attach(answers_c.clone(), CertResolver::new());
    portico_testkit::eventually::assert_eventually(
        Duration::from_secs(5),
        "a late node learns the pending answer",
        || answers_c.get("tok-2").as_deref() == Some("tok-2.thumb"),
    );
    // The holder dies: the answers expire with its lease.
    drop(lock);
    portico_testkit::eventually::assert_eventually(
        Duration::from_secs(10),
        "a dead holder's answers expire",
        || answers_c.get("tok-2").is_none() && answers_b.get("tok-2").is_none(),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_are_shared_with_the_key_sealed() {
    let Some((_dir, cluster)) = etcd() else {
        return;
    };
    let secret = [42u8; 32];
    let a = node(&cluster, "a", Some(&secret)).await;
    let b = node(&cluster, "b", Some(&secret)).await;
    let plain = node(&cluster, "p", None).await;
    let other = node(&cluster, "o", Some(&[1u8; 32])).await;
    b.attach(Http01Challenges::new(), CertResolver::new());
    let mut b_changes = b.changes();
    tokio::time::timeout(Duration::from_secs(10), b_changes.changed())
        .await
        .unwrap()
        .unwrap();

    assert_eq!(b.load_cert("s.test").await.unwrap(), None);
    let cert = SharedCert {
        chain_pem: "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n".into(),
        key_pem: "-----BEGIN PRIVATE KEY-----\nsecret-key-bytes\n-----END PRIVATE KEY-----\n"
            .into(),
    };
    a.store_cert("s.test", &cert).await.unwrap();
    tokio::time::timeout(Duration::from_secs(5), b_changes.changed())
        .await
        .expect("b is told of the new certificate")
        .unwrap();
    assert_eq!(b.load_cert("s.test").await.unwrap().as_ref(), Some(&cert));

    // What etcd holds: the chain in clear, the key sealed.
    let conn = portico_cluster::connect(&config(cluster.endpoints(), "raw"))
        .await
        .unwrap();
    let mut kv = conn.client.kv_client();
    let raw = kv.get(conn.keys.cert("s.test"), None).await.unwrap();
    let raw = String::from_utf8(raw.kvs()[0].value().to_vec()).unwrap();
    assert!(raw.contains("BEGIN CERTIFICATE"), "{raw}");
    assert!(
        !raw.contains("PRIVATE KEY") && !raw.contains("secret-key-bytes"),
        "{raw}"
    );
    assert!(raw.contains("\"sealed\""), "{raw}");
    eprintln!("stored: {raw}");

    let e = plain.load_cert("s.test").await.unwrap_err().to_string();
    assert!(e.contains("secret_file"), "{e}");
    let e = other.load_cert("s.test").await.unwrap_err().to_string();
    assert!(e.contains("another secret_file"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_account_per_cluster() {
    let Some((_dir, cluster)) = etcd() else {
        return;
    };
    let secret = [9u8; 40];
    let a = Arc::new(node(&cluster, "a", Some(&secret)).await);
    let b = node(&cluster, "b", Some(&secret)).await;
    assert_eq!(a.load_account("dir-1").await.unwrap(), None);
    let first = a
        .create_account("dir-1", b"{\"id\":\"one\"}".to_vec())
        .await
        .unwrap();
    assert_eq!(first, b"{\"id\":\"one\"}");
    let second = b
        .create_account("dir-1", b"{\"id\":\"two\"}".to_vec())
        .await
        .unwrap();
    assert_eq!(second, b"{\"id\":\"one\"}", "the first stored account wins");
    assert_eq!(
        b.load_account("dir-1").await.unwrap().unwrap(),
        b"{\"id\":\"one\"}"
    );
    // Forgetting another account changes nothing; forgetting the stored one removes it.
    b.forget_account("dir-1", b"{\"id\":\"two\"}")
        .await
        .unwrap();
    assert!(a.load_account("dir-1").await.unwrap().is_some());
    b.forget_account("dir-1", b"{\"id\":\"one\"}")
        .await
        .unwrap();
    assert_eq!(a.load_account("dir-1").await.unwrap(), None);
}
