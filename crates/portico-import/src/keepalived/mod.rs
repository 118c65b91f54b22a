//! keepalived -> Portico: `vrrp_instance` (with `vrrp_script` tracks) -> `[[vrrp]]`, and LVS
//! `virtual_server` -> `[[streams]]` + `[upstreams.NAME]` (Portico proxies the TCP
//! connections itself instead of programming IPVS).
//!
//! keepalived speaks VRRPv2 unless `vrrp_version 3` is set, so instances are written with
//! `version = 2` (and `auth_pass` when `authentication` is PASS) to keep talking to the
//! keepalived nodes of a group during a migration.

mod parse;

use std::collections::HashMap;
use std::path::Path;

use crate::out::{Field, Out, Table, Upstream, inline, q, qlist};
use crate::report::Kind;
use crate::tree::{Node, Notes};
use crate::{Conversion, ImportError};

/// A `vrrp_script` definition.
#[derive(Debug, Clone)]
struct Script {
    /// `script "..."` split into words.
    words: Vec<String>,
    interval: Option<String>,
    weight: i32,
}

struct Cx {
    notes: Notes,
    out: Out,
    version: Option<u8>,
    scripts: HashMap<String, Script>,
}

/// Seconds as keepalived writes them (`1`, `0.5`) -> a Portico duration.
fn secs(s: &str) -> Option<String> {
    let v: f64 = s.parse().ok()?;
    if !(0.0..=86_400.0).contains(&v) {
        return None;
    }
    let ms = (v * 1000.0).round() as u64;
    Some(if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    })
}

pub(crate) fn convert(path: &Path) -> Result<Conversion, ImportError> {
    let mut notes = Notes::default();
    let tree = parse::parse_file(path, &mut notes)?;
    let mut cx = Cx {
        notes,
        out: Out::default(),
        version: None,
        scripts: HashMap::new(),
    };
    cx.out.header = vec![
        format!(
            "Converted from the keepalived configuration {} by `portico import keepalived`.",
            path.display()
        ),
        "Directives that were not carried over as written are listed in the import report.".into(),
    ];
    for n in tree.iter().filter(|n| n.name == "global_defs") {
        global_defs(&mut cx, n);
    }
    for n in tree.iter().filter(|n| n.name == "vrrp_script") {
        vrrp_script(&mut cx, n);
    }
    for n in &tree {
        match n.name.as_str() {
            "vrrp_instance" => vrrp_instance(&mut cx, n),
            "virtual_server" => virtual_server(&mut cx, n),
            "vrrp_sync_group" => cx.notes.note(n, Kind::NotCarried, "Portico has no sync groups: each [[vrrp]] instance fails over on its own (give the instances the same tracks)"),
            "virtual_server_group" => cx.notes.note(n, Kind::NotCarried, "write one [[streams]] per address instead of a group"),
            "static_ipaddress" | "static_routes" | "static_rules" => cx.notes.note(n, Kind::NotCarried, "Portico manages only the virtual IPs; configure static addresses and routes in the system"),
            "linkbeat_use_polling" | "net_namespace" | "instance" => cx.notes.note(n, Kind::Dropped, "no Portico setting"),
            _ => {}
        }
    }
    cx.notes.leftovers(&tree);
    Ok(Conversion {
        toml: cx.out.render(),
        report: cx.notes.report,
    })
}

fn global_defs(cx: &mut Cx, n: &Node) {
    n.mark();
    for d in n.children() {
        match d.name.as_str() {
            "vrrp_version" => {
                cx.version = d.arg(0).and_then(|v| v.parse().ok());
                d.mark();
            }
            "router_id" => {
                cx.notes
                    .note(d, Kind::Dropped, "Portico names the node by its host name")
            }
            "enable_script_security"
            | "script_user"
            | "max_auto_priority"
            | "vrrp_skip_check_adv_addr"
            | "vrrp_strict"
            | "vrrp_garp_interval"
            | "vrrp_gna_interval"
            | "vrrp_garp_master_delay"
            | "vrrp_garp_master_repeat"
            | "vrrp_garp_master_refresh"
            | "lvs_id"
            | "lvs_sync_daemon"
            | "vrrp_mcast_group4"
            | "vrrp_mcast_group6"
            | "dynamic_interfaces"
            | "vrrp_no_swap"
            | "checker_no_swap"
            | "process_names" => cx.notes.note(
                d,
                Kind::Dropped,
                "no Portico setting: Portico's fixed behaviour covers this",
            ),
            "notification_email"
            | "notification_email_from"
            | "smtp_server"
            | "smtp_connect_timeout"
            | "smtp_helo_name" => cx.notes.note(
                d,
                Kind::NotCarried,
                "Portico sends no mail; use `notify` on [[vrrp]] to run a program on state changes",
            ),
            _ => {}
        }
    }
}

fn vrrp_script(cx: &mut Cx, n: &Node) {
    n.mark();
    let Some(name) = n.arg(0) else {
        return cx
            .notes
            .note(n, Kind::NotCarried, "a vrrp_script without a name");
    };
    let mut s = Script {
        words: Vec::new(),
        interval: None,
        weight: 0,
    };
    for d in n.children() {
        match d.name.as_str() {
            "script" => {
                s.words = d
                    .args
                    .iter()
                    .flat_map(|a| a.split_whitespace().map(String::from).collect::<Vec<_>>())
                    .collect();
                d.mark();
            }
            "interval" => match d.arg(0).and_then(secs) {
                Some(i) => {
                    s.interval = Some(i);
                    d.mark();
                }
                None => cx
                    .notes
                    .note(d, Kind::NotCarried, "cannot read this interval"),
            },
            "weight" => match d.arg(0).and_then(|w| w.parse().ok()) {
                Some(w) => {
                    s.weight = w;
                    d.mark();
                }
                None => cx
                    .notes
                    .note(d, Kind::NotCarried, "cannot read this weight"),
            },
            "fall" | "rise" => cx.notes.note(
                d,
                Kind::Approximated,
                "Portico acts on each result (keepalived's fall 1 / rise 1)",
            ),
            "timeout" | "user" | "init_fail" => cx.notes.note(
                d,
                Kind::Dropped,
                "Portico runs the script as its own user and bounds it by its interval",
            ),
            _ => {}
        }
    }
    cx.scripts.insert(name.to_string(), s);
}

fn vrrp_instance(cx: &mut Cx, n: &Node) {
    n.mark();
    let name = n.arg(0).unwrap_or("VI_1");
    let mut t = Table::new(format!("{}:{} vrrp_instance {name}", n.file, n.line));
    t.set("name", q(name));
    let mut priority: i32 = 100;
    let mut vips: Vec<String> = Vec::new();
    let mut tracks: Vec<String> = Vec::new();
    let mut bonus: i32 = 0;
    let mut auth_pass = None;
    let mut version = cx.version;
    let mut advert: Option<(String, f64)> = None;
    for d in n.children() {
        let arg = d.arg(0).unwrap_or("");
        match d.name.as_str() {
            "state" => cx.notes.note(d, Kind::Dropped, "Portico starts as BACKUP and elects the master by priority; no initial state is needed"),
            "interface" => {
                t.set("interface", q(arg));
                d.mark();
            }
            "virtual_router_id" => {
                t.set("vrid", arg.to_string());
                d.mark();
            }
            "priority" => match arg.parse() {
                Ok(p) => {
                    priority = p;
                    d.mark();
                }
                Err(_) => cx.notes.note(d, Kind::NotCarried, "cannot read this priority"),
            },
            "advert_int" => match (secs(arg), arg.parse::<f64>()) {
                (Some(s), Ok(v)) => {
                    advert = Some((s, v));
                    d.mark();
                }
                _ => cx.notes.note(d, Kind::NotCarried, "cannot read this interval"),
            },
            "version" => {
                version = arg.parse().ok();
                d.mark();
            }
            "authentication" => {
                d.mark();
                for a in d.children() {
                    match (a.name.as_str(), a.arg(0)) {
                        ("auth_type", Some("PASS")) => a.mark(),
                        ("auth_type", _) => cx.notes.note(a, Kind::NotCarried, "Portico speaks VRRPv2 simple passwords (PASS) only"),
                        ("auth_pass", Some(p)) => {
                            auth_pass = Some(p.chars().take(8).collect::<String>());
                            if p.len() > 8 {
                                cx.notes.note(a, Kind::Approximated, "keepalived uses the first 8 characters of a password; so does this file");
                            } else {
                                a.mark();
                            }
                        }
                        _ => {}
                    }
                }
            }
            "virtual_ipaddress" => {
                d.mark();
                for v in d.children() {
                    v.mark();
                    vips.push(v.name.clone());
                    let mut i = 0;
                    while i < v.args.len() {
                        let (k, val) = (&v.args[i], v.args.get(i + 1).map(String::as_str).unwrap_or(""));
                        match k.as_str() {
                            "dev" => cx.notes.note_part(v, &format!("dev {val}"), Kind::Approximated, "Portico adds every virtual IP of an instance on its `interface`"),
                            "label" | "scope" | "brd" | "broadcast" => cx.notes.note_part(v, &format!("{k} {val}"), Kind::Dropped, "Portico adds the address with the interface's defaults"),
                            _ => cx.notes.note_part(v, k, Kind::NotCarried, "unknown virtual_ipaddress option"),
                        }
                        i += 2;
                    }
                }
            }
            "virtual_ipaddress_excluded" | "virtual_routes" | "virtual_rules" => cx.notes.note(d, Kind::NotCarried, "Portico adds the virtual IPs of `virtual_ipaddress` only"),
            "nopreempt" => {
                t.set("preempt", "false".into());
                d.mark();
            }
            "preempt_delay" => match secs(arg) {
                Some(s) => {
                    t.set("preempt_delay", q(&s));
                    d.mark();
                }
                None => cx.notes.note(d, Kind::NotCarried, "cannot read this delay"),
            },
            "unicast_peer" => {
                d.mark();
                let peers: Vec<String> = d.children().iter().map(|p| {
                    p.mark();
                    p.name.clone()
                }).collect();
                t.set("unicast_peers", qlist(&peers));
            }
            "unicast_src_ip" | "mcast_src_ip" => cx.notes.note(d, Kind::Dropped, "Portico sends from the interface's own address"),
            "track_script" => {
                d.mark();
                for s in d.children() {
                    track(cx, s, &mut tracks, &mut bonus);
                }
            }
            "track_interface" | "track_file" | "track_process" | "track_bfd" => cx.notes.note(
                d,
                Kind::NotCarried,
                "Portico tracks its listeners, upstreams and scripts: write a script for this (e.g. `ip link show eth1 up`) and track it",
            ),
            "notify" => {
                if d.args.len() == 1 && !arg.contains(char::is_whitespace) {
                    t.set("notify", q(arg));
                    cx.notes.note(d, Kind::Approximated, "Portico runs it as `PROGRAM INSTANCE STATE`; keepalived passed `TYPE INSTANCE STATE PRIORITY`: adjust the script's arguments");
                } else {
                    cx.notes.note(d, Kind::NotCarried, "Portico runs a program without arguments (`notify = PATH`); wrap the command in a script");
                }
            }
            "notify_master" | "notify_backup" | "notify_fault" | "notify_stop" | "notify_deleted" => cx.notes.note(
                d,
                Kind::NotCarried,
                "Portico runs one `notify` program as `PROGRAM INSTANCE STATE`: write a script that dispatches on the state and set it as notify",
            ),
            "garp_master_delay" | "garp_master_repeat" | "garp_master_refresh" | "garp_lower_prio_delay"
            | "garp_lower_prio_repeat" | "lower_prio_no_advert" | "higher_prio_send_advert"
            | "dont_track_primary" | "debug" | "smtp_alert" | "skip_check_adv_addr" | "strict_mode"
            | "native_ipv6" | "accept" | "no_accept" | "use_vmac" | "vmac_xmit_base" | "check_unicast_src" => {
                cx.notes.note(d, Kind::Dropped, "no Portico setting: Portico's fixed behaviour covers this")
            }
            _ => {}
        }
    }
    let v6 = vips.iter().any(|v| v.contains(':'));
    let v4 = vips.iter().any(|v| !v.contains(':'));
    if v4 && v6 {
        let kept: Vec<String> = vips.iter().filter(|v| !v.contains(':')).cloned().collect();
        cx.notes.note_at(&n.file, n.line, &format!("vrrp_instance {name}"), Kind::NotCarried,
            "an instance carries one address family in Portico: the IPv6 addresses were left out (add a second [[vrrp]] with another vrid for them)");
        vips = kept;
    }
    let mut version = version.unwrap_or(if v6 && !v4 { 3 } else { 2 });
    if let Some((s, v)) = &advert {
        if version == 2 && v.fract() != 0.0 {
            cx.notes.note_at(&n.file, n.line, &format!("advert_int {v}"), Kind::Approximated,
                "VRRPv2 adverts are whole seconds: written as VRRPv3 (every node of the group must speak v3)");
            version = 3;
        }
        t.set("advert_interval", q(s));
    }
    if vips.is_empty() {
        return cx.notes.note_at(
            &n.file,
            n.line,
            &format!("vrrp_instance {name}"),
            Kind::NotCarried,
            "no virtual_ipaddress: nothing to fail over",
        );
    }
    let mut prio = priority + bonus;
    if prio > 254 && priority != 255 {
        cx.notes.note_at(
            &n.file,
            n.line,
            &format!("vrrp_instance {name}"),
            Kind::Approximated,
            "priority plus positive script weights is over 254: clamped",
        );
        prio = 254;
    }
    if prio != 100 {
        t.set("priority", prio.to_string());
    }
    t.set("virtual_ips", qlist(&vips));
    t.set("version", version.to_string());
    if let Some(p) = auth_pass {
        if version == 2 {
            t.set("auth_pass", q(&p));
        } else {
            cx.notes.note_at(
                &n.file,
                n.line,
                "authentication",
                Kind::NotCarried,
                "VRRPv3 has no authentication",
            );
        }
    }
    if !tracks.is_empty() {
        t.set("track", format!("[{}]", tracks.join(", ")));
    }
    // Order the keys as docs/configuration.md lists them.
    let order = [
        "name",
        "interface",
        "vrid",
        "priority",
        "advert_interval",
        "virtual_ips",
        "version",
        "auth_pass",
        "preempt",
        "preempt_delay",
        "unicast_peers",
        "track",
        "notify",
    ];
    t.fields
        .sort_by_key(|(k, _)| order.iter().position(|o| o == k).unwrap_or(order.len()));
    cx.out.vrrp.push(t);
}

/// One `track_script` entry -> a `track` table. A positive keepalived weight (added while
/// the script succeeds) becomes a priority bonus plus the same negative weight on failure.
fn track(cx: &mut Cx, s: &Node, tracks: &mut Vec<String>, bonus: &mut i32) {
    let Some(def) = cx.scripts.get(&s.name).cloned() else {
        return cx
            .notes
            .note(s, Kind::NotCarried, "no vrrp_script with this name");
    };
    let mut weight = def.weight;
    if s.arg(0) == Some("weight")
        && let Some(w) = s.arg(1).and_then(|w| w.parse().ok())
    {
        weight = w;
    }
    if weight > 0 {
        *bonus += weight;
        cx.notes.note(s, Kind::Approximated, format!(
            "keepalived adds {weight} while the script succeeds; Portico subtracts on failure: priority raised by {weight}, track weight -{weight}"
        ));
        weight = -weight;
    } else {
        s.mark();
    }
    let words = def.words.join(" ");
    let checks_proxy = ["nginx", "haproxy", "portico"]
        .iter()
        .any(|p| words.contains(p));
    let entry = if checks_proxy {
        cx.notes.note(s, Kind::Approximated, format!(
            "`{words}` checks the proxy Portico replaces: written as a listeners track (Portico probes its own listeners)"
        ));
        vec![("listeners".to_string(), "true".to_string())]
    } else if def.words.len() == 1 {
        let mut f: Vec<Field> = vec![("script".into(), q(&def.words[0]))];
        if let Some(i) = &def.interval {
            f.push(("interval".into(), q(i)));
        }
        f
    } else {
        return cx.notes.note(s, Kind::NotCarried, format!(
            "Portico runs a track script without arguments: put `{words}` in a script file and name it in vrrp_script"
        ));
    };
    let mut entry = entry;
    entry.push(("weight".into(), weight.to_string()));
    tracks.push(inline(&entry));
}

/// LVS `virtual_server IP PORT { ... }` -> an upstream and a stream.
fn virtual_server(cx: &mut Cx, n: &Node) {
    n.mark();
    let (Some(ip), Some(port)) = (n.arg(0), n.arg(1).and_then(|p| p.parse::<u16>().ok())) else {
        return cx.notes.note(n, Kind::NotCarried, "Portico streams listen on IP PORT (fwmark and group virtual servers are not carried over)");
    };
    let children = n.children();
    if let Some(p) = children.iter().find(|d| d.name == "protocol") {
        if p.arg(0) == Some("TCP") {
            p.mark();
        } else {
            return cx
                .notes
                .note(n, Kind::NotCarried, "Portico streams are TCP only");
        }
    }
    let name = format!("vs_{}_{port}", ip.replace([':', '.'], "_"));
    let mut up = Table::new(format!("{}:{} virtual_server {ip} {port}", n.file, n.line));
    let mut stream = Table::new(format!("{}:{} virtual_server {ip} {port}", n.file, n.line));
    let listen = if ip.contains(':') {
        format!("[::]:{port}")
    } else {
        format!("0.0.0.0:{port}")
    };
    stream.set("listen", qlist(std::slice::from_ref(&listen)));
    stream.set("upstream", q(&name));
    cx.notes.note_part(n, &format!("{ip} {port}"), Kind::Approximated, format!(
        "Portico listens on {listen} (the VIP comes and goes with VRRP, and a listener cannot wait for it); traffic to the VIP reaches it while this node holds the VIP"
    ));
    let mut servers = Vec::new();
    let mut health: Vec<Field> = Vec::new();
    let mut delay_loop: Option<String> = None;
    let mut algo = "rr";
    for d in children {
        let arg = d.arg(0).unwrap_or("");
        match d.name.as_str() {
            "lb_algo" | "lvs_sched" => {
                d.mark();
                algo = match arg {
                    "rr" | "wrr" | "lc" | "wlc" | "sh" | "mh" => arg,
                    "sed" | "nq" | "lblc" | "lblcr" | "fo" | "ovf" | "twos" => {
                        cx.notes.note(d, Kind::Approximated, "written as least_conn");
                        "lc"
                    }
                    _ => {
                        cx.notes.note(d, Kind::Approximated, "written as round_robin");
                        "wrr"
                    }
                };
            }
            "lb_kind" | "lvs_method" => cx.notes.note(d, Kind::Approximated, match arg {
                "NAT" => "Portico proxies the TCP connections itself (servers see Portico's address, not the client's: use proxy_protocol if they need it)",
                _ => "Portico proxies the TCP connections itself: replies come back through Portico, and real servers no longer need the VIP or ARP settings of DR/TUN",
            }),
            "persistence_timeout" => match secs(arg) {
                Some(s) => {
                    stream.set("persistence", q(&s));
                    d.mark();
                }
                None => cx.notes.note(d, Kind::NotCarried, "cannot read this timeout"),
            },
            "persistence_granularity" => cx.notes.note(d, Kind::NotCarried, "Portico's persistence is per client address"),
            "delay_loop" => {
                delay_loop = secs(arg);
                d.mark();
            }
            "real_server" | "sorry_server" => {
                if let Some(s) = real_server(cx, d, &mut health) {
                    servers.push(s);
                }
            }
            "quorum" | "hysteresis" | "alpha" | "omega" | "quorum_up" | "quorum_down" | "ha_suspend"
            | "virtualhost" | "retry" | "delay_before_retry" | "connect_timeout" | "warmup" | "ops" => {
                cx.notes.note(d, Kind::Dropped, "no Portico setting for this virtual server option")
            }
            _ => {}
        }
    }
    match algo {
        "rr" => {
            if servers.iter().any(|(_, w, _)| w.is_some_and(|w| w != 1)) {
                cx.notes.note_at(
                    &n.file,
                    n.line,
                    "lb_algo rr",
                    Kind::Approximated,
                    "rr ignores weights: servers written without them",
                );
            }
            for s in servers.iter_mut() {
                s.1 = None;
            }
        }
        "lc" | "wlc" => up.set("balance", q("least_conn")),
        "sh" | "mh" => up.set("balance", q("hash")),
        _ => {}
    }
    if servers.is_empty() {
        return cx.notes.note_at(
            &n.file,
            n.line,
            &format!("virtual_server {ip} {port}"),
            Kind::NotCarried,
            "no real_server could be carried over",
        );
    }
    if !health.is_empty() {
        let interval = delay_loop.unwrap_or_else(|| "60s".into());
        health.push(("interval".into(), q(&interval)));
        health.push(("rise".into(), "1".into()));
    }
    let rendered = servers
        .into_iter()
        .map(|(addr, weight, extra)| {
            let mut f: Vec<Field> = Vec::new();
            if let Some(w) = weight.filter(|w| *w != 1) {
                f.push(("weight".into(), w.to_string()));
            }
            f.extend(extra);
            if f.is_empty() {
                q(&addr)
            } else {
                let mut all = vec![("addr".to_string(), q(&addr))];
                all.extend(f);
                inline(&all)
            }
        })
        .collect();
    cx.out.upstreams.push(Upstream {
        name,
        table: up,
        servers: rendered,
        health,
    });
    cx.out.streams.push(stream);
}

/// `real_server IP PORT { weight; TCP_CHECK {..} | HTTP_GET {..} }` -> (addr, weight, extra
/// fields); the first checker sets the upstream's `health`.
fn real_server(
    cx: &mut Cx,
    d: &Node,
    health: &mut Vec<Field>,
) -> Option<(String, Option<u32>, Vec<Field>)> {
    d.mark();
    let (Some(ip), Some(port)) = (d.arg(0), d.arg(1)) else {
        cx.notes
            .note(d, Kind::NotCarried, "a real_server needs IP PORT");
        return None;
    };
    let addr = if ip.contains(':') {
        format!("[{ip}]:{port}")
    } else {
        format!("{ip}:{port}")
    };
    let mut weight = None;
    let mut extra: Vec<Field> = Vec::new();
    if d.name == "sorry_server" {
        extra.push(("backup".into(), "true".into()));
        cx.notes.note_part(
            d,
            ip,
            Kind::Approximated,
            "written as a backup server: used when no real server is usable",
        );
    }
    for c in d.children() {
        let arg = c.arg(0).unwrap_or("");
        match c.name.as_str() {
            "weight" => match arg.parse::<u32>() {
                Ok(0) => {
                    extra.push(("down".into(), "true".into()));
                    cx.notes.note(
                        c,
                        Kind::Approximated,
                        "weight 0 (quiesced) written as down = true",
                    );
                }
                Ok(w) => {
                    weight = Some(w);
                    c.mark();
                }
                Err(_) => cx
                    .notes
                    .note(c, Kind::NotCarried, "cannot read this weight"),
            },
            "TCP_CHECK" | "HTTP_GET" | "SSL_GET" => {
                if c.name == "SSL_GET" {
                    cx.notes.note(c, Kind::NotCarried, "Portico's active checks are tcp, http and websocket; TLS checks are not carried over");
                    continue;
                }
                c.mark();
                let mut h: Vec<Field> = vec![(
                    "type".into(),
                    q(if c.name == "TCP_CHECK" { "tcp" } else { "http" }),
                )];
                for o in c.children() {
                    let v = o.arg(0).unwrap_or("");
                    match o.name.as_str() {
                        "connect_timeout" => match secs(v) {
                            Some(s) => {
                                h.push(("timeout".into(), q(&s)));
                                o.mark();
                            }
                            None => cx
                                .notes
                                .note(o, Kind::NotCarried, "cannot read this timeout"),
                        },
                        "retry" | "nb_get_retry" => match v.parse::<u32>() {
                            Ok(r) if r >= 1 => {
                                h.push(("fall".into(), r.to_string()));
                                o.mark();
                            }
                            _ => cx.notes.note(o, Kind::NotCarried, "cannot read this count"),
                        },
                        "url" => {
                            o.mark();
                            for u in o.children() {
                                match u.name.as_str() {
                                    "path" => {
                                        h.push(("path".into(), q(u.arg(0).unwrap_or("/"))));
                                        u.mark();
                                    }
                                    "status_code" => {
                                        h.push(("expect_status".into(), q(u.arg(0).unwrap_or("200"))));
                                        u.mark();
                                    }
                                    "digest" => cx.notes.note(u, Kind::NotCarried, "Portico checks a body substring (expect_body), not a digest"),
                                    _ => {}
                                }
                            }
                        }
                        "delay_before_retry" | "connect_port" | "bindto" | "connect_ip"
                        | "warmup" => cx.notes.note(
                            o,
                            Kind::Dropped,
                            "Portico probes the server's own address and port every interval",
                        ),
                        _ => {}
                    }
                }
                if health.is_empty() {
                    *health = h;
                } else if *health != h {
                    cx.notes.note(c, Kind::Approximated, "Portico has one health check per upstream: the first real_server's check applies to all");
                }
            }
            "MISC_CHECK" | "SMTP_CHECK" | "DNS_CHECK" | "BFD_CHECK" | "FILE_CHECK"
            | "UDP_CHECK" | "PING_CHECK" => cx.notes.note(
                c,
                Kind::NotCarried,
                "Portico's active checks are tcp, http and websocket",
            ),
            "inhibit_on_failure" | "notify_up" | "notify_down" | "uthreshold" | "lthreshold" => {
                cx.notes.note(
                    c,
                    Kind::NotCarried,
                    "no Portico equivalent for this real_server option",
                )
            }
            _ => {}
        }
    }
    Some((addr, weight, extra))
}
