//! The `portico` binary: command line, wiring and signals. The work happens in the library
//! crates: `portico-config` (file -> typed config), `portico-proxy` (data plane),
//! `portico-balance` (pools), `portico-vrrp` (failover), `portico-testkit` (echo backend),
//! `portico-import` (nginx / keepalived configurations -> Portico's).

mod admin;
mod admin_client;
mod allocator;
mod check;
mod cli;
mod cluster;
mod cluster_acme;
mod demo;
mod echo;
mod exit;
mod fdlimit;
mod fds;
mod ha;
mod handover;
mod import;
mod logging;
mod manual;
mod notify;
mod plane;
mod reload;
mod run;
mod signals;
mod statefile;
mod upgrade;
mod vrrp_handover;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run { config } => {
            // Before any thread starts: descriptors handed over by a binary upgrade.
            let handover = handover::Handover::take_from_env();
            allocator::start_housekeeping();
            run::run(&cli::config_path(config), handover)
        }
        Command::Check { config } => check::check(&cli::config_path(config)),
        Command::Reload { config } => run::reload(&cli::config_path(config)),
        Command::Upgrade { config } => upgrade::request(&cli::config_path(config)),
        Command::Status { config, json } => admin_client::status(&cli::config_path(config), json),
        Command::Register {
            config,
            upstream,
            addr,
            weight,
            ttl,
        } => cluster::register(&cli::config_path(config), &upstream, &addr, weight, &ttl),
        Command::Demo { listen } => demo::demo(listen),
        Command::Echo { listen, name } => echo::echo(listen, name),
        Command::Import(args) => import::import(args),
        Command::Completions { shell } => manual::completions(shell),
        Command::Man => manual::man(),
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
