//! TCP bench tool for `scripts/bench-tcp.sh` (bench/tcp/README.md):
//!
//! - `tcp_bench serve ADDR`: the origin. Per connection: answers the first byte with one
//!   byte `k`, then reads and discards until EOF.
//! - `tcp_bench bulk ADDR CONNS SECS`: CONNS connections each send 64 KiB writes for SECS
//!   seconds after the handshake byte; prints `bytes_per_s BYTES_TOTAL SECONDS`.
//! - `tcp_bench connrate ADDR CONC SECS`: CONC loops of connect, 1 byte, wait for `k`,
//!   close; prints `conns_per_s COUNT SECONDS ERRORS`.
//! - `tcp_bench idle ADDR N SECS`: opens N connections that each complete the handshake
//!   byte (so the proxy has connected them through), prints `ready N`, holds them SECS.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |i: usize| args.get(i).cloned().unwrap_or_else(|| usage());
    let addr: SocketAddr = arg(2).parse().unwrap_or_else(|_| usage());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    match arg(1).as_str() {
        "serve" => rt.block_on(serve(addr)),
        "bulk" => rt.block_on(bulk(addr, arg(3).parse().unwrap(), arg(4).parse().unwrap())),
        "connrate" => rt.block_on(connrate(
            addr,
            arg(3).parse().unwrap(),
            arg(4).parse().unwrap(),
        )),
        "idle" => rt.block_on(idle(addr, arg(3).parse().unwrap(), arg(4).parse().unwrap())),
        _ => usage(),
    }
}

fn usage() -> ! {
    eprintln!("usage: tcp_bench serve|bulk|connrate|idle ADDR [N SECS]");
    std::process::exit(2)
}

async fn serve(addr: SocketAddr) {
    let l = TcpListener::bind(addr).await.unwrap();
    loop {
        let Ok((mut s, _)) = l.accept().await else {
            continue;
        };
        tokio::spawn(async move {
            let _ = s.set_nodelay(true);
            let mut buf = vec![0u8; 64 * 1024];
            match s.read(&mut buf).await {
                Ok(n) if n > 0 => {}
                _ => return,
            }
            if s.write_all(b"k").await.is_err() {
                return;
            }
            while let Ok(n) = s.read(&mut buf).await {
                if n == 0 {
                    break;
                }
            }
        });
    }
}

async fn handshake(addr: SocketAddr) -> std::io::Result<TcpStream> {
    let mut s = TcpStream::connect(addr).await?;
    s.set_nodelay(true)?;
    s.write_all(b"h").await?;
    let mut k = [0u8; 1];
    s.read_exact(&mut k).await?;
    Ok(s)
}

async fn bulk(addr: SocketAddr, conns: usize, secs: u64) {
    let total = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let end = start + Duration::from_secs(secs);
    let mut tasks = Vec::new();
    for _ in 0..conns {
        let total = total.clone();
        tasks.push(tokio::spawn(async move {
            let mut s = handshake(addr).await.unwrap();
            let chunk = vec![0x5au8; 64 * 1024];
            while Instant::now() < end {
                s.write_all(&chunk).await.unwrap();
                total.fetch_add(chunk.len() as u64, Ordering::Relaxed);
            }
            s.shutdown().await.unwrap();
            let mut rest = Vec::new();
            let _ = s.read_to_end(&mut rest).await;
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let secs = start.elapsed().as_secs_f64();
    let bytes = total.load(Ordering::Relaxed);
    println!("bytes_per_s {:.0} {bytes} {secs:.3}", bytes as f64 / secs);
}

async fn connrate(addr: SocketAddr, conc: usize, secs: u64) {
    let done = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let end = start + Duration::from_secs(secs);
    let mut tasks = Vec::new();
    for _ in 0..conc {
        let (done, errors) = (done.clone(), errors.clone());
        tasks.push(tokio::spawn(async move {
            while Instant::now() < end {
                match tokio::time::timeout(Duration::from_secs(5), handshake(addr)).await {
                    Ok(Ok(s)) => {
                        drop(s);
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let secs = start.elapsed().as_secs_f64();
    let n = done.load(Ordering::Relaxed);
    let e = errors.load(Ordering::Relaxed);
    println!("conns_per_s {:.0} {n} {secs:.3} {e}", n as f64 / secs);
}

async fn idle(addr: SocketAddr, n: usize, secs: u64) {
    let mut held = Vec::with_capacity(n);
    for _ in 0..n {
        held.push(handshake(addr).await.unwrap());
    }
    println!("ready {}", held.len());
    tokio::time::sleep(Duration::from_secs(secs)).await;
}
