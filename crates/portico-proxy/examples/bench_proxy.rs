//! Run the data plane alone from a config file (no CLI, no admin, no VRRP), for profiling:
//! `cargo run --release -p portico-proxy --example bench_proxy -- portico.toml`.
//! Stops on Ctrl-C / SIGTERM (process exit).

use std::sync::Arc;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let Some(path) = std::env::args().nth(1) else {
        eprintln!("usage: bench_proxy CONFIG");
        std::process::exit(1);
    };
    let config = match portico_config::load(std::path::Path::new(&path)) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(1);
        }
    };
    let server = match portico_proxy::Server::start(
        Arc::new(config),
        portico_balance::Registry::default(),
    ) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    eprintln!("serving on {:?}", server.bound_addrs());
    server.wait();
}
