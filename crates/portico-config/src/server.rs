//! `[server]` and `[admin]`: process-wide settings and the admin API.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use crate::gate::Scope;
use crate::model::{AccessLogFormat, AccessLogTarget, AdminConfig, ServerConfig};
use crate::walk::{Ctx, Table, parse_listen};

/// The default admin listener.
pub const DEFAULT_ADMIN_LISTEN: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 9900);

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
    ServerConfig {
        state_dir,
        access_log,
        access_log_format,
        max_connections: usize::try_from(max_connections).unwrap_or(65536),
        header_timeout: ctx.positive_duration(t, "header_timeout", Duration::from_secs(10)),
        keepalive_timeout: ctx.positive_duration(t, "keepalive_timeout", Duration::from_secs(65)),
        shutdown_grace: ctx.duration(t, "shutdown_grace", Duration::from_secs(30)),
        threads: usize::try_from(threads).unwrap_or(0),
    }
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
