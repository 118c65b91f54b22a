//! `GET /metrics`: the Prometheus text format (0.0.4), encoded by `prometheus-client`.
//!
//! Nothing is counted here: every value is read at scrape time from where it already
//! lives (the balance registry's per-server atomics, the health checker's probe log, the
//! certificate and VRRP sources, the reload log, `/proc/self`), through one
//! [`Collector`]. A scrape therefore costs the data plane nothing. Names, labels and
//! meanings are documented in `docs/metrics.md`; a counter's name gets its `_total` suffix
//! from the encoder.

use std::fmt;
use std::time::Instant;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::registry::Registry;

use crate::families::{Labels, counters, gauges};
use crate::process;
use crate::state::Admin;
use crate::status::{server_rows, server_state, unix};

/// The content type of [`render`]'s output.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// The server states `portico_upstream_server_state` reports (one series each, 1 for the
/// current one).
const SERVER_STATES: [&str; 5] = ["up", "down", "draining", "disabled", "backup"];
const VRRP_STATES: [&str; 4] = ["MASTER", "BACKUP", "FAULT", "INIT"];

/// Encode every metric now.
pub fn render(admin: &Admin) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Scrape(admin.clone())));
    let mut out = String::with_capacity(16 * 1024);
    if let Err(e) = prometheus_client::encoding::prometheus_text::encode(&mut out, &registry) {
        tracing::warn!(error = %e, "cannot encode the metrics");
    }
    out
}

/// The collector: reads everything at scrape time.
struct Scrape(Admin);

impl fmt::Debug for Scrape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Scrape")
    }
}

fn one<N>(v: N) -> Vec<(Labels, N)> {
    vec![(Vec::new(), v)]
}

impl Collector for Scrape {
    fn encode(&self, mut enc: DescriptorEncoder) -> fmt::Result {
        let admin = &self.0;
        build_info(&mut enc, admin)?;
        reloads(&mut enc, admin)?;
        servers(&mut enc, admin)?;
        crate::dataplane::encode(&mut enc)?;
        certificates(&mut enc, admin)?;
        vrrp(&mut enc, admin)?;
        crate::cluster::metrics(&mut enc, admin)?;
        process_figures(&mut enc)
    }
}

fn build_info(enc: &mut DescriptorEncoder<'_>, admin: &Admin) -> fmt::Result {
    gauges(
        enc,
        "portico_build_info",
        "Portico's version (always 1).",
        &[(
            vec![("version", env!("CARGO_PKG_VERSION").to_string())],
            1.0,
        )],
    )?;
    gauges(
        enc,
        "portico_config_generation",
        "Reload attempts since start (0 = the start-up config).",
        &one(admin.generation()),
    )
}

fn reloads(enc: &mut DescriptorEncoder<'_>, admin: &Admin) -> fmt::Result {
    let (counts, last_good) = admin.reload_counts();
    let rows: Vec<(Labels, u64)> = ["applied", "invalid", "failed"]
        .iter()
        .zip(counts)
        .map(|(r, n)| (vec![("result", (*r).to_string())], n))
        .collect();
    counters(
        enc,
        "portico_reloads",
        "Reloads (SIGHUP or API) by result: applied, invalid (config refused), failed (could not apply).",
        &rows,
    )?;
    gauges(
        enc,
        "portico_reload_last_success_timestamp_seconds",
        "When the config in force was loaded (start or last applied reload), Unix time.",
        &one(unix(last_good.unwrap_or(admin.started()))),
    )
}

fn servers(enc: &mut DescriptorEncoder<'_>, admin: &Admin) -> fmt::Result {
    let config = admin.config();
    let checks = admin.sources().health();
    let now = Instant::now();
    let mut state = Vec::new();
    let mut weight = Vec::new();
    let mut effective = Vec::new();
    let mut active = Vec::new();
    let mut picks = Vec::new();
    let mut passive = Vec::new();
    let mut healthy = Vec::new();
    let mut probes = Vec::new();
    for u in config.upstreams.values() {
        for row in server_rows(admin, u) {
            let labels = vec![("upstream", u.name.clone()), ("server", row.addr.clone())];
            let current = server_state(row.spec, &row.state, now);
            for s in SERVER_STATES {
                let mut l = labels.clone();
                l.push(("state", s.to_string()));
                state.push((l, u64::from(s == current)));
            }
            let w = f64::from(row.spec.weight.max(1));
            weight.push((labels.clone(), row.spec.weight.max(1)));
            let permille = row.state.slow_start_permille(u.slow_start) as f64;
            effective.push((labels.clone(), w * permille / 1000.0));
            active.push((labels.clone(), row.state.active()));
            picks.push((labels.clone(), row.state.picks()));
            passive.push((labels.clone(), row.state.fails()));
            if let Some(c) = checks
                .iter()
                .find(|c| *c.id.upstream == *u.name && *c.id.addr == *row.addr)
            {
                healthy.push((labels.clone(), u64::from(c.healthy)));
                let ok = c.probes.saturating_sub(c.failed_probes);
                for (result, n) in [("success", ok), ("failure", c.failed_probes)] {
                    let mut l = labels.clone();
                    l.push(("result", result.to_string()));
                    probes.push((l, n));
                }
            }
        }
    }
    gauges(
        enc,
        "portico_upstream_server_state",
        "1 for the server's current state (up, down, draining, disabled, backup), 0 for the others.",
        &state,
    )?;
    gauges(
        enc,
        "portico_upstream_server_weight",
        "Configured weight.",
        &weight,
    )?;
    gauges(
        enc,
        "portico_upstream_server_effective_weight",
        "Weight after the slow-start ramp (equal to the weight outside slow start).",
        &effective,
    )?;
    gauges(
        enc,
        "portico_upstream_server_active",
        "Requests and connections (WebSockets, streams) in progress on the server.",
        &active,
    )?;
    counters(
        enc,
        "portico_upstream_server_selected",
        "Times the balancer chose the server (requests, WebSockets, stream connections).",
        &picks,
    )?;
    counters(
        enc,
        "portico_upstream_server_passive_failures",
        "Failures reported by the data plane (connect errors, timeouts, resets): passive health's input.",
        &passive,
    )?;
    gauges(
        enc,
        "portico_upstream_server_healthy",
        "Active health verdict (1 healthy) of servers with [upstreams.NAME.health].",
        &healthy,
    )?;
    counters(
        enc,
        "portico_upstream_server_health_checks",
        "Active health probes by result (success, failure).",
        &probes,
    )
}

fn certificates(enc: &mut DescriptorEncoder<'_>, admin: &Admin) -> fmt::Result {
    let certs = admin.sources().certificates();
    let mut expiry = Vec::new();
    let (mut ok, mut failed) = (0u64, 0u64);
    let mut acme = false;
    for c in &certs {
        if c.source == "acme" {
            acme = true;
            ok += c.orders_ok;
            failed += c.orders_failed;
        }
        if let Some(t) = c.not_after {
            for name in &c.names {
                expiry.push((
                    vec![("name", name.clone()), ("source", c.source.to_string())],
                    unix(t),
                ));
            }
        }
    }
    gauges(
        enc,
        "portico_certificate_expiry_timestamp_seconds",
        "notAfter of the certificate serving each name, Unix time, by source (file, acme).",
        &expiry,
    )?;
    if !acme {
        return Ok(());
    }
    counters(
        enc,
        "portico_acme_orders",
        "ACME orders by result (success, failure) since start.",
        &[
            (vec![("result", "success".to_string())], ok),
            (vec![("result", "failure".to_string())], failed),
        ],
    )
}

fn vrrp(enc: &mut DescriptorEncoder<'_>, admin: &Admin) -> fmt::Result {
    let instances = admin.sources().vrrp();
    let mut state = Vec::new();
    let mut effective = Vec::new();
    let mut base = Vec::new();
    let mut transitions = Vec::new();
    for v in &instances {
        let labels = vec![("instance", v.name.clone())];
        for s in VRRP_STATES {
            let mut l = labels.clone();
            l.push(("state", s.to_string()));
            state.push((l, u64::from(s == v.state)));
        }
        effective.push((labels.clone(), u64::from(v.effective_priority)));
        base.push((labels.clone(), u64::from(v.base_priority)));
        transitions.push((labels, v.transitions));
    }
    gauges(
        enc,
        "portico_vrrp_state",
        "1 for the instance's current state (MASTER, BACKUP, FAULT, INIT), 0 for the others.",
        &state,
    )?;
    gauges(
        enc,
        "portico_vrrp_priority",
        "Configured (base) priority.",
        &base,
    )?;
    gauges(
        enc,
        "portico_vrrp_effective_priority",
        "Priority after tracked checks (0 in FAULT).",
        &effective,
    )?;
    counters(
        enc,
        "portico_vrrp_transitions",
        "State changes since start.",
        &transitions,
    )
}

fn process_figures(enc: &mut DescriptorEncoder<'_>) -> fmt::Result {
    let p = process::read();
    let opt = |v: Option<u64>| v.map(one).unwrap_or_default();
    let optf = |v: Option<f64>| v.map(one).unwrap_or_default();
    counters(
        enc,
        "process_cpu_seconds",
        "User and system CPU time spent, in seconds.",
        &optf(p.cpu_seconds),
    )?;
    gauges(
        enc,
        "process_resident_memory_bytes",
        "Resident memory size in bytes.",
        &opt(p.resident_bytes),
    )?;
    gauges(
        enc,
        "process_virtual_memory_bytes",
        "Virtual memory size in bytes.",
        &opt(p.virtual_bytes),
    )?;
    gauges(
        enc,
        "process_open_fds",
        "Open file descriptors.",
        &opt(p.open_fds),
    )?;
    gauges(
        enc,
        "process_max_fds",
        "Limit of open file descriptors.",
        &opt(p.max_fds),
    )?;
    gauges(enc, "process_threads", "OS threads.", &opt(p.threads))?;
    gauges(
        enc,
        "process_start_time_seconds",
        "Start time of the process, Unix time.",
        &optf(p.start_time_unix),
    )
}
