//! A node in the cluster: one task that registers the node under a lease
//! (`PREFIX/members/NODE`, see [`crate::members`]), keeps the lease alive, and follows three
//! folders: the members, the server admin states ([`crate::states`]) and the registered
//! servers ([`crate::registry`]).
//!
//! A *session* reads each folder and then watches it from the revision it read, so nothing is
//! missed between the read and the watch. Any failure (a request past its timeout, a
//! keep-alive that is not answered, a watch that ends or is cancelled) ends the session: the
//! node is then *degraded* (it keeps serving with the last known state: the member list,
//! server states and registered servers stay as they were) and starts a new session after a
//! backoff (1 s doubling to 10 s). Sessions talk to one etcd endpoint at a time (see
//! [`crate::connect::connect_each`]): when a session fails, the next one tries the next
//! endpoint at once, and the node is marked degraded and backs off only once every endpoint
//! failed in a row, so losing one member of three is not shown as an outage. The new session reuses the node's lease while etcd still
//! has it and reads everything again, so the node catches up without a restart.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use etcd_client::{Client, EventType, GetOptions, PutOptions, WatchOptions};
use portico_balance::{AdminState, Registry, ServerId};
use tokio::sync::watch;

use crate::connect::{Connection, REQUEST_TIMEOUT};
use crate::error::ClusterError;
use crate::members::MemberInfo;
use crate::registry::{self, Registered, Registration, bounded};
use crate::states::{self, ServerStates};

/// Time to live of a node's lease: a node that dies leaves the member list after it.
pub const MEMBER_TTL: Duration = Duration::from_secs(10);
const BACKOFF_MIN: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(10);

/// This node's description, asked again at every keep-alive (it is re-published when it
/// changed: a reload's new config hash, a VRRP role change).
pub type InfoFn = Arc<dyn Fn() -> MemberInfo + Send + Sync>;
/// Closes the WebSockets of a server that became disabled.
pub type DrainFn = Arc<dyn Fn(&ServerId) + Send + Sync>;

/// What the node knows of the cluster now (for the admin API and metrics).
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub node: String,
    pub prefix: String,
    pub endpoints: Vec<String>,
    /// Whether the current session is up (etcd reachable, watches running).
    pub reachable: bool,
    /// Why the last session ended, while not reachable.
    pub last_error: Option<String>,
    /// When `reachable` last changed.
    pub since: Option<SystemTime>,
    pub members: BTreeMap<String, MemberInfo>,
    pub server_states: ServerStates,
    pub registered: Registered,
    /// What this node published last.
    pub own: Option<MemberInfo>,
}

/// A running node; stops (revoking its lease) with [`Node::stop`].
pub struct Node {
    conn: Connection,
    /// The client of the endpoint the current session uses.
    current: Arc<Mutex<Client>>,
    shared: Arc<Mutex<Snapshot>>,
    registered: watch::Receiver<Registered>,
    stop: watch::Sender<bool>,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
    runtime: tokio::runtime::Handle,
    registry: Registry,
    drain: DrainFn,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("conn", &self.conn)
            .finish_non_exhaustive()
    }
}

fn lock(m: &Mutex<Snapshot>) -> MutexGuard<'_, Snapshot> {
    // Every critical section replaces or reads whole values: usable after a panic.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Node {
    /// Start the node's task on the current tokio runtime. `registry`: the live server states
    /// the cluster's admin states apply to; `drain`: what closes a disabled server's
    /// WebSockets.
    ///
    /// `clients`: one per endpoint ([`crate::connect::connect_each`]); empty: `conn`'s.
    pub fn start(
        conn: Connection,
        endpoints: Vec<String>,
        mut clients: Vec<Client>,
        registry: Registry,
        info: InfoFn,
        drain: DrainFn,
    ) -> Node {
        let shared = Arc::new(Mutex::new(Snapshot {
            node: conn.node.clone(),
            prefix: conn.keys.prefix().to_string(),
            endpoints,
            last_error: Some("connecting".into()),
            ..Snapshot::default()
        }));
        let (reg_tx, registered) = watch::channel(Registered::new());
        let (stop, stop_rx) = watch::channel(false);
        if clients.is_empty() {
            clients.push(conn.client.clone());
        }
        let current = Arc::new(Mutex::new(clients[0].clone()));
        let task = Task {
            conn: conn.clone(),
            clients,
            index: 0,
            current: Arc::clone(&current),
            shared: Arc::clone(&shared),
            registered: reg_tx,
            registry: registry.clone(),
            drain: Arc::clone(&drain),
            info,
            lease: None,
            stop: stop_rx,
            connected: false,
        };
        let task = tokio::spawn(task.run());
        Node {
            conn,
            current,
            shared,
            registered,
            stop,
            task: Mutex::new(Some(task)),
            runtime: tokio::runtime::Handle::current(),
            registry,
            drain,
        }
    }

    /// What the node knows now.
    pub fn snapshot(&self) -> Snapshot {
        lock(&self.shared).clone()
    }

    /// The registered servers, updated as etcd changes (kept while etcd is unreachable).
    pub fn registered(&self) -> watch::Receiver<Registered> {
        self.registered.clone()
    }

    /// Write a server's admin state for the whole cluster. Runs on the node's runtime, so it
    /// may be awaited from any other (the admin API's).
    pub fn share(
        &self,
        id: ServerId,
        state: AdminState,
    ) -> impl Future<Output = Result<(), String>> + Send + 'static {
        let mut client = self
            .current
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let keys = self.conn.keys.clone();
        let job = self.runtime.spawn(async move {
            states::share(&mut client, &keys, &id, state, REQUEST_TIMEOUT).await
        });
        async move {
            match job.await {
                Ok(r) => r.map_err(|e| e.to_string()),
                Err(e) => Err(format!("the cluster task failed: {e}")),
            }
        }
    }

    /// Apply the cluster's server states again (after new pools were built: servers that
    /// joined get their state).
    pub fn reapply_states(&self) {
        let states = lock(&self.shared).server_states.clone();
        states::apply_all(&self.registry, &states, self.drain.as_ref());
    }

    /// Stop: revoke the lease (the node leaves the member list at once) and end the task.
    pub async fn stop(&self) {
        let _ = self.stop.send(true);
        let task = self.task.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(task) = task {
            let _ = tokio::time::timeout(REQUEST_TIMEOUT * 2, task).await;
        }
    }
}

/// The node's task.
struct Task {
    conn: Connection,
    /// One client per endpoint; sessions use `clients[index]`.
    clients: Vec<Client>,
    index: usize,
    current: Arc<Mutex<Client>>,
    shared: Arc<Mutex<Snapshot>>,
    registered: watch::Sender<Registered>,
    registry: Registry,
    drain: DrainFn,
    info: InfoFn,
    lease: Option<i64>,
    stop: watch::Receiver<bool>,
    /// Whether the current session got as far as reading the folders.
    connected: bool,
}

/// How a session ended.
enum End {
    Stopped,
    Failed(ClusterError),
}

impl Task {
    async fn run(mut self) {
        let mut backoff = BACKOFF_MIN;
        // Endpoints that failed in a row.
        let mut failed = 0usize;
        loop {
            let started = std::time::Instant::now();
            self.connected = false;
            let error = match self.session().await {
                End::Stopped => break,
                End::Failed(e) => e,
            };
            if self.connected {
                failed = 0;
            }
            failed += 1;
            self.index = (self.index + 1) % self.clients.len();
            *self.current.lock().unwrap_or_else(|e| e.into_inner()) =
                self.clients[self.index].clone();
            if failed < self.clients.len() {
                tracing::info!(error = %error, "cluster: etcd session failed, trying the next endpoint");
                // Still shown as reachable: another member answers.
                continue;
            }
            failed = 0;
            if started.elapsed() > BACKOFF_MAX * 3 {
                backoff = BACKOFF_MIN;
            }
            tracing::warn!(error = %error, retry_in = ?backoff, "cluster: etcd unreachable, serving with the last known state");
            self.set_reachable(false, Some(error.to_string()));
            let mut stop = self.stop.clone();
            tokio::select! {
                _ = stop.wait_for(|s| *s) => break,
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
        // Leave the member list at once rather than after the lease's TTL.
        if let Some(id) = self.lease {
            let mut client = self.clients[self.index].clone();
            let _ = tokio::time::timeout(Duration::from_secs(1), client.lease_revoke(id)).await;
        }
    }

    fn set_reachable(&self, up: bool, error: Option<String>) {
        let mut s = lock(&self.shared);
        if s.reachable != up || s.since.is_none() {
            s.since = Some(SystemTime::now());
        }
        s.reachable = up;
        s.last_error = error;
    }

    async fn session(&mut self) -> End {
        let mut stop = self.stop.clone();
        let mut client = self.clients[self.index].clone();
        tokio::select! {
            _ = stop.wait_for(|s| *s) => End::Stopped,
            r = self.serve(&mut client) => match r {
                Ok(()) => End::Stopped,
                Err(e) => End::Failed(e),
            },
        }
    }

    /// Register, read the three folders, then follow them until something fails.
    async fn serve(&mut self, client: &mut Client) -> Result<(), ClusterError> {
        let keys = self.conn.keys.clone();
        let lease = match self.lease {
            Some(id) if bounded(client.lease_time_to_live(id, None)).await?.ttl() > 0 => id,
            _ => {
                let ttl = i64::try_from(MEMBER_TTL.as_secs()).unwrap_or(10);
                bounded(client.lease_grant(ttl, None)).await?.id()
            }
        };
        self.lease = Some(lease);
        let mut own = (self.info)();
        self.publish(client, lease, &own).await?;

        let prefix = || Some(GetOptions::new().with_prefix());
        let members = bounded(client.get(keys.members(), prefix())).await?;
        let servers = bounded(client.get(keys.server_states(), prefix())).await?;
        let registered = bounded(client.get(keys.registry(), prefix())).await?;
        // Each watch starts right after the revision its read saw: nothing is missed between.
        let from = |h: Option<&etcd_client::ResponseHeader>| {
            let rev = h.map_or(0, |h| h.revision()) + 1;
            Some(WatchOptions::new().with_prefix().with_start_revision(rev))
        };
        let mut stream = bounded(client.watch(keys.members(), from(members.header()))).await?;
        bounded(stream.watch(keys.server_states(), from(servers.header()))).await?;
        bounded(stream.watch(keys.registry(), from(registered.header()))).await?;

        // Everything read: replace the last known state.
        {
            let mut s = lock(&self.shared);
            s.members = members
                .kvs()
                .iter()
                .filter_map(|kv| decode_member(kv.value()))
                .map(|m| (m.name.clone(), m))
                .collect();
            s.server_states = servers
                .kvs()
                .iter()
                .filter_map(|kv| {
                    let id = states::parse_key(&keys, kv.key_str().ok()?)?;
                    Some((id, states::decode(kv.value())?))
                })
                .collect();
            s.registered = Registered::new();
            for kv in registered.kvs() {
                if let Some((up, addr, reg)) = decode_registration(&keys, kv.key(), kv.value()) {
                    s.registered.entry(up).or_default().insert(addr, reg);
                }
            }
        }
        self.states_changed();
        self.registry_changed();
        self.set_reachable(true, None);
        self.connected = true;
        tracing::info!(
            lease,
            "cluster: connected to etcd, member list and states read"
        );

        let (mut keeper, mut answers) = bounded(client.lease_keep_alive(lease)).await?;
        let mut tick = tokio::time::interval(keepalive_period(MEMBER_TTL));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    bounded(keeper.keep_alive()).await?;
                    let answer = bounded(answers.message()).await?;
                    if answer.is_none_or(|a| a.ttl() <= 0) {
                        self.lease = None;
                        return Err(ClusterError::Lost("the node's lease expired".into()));
                    }
                    let now = (self.info)();
                    if now != own {
                        self.publish(client, lease, &now).await?;
                        own = now;
                    }
                }
                msg = stream.message() => {
                    let Some(resp) = msg? else {
                        return Err(ClusterError::Lost("the watch ended".into()));
                    };
                    if resp.canceled() {
                        return Err(ClusterError::Lost(format!("the watch was cancelled: {}", resp.cancel_reason())));
                    }
                    self.apply_events(&keys, resp.events());
                }
            }
        }
    }

    async fn publish(
        &self,
        client: &mut Client,
        lease: i64,
        info: &MemberInfo,
    ) -> Result<(), ClusterError> {
        let value = serde_json::to_string(info).map_err(|e| ClusterError::Lost(e.to_string()))?;
        bounded(client.put(
            self.conn.keys.member(&self.conn.node),
            value,
            Some(PutOptions::new().with_lease(lease)),
        ))
        .await?;
        lock(&self.shared).own = Some(info.clone());
        Ok(())
    }

    fn apply_events(&self, keys: &crate::keys::Keys, events: &[etcd_client::Event]) {
        let (mut states_changed, mut registry_changed) = (false, false);
        {
            let mut s = lock(&self.shared);
            for ev in events {
                let Some(kv) = ev.kv() else { continue };
                let Ok(key) = kv.key_str() else { continue };
                let put = ev.event_type() == EventType::Put;
                if let Some(name) = key.strip_prefix(&keys.members()) {
                    match (put, decode_member(kv.value())) {
                        (true, Some(m)) => {
                            s.members.insert(m.name.clone(), m);
                        }
                        (false, _) => {
                            s.members.remove(name);
                        }
                        (true, None) => {}
                    }
                } else if let Some(id) = states::parse_key(keys, key) {
                    match (put, states::decode(kv.value())) {
                        (true, Some(AdminState::Enabled)) | (false, _) => {
                            s.server_states.remove(&id);
                        }
                        (true, Some(st)) => {
                            s.server_states.insert(id, st);
                        }
                        (true, None) => {}
                    }
                    states_changed = true;
                } else if let Some((up, addr)) = registry::parse_key(keys, key) {
                    if put {
                        if let Some((_, _, reg)) = decode_registration(keys, kv.key(), kv.value()) {
                            s.registered.entry(up).or_default().insert(addr, reg);
                        }
                    } else if let Some(m) = s.registered.get_mut(&up) {
                        m.remove(&addr);
                        if m.is_empty() {
                            s.registered.remove(&up);
                        }
                    }
                    registry_changed = true;
                }
            }
        }
        if states_changed {
            self.states_changed();
        }
        if registry_changed {
            self.registry_changed();
        }
    }

    fn states_changed(&self) {
        let states = lock(&self.shared).server_states.clone();
        states::apply_all(&self.registry, &states, self.drain.as_ref());
    }

    fn registry_changed(&self) {
        let now = lock(&self.shared).registered.clone();
        self.registered.send_if_modified(|r| {
            if *r == now {
                false
            } else {
                *r = now;
                true
            }
        });
    }
}

fn decode_member(value: &[u8]) -> Option<MemberInfo> {
    serde_json::from_slice(value).ok()
}

fn decode_registration(
    keys: &crate::keys::Keys,
    key: &[u8],
    value: &[u8],
) -> Option<(String, String, Registration)> {
    let (up, addr) = registry::parse_key(keys, std::str::from_utf8(key).ok()?)?;
    let reg: Registration = serde_json::from_slice(value).ok()?;
    (reg.addr == addr && reg.spec().is_some()).then_some((up, addr, reg))
}

/// How often a lease of `ttl` is kept alive: a third of it, at least every second.
pub(crate) fn keepalive_period(ttl: Duration) -> Duration {
    (ttl / 3).max(Duration::from_secs(1))
}

/// Keep lease `id` alive until it fails (the lease expired, or etcd did not answer in time).
pub(crate) async fn keep_alive(
    client: &mut Client,
    id: i64,
    ttl: Duration,
) -> Result<(), ClusterError> {
    let (mut keeper, mut answers) = bounded(client.lease_keep_alive(id)).await?;
    let mut tick = tokio::time::interval(keepalive_period(ttl));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        bounded(keeper.keep_alive()).await?;
        let answer = bounded(answers.message()).await?;
        if answer.is_none_or(|a| a.ttl() <= 0) {
            return Err(ClusterError::Lost("the lease expired".into()));
        }
    }
}
