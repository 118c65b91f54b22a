//! The `portico` binary: command line, wiring and signals. The work happens in the library
//! crates: `portico-config` (file -> typed config), `portico-proxy` (data plane),
//! `portico-balance` (pools), `portico-vrrp` (failover), `portico-testkit` (echo backend).

mod check;
mod cli;
mod demo;
mod echo;
mod exit;
mod ha;
mod logging;
mod plane;
mod reload;
mod run;
mod signals;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Command};

/// mimalloc: measured 5-8% less proxy CPU per request than glibc malloc on the keep-alive
/// benchmark (many small, short-lived allocations spread over worker threads).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run { config } => run::run(&cli::config_path(config)),
        Command::Check { config } => check::check(&cli::config_path(config)),
        Command::Reload { config } => run::reload(&cli::config_path(config)),
        Command::Demo { listen } => demo::demo(listen),
        Command::Echo { listen, name } => echo::echo(listen, name),
        Command::Version => {
            println!("portico {}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("{failure}");
            failure.code()
        }
    }
}
