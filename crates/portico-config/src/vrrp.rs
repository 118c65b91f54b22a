//! `[[vrrp]]`: a virtual-IP failover instance (keepalived's `vrrp_instance`) and its tracks.

use std::net::IpAddr;
use std::time::Duration;

use toml::de::DeValue;

use crate::gate::Scope;
use crate::keys::Tbl;
use crate::model::{IpPrefix, VrrpInstance, VrrpTrack, VrrpTrackKind, VrrpVersion};
use crate::walk::{Ctx, Span, Value, list};

const TRACK_KINDS: &[&str] = &["listeners", "upstream", "script"];

/// Where an instance's pieces are, for cross-checks after the walk.
#[derive(Debug, Default)]
pub(crate) struct VrrpSpans {
    pub name: Span,
    pub vrid: Span,
}

pub(crate) fn instance(
    ctx: &mut Ctx<'_>,
    index: usize,
    v: &Value<'_>,
) -> Option<(VrrpInstance, VrrpSpans)> {
    let DeValue::Table(t) = v.get_ref() else {
        ctx.wrong_type("vrrp", v, "an array of tables", "[[vrrp]]");
        return None;
    };
    let header = v.span();
    let what = format!("vrrp instance #{}", index + 1);
    let t = ctx.open(t, Scope::Vrrp, format!("[[vrrp]] ({what})"));
    let mut spans = VrrpSpans {
        name: header.clone(),
        vrid: header.clone(),
    };

    let name = required_str(ctx, t, "name", &header, &what, "name = \"VI_1\"").map(|(s, span)| {
        spans.name = span;
        s
    });
    let interface =
        required_str(ctx, t, "interface", &header, &what, "interface = \"eth0\"").map(|(s, _)| s);
    let vrid = match ctx.get(t, "vrid") {
        None => {
            ctx.err(
                &header,
                format!("{what} has no `vrid`"),
                Some("vrid = 51 (1-255, the same on every node of the group)".into()),
            );
            None
        }
        Some(vv) => {
            spans.vrid = vv.span();
            ctx.int_value("vrid", vv, 1, 255).map(|n| n as u8)
        }
    };
    let priority = ctx.int(t, "priority", 100, 1, 255) as u8;
    let version = match ctx.get(t, "version") {
        None => VrrpVersion::V3,
        Some(vv) => match vv.get_ref() {
            DeValue::Integer(i) if i.as_str() == "2" && i.radix() == 10 => VrrpVersion::V2,
            DeValue::Integer(i) if i.as_str() == "3" && i.radix() == 10 => VrrpVersion::V3,
            _ => {
                ctx.err(
                    &vv.span(),
                    "unknown vrrp `version`",
                    Some("allowed: 2, 3 (2 for peers that speak only VRRPv2)".into()),
                );
                VrrpVersion::V3
            }
        },
    };
    let advert_interval = advert_interval(ctx, t, version);
    let virtual_ips = virtual_ips(ctx, t, &header, &what, version);
    let auth_pass = ctx.str(t, "auth_pass").and_then(|(s, span)| {
        if version != VrrpVersion::V2 {
            ctx.err(
                &span,
                "`auth_pass` needs `version = 2`",
                Some(
                    "VRRPv3 has no authentication (RFC 5798); remove it or set version = 2".into(),
                ),
            );
            None
        } else if s.is_empty() || s.len() > 8 {
            ctx.err(
                &span,
                "`auth_pass` must be 1 to 8 bytes",
                Some("keepalived also uses only the first 8 bytes".into()),
            );
            None
        } else {
            Some(s.to_string())
        }
    });
    let unicast_peers = unicast_peers(ctx, t, &virtual_ips);
    let track = match ctx.get(t, "track") {
        None => Vec::new(),
        Some(tv) => match tv.get_ref() {
            DeValue::Array(items) => items.iter().filter_map(|item| track(ctx, item)).collect(),
            _ => {
                ctx.wrong_type(
                    "track",
                    tv,
                    "a list of tables",
                    "[{ listeners = true, weight = -20 }]",
                );
                Vec::new()
            }
        },
    };
    let preempt = ctx.bool(t, "preempt", true);
    let preempt_delay = ctx.duration(t, "preempt_delay", Duration::ZERO);
    let notify = ctx.path(t, "notify");
    let inst = VrrpInstance {
        name: name?,
        interface: interface?,
        vrid: vrid?,
        priority,
        advert_interval,
        virtual_ips,
        version,
        auth_pass,
        preempt,
        preempt_delay,
        unicast_peers,
        track,
        notify,
    };
    Some((inst, spans))
}

fn required_str(
    ctx: &mut Ctx<'_>,
    t: Tbl<'_, '_>,
    key: &'static str,
    header: &Span,
    what: &str,
    example: &str,
) -> Option<(String, Span)> {
    if !ctx.has(t, key) {
        ctx.err(
            header,
            format!("{what} has no `{key}`"),
            Some(format!("add {example}")),
        );
        return None;
    }
    let (s, span) = ctx.str(t, key)?;
    if s.is_empty() {
        ctx.err(
            &span,
            format!("`{key}` must not be empty"),
            Some(format!("for example: {example}")),
        );
        return None;
    }
    Some((s.to_string(), span))
}

fn advert_interval(ctx: &mut Ctx<'_>, t: Tbl<'_, '_>, version: VrrpVersion) -> Duration {
    let default = Duration::from_secs(1);
    let Some((d, span)) = ctx.opt_duration(t, "advert_interval") else {
        return default;
    };
    let ms = d.as_millis();
    match version {
        VrrpVersion::V2 if ms % 1000 != 0 || !(1000..=255_000).contains(&ms) => {
            ctx.err(
                &span,
                "VRRPv2 `advert_interval` must be whole seconds from 1s to 255s",
                Some("use version = 3 for sub-second intervals".into()),
            );
            default
        }
        VrrpVersion::V3 if ms % 10 != 0 || !(10..=40_950).contains(&ms) => {
            ctx.err(
                &span,
                "VRRPv3 `advert_interval` must be a multiple of 10ms from 10ms to 40.95s",
                Some("for example \"100ms\" or \"1s\"".into()),
            );
            default
        }
        _ => d,
    }
}

fn virtual_ips(
    ctx: &mut Ctx<'_>,
    t: Tbl<'_, '_>,
    header: &Span,
    what: &str,
    version: VrrpVersion,
) -> Vec<IpPrefix> {
    let Some((items, span)) = ctx.str_list(t, "virtual_ips") else {
        if !ctx.has(t, "virtual_ips") {
            ctx.err(
                header,
                format!("{what} has no `virtual_ips`"),
                Some("add virtual_ips = [\"192.168.50.130/24\"]".into()),
            );
        }
        return Vec::new();
    };
    if items.is_empty() {
        ctx.err(
            &span,
            format!("{what} has an empty `virtual_ips` list"),
            Some("add virtual_ips = [\"192.168.50.130/24\"]".into()),
        );
    }
    let mut out: Vec<IpPrefix> = Vec::new();
    for (s, item_span) in items {
        let prefix = match parse_prefix(&s) {
            Ok(p) => p,
            Err(msg) => {
                ctx.err(
                    &item_span,
                    format!("bad virtual IP `{s}`: {msg}"),
                    Some(
                        "write ADDRESS/PREFIX, e.g. \"192.168.50.130/24\" or \"fd00::1/64\"".into(),
                    ),
                );
                continue;
            }
        };
        if let Some(first) = out.first()
            && first.addr.is_ipv4() != prefix.addr.is_ipv4()
        {
            ctx.err(&item_span, format!("virtual IP `{s}` is not of the same family as `{first}`"), Some("one instance carries IPv4 or IPv6 addresses; use a second [[vrrp]] for the other family".into()));
            continue;
        }
        if version == VrrpVersion::V2 && prefix.addr.is_ipv6() {
            ctx.err(
                &item_span,
                format!("VRRPv2 cannot carry the IPv6 address `{s}`"),
                Some("use version = 3 for IPv6".into()),
            );
            continue;
        }
        out.push(prefix);
    }
    out
}

/// `ADDR/LEN`; a bare address means a host prefix (/32 or /128), as keepalived.
pub(crate) fn parse_prefix(s: &str) -> Result<IpPrefix, String> {
    let (addr, len) = match s.split_once('/') {
        Some((a, l)) => (a, Some(l)),
        None => (s, None),
    };
    let addr: IpAddr = addr
        .parse()
        .map_err(|_| format!("`{addr}` is not an IP address"))?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let prefix_len = match len {
        None => max,
        Some(l) => match l.parse::<u8>() {
            Ok(n) if n <= max => n,
            _ => return Err(format!("`{l}` is not a prefix length 0-{max}")),
        },
    };
    Ok(IpPrefix { addr, prefix_len })
}

fn unicast_peers(ctx: &mut Ctx<'_>, t: Tbl<'_, '_>, vips: &[IpPrefix]) -> Vec<IpAddr> {
    let Some((items, _)) = ctx.str_list(t, "unicast_peers") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (s, span) in items {
        match s.parse::<IpAddr>() {
            Ok(ip) => {
                if let Some(first) = vips.first()
                    && first.addr.is_ipv4() != ip.is_ipv4()
                {
                    ctx.err(
                        &span,
                        format!("unicast peer `{s}` is not of the virtual IPs' family"),
                        Some("advertisements travel in the family of the virtual IPs".into()),
                    );
                    continue;
                }
                out.push(ip);
            }
            Err(_) => ctx.err(
                &span,
                format!("unicast peer `{s}` is not an IP address"),
                Some("write the peer's address without a port, e.g. \"10.0.0.12\"".into()),
            ),
        }
    }
    out
}

fn track(ctx: &mut Ctx<'_>, item: &Value<'_>) -> Option<VrrpTrack> {
    let DeValue::Table(t) = item.get_ref() else {
        ctx.wrong_type(
            "track",
            item,
            "a list of tables",
            "[{ listeners = true, weight = -20 }]",
        );
        return None;
    };
    let t = ctx.open(t, Scope::Track, "a `track` entry");
    // Every key is asked for before a wrong number of kinds ends the entry.
    let present: Vec<&str> = TRACK_KINDS
        .iter()
        .copied()
        .filter(|k| ctx.has(t, k))
        .collect();
    let weight = ctx.int(t, "weight", 0, -253, 253) as i32;
    let interval_key = ctx.key_span(t, "interval");
    if present.len() != 1 {
        let msg = if present.is_empty() {
            "a `track` entry needs one of".to_string()
        } else {
            "a `track` entry has more than one of".to_string()
        };
        ctx.err(
            &item.span(),
            format!("{msg} {}", list(TRACK_KINDS)),
            Some(
                "e.g. { listeners = true, weight = -20 }; write one entry per thing tracked".into(),
            ),
        );
        return None;
    }
    if let Some(span) = interval_key
        && present[0] != "script"
    {
        ctx.err(&span, "`interval` applies only to a `script` track", None);
    }
    let kind = match present[0] {
        "listeners" => {
            if !ctx.bool(t, "listeners", true)
                && let Some(v) = ctx.get(t, "listeners")
            {
                ctx.err(
                    &v.span(),
                    "`listeners = false` tracks nothing",
                    Some("remove the entry, or write listeners = true".into()),
                );
            }
            VrrpTrackKind::Listeners
        }
        "upstream" => {
            let (name, span) = ctx.str(t, "upstream")?;
            ctx.upstream_refs.push((name.to_string(), span));
            VrrpTrackKind::Upstream(name.to_string())
        }
        _ => {
            let path = ctx.path(t, "script")?;
            let interval = ctx.duration(t, "interval", Duration::from_secs(2));
            if interval.is_zero()
                && let Some(v) = ctx.get(t, "interval")
            {
                ctx.err(
                    &v.span(),
                    "a script `interval` must be more than 0",
                    Some("for example \"2s\"".into()),
                );
            }
            VrrpTrackKind::Script { path, interval }
        }
    };
    Some(VrrpTrack { kind, weight })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes() {
        let p = parse_prefix("192.168.50.130/24").unwrap();
        assert_eq!(p.to_string(), "192.168.50.130/24");
        assert_eq!(parse_prefix("10.0.0.1").unwrap().prefix_len, 32);
        assert_eq!(parse_prefix("fd00::1").unwrap().prefix_len, 128);
        assert_eq!(parse_prefix("fd00::1/64").unwrap().prefix_len, 64);
        for bad in [
            "",
            "10.0.0.1/33",
            "fd00::1/129",
            "10.0.0/24",
            "x/1",
            "10.0.0.1/",
        ] {
            assert!(parse_prefix(bad).is_err(), "{bad}");
        }
    }
}
