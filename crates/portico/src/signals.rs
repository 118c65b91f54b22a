//! Unix signals: SIGTERM/SIGINT stop (a second one stops at once), SIGHUP reload, SIGUSR2
//! binary upgrade.

use anyhow::Context as _;
use tokio::signal::unix::{Signal, SignalKind, signal};

/// What a signal asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    Stop,
    Reload,
    Upgrade,
}

/// The signals Portico listens to, registered once.
pub struct Signals {
    term: Signal,
    int: Signal,
    hup: Signal,
    usr2: Signal,
}

impl Signals {
    /// Register handlers; must be called inside a tokio runtime.
    pub fn new() -> anyhow::Result<Signals> {
        Ok(Signals {
            term: signal(SignalKind::terminate()).context("cannot handle SIGTERM")?,
            int: signal(SignalKind::interrupt()).context("cannot handle SIGINT")?,
            hup: signal(SignalKind::hangup()).context("cannot handle SIGHUP")?,
            usr2: signal(SignalKind::user_defined2()).context("cannot handle SIGUSR2")?,
        })
    }

    /// Wait for the next signal.
    pub async fn next(&mut self) -> Event {
        tokio::select! {
            _ = self.term.recv() => Event::Stop,
            _ = self.int.recv() => Event::Stop,
            _ = self.hup.recv() => Event::Reload,
            _ = self.usr2.recv() => Event::Upgrade,
        }
    }

    /// Wait for the next stop signal, ignoring reloads and upgrades.
    pub async fn next_stop(&mut self) {
        while self.next().await != Event::Stop {}
    }
}
