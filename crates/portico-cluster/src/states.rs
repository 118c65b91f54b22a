//! Server admin states across the cluster: `PREFIX/servers/UPSTREAM/ADDR` holds `drain` or
//! `disable`; no key means enabled. Any node's admin API writes it ([`share`]); every node
//! watches the folder and applies it to its live per-server state ([`apply_all`]).
//!
//! etcd is the truth while reachable: after a (re)connection, every server known here takes
//! the state etcd has (enabled when there is no key), so a change made on one node while etcd
//! was unreachable (which the API reported as not shared) is replaced by the cluster's.

use std::collections::BTreeMap;
use std::time::Duration;

use etcd_client::Client;
use portico_balance::{AdminState, Registry, ServerId};

use crate::error::ClusterError;
use crate::keys::Keys;

/// The server states the cluster holds (servers absent are enabled).
pub type ServerStates = BTreeMap<ServerId, AdminState>;

/// The value stored for `state` (`None`: enabled, the key is deleted).
pub fn encode(state: AdminState) -> Option<&'static str> {
    match state {
        AdminState::Enabled => None,
        AdminState::Draining => Some("drain"),
        AdminState::Disabled => Some("disable"),
    }
}

/// The state a stored value means (unknown values: `None`, ignored).
pub fn decode(value: &[u8]) -> Option<AdminState> {
    match value {
        b"drain" => Some(AdminState::Draining),
        b"disable" => Some(AdminState::Disabled),
        b"enable" => Some(AdminState::Enabled),
        _ => None,
    }
}

/// The server a key under `servers/` names.
pub fn parse_key(keys: &Keys, key: &str) -> Option<ServerId> {
    let rest = key.strip_prefix(&keys.server_states())?;
    let (upstream, addr) = rest.split_once('/')?;
    (!upstream.is_empty() && !addr.is_empty()).then(|| ServerId {
        upstream: upstream.into(),
        addr: addr.into(),
    })
}

/// Write `state` of `id` for the whole cluster (bounded by `timeout`).
pub async fn share(
    client: &mut Client,
    keys: &Keys,
    id: &ServerId,
    state: AdminState,
    timeout: Duration,
) -> Result<(), ClusterError> {
    let key = keys.server_state(&id.upstream, &id.addr);
    let op = async {
        match encode(state) {
            Some(v) => client.put(key, v, None).await.map(|_| ()),
            None => client.delete(key, None).await.map(|_| ()),
        }
    };
    tokio::time::timeout(timeout, op)
        .await
        .map_err(|_| ClusterError::Timeout(timeout))?
        .map_err(ClusterError::from)
}

/// Give every server `registry` knows the state `states` has for it (enabled when absent);
/// `drain` closes the WebSockets of a server that becomes disabled. Returns how many changed.
pub fn apply_all(registry: &Registry, states: &ServerStates, drain: &dyn Fn(&ServerId)) -> usize {
    let mut changed = 0;
    for (id, state) in registry.entries() {
        let want = states.get(&id).copied().unwrap_or(AdminState::Enabled);
        if state.admin_state() != want {
            state.set_admin_state(want);
            if want == AdminState::Disabled {
                drain(&id);
            }
            tracing::info!(upstream = %id.upstream, server = %id.addr, state = ?want, "cluster: server state applied");
            changed += 1;
        }
    }
    changed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_values_round_trip() {
        let keys = Keys::new("/p");
        let id = parse_key(&keys, "/p/servers/app/[::1]:80").expect("key");
        assert_eq!((&*id.upstream, &*id.addr), ("app", "[::1]:80"));
        assert!(parse_key(&keys, "/p/servers/app").is_none());
        for s in [AdminState::Draining, AdminState::Disabled] {
            assert_eq!(decode(encode(s).expect("stored").as_bytes()), Some(s));
        }
        assert_eq!(encode(AdminState::Enabled), None);
    }

    #[test]
    fn apply_all_sets_known_servers_and_enables_the_others() {
        let reg = Registry::new();
        let a = ServerId {
            upstream: "app".into(),
            addr: "127.0.0.1:1".into(),
        };
        let b = ServerId {
            upstream: "app".into(),
            addr: "127.0.0.1:2".into(),
        };
        let (sa, sb) = (reg.state(&a), reg.state(&b));
        sb.set_admin_state(AdminState::Draining);
        let drained = std::sync::Mutex::new(Vec::new());
        let states = ServerStates::from([(a.clone(), AdminState::Disabled)]);
        let n = apply_all(&reg, &states, &|id| {
            drained
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(id.clone())
        });
        assert_eq!(n, 2);
        assert_eq!(sa.admin_state(), AdminState::Disabled);
        assert_eq!(sb.admin_state(), AdminState::Enabled);
        assert_eq!(*drained.lock().unwrap_or_else(|e| e.into_inner()), vec![a]);
        assert_eq!(apply_all(&reg, &states, &|_| {}), 0, "idempotent");
    }
}
