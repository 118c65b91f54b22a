//! Rough pick-path cost: `cargo run --release -p portico-balance --example pick_bench`.
//!
//! Picks (and drops) a server `N` times per thread for each algorithm on a pool of 8
//! servers with mixed weights, and prints nanoseconds per pick.

use std::sync::Arc;
use std::time::{Duration, Instant};

use portico_balance::{PickKey, Pool, Registry};
use portico_config::{Balance, HashKey, ServerAddr, ServerSpec, Upstream};

const N: u32 = 2_000_000;

fn upstream(balance: Balance) -> Upstream {
    let servers = (1..=8u32)
        .map(|i| ServerSpec {
            addr: ServerAddr {
                host: format!("10.0.0.{i}"),
                port: 80,
            },
            weight: 1 + i % 3,
            backup: false,
            down: false,
            max_conns: 0,
        })
        .collect();
    Upstream {
        name: "bench".into(),
        servers,
        balance,
        hash_key: HashKey::ClientIp,
        sticky_cookie: None,
        sticky_cookie_max_age: None,
        connect_timeout: Duration::from_secs(5),
        read_timeout: Duration::from_secs(60),
        send_timeout: Duration::from_secs(60),
        keepalive: 32,
        max_fails: 1,
        fail_timeout: Duration::from_secs(10),
        retries: 1,
        slow_start: Duration::ZERO,
        tls: None,
        health: None,
        discover: None,
    }
}

fn run(pool: &Arc<Pool>, threads: u32) -> f64 {
    let start = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let pool = Arc::clone(pool);
            std::thread::spawn(move || {
                let mut ok = 0u32;
                for i in 0..N {
                    let ip =
                        std::net::Ipv4Addr::from(0x0a00_0000 + (i.wrapping_mul(2_654_435_761) ^ t));
                    let key = PickKey {
                        client_ip: ip.into(),
                        hash: None,
                    };
                    if pool.pick(&key, &[]).is_ok() {
                        ok += 1;
                    }
                }
                ok
            })
        })
        .collect();
    let ok: u32 = handles.into_iter().map(|h| h.join().unwrap_or(0)).sum();
    assert_eq!(ok, N * threads);
    start.elapsed().as_nanos() as f64 / f64::from(N)
}

fn main() {
    for balance in [
        Balance::RoundRobin,
        Balance::LeastConn,
        Balance::RandomTwo,
        Balance::IpHash,
        Balance::Hash,
    ] {
        let pool = Arc::new(Pool::new(&upstream(balance), &Registry::new()));
        let one = run(&pool, 1);
        let two = run(&pool, 2);
        println!(
            "{balance:?}: {one:.0} ns/pick (1 thread), {two:.0} ns per pick-pair wall (2 threads)"
        );
    }
}
