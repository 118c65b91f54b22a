//! Command-line interface (SPEC.md "Command line"), parsed with clap.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{CommandFactory as _, Parser, Subcommand, ValueEnum};

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
    /// Replace the running binary without dropping connections: the running instance starts
    /// the binary now at its path on the same listening sockets, then drains (as SIGUSR2).
    Upgrade {
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
    /// Keep a server registered in the cluster (`[cluster]` of FILE) while this runs, for the
    /// nodes' upstream NAME with `discover = "cluster"`; deregister on SIGTERM/SIGINT. A
    /// process that dies leaves the server registered until its lease expires (`--ttl`).
    Register {
        #[arg(short = 'c', long = "config", value_name = "FILE")]
        config: Option<PathBuf>,
        /// The upstream the server joins.
        #[arg(long, value_name = "NAME")]
        upstream: String,
        /// The server's address as the nodes reach it.
        #[arg(long, value_name = "HOST:PORT")]
        addr: String,
        /// Its weight (1-1000000).
        #[arg(long, value_name = "N", default_value_t = 1)]
        weight: u32,
        /// Time to live of the registration's lease: how long a server whose register
        /// process died stays registered.
        #[arg(long, value_name = "DURATION", default_value = "10s")]
        ttl: String,
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
    /// Convert an nginx or keepalived configuration into a Portico one, then check it. What
    /// is not carried over is listed on stderr as FILE:LINE: kind: `directive`: why.
    Import(ImportArgs),
    /// Print shell completions for SHELL (bash, zsh, fish, elvish, powershell).
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff), e.g. `portico man | man -l -`.
    Man,
    /// Print the version.
    Version,
}

/// `portico import` (see `import.rs`).
#[derive(Debug, clap::Args)]
pub struct ImportArgs {
    /// The kind of configuration FILE is.
    #[arg(value_enum)]
    pub kind: ImportKind,
    /// The configuration to convert (nginx: the main file; includes are followed).
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// Write the Portico configuration here (default: stdout).
    #[arg(short = 'o', long = "output", value_name = "OUT")]
    pub output: Option<PathBuf>,
    /// Replace OUT if it exists.
    #[arg(long)]
    pub force: bool,
    /// nginx: give certbot/getssl sites `tls = "acme"` (Portico obtains and renews their
    /// certificates) with this ACME account contact.
    #[arg(long, value_name = "EMAIL")]
    pub acme_email: Option<String>,
    /// nginx: the prefix relative `root` and log paths resolve against (`nginx -p`;
    /// default: the parent of FILE's folder, as in PREFIX/conf/nginx.conf).
    #[arg(long, value_name = "DIR")]
    pub nginx_prefix: Option<PathBuf>,
}

/// What `portico import` reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ImportKind {
    Nginx,
    Keepalived,
}

/// The clap definition, for completions and the man page.
pub fn command() -> clap::Command {
    Cli::command()
}

/// The config file to use: `-c FILE`, else `$PORTICO_CONFIG`, else `./portico.toml`.
pub fn config_path(flag: Option<PathBuf>) -> PathBuf {
    flag.or_else(|| std::env::var_os("PORTICO_CONFIG").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("portico.toml"))
}
