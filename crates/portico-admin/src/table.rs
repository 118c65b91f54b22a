//! `portico status` as text: a header line, then one aligned table per section (servers,
//! certificates, VRRP, reloads), like HAProxy's `show stat` but readable without a manual.

use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::status::Status;

/// Left-aligned columns, two spaces apart.
fn table(out: &mut String, header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let mut s = String::new();
        for (i, (c, w)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                let _ = write!(s, "{c:<w$}  ");
            }
        }
        s.trim_end().to_string()
    };
    out.push_str(&line(header.iter().map(|h| (*h).to_string()).collect()));
    out.push('\n');
    for r in rows {
        out.push_str(&line(r.clone()));
        out.push('\n');
    }
}

fn now_unix() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// `3d4h`, `2h03m`, `5m12s`, `42s`.
pub fn duration(secs: f64) -> String {
    let s = secs.max(0.0) as u64;
    let (d, h, m, s) = (s / 86400, s / 3600 % 24, s / 60 % 60, s % 60);
    if d > 0 {
        format!("{d}d{h}h")
    } else if h > 0 {
        format!("{h}h{m:02}m")
    } else if m > 0 {
        format!("{m}m{s:02}s")
    } else {
        format!("{s}s")
    }
}

fn ago(t: Option<f64>) -> String {
    t.map_or_else(
        || "-".into(),
        |t| format!("{} ago", duration(now_unix() - t)),
    )
}

/// Render the status for a terminal.
pub fn render(s: &Status) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "portico {}  pid {}  up {}  config {} (generation {})",
        s.version,
        s.pid,
        duration(s.uptime_seconds),
        s.config.file,
        s.config.generation
    );
    if !s.listeners.is_empty() {
        let l: Vec<String> = s
            .listeners
            .iter()
            .map(|l| format!("{} {}", l.protocol, l.bound))
            .collect();
        let _ = writeln!(out, "listeners: {}", l.join(", "));
    }
    out.push('\n');
    let mut rows = Vec::new();
    for u in &s.upstreams {
        for sv in &u.servers {
            let health = if !sv.health.checked {
                if sv.passive.failed {
                    "failed (passive)".to_string()
                } else {
                    "-".to_string()
                }
            } else {
                let verdict = if sv.health.healthy { "ok" } else { "FAIL" };
                match &sv.health.last_error {
                    Some(e) if !sv.health.healthy => format!("{verdict}: {e}"),
                    _ => format!("{verdict} ({})", sv.health.kind.as_deref().unwrap_or("?")),
                }
            };
            let weight = if (sv.effective_weight - f64::from(sv.weight)).abs() < 0.05 {
                sv.weight.to_string()
            } else {
                format!("{:.1}/{}", sv.effective_weight, sv.weight)
            };
            rows.push(vec![
                u.name.clone(),
                sv.addr.clone(),
                sv.state.to_uppercase(),
                weight,
                sv.active.to_string(),
                sv.picks.to_string(),
                sv.passive.failures.to_string(),
                ago(sv.health.last_check_unix),
                health,
            ]);
        }
    }
    if rows.is_empty() {
        out.push_str("no upstreams\n");
    } else {
        table(
            &mut out,
            &[
                "UPSTREAM", "SERVER", "STATE", "WEIGHT", "ACTIVE", "PICKS", "FAILS", "CHECKED",
                "HEALTH",
            ],
            &rows,
        );
    }
    if !s.certificates.is_empty() {
        out.push('\n');
        let rows: Vec<Vec<String>> = s
            .certificates
            .iter()
            .map(|c| {
                vec![
                    c.names.join(","),
                    c.source.clone(),
                    c.days_left.map_or("-".into(), |d| format!("{d:.0}")),
                    c.next_renewal_unix
                        .map_or("-".into(), |t| format!("in {}", duration(t - now_unix()))),
                    c.last_error.clone().unwrap_or_else(|| "-".into()),
                ]
            })
            .collect();
        table(
            &mut out,
            &[
                "CERTIFICATE",
                "SOURCE",
                "DAYS LEFT",
                "RENEWAL",
                "LAST ERROR",
            ],
            &rows,
        );
    }
    if !s.vrrp.is_empty() {
        out.push('\n');
        let rows: Vec<Vec<String>> = s
            .vrrp
            .iter()
            .map(|v| {
                let failing: Vec<&str> = v
                    .tracks
                    .iter()
                    .filter(|t| t.failing)
                    .map(|t| t.check.as_str())
                    .collect();
                vec![
                    v.name.clone(),
                    v.state.clone(),
                    format!("{}/{}", v.effective_priority, v.base_priority),
                    v.transitions.to_string(),
                    v.virtual_ips.join(","),
                    if failing.is_empty() {
                        "-".into()
                    } else {
                        failing.join("; ")
                    },
                ]
            })
            .collect();
        table(
            &mut out,
            &[
                "VRRP",
                "STATE",
                "PRIORITY",
                "TRANSITIONS",
                "VIPS",
                "FAILING TRACKS",
            ],
            &rows,
        );
    }
    if let Some(c) = &s.cluster {
        out.push('\n');
        cluster(&mut out, c);
    }
    if !s.reloads.is_empty() {
        out.push('\n');
        let rows: Vec<Vec<String>> = s
            .reloads
            .iter()
            .take(5)
            .map(|r| {
                vec![
                    r.generation.to_string(),
                    ago(Some(r.at_unix)),
                    r.result.clone(),
                    r.text.lines().next().unwrap_or("").to_string(),
                ]
            })
            .collect();
        table(&mut out, &["RELOAD", "WHEN", "RESULT", "DETAIL"], &rows);
    }
    out
}

/// The cluster: etcd's state, then one row per member (a differing config is flagged).
fn cluster(out: &mut String, c: &crate::cluster::ClusterStatus) {
    let state = if c.is_up() {
        "up".to_string()
    } else {
        format!(
            "DEGRADED (etcd unreachable{}; serving with the last known state)",
            c.last_error
                .as_deref()
                .map(|e| format!(": {e}"))
                .unwrap_or_default()
        )
    };
    let _ = writeln!(
        out,
        "cluster: node {} prefix {} etcd {}: {state}",
        c.node,
        c.prefix,
        c.etcd.join(",")
    );
    let rows: Vec<Vec<String>> = c
        .members
        .iter()
        .map(|m| {
            let mut name = m.name.clone();
            if m.this_node {
                name.push_str(" (this node)");
            }
            let vrrp: Vec<String> = m
                .vrrp
                .iter()
                .map(|v| format!("{}={}", v.instance, v.state))
                .collect();
            vec![
                name,
                m.version.clone(),
                if m.config_differs {
                    format!("{} DIFFERS", m.config_hash)
                } else {
                    m.config_hash.clone()
                },
                if vrrp.is_empty() {
                    "-".into()
                } else {
                    vrrp.join(",")
                },
                ago(Some(m.started_unix as f64)),
            ]
        })
        .collect();
    table(
        out,
        &["MEMBER", "VERSION", "CONFIG", "VRRP", "STARTED"],
        &rows,
    );
    let differs = c.members.iter().filter(|m| m.config_differs).count();
    if differs > 0 {
        let _ = writeln!(
            out,
            "warning: {differs} member(s) run a config that differs from this node's ({})",
            c.config_hash
        );
    }
    for st in &c.server_states {
        let _ = writeln!(
            out,
            "cluster-wide: {} {} {}",
            st.upstream, st.server, st.admin_state
        );
    }
    for r in &c.registered {
        let _ = writeln!(
            out,
            "registered: {} {} weight {}",
            r.upstream, r.server, r.weight
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_naturally() {
        assert_eq!(duration(42.4), "42s");
        assert_eq!(duration(312.0), "5m12s");
        assert_eq!(duration(7380.0), "2h03m");
        assert_eq!(duration(3.0 * 86400.0 + 4.0 * 3600.0), "3d4h");
    }

    #[test]
    fn columns_align() {
        let mut out = String::new();
        table(
            &mut out,
            &["A", "BB", "C"],
            &[vec!["xxx".into(), "y".into(), "z".into()]],
        );
        assert_eq!(out, "A    BB  C\nxxx  y   z\n");
    }
}
