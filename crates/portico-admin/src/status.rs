//! The `GET /api/v1/status` document: its types (serialised for the API, deserialised by
//! `portico status`) and how it is built from the [`Admin`] state at request time.
//!
//! Times are Unix seconds (`*_unix`), durations seconds; absent values are `null`.

use std::collections::HashMap;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use portico_balance::{AdminState, CheckStatus, ServerId, ServerState};
use portico_config::{Balance, Config, HealthKind, ServerSpec, Upstream};
use serde::{Deserialize, Serialize};

use crate::state::Admin;

/// The whole status document.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Status {
    pub version: String,
    pub pid: u32,
    pub started_unix: f64,
    pub uptime_seconds: f64,
    pub config: ConfigInfo,
    pub admin: AdminInfo,
    pub listeners: Vec<Listener>,
    pub upstreams: Vec<UpstreamStatus>,
    pub streams: Vec<StreamStatus>,
    pub certificates: Vec<Certificate>,
    pub vrrp: Vec<Vrrp>,
    /// Newest first.
    pub reloads: Vec<Reload>,
    /// `[cluster]`: etcd's reachability and the members (absent for a single node).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<crate::cluster::ClusterStatus>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ConfigInfo {
    pub file: String,
    /// 0 at start, +1 per reload attempt.
    pub generation: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AdminInfo {
    /// Whether mutating calls need `Authorization: Bearer TOKEN`.
    pub token_required: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Listener {
    pub protocol: String,
    pub configured: String,
    pub bound: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct UpstreamStatus {
    pub name: String,
    pub balance: String,
    pub slow_start_seconds: f64,
    /// HTTP requests answered through this upstream (data-plane metrics).
    #[serde(default)]
    pub requests: u64,
    /// WebSocket sessions open through this upstream now.
    #[serde(default)]
    pub websockets_open: u64,
    pub servers: Vec<ServerStatus>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ServerStatus {
    /// As written in the config.
    pub addr: String,
    /// `up`, `down`, `draining`, `disabled` or `backup` (a usable backup server).
    pub state: String,
    /// The operator's setting: `enabled`, `draining` or `disabled`.
    pub admin_state: String,
    pub backup: bool,
    /// `down = true` in the config.
    pub config_down: bool,
    pub weight: u32,
    /// Weight after the slow-start ramp.
    pub effective_weight: f64,
    /// 0..1 while ramping up after a recovery, 1 otherwise.
    pub slow_start_progress: f64,
    /// Requests and connections (WebSockets, streams) in progress.
    pub active: u32,
    /// Times the balancer chose it.
    pub picks: u64,
    pub max_conns: u32,
    pub health: Health,
    pub passive: Passive,
}

/// Active health checks of one server.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Health {
    /// Whether the upstream has active checks for this server.
    pub checked: bool,
    /// `http`, `tcp` or `websocket` when checked.
    pub kind: Option<String>,
    pub healthy: bool,
    pub probes: u64,
    pub failed_probes: u64,
    pub last_check_unix: Option<f64>,
    pub last_error: Option<String>,
}

/// Passive health (`max_fails` / `fail_timeout`) of one server.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Passive {
    /// Taken out by passive health right now.
    pub failed: bool,
    /// Seconds until it is let back in, when failed.
    pub back_in_seconds: Option<f64>,
    /// Failures reported since start.
    pub failures: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct StreamStatus {
    pub listen: Vec<String>,
    /// The upstream, or the SNI routes' upstreams.
    pub upstreams: Vec<String>,
    pub tls: bool,
    pub sni_passthrough: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Certificate {
    pub names: Vec<String>,
    pub source: String,
    pub path: Option<String>,
    pub not_after_unix: Option<f64>,
    pub days_left: Option<f64>,
    pub next_renewal_unix: Option<f64>,
    pub last_error: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Vrrp {
    pub name: String,
    pub interface: String,
    pub vrid: u8,
    pub state: String,
    pub base_priority: u8,
    pub effective_priority: u8,
    pub transitions: u64,
    pub virtual_ips: Vec<String>,
    pub tracks: Vec<Track>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Track {
    pub check: String,
    pub weight: i32,
    pub failing: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Reload {
    pub generation: u64,
    pub at_unix: f64,
    /// `applied`, `invalid` or `failed`.
    pub result: String,
    /// What changed, or the FILE:LINE:COL diagnostics.
    pub text: String,
}

pub(crate) fn unix(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// The state word of one server (see [`ServerStatus::state`]).
pub fn server_state(spec: &ServerSpec, state: &ServerState, now: Instant) -> &'static str {
    match state.admin_state() {
        AdminState::Disabled => "disabled",
        AdminState::Draining => "draining",
        AdminState::Enabled => {
            if spec.down || !state.is_healthy() || state.is_failed_at(now) {
                "down"
            } else if spec.backup {
                "backup"
            } else {
                "up"
            }
        }
    }
}

pub(crate) fn admin_state_str(s: AdminState) -> &'static str {
    match s {
        AdminState::Enabled => "enabled",
        AdminState::Draining => "draining",
        AdminState::Disabled => "disabled",
    }
}

/// One server of `upstream` with its live state (created in the registry if no pool has
/// made it yet, e.g. an upstream no route uses).
pub(crate) struct ServerRow<'a> {
    pub spec: &'a ServerSpec,
    pub addr: String,
    pub state: std::sync::Arc<ServerState>,
}

pub(crate) fn server_rows<'a>(admin: &Admin, upstream: &'a Upstream) -> Vec<ServerRow<'a>> {
    upstream
        .servers
        .iter()
        .map(|spec| {
            let addr = spec.addr.to_string();
            let id = ServerId {
                upstream: upstream.name.as_str().into(),
                addr: addr.as_str().into(),
            };
            ServerRow {
                spec,
                state: admin.registry().state(&id),
                addr,
            }
        })
        .collect()
}

/// Build the document now.
pub fn build(admin: &Admin) -> Status {
    let config = admin.config();
    let checks: HashMap<ServerId, CheckStatus> = admin
        .sources()
        .health()
        .into_iter()
        .map(|c| (c.id.clone(), c))
        .collect();
    let now = Instant::now();
    let now_wall = SystemTime::now();
    let mut traffic: HashMap<String, (u64, u64)> = HashMap::new();
    for series in portico_metrics::global().collect().series {
        if series.key.upstream.is_empty() {
            continue;
        }
        let t = traffic.entry(series.key.upstream.clone()).or_default();
        t.0 += series.requests();
        t.1 += series
            .ws_opened
            .saturating_sub(series.ws_closed.iter().sum::<u64>());
    }
    Status {
        version: env!("CARGO_PKG_VERSION").to_string(),
        pid: std::process::id(),
        started_unix: unix(admin.started()),
        uptime_seconds: admin.uptime().as_secs_f64(),
        config: ConfigInfo {
            file: std::path::absolute(&config.source)
                .unwrap_or_else(|_| config.source.clone())
                .display()
                .to_string(),
            generation: admin.generation(),
        },
        admin: AdminInfo {
            token_required: config.admin.token_file.is_some(),
        },
        listeners: admin
            .listeners()
            .into_iter()
            .map(|l| Listener {
                protocol: l.protocol.to_string(),
                configured: l.configured.to_string(),
                bound: l.bound.to_string(),
            })
            .collect(),
        upstreams: config
            .upstreams
            .values()
            .map(|u| {
                let mut s = upstream(admin, u, &checks, now);
                (s.requests, s.websockets_open) = traffic.get(&u.name).copied().unwrap_or_default();
                s
            })
            .collect(),
        streams: streams(&config),
        certificates: admin
            .sources()
            .certificates()
            .into_iter()
            .map(|c| Certificate {
                days_left: c.not_after.map(|t| {
                    let left = match t.duration_since(now_wall) {
                        Ok(d) => d.as_secs_f64(),
                        Err(e) => -e.duration().as_secs_f64(),
                    };
                    (left / 86400.0 * 10.0).round() / 10.0
                }),
                not_after_unix: c.not_after.map(unix),
                next_renewal_unix: c.next_renewal.map(unix),
                names: c.names,
                source: c.source.to_string(),
                path: c.path,
                last_error: c.last_error,
            })
            .collect(),
        vrrp: admin
            .sources()
            .vrrp()
            .into_iter()
            .map(|v| Vrrp {
                name: v.name,
                interface: v.interface,
                vrid: v.vrid,
                state: v.state.to_string(),
                base_priority: v.base_priority,
                effective_priority: v.effective_priority,
                transitions: v.transitions,
                virtual_ips: v.virtual_ips,
                tracks: v
                    .tracks
                    .into_iter()
                    .map(|t| Track {
                        check: t.check,
                        weight: t.weight,
                        failing: t.failing,
                    })
                    .collect(),
            })
            .collect(),
        cluster: admin.sources().cluster().map(crate::cluster::status),
        reloads: admin
            .reloads()
            .into_iter()
            .map(|r| Reload {
                generation: r.generation,
                at_unix: unix(r.at),
                result: r.result.as_str().to_string(),
                text: r.text,
            })
            .collect(),
    }
}

fn upstream(
    admin: &Admin,
    u: &Upstream,
    checks: &HashMap<ServerId, CheckStatus>,
    now: Instant,
) -> UpstreamStatus {
    let servers = server_rows(admin, u)
        .into_iter()
        .map(|row| {
            let id = ServerId {
                upstream: u.name.as_str().into(),
                addr: row.addr.as_str().into(),
            };
            let check = checks.get(&id);
            let permille = row.state.slow_start_permille(u.slow_start);
            let weight = row.spec.weight.max(1);
            ServerStatus {
                state: server_state(row.spec, &row.state, now).to_string(),
                admin_state: admin_state_str(row.state.admin_state()).to_string(),
                backup: row.spec.backup,
                config_down: row.spec.down,
                weight,
                effective_weight: f64::from(weight) * permille as f64 / 1000.0,
                slow_start_progress: if permille >= 1000 {
                    1.0
                } else {
                    (permille as f64 - 100.0) / 900.0
                },
                active: row.state.active(),
                picks: row.state.picks(),
                max_conns: row.spec.max_conns,
                health: Health {
                    checked: check.is_some(),
                    kind: check.map(|c| health_kind_str(c.kind).to_string()),
                    healthy: row.state.is_healthy(),
                    probes: check.map_or(0, |c| c.probes),
                    failed_probes: check.map_or(0, |c| c.failed_probes),
                    last_check_unix: check.and_then(|c| c.last_probe).map(unix),
                    last_error: check.and_then(|c| c.last_error.clone()),
                },
                passive: Passive {
                    failed: row.state.is_failed_at(now),
                    back_in_seconds: row.state.failed_for_at(now).map(|d| d.as_secs_f64()),
                    failures: row.state.fails(),
                },
                addr: row.addr,
            }
        })
        .collect();
    UpstreamStatus {
        name: u.name.clone(),
        balance: balance_str(u.balance).to_string(),
        slow_start_seconds: u.slow_start.as_secs_f64(),
        requests: 0,
        websockets_open: 0,
        servers,
    }
}

fn balance_str(b: Balance) -> &'static str {
    match b {
        Balance::RoundRobin => "round_robin",
        Balance::LeastConn => "least_conn",
        Balance::RandomTwo => "random_two",
        Balance::IpHash => "ip_hash",
        Balance::Hash => "hash",
    }
}

fn health_kind_str(k: HealthKind) -> &'static str {
    match k {
        HealthKind::Http => "http",
        HealthKind::Tcp => "tcp",
        HealthKind::WebSocket => "websocket",
    }
}

fn streams(config: &Config) -> Vec<StreamStatus> {
    config
        .streams
        .iter()
        .map(|s| {
            let mut upstreams: Vec<String> = s.upstream.iter().cloned().collect();
            for (_, u) in &s.sni_routes {
                if !upstreams.contains(u) {
                    upstreams.push(u.clone());
                }
            }
            StreamStatus {
                listen: s.listen.iter().map(ToString::to_string).collect(),
                upstreams,
                tls: s.tls.is_some(),
                sni_passthrough: !s.sni_routes.is_empty(),
            }
        })
        .collect()
}
