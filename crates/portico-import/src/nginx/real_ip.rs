//! `set_real_ip_from`, `real_ip_header`, `real_ip_recursive` (at any level) -> `[server]
//! trusted_proxies`, one list for the whole process, with notes on how Portico reads the
//! client from trusted proxies.

use super::Cx;
use super::policy::{Src, net, on_off};
use crate::out::qlist;
use crate::report::Kind;
use crate::tree::Node;

/// `[server] trusted_proxies` and the `real_ip_*` settings seen anywhere.
#[derive(Debug, Default)]
pub(crate) struct RealIp {
    trusted: Vec<String>,
    first: Option<Src>,
    header: Option<(String, Src)>,
    recursive: Option<bool>,
}

/// `set_real_ip_from`, `real_ip_header`, `real_ip_recursive` at any level.
pub(crate) fn read(cx: &mut Cx<'_>, n: &Node) {
    let arg = n.arg(0).unwrap_or("");
    if cx.in_location || cx.in_server {
        cx.notes.note(
            n,
            Kind::Approximated,
            "Portico trusts proxies for the whole process ([server] trusted_proxies), not per server or location",
        );
    } else {
        n.mark();
    }
    match n.name.as_str() {
        "set_real_ip_from" => match net(arg).filter(|a| a != "all") {
            Some(a) => {
                if !cx.real_ip.trusted.contains(&a) {
                    cx.real_ip.trusted.push(a);
                }
                cx.real_ip.first.get_or_insert_with(|| Src::of(n));
            }
            None if arg == "all" => {
                cx.real_ip
                    .trusted
                    .extend(["0.0.0.0/0".to_string(), "::/0".to_string()]);
                cx.real_ip.first.get_or_insert_with(|| Src::of(n));
            }
            None => cx.notes.note(
                n,
                Kind::NotCarried,
                "Portico trusts addresses and CIDRs only (no unix: peers)",
            ),
        },
        "real_ip_header" => cx.real_ip.header = Some((arg.to_ascii_lowercase(), Src::of(n))),
        _ => cx.real_ip.recursive = on_off(n),
    }
}

/// After the walk: `[server] trusted_proxies`, with notes on how Portico reads the client.
pub(crate) fn finish(cx: &mut Cx<'_>) {
    if cx.real_ip.trusted.is_empty() {
        return;
    }
    let list = qlist(&cx.real_ip.trusted);
    cx.out.server.set("trusted_proxies", list);
    let recursive = cx.real_ip.recursive == Some(true);
    let note = match cx.real_ip.header.clone() {
        Some((h, src)) if h == "x-forwarded-for" && !recursive => Some((src, Kind::Approximated,
            "Portico walks X-Forwarded-For from the right past trusted addresses (real_ip_recursive on); nginx without it takes the last address: the same with one proxy in front")),
        Some((h, _)) if h == "x-forwarded-for" || h == "proxy_protocol" => None,
        Some((h, src)) if h == "x-real-ip" => Some((src, Kind::Approximated,
            "Portico reads X-Forwarded-For from trusted proxies first and X-Real-IP only without it")),
        Some((_, src)) => Some((src, Kind::NotCarried,
            "Portico reads the client from X-Forwarded-For, X-Real-IP or a PROXY header only")),
        None => cx.real_ip.first.clone().map(|src| (src, Kind::Approximated,
            "without real_ip_header nginx reads X-Real-IP; Portico reads X-Forwarded-For from trusted proxies first, then X-Real-IP")),
    };
    if let Some((src, kind, why)) = note {
        cx.notes.note_at(&src.file, src.line, &src.text, kind, why);
    }
}
