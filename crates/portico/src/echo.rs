//! `portico echo`: the HTTP + WebSocket echo backend (from `portico-testkit`) as a command.

use std::net::SocketAddr;

use anyhow::Context as _;

use crate::exit::Failure;
use crate::{logging, signals::Signals};

pub fn echo(listen: SocketAddr, name: Option<String>) -> Result<(), Failure> {
    logging::init();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    runtime.block_on(async {
        let mut signals = Signals::new()?;
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("cannot listen on {listen}"))?;
        let bound = listener
            .local_addr()
            .context("cannot read the bound address")?;
        let name = name.unwrap_or_else(|| bound.to_string());
        println!("portico echo {name} listening on {bound}");
        tokio::select! {
            served = portico_testkit::echo::serve(listener, name.into()) => {
                served.context("echo server failed")?;
            }
            _ = signals.next_stop() => {}
        }
        Ok::<(), anyhow::Error>(())
    })?;
    Ok(())
}
