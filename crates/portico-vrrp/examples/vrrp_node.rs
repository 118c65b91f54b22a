//! Run only the `[[vrrp]]` part of a Portico config file: a development and measurement aid
//! for the VRRP driver that does not need the data plane.
//!
//! `cargo run -p portico-vrrp --example vrrp_node -- FILE` (as root, usually under
//! `ip netns exec`). Listener tracks probe the sites' `listen` addresses. SIGTERM/SIGINT stop
//! gracefully (priority-0 advert, addresses removed).

use std::path::PathBuf;

use portico_config::VrrpTrackKind;
use portico_vrrp::linux;
use portico_vrrp::track::{Check, Tracked};
use tokio::signal::unix::{SignalKind, signal};

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let Some(path) = std::env::args_os().nth(1).map(PathBuf::from) else {
        eprintln!("usage: vrrp_node FILE");
        return std::process::ExitCode::from(1);
    };
    let config = match portico_config::load(&path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return std::process::ExitCode::from(1);
        }
    };
    let listeners: Vec<_> = config.sites.iter().flat_map(|s| s.listen.clone()).collect();
    let streams: Vec<_> = config
        .streams
        .iter()
        .flat_map(|s| s.listen.clone())
        .collect();
    let mut handles = Vec::new();
    for inst in &config.vrrp {
        let tracked = inst
            .track
            .iter()
            .filter_map(|t| {
                let check = match &t.kind {
                    VrrpTrackKind::Listeners => Check::Listeners {
                        http: listeners.clone(),
                        tcp: streams.clone(),
                    },
                    VrrpTrackKind::Script { path, interval } => Check::Script {
                        path: path.clone(),
                        interval: *interval,
                    },
                    VrrpTrackKind::Upstream(_) => return None,
                };
                Some(Tracked {
                    check,
                    weight: t.weight,
                })
            })
            .collect();
        match linux::start(inst, tracked, None).await {
            Ok(h) => handles.push(h),
            Err(e) => {
                eprintln!("VRRP instance {}: {e}", inst.name);
                return std::process::ExitCode::from(2);
            }
        }
    }
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        return std::process::ExitCode::from(2);
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    for h in handles {
        h.shutdown().await;
    }
    std::process::ExitCode::SUCCESS
}
