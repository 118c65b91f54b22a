//! WebSocket ping-pong load for quick measurements (the shape of the benchmark anchors'
//! `ws-bench-client.js`): CONNS connections each send a SIZE-byte text message and wait for
//! its echo, for SECS seconds; prints round trips per second.
//! `cargo run --release -p portico-proxy --example ws_pingpong -- ws://127.0.0.1:8081/ 100 10 32`

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let url = args
        .get(1)
        .cloned()
        .unwrap_or_else(|| "ws://127.0.0.1:8081/".into());
    let conns: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(100);
    let secs: u64 = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(10);
    let size: usize = args.get(4).and_then(|s| s.parse().ok()).unwrap_or(32);
    let count = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let payload = "x".repeat(size);
    let mut tasks = Vec::new();
    for _ in 0..conns {
        let (mut ws, _) = match tokio_tungstenite::connect_async(url.as_str()).await {
            Ok(c) => c,
            Err(e) => {
                eprintln!("connect: {e}");
                std::process::exit(1);
            }
        };
        let (count, stop, payload) = (count.clone(), stop.clone(), payload.clone());
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                if ws.send(Message::text(payload.as_str())).await.is_err() {
                    break;
                }
                match ws.next().await {
                    Some(Ok(_)) => {
                        count.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => break,
                }
            }
            let _ = ws.close(None).await;
        }));
    }
    let start = Instant::now();
    tokio::time::sleep(Duration::from_secs(secs)).await;
    stop.store(true, Ordering::Relaxed);
    let n = count.load(Ordering::Relaxed);
    let elapsed = start.elapsed().as_secs_f64();
    for t in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(2), t).await;
    }
    println!("round_trips={n} per_sec={:.0}", n as f64 / elapsed);
}
