//! The client side of the admin API in the binary: `portico status` and `portico reload`
//! (which asks the API first, and falls back to a signal when the API is off). Imports
//! nothing of the running side (`crate::admin`, `crate::reload`'s `Running`).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use portico_admin::client::{self, ClientError};
use portico_config::Config;

use crate::check;
use crate::exit::Failure;

/// How long `portico reload` waits for the API's answer (a reload resolves names, binds).
const RELOAD_WAIT: Duration = Duration::from_secs(60);

/// Where a client reaches the admin API of `listen` (a wildcard address on loopback).
fn client_addr(listen: SocketAddr) -> SocketAddr {
    let ip = match listen.ip() {
        IpAddr::V4(v4) if v4.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(v6) if v6.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, listen.port())
}

/// The instance answering on `config`'s admin API: its pid and the config file it was
/// started with (absolute). `None` when the API is off or nothing answers.
pub fn running_config(config: &Config) -> Option<(u32, std::path::PathBuf)> {
    let addr = client_addr(config.admin.listen?);
    let (status, _) = client::status(addr).ok()?;
    Some((status.pid, status.config.file.into()))
}

/// `portico reload` through the API: `None` when the API is off or nothing answers (the
/// caller then signals the instance), else the outcome: 0 applied, 1 refused config (with
/// the diagnostics), 2 failed.
pub fn request_reload(config: &Config) -> Option<Result<(), Failure>> {
    let addr = client_addr(config.admin.listen?);
    let token = match &config.admin.token_file {
        Some(path) => match portico_admin::read_token(path) {
            Ok(t) => Some(t),
            Err(e) => {
                return Some(Err(anyhow::anyhow!(
                    "cannot read [admin] token_file {}: {e}",
                    path.display()
                )
                .into()));
            }
        },
        None => None,
    };
    let answer = match client::call(
        addr,
        "POST",
        "/api/v1/reload",
        token.as_deref(),
        RELOAD_WAIT,
    ) {
        Ok(a) => a,
        Err(ClientError::Unreachable { .. }) => return None,
        Err(e) => return Some(Err(anyhow::Error::from(e).into())),
    };
    let body: serde_json::Value = serde_json::from_str(&answer.body).unwrap_or_default();
    let text = body["text"].as_str().unwrap_or_default().to_string();
    Some(match (answer.status, body["result"].as_str()) {
        (200, Some("applied")) => {
            print!("{text}");
            Ok(())
        }
        (_, Some("invalid")) => Err(Failure::InvalidConfig(text)),
        (_, Some("failed")) => {
            Err(anyhow::anyhow!("{}", text.trim_start_matches("portico: ").trim_end()).into())
        }
        (status, _) => Err(anyhow::anyhow!(
            "the admin API on {addr} refused the reload ({status}): {}",
            body["error"].as_str().unwrap_or(answer.body.trim())
        )
        .into()),
    })
}

/// `portico status [-c FILE] [--json]`.
pub fn status(path: &Path, json: bool) -> Result<(), Failure> {
    let config = check::load(path)?;
    let Some(listen) = config.admin.listen else {
        return Err(anyhow::anyhow!(
            "the admin API is off in {} ([admin] listen = \"off\"): `portico status` needs it",
            path.display()
        )
        .into());
    };
    let addr = client_addr(listen);
    match client::status(addr) {
        Ok((status, raw)) => {
            if json {
                print!("{raw}");
            } else {
                print!("{}", portico_admin::table::render(&status));
            }
            Ok(())
        }
        Err(ClientError::Unreachable { source, .. }) => Err(anyhow::anyhow!(
            "no running instance: nothing answers on {addr}, the admin API of {} ({source})",
            path.display()
        )
        .into()),
        Err(e) => Err(anyhow::Error::from(e).into()),
    }
}
