//! `portico demo`: two echo backends and the proxy on 127.0.0.1 with the embedded default
//! config (`demo.toml`), and a list of things to try.

use std::net::SocketAddr;

use anyhow::Context as _;
use portico_testkit::echo::EchoServer;

use crate::exit::Failure;
use crate::{logging, run};

const DEMO_CONFIG: &str = include_str!("demo.toml");
const DEMO_LISTEN: &str = "127.0.0.1:8080";
const DEMO_ADMIN: &str = "127.0.0.1:9900";
const DEMO_PAGE: &str = "<!doctype html><title>Portico demo</title><h1>Served by Portico</h1>\n";

pub fn demo(listen: SocketAddr) -> Result<(), Failure> {
    logging::init();
    let dir = std::env::temp_dir().join(format!("portico-demo-{}", std::process::id()));
    let outcome = demo_in(&dir, listen);
    let _ = std::fs::remove_dir_all(&dir);
    outcome
}

fn demo_in(dir: &std::path::Path, listen: SocketAddr) -> Result<(), Failure> {
    let www = dir.join("www/static");
    std::fs::create_dir_all(&www).with_context(|| format!("cannot create {}", www.display()))?;
    std::fs::write(www.join("index.html"), DEMO_PAGE).context("cannot write the demo page")?;
    let mut text = DEMO_CONFIG.replace(DEMO_LISTEN, &listen.to_string());
    // The dashboard goes on another port when 9900 is taken (e.g. by a running instance).
    if std::net::TcpListener::bind(DEMO_ADMIN).is_err() {
        text = text.replace(DEMO_ADMIN, "127.0.0.1:0");
    }
    let path = dir.join("portico-demo.toml");
    std::fs::write(&path, &text).with_context(|| format!("cannot write {}", path.display()))?;
    let config = portico_config::parse(&text, &path)
        .map_err(|e| Failure::InvalidConfig(format!("embedded demo config: {e}")))?;

    let mut backends = Vec::new();
    for (addr, name) in [("127.0.0.1:18081", "demo-a"), ("127.0.0.1:18082", "demo-b")] {
        let addr: SocketAddr = addr.parse().context("demo backend address")?;
        let echo = EchoServer::start(addr, name)
            .with_context(|| format!("cannot start echo backend {name} on {addr}"))?;
        backends.push(echo);
    }
    run::serve(
        config,
        &mut crate::handover::Handover::default(),
        |server, admin| {
            let addr = server.all_addrs().first().copied().unwrap_or(listen);
            print_tour(addr, admin, &path);
        },
    )
}

fn print_tour(addr: SocketAddr, admin: Option<SocketAddr>, config: &std::path::Path) {
    let dashboard = admin.map_or_else(String::new, |a| {
        format!(
            "  dashboard:  http://{a}/   live servers, drain/enable buttons; metrics at http://{a}/metrics\n"
        )
    });
    println!(
        "\
Portico demo is running (Ctrl-C to stop). Config: {config}
  proxy:      http://{addr}/  -> two echo backends (demo-a on 127.0.0.1:18081, demo-b on :18082)
{dashboard}
Try:
  curl -s http://{addr}/some/path        round robin: run it twice, demo-a then demo-b
  curl -s http://{addr}/sticky/x         ip_hash: always the same backend for you
  curl -s http://{addr}/hello            a fixed answer (respond)
  curl -si http://{addr}/old             301 redirect to /hello
  curl -s http://{addr}/static/          a static page (root)
  curl -s -d 'hello body' http://{addr}/echo   POST bodies are echoed back
  WebSocket:  python3 -m websockets ws://{addr}/ws
          or  npx wscat -c ws://{addr}/ws      (every message is echoed back)
  portico status -c {config}   what the dashboard shows, as a table",
        config = config.display()
    );
}
