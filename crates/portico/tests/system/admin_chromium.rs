//! The dashboard in a real headless Chromium (Debian's `chromium`), driven over the DevTools
//! protocol: the page shows the servers, follows a state change made through the API
//! within a few seconds, and its Drain button drains a server. A screenshot is saved (to
//! `$PORTICO_DASHBOARD_PNG` when set: `docs/img/dashboard.png` is made that way).
//!
//! Chromium missing: skipped with a reason, a failure under `CI=true`.

use crate::support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use base64::Engine as _;
use futures_util::{SinkExt as _, StreamExt as _};
use portico_admin::client::call;
use portico_testkit::echo::EchoServer;
use portico_testkit::peers::require;
use serde_json::{Value, json};
use support::net::{free_port, local};
use support::process::{ChildGuard, start_portico};
use support::{TempDir, eventually, http, report};
use tokio_tungstenite::tungstenite::Message;

const TEST: &str = "admin_chromium";
const T10: Duration = Duration::from_secs(10);
const T30: Duration = Duration::from_secs(30);

fn find_chromium() -> Result<PathBuf, String> {
    ["chromium", "chromium-browser"]
        .iter()
        .find_map(|name| {
            std::env::var_os("PATH").and_then(|paths| {
                std::env::split_paths(&paths)
                    .map(|d| d.join(name))
                    .find(|p| p.is_file())
            })
        })
        .ok_or_else(|| "chromium not installed (apt-get install chromium)".to_string())
}

/// Headless Chromium with remote debugging on a port it picks (read back from the
/// `DevToolsActivePort` file of its profile folder).
struct Browser {
    /// Stops Chromium when dropped.
    _child: ChildGuard,
    port: u16,
}

impl Browser {
    fn start(bin: &Path, profile: &Path, log_dir: &Path) -> Browser {
        let mut cmd = Command::new(bin);
        cmd.args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--remote-debugging-address=127.0.0.1",
            "--remote-debugging-port=0",
            "--window-size=1360,1000",
            "--hide-scrollbars",
            "about:blank",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .stdin(Stdio::null());
        let mut child = ChildGuard::spawn("chromium", cmd, log_dir);
        let port = eventually(T30, "Chromium's DevTools port", || {
            child.assert_running();
            std::fs::read_to_string(profile.join("DevToolsActivePort"))
                .ok()
                .and_then(|s| s.lines().next()?.trim().parse().ok())
        });
        Browser {
            _child: child,
            port,
        }
    }

    /// The DevTools WebSocket of the first page.
    fn page_ws(&self) -> String {
        eventually(T30, "a DevTools page target", || {
            let r = http::get(local(self.port), "/json/list").ok()?;
            let pages: Value = serde_json::from_slice(&r.body).ok()?;
            pages.as_array()?.iter().find_map(|p| {
                (p["type"] == "page")
                    .then(|| p["webSocketDebuggerUrl"].as_str().map(str::to_string))
                    .flatten()
            })
        })
    }
}

/// A DevTools protocol session over one WebSocket.
struct Cdp {
    ws: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    next: u64,
}

impl Cdp {
    async fn connect(url: &str) -> Cdp {
        let (ws, _) = tokio_tungstenite::connect_async(url)
            .await
            .unwrap_or_else(|e| panic!("DevTools WebSocket {url}: {e}"));
        Cdp { ws, next: 0 }
    }

    async fn call(&mut self, method: &str, params: Value) -> Value {
        self.next += 1;
        let id = self.next;
        let msg = json!({ "id": id, "method": method, "params": params }).to_string();
        self.ws
            .send(Message::text(msg))
            .await
            .unwrap_or_else(|e| panic!("send {method}: {e}"));
        let wait = async {
            while let Some(m) = self.ws.next().await {
                let m = m.unwrap_or_else(|e| panic!("DevTools socket: {e}"));
                let Ok(text) = m.to_text() else { continue };
                let v: Value = serde_json::from_str(text).unwrap_or_default();
                if v["id"] == id {
                    if let Some(err) = v.get("error") {
                        panic!("{method}: {err}");
                    }
                    return v["result"].clone();
                }
            }
            panic!("DevTools socket closed during {method}");
        };
        tokio::time::timeout(T30, wait)
            .await
            .unwrap_or_else(|_| panic!("{method}: no answer in 30 s"))
    }

    /// Evaluate `expr` in the page; its value (JSON).
    async fn eval(&mut self, expr: &str) -> Value {
        let r = self
            .call(
                "Runtime.evaluate",
                json!({ "expression": expr, "returnByValue": true }),
            )
            .await;
        r["result"]["value"].clone()
    }

    /// Wait until `expr` evaluates to `true`.
    async fn until(&mut self, what: &str, expr: &str, timeout: Duration) {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if self.eval(expr).await == Value::Bool(true) {
                return;
            }
            if tokio::time::Instant::now() > deadline {
                let text = self.eval("document.body.innerText").await;
                panic!("dashboard: {what} not seen within {timeout:?}; page text:\n{text}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// The state of server `addr` of upstream `web`.
fn state_of(admin: SocketAddr, addr: &str) -> String {
    let a = call(admin, "GET", "/api/v1/status", None, T10).unwrap_or_else(|e| panic!("{e}"));
    let s: portico_admin::status::Status =
        serde_json::from_str(&a.body).unwrap_or_else(|e| panic!("{e}"));
    s.upstreams
        .iter()
        .filter(|u| u.name == "web")
        .flat_map(|u| &u.servers)
        .find(|sv| sv.addr == addr)
        .map(|sv| sv.state.clone())
        .unwrap_or_default()
}

fn row(addr: &str) -> String {
    format!("document.querySelector('tr[data-server=\"{addr}\"]')")
}

#[test]
fn dashboard_shows_servers_follows_changes_and_drains_on_click() {
    let Some(chromium) = require(find_chromium()) else {
        return;
    };
    let dir = TempDir::new("admin-chromium");
    let backends: Vec<EchoServer> = ["app-1", "app-2", "app-3"]
        .iter()
        .map(|n| EchoServer::start(local(0), n).unwrap_or_else(|e| panic!("{e}")))
        .collect();
    let addrs: Vec<String> = backends
        .iter()
        .map(|b| b.url().trim_start_matches("http://").to_string())
        .collect();
    let (admin, proxy_addr, ws_addr) = (local(free_port()), local(free_port()), local(free_port()));
    let https = local(free_port());
    // A certificate with 47 days left, as a real one would show.
    let leaf = portico_testkit::certs::TestCa::new("dashboard test CA").leaf_with(
        &["shop.example.test"],
        |p| {
            p.not_after = time::OffsetDateTime::now_utc() + time::Duration::days(47);
        },
    );
    dir.write("shop.pem", &leaf.chain_pem);
    dir.write("shop.key", &leaf.key_pem);
    let list = |v: &[String]| {
        v.iter()
            .map(|a| format!("\"{a}\""))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let config = dir.write(
        "portico.toml",
        format!(
            "[server]\nstate_dir = \"state\"\naccess_log = \"off\"\nthreads = 2\n\n\
             [admin]\nlisten = \"{admin}\"\n\n\
             [upstreams.web]\nservers = [{}]\nbalance = \"least_conn\"\nslow_start = \"20s\"\n\
             [upstreams.web.health]\ntype = \"http\"\ninterval = \"500ms\"\n\n\
             [upstreams.chat]\nservers = [{}, {{ addr = \"{}\", backup = true }}]\nbalance = \"ip_hash\"\n\
             [upstreams.chat.health]\ntype = \"websocket\"\ninterval = \"1s\"\n\n\
             [[sites]]\nlisten = [\"{proxy_addr}\"]\nroutes = [{{ path = \"/\", proxy = \"web\" }}]\n\n\
             [[sites]]\nlisten = [\"{ws_addr}\"]\nroutes = [{{ path = \"/\", proxy = \"chat\", websocket = true }}]\n\n\
             [[sites]]\nlisten = [\"{https}\"]\nhosts = [\"shop.example.test\"]\nhttp_redirect = false\n\
             tls = {{ cert = \"shop.pem\", key = \"shop.key\" }}\nroutes = [{{ path = \"/\", proxy = \"web\" }}]\n",
            list(&addrs),
            list(&addrs[..2]),
            addrs[2]
        ),
    );
    let mut proxy = start_portico(&config, dir.path());
    proxy.wait_for_port(admin, T10);
    proxy.wait_for_port(proxy_addr, T10);

    // Steady traffic so the page shows request rates.
    let stop = Arc::new(AtomicBool::new(false));
    let load = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut conn = http::Conn::connect(proxy_addr).ok();
            for _ in 0..100_000 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                match conn.as_mut().map(|c| c.get("/")) {
                    Some(Ok(_)) => {}
                    _ => conn = http::Conn::connect(proxy_addr).ok(),
                }
                std::thread::sleep(Duration::from_millis(4));
            }
        })
    };

    let browser = Browser::start(&chromium, &dir.path().join("profile"), dir.path());
    let ws_url = browser.page_ws();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    let shot = runtime.block_on(async {
        let mut cdp = Cdp::connect(&ws_url).await;
        cdp.call("Page.enable", json!({})).await;
        cdp.call(
            "Emulation.setDeviceMetricsOverride",
            json!({ "width": 1360, "height": 980, "deviceScaleFactor": 1, "mobile": false }),
        )
        .await;
        cdp.call("Page.navigate", json!({ "url": format!("http://{admin}/") }))
            .await;

        // 1. The servers are shown.
        cdp.until(
            "both upstreams with their servers",
            &format!(
                "document.querySelectorAll('[data-upstream=\"web\"] tr[data-server]').length === 3 && \
                 document.querySelectorAll('[data-upstream=\"chat\"] tr[data-server]').length === 3 && \
                 {} !== null",
                row(&addrs[0])
            ),
            T30,
        )
        .await;
        cdp.until("the live indicator", "document.getElementById('live').innerText.includes('live')", T10)
            .await;

        // 2. A change made elsewhere (the API) shows within a few seconds.
        let web1 = format!("/api/v1/upstreams/web/servers/{}/disable", addrs[1]);
        let a = call(admin, "POST", &web1, None, T10).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(a.status, 200, "{}", a.body);
        let t = std::time::Instant::now();
        cdp.until(
            "the disabled state",
            &format!(
                "document.querySelector('[data-upstream=\"web\"] tr[data-server=\"{}\"] .state').innerText.trim().toLowerCase() === 'disabled'",
                addrs[1]
            ),
            Duration::from_secs(5),
        )
        .await;
        let followed = t.elapsed();

        // 3. A click on Drain drains the server.
        cdp.eval(&format!(
            "document.querySelector('[data-upstream=\"web\"] tr[data-server=\"{}\"] button.drain').click(), true",
            addrs[0]
        ))
        .await;
        eventually(T10, "the click to drain the server", || {
            (state_of(admin, &addrs[0]) == "draining").then_some(())
        });
        cdp.until(
            "the draining state after the click",
            &format!(
                "document.querySelector('[data-upstream=\"web\"] tr[data-server=\"{}\"] .state').innerText.trim().toLowerCase() === 'draining'",
                addrs[0]
            ),
            Duration::from_secs(5),
        )
        .await;
        // Back to a normal picture for the screenshot: one draining, the rest serving.
        let enable = format!("/api/v1/upstreams/web/servers/{}/enable", addrs[1]);
        call(admin, "POST", &enable, None, T10).unwrap_or_else(|e| panic!("{e}"));
        cdp.until(
            "the re-enabled server",
            &format!(
                "document.querySelector('[data-upstream=\"web\"] tr[data-server=\"{}\"] .state').innerText.trim().toLowerCase() === 'up'",
                addrs[1]
            ),
            Duration::from_secs(5),
        )
        .await;
        // Two reloads for the history: one refused (its diagnostics show), one applied.
        let good = std::fs::read_to_string(&config).unwrap_or_default();
        std::fs::write(&config, good.replace("balance = \"least_conn\"", "balance = \"least_con\""))
            .unwrap_or_else(|e| panic!("{e}"));
        let a = call(admin, "POST", "/api/v1/reload", None, T30).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(a.status, 422, "{}", a.body);
        std::fs::write(&config, &good).unwrap_or_else(|e| panic!("{e}"));
        let a = call(admin, "POST", "/api/v1/reload", None, T30).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(a.status, 200, "{}", a.body);
        cdp.until(
            "the reload history",
            "document.getElementById('reloads').innerText.includes('least_con')",
            Duration::from_secs(5),
        )
        .await;
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let png = cdp
            .call("Page.captureScreenshot", json!({ "format": "png", "captureBeyondViewport": true }))
            .await;
        let data = png["data"].as_str().unwrap_or_default().to_string();
        (followed, data)
    });
    stop.store(true, Ordering::Relaxed);
    let _ = load.join();
    let (followed, data) = shot;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(data)
        .unwrap_or_else(|e| panic!("screenshot: {e}"));
    assert!(
        bytes.starts_with(b"\x89PNG") && bytes.len() > 10_000,
        "a real screenshot"
    );
    let out = std::env::var_os("PORTICO_DASHBOARD_PNG")
        .map_or_else(|| dir.path().join("dashboard.png"), PathBuf::from);
    std::fs::write(&out, &bytes).unwrap_or_else(|e| panic!("{}: {e}", out.display()));
    drop(browser);
    report(&format!(
        "{TEST}: servers shown, API change followed in {} ms, Drain click drained; screenshot {} ({} bytes)",
        followed.as_millis(),
        out.display(),
        bytes.len()
    ));
}
