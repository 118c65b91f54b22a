//! Command-line interface (SPEC.md "Command line"), parsed with clap.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// One binary for L7/L4 load balancing, WebSockets, TLS/ACME and VRRP failover.
#[derive(Debug, Parser)]
#[command(name = "portico", version, about, disable_version_flag = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the proxy (FILE default: $PORTICO_CONFIG, else ./portico.toml).
    Run {
        #[arg(short = 'c', long = "config", value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// Validate a config like `nginx -t`: every problem as FILE:LINE:COL; exit 0 valid, 1 invalid.
    Check {
        #[arg(short = 'c', long = "config", value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// Ask the running instance to reload its configuration.
    Reload {
        #[arg(short = 'c', long = "config", value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// What the running instance is doing: servers, certificates, VRRP, reloads (admin API).
    Status {
        #[arg(short = 'c', long = "config", value_name = "FILE")]
        config: Option<PathBuf>,
        /// Print the status document as JSON (for scripts).
        #[arg(long)]
        json: bool,
    },
    /// Self-contained tour: two echo backends and the proxy on 127.0.0.1.
    Demo {
        /// Where the demo proxy listens.
        #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
    },
    /// HTTP + WebSocket echo backend for demos, tests and benchmarks.
    Echo {
        /// Address to listen on, e.g. 127.0.0.1:8010.
        #[arg(long, value_name = "ADDR")]
        listen: SocketAddr,
        /// Name the backend answers with (default: the listen address).
        #[arg(long, value_name = "NAME")]
        name: Option<String>,
    },
    /// Print the version.
    Version,
}

/// The config file to use: `-c FILE`, else `$PORTICO_CONFIG`, else `./portico.toml`.
pub fn config_path(flag: Option<PathBuf>) -> PathBuf {
    flag.or_else(|| std::env::var_os("PORTICO_CONFIG").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("portico.toml"))
}
