//! Runs only the `[[streams]]` of a config file (for benchmarks and manual checks until
//! the `portico` binary starts streams): `stream_node CONFIG`. Runs until killed, or for
//! `STREAM_NODE_SECS` seconds (default: one hour).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

fn main() {
    let path = std::env::args().nth(1).expect("usage: stream_node CONFIG");
    let config = portico_config::load(std::path::Path::new(&path)).unwrap_or_else(|e| {
        eprintln!("{e}");
        std::process::exit(2)
    });
    let running =
        portico_stream::StreamServer::start(Arc::new(config), portico_balance::Registry::new())
            .unwrap_or_else(|e| {
                eprintln!("{e}");
                std::process::exit(2)
            });
    for (conf, bound) in running.bound_addrs() {
        println!("listening {conf} {bound}");
    }
    let secs: u64 = std::env::var("STREAM_NODE_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3600);
    std::thread::sleep(std::time::Duration::from_secs(secs));
    running.stop_now();
    running.wait();
}
