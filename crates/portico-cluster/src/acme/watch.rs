//! Every node's view of the shared ACME state: challenge answers published by any node
//! (`PREFIX/acme/http01/`, `PREFIX/acme/alpn01/`) copied into this node's HTTP-01 answers
//! and resolver, and a tick on each change under `PREFIX/certs/`.
//!
//! Each round reads the current answers (a range read), applies them (removing those that
//! vanished), then watches from the next revision; a broken watch or an unreachable etcd
//! starts a new round after a backoff, and each new round ticks `changes`, so certificate
//! tasks catch up with whatever changed meanwhile.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use etcd_client::{EventType, GetOptions, WatchOptions};
use portico_tls::CertResolver;
use portico_tls::acme::{Http01Challenges, challenge_from_pem};

use super::{StoredAlpn, etcd};
use crate::connect::Connection;

/// What this node learnt from etcd (so that only those are removed again).
#[derive(Default)]
struct Learnt {
    tokens: HashSet<String>,
    alpn: HashSet<String>,
}

struct Sinks {
    http01: Http01Challenges,
    resolver: Arc<CertResolver>,
    provider: Arc<portico_tls::rustls::crypto::CryptoProvider>,
}

/// Run forever (aborted with its owner).
pub(super) async fn run(
    conn: Connection,
    http01: Http01Challenges,
    resolver: Arc<CertResolver>,
    changes: tokio::sync::watch::Sender<u64>,
) {
    let sinks = Sinks {
        http01,
        resolver,
        provider: portico_tls::default_provider(),
    };
    let mut learnt = Learnt::default();
    let mut delay = Duration::from_millis(200);
    let mut healthy = true;
    loop {
        match round(&conn, &sinks, &mut learnt, &changes).await {
            Ok(()) => delay = Duration::from_millis(200),
            Err(e) => {
                if healthy {
                    tracing::warn!(error = %e, "cluster ACME watch interrupted; retrying (certificates keep serving)");
                } else {
                    tracing::debug!(error = %e, "cluster ACME watch still interrupted");
                }
                healthy = false;
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
                continue;
            }
        }
        healthy = true;
    }
}

/// One round: read, apply, watch until the watch breaks.
async fn round(
    conn: &Connection,
    sinks: &Sinks,
    learnt: &mut Learnt,
    changes: &tokio::sync::watch::Sender<u64>,
) -> Result<(), String> {
    let acme_prefix = format!("{}/acme/", conn.keys.prefix());
    let opts = GetOptions::new().with_prefix();
    let rsp = etcd!(
        "read challenge answers",
        conn.client,
        [acme_prefix, opts],
        |c| { c.get(acme_prefix, Some(opts)) }
    )
    .await
    .map_err(|e| e.to_string())?;
    let revision = rsp.header().map(|h| h.revision()).unwrap_or(0);
    let (mut tokens, mut alpn) = (HashSet::new(), HashSet::new());
    for kv in rsp.kvs() {
        let key = String::from_utf8_lossy(kv.key());
        apply_put(conn, sinks, learnt, &key, kv.value());
        if let Some(t) = key.strip_prefix(&conn.keys.http01_all()) {
            tokens.insert(t.to_string());
        } else if let Some(n) = key.strip_prefix(&conn.keys.alpn01_all()) {
            alpn.insert(n.to_string());
        }
    }
    for gone in learnt
        .tokens
        .difference(&tokens)
        .cloned()
        .collect::<Vec<_>>()
    {
        sinks.http01.remove(&gone);
        learnt.tokens.remove(&gone);
    }
    for gone in learnt.alpn.difference(&alpn).cloned().collect::<Vec<_>>() {
        sinks.resolver.remove_alpn_challenge(&gone);
        learnt.alpn.remove(&gone);
    }

    let opts = WatchOptions::new()
        .with_prefix()
        .with_start_revision(revision + 1);
    let mut stream = etcd!("watch", conn.client, [acme_prefix, opts], |c| {
        c.watch(acme_prefix, Some(opts))
    })
    .await
    .map_err(|e| e.to_string())?;
    stream
        .watch(conn.keys.certs(), Some(WatchOptions::new().with_prefix()))
        .await
        .map_err(|e| e.to_string())?;
    // Both watches exist (or are being created); whatever changed before is read by the
    // certificate tasks this tick wakes.
    changes.send_modify(|n| *n += 1);
    let certs_prefix = conn.keys.certs();
    loop {
        let msg = stream.message().await.map_err(|e| e.to_string())?;
        let Some(msg) = msg else {
            return Err("the watch stream ended".into());
        };
        if msg.canceled() {
            return Err(format!("watch canceled: {}", msg.cancel_reason()));
        }
        let mut certs_changed = false;
        for event in msg.events() {
            let Some(kv) = event.kv() else { continue };
            let key = String::from_utf8_lossy(kv.key());
            if key.starts_with(&certs_prefix) {
                certs_changed = true;
                continue;
            }
            match event.event_type() {
                EventType::Put => apply_put(conn, sinks, learnt, &key, kv.value()),
                EventType::Delete => apply_delete(conn, sinks, learnt, &key),
            }
        }
        if certs_changed {
            changes.send_modify(|n| *n += 1);
        }
    }
}

fn apply_put(conn: &Connection, sinks: &Sinks, learnt: &mut Learnt, key: &str, value: &[u8]) {
    if let Some(token) = key.strip_prefix(&conn.keys.http01_all()) {
        let Ok(answer) = std::str::from_utf8(value) else {
            return;
        };
        sinks.http01.insert(token.to_string(), answer.to_string());
        learnt.tokens.insert(token.to_string());
        tracing::debug!(token, "HTTP-01 answer from the cluster");
    } else if let Some(name) = key.strip_prefix(&conn.keys.alpn01_all()) {
        let parsed = serde_json::from_slice::<StoredAlpn>(value)
            .map_err(|e| e.to_string())
            .and_then(|a| {
                challenge_from_pem(a.cert.as_bytes(), a.key.as_bytes(), &sinks.provider)
                    .map_err(|e| e.to_string())
            });
        match parsed {
            Ok(cert) => {
                sinks.resolver.set_alpn_challenge(name, cert);
                learnt.alpn.insert(name.to_string());
                tracing::debug!(name, "TLS-ALPN-01 challenge certificate from the cluster");
            }
            Err(e) => {
                tracing::warn!(name, error = %e, "unusable TLS-ALPN-01 challenge in the cluster")
            }
        }
    }
}

fn apply_delete(conn: &Connection, sinks: &Sinks, learnt: &mut Learnt, key: &str) {
    if let Some(token) = key.strip_prefix(&conn.keys.http01_all()) {
        if learnt.tokens.remove(token) {
            sinks.http01.remove(token);
        }
    } else if let Some(name) = key.strip_prefix(&conn.keys.alpn01_all())
        && learnt.alpn.remove(name)
    {
        sinks.resolver.remove_alpn_challenge(name);
    }
}
