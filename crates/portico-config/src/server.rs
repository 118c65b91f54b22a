//! `[server]` and `[admin]`: process-wide settings and the admin API.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use crate::gate::Scope;
use crate::model::{AccessLogFormat, AccessLogTarget, AdminConfig, ServerConfig};
use crate::walk::{Ctx, Table, parse_listen};

/// The default admin listener.
pub const DEFAULT_ADMIN_LISTEN: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 9900);

/// The default `send_min_rate`: 1 KiB/s (8 kbit/s, below any real link; a slow-read
/// attacker takes a few bytes every few seconds).
pub const DEFAULT_SEND_MIN_RATE: u64 = 1024;

/// `[server]`; `t` is `None` when the section is absent (all defaults).
pub(crate) fn server(ctx: &mut Ctx<'_>, t: Option<&Table<'_>>) -> ServerConfig {
    let empty = Table::new();
    let t = ctx.open(t.unwrap_or(&empty), Scope::Server, "[server]");
    let state_dir = ctx
        .path(t, "state_dir")
        .unwrap_or_else(|| ctx.resolve("portico-data"));
    let access_log = match ctx.str(t, "access_log") {
        None => AccessLogTarget::Stdout,
        Some(("stdout", _)) => AccessLogTarget::Stdout,
        Some(("stderr", _)) => AccessLogTarget::Stderr,
        Some(("off", _)) => AccessLogTarget::Off,
        Some(("", span)) => {
            ctx.err(
                &span,
                "`access_log` must not be empty",
                Some("use \"stdout\", \"stderr\", \"off\" or a file path".into()),
            );
            AccessLogTarget::Stdout
        }
        Some((file, _)) => AccessLogTarget::File(ctx.resolve(file)),
    };
    let access_log_format = ctx.choice(
        t,
        "access_log_format",
        &[
            ("combined", AccessLogFormat::Combined),
            ("json", AccessLogFormat::Json),
        ],
        AccessLogFormat::Combined,
    );
    let max_connections = ctx.int(t, "max_connections", 65536, 1, i64::from(u32::MAX));
    let threads = ctx.int(t, "threads", 0, 0, 4096);
    let keepalive_requests = ctx.int(t, "keepalive_requests", 1000, 1, i64::from(u32::MAX));
    ServerConfig {
        state_dir,
        access_log,
        access_log_format,
        max_connections: usize::try_from(max_connections).unwrap_or(65536),
        header_timeout: ctx.positive_duration(t, "header_timeout", Duration::from_secs(10)),
        keepalive_timeout: ctx.positive_duration(t, "keepalive_timeout", Duration::from_secs(65)),
        send_timeout: ctx.positive_duration(t, "send_timeout", Duration::from_secs(60)),
        send_min_rate: ctx.size(t, "send_min_rate", DEFAULT_SEND_MIN_RATE),
        keepalive_requests: u64::try_from(keepalive_requests).unwrap_or(1000),
        shutdown_grace: ctx.duration(t, "shutdown_grace", Duration::from_secs(30)),
        threads: usize::try_from(threads).unwrap_or(0),
        secret_file: ctx.path(t, "secret_file"),
        trusted_proxies: trusted_proxies(ctx, t),
    }
}

/// `trusted_proxies = ["10.0.0.0/8", "::1"]`.
fn trusted_proxies(ctx: &mut Ctx<'_>, t: crate::keys::Tbl<'_, '_>) -> Vec<crate::model::IpNet> {
    let Some((items, _)) = ctx.str_list(t, "trusted_proxies") else {
        return Vec::new();
    };
    let mut out = Vec::with_capacity(items.len());
    for (text, span) in items {
        match crate::policy::parse_cidr(&text) {
            Ok(net) => out.push(net),
            Err(msg) => ctx.err(
                &span,
                format!("bad `trusted_proxies` entry `{text}`: {msg}"),
                Some("write addresses or CIDRs, e.g. [\"10.0.0.0/8\", \"::1\"]".into()),
            ),
        }
    }
    out
}

/// `[admin]`; `t` is `None` when the section is absent.
pub(crate) fn admin(ctx: &mut Ctx<'_>, t: Option<&Table<'_>>) -> AdminConfig {
    let empty = Table::new();
    let t = ctx.open(t.unwrap_or(&empty), Scope::Admin, "[admin]");
    let token_file = ctx.path(t, "token_file");
    let listen = match ctx.str(t, "listen") {
        None => Some(DEFAULT_ADMIN_LISTEN),
        Some(("off", _)) => None,
        Some((s, span)) => match parse_listen(s) {
            Ok(addr) => {
                if !addr.ip().is_loopback() && token_file.is_none() {
                    ctx.err(
                        &span,
                        format!("admin `listen` on non-loopback {addr} needs a `token_file`"),
                        Some(
                            "set token_file = \"admin.token\" (a file holding the bearer token), or listen on 127.0.0.1"
                                .into(),
                        ),
                    );
                }
                Some(addr)
            }
            Err((msg, hint)) => {
                ctx.err(&span, format!("bad `listen` address: {msg}"), hint);
                Some(DEFAULT_ADMIN_LISTEN)
            }
        },
    };
    AdminConfig { listen, token_file }
}
