//! Process logging: `tracing` to stderr, filtered by `PORTICO_LOG` (default `info`, with
//! rustls' own log records at `error` only: it warns once per handshake about client quirks
//! such as an IP address sent as SNI, which a client could use to flood the log; Portico
//! logs failed handshakes itself at debug level).

use std::io::IsTerminal as _;

use tracing_subscriber::EnvFilter;

pub fn init() {
    let filter = EnvFilter::try_from_env("PORTICO_LOG")
        .unwrap_or_else(|_| EnvFilter::new("info,rustls=error"));
    // A second init (tests, demo) is harmless: keep the first subscriber.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .try_init();
}
