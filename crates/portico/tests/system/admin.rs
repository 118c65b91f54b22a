//! The admin API of the real `portico` binary: status JSON for a config with sites (TLS
//! and plain), streams and health-checked upstreams; picks counted exactly; drain and
//! enable under load with 0 failed requests while the drained server's WebSocket keeps
//! echoing; disable; token and cross-origin refusals; a refused reload through the API
//! keeps the running config (and `portico reload` exits 1 with the diagnostics);
//! `portico status` (table, `--json`, not running, admin off).

use crate::support;
use crate::support::pebble_clients;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use pebble_clients::Ws;
use portico_admin::client::{Answer, call};
use portico_admin::status::Status;
use portico_testkit::echo::EchoServer;
use support::http;
use support::net::{free_port, local};
use support::process::{ChildGuard, portico, run_bounded, start_portico};
use support::{TempDir, eventually, report};

const T10: Duration = Duration::from_secs(10);

/// A running instance: its folder, config, admin and proxy addresses, echo backends.
struct Instance {
    dir: TempDir,
    config: PathBuf,
    admin: SocketAddr,
    proxy_addr: SocketAddr,
    proxy: ChildGuard,
    backends: Vec<EchoServer>,
}

impl Instance {
    /// [`start_in`] a new folder.
    fn start(tag: &str, admin_extra: &str, extra: &str) -> Instance {
        start_in(TempDir::new(tag), admin_extra, extra)
    }

    fn call(&self, method: &str, path: &str, token: Option<&str>) -> Answer {
        call(self.admin, method, path, token, T10)
            .unwrap_or_else(|e| panic!("{method} {path}: {e}\n{}", self.proxy.logs()))
    }

    fn status(&self) -> Status {
        let a = self.call("GET", "/api/v1/status", None);
        assert_eq!(a.status, 200, "{}", a.body);
        serde_json::from_str(&a.body).unwrap_or_else(|e| panic!("status JSON: {e}\n{}", a.body))
    }

    fn server_action(&self, addr: &str, action: &str) -> Answer {
        self.call(
            "POST",
            &format!("/api/v1/upstreams/app/servers/{addr}/{action}"),
            None,
        )
    }

    fn backend_addr(&self, i: usize) -> String {
        self.backends[i]
            .url()
            .trim_start_matches("http://")
            .to_string()
    }

    fn run_cli(&self, args: &[&str]) -> support::process::RunOutput {
        run_bounded(
            "portico-cli",
            portico(self.dir.path(), args),
            self.dir.path(),
            T10,
            Duration::ZERO,
        )
    }
}

fn metric(text: &str, prefix: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[test]
fn status_json_covers_sites_streams_certificates_and_checked_servers() {
    let ca = portico_testkit::certs::TestCa::new("admin test CA");
    let leaf = ca.leaf(&["admin.example.test"]);
    let (https, stream) = (local(free_port()), local(free_port()));
    // The certificate files live next to the config (written before start below).
    let extra = format!(
        "[[sites]]\nlisten = [\"{https}\"]\nhosts = [\"admin.example.test\"]\n\
         tls = {{ cert = \"site.pem\", key = \"site.key\" }}\nhttp_redirect = false\n\
         routes = [{{ path = \"/\", respond = \"tls\" }}]\n\n\
         [[streams]]\nlisten = [\"{stream}\"]\nupstream = \"app\"\n"
    );
    // The certificate files must exist before the instance starts.
    let dir = TempDir::new("admin-status");
    dir.write("site.pem", &leaf.chain_pem);
    dir.write("site.key", &leaf.key_pem);
    let inst = start_in(dir, "", &extra);
    let s = eventually(T10, "both servers probed", || {
        let s = inst.status();
        s.upstreams[0]
            .servers
            .iter()
            .all(|sv| sv.health.probes > 0)
            .then_some(s)
    });
    assert_eq!(s.version, env!("CARGO_PKG_VERSION"));
    assert!(s.config.file.ends_with("portico.toml"), "{}", s.config.file);
    assert_eq!(s.config.generation, 0);
    assert!(!s.admin.token_required);
    let protocols: Vec<&str> = s.listeners.iter().map(|l| l.protocol.as_str()).collect();
    assert_eq!(protocols, ["http", "https", "stream"], "{:?}", s.listeners);
    let app = &s.upstreams[0];
    assert_eq!(
        (app.name.as_str(), app.balance.as_str()),
        ("app", "round_robin")
    );
    assert_eq!(app.slow_start_seconds, 10.0);
    for sv in &app.servers {
        assert_eq!(sv.state, "up");
        assert_eq!(sv.health.kind.as_deref(), Some("http"));
        assert!(sv.health.healthy && sv.health.last_check_unix.is_some());
        assert_eq!(sv.slow_start_progress, 1.0);
    }
    assert_eq!(s.streams.len(), 1);
    assert_eq!(s.streams[0].upstreams, ["app"]);
    assert_eq!(s.certificates.len(), 1, "{:?}", s.certificates);
    let cert = &s.certificates[0];
    assert_eq!(cert.names, ["admin.example.test"]);
    assert_eq!(cert.source, "file");
    assert!(cert.days_left.is_some_and(|d| d > 1.0), "{cert:?}");
    assert!(s.vrrp.is_empty() && s.reloads.is_empty());

    // Picks are counted exactly: N requests through the proxy, N more picks.
    let picks = |s: &Status| -> u64 { s.upstreams[0].servers.iter().map(|sv| sv.picks).sum() };
    let before = picks(&inst.status());
    let mut conn = http::Conn::connect(inst.proxy_addr).unwrap_or_else(|e| panic!("{e}"));
    for _ in 0..50 {
        assert_eq!(conn.get("/n").unwrap_or_else(|e| panic!("{e}")).status, 200);
    }
    assert_eq!(picks(&inst.status()) - before, 50);
    let metrics = inst.call("GET", "/metrics", None).body;
    let selected: f64 = metrics
        .lines()
        .filter(|l| l.starts_with("portico_upstream_server_selected_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert_eq!(selected as u64, before + 50, "{metrics}");
    let expiry = metric(
        &metrics,
        "portico_certificate_expiry_timestamp_seconds{name=\"admin.example.test\",source=\"file\"}",
    );
    assert!(expiry.is_some_and(|t| t > 1.7e9), "{metrics}");
    assert!(metric(&metrics, "process_open_fds").is_some_and(|n| n > 5.0));

    // `portico status`: the table and --json.
    let cfg = inst.config.to_str().unwrap_or_default();
    let out = inst.run_cli(&["status", "-c", cfg]);
    assert!(out.success(), "{out:?}");
    for needle in [
        "UPSTREAM",
        "app",
        &inst.backend_addr(0),
        "UP",
        "CERTIFICATE",
        "admin.example.test",
    ] {
        assert!(
            out.stdout.contains(needle),
            "no {needle:?} in\n{}",
            out.stdout
        );
    }
    let out = inst.run_cli(&["status", "-c", cfg, "--json"]);
    assert!(out.success(), "{out:?}");
    let parsed: Status = serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(parsed.upstreams[0].servers.len(), 2);
    report(&format!(
        "admin: status for sites, streams, certificates: {} listeners",
        s.listeners.len()
    ));
}

/// Two echo backends `a` and `b` in `[upstreams.app]` (round robin, HTTP health checks,
/// slow start), a plain site with a WebSocket route, `admin_extra` in `[admin]` and `extra`
/// appended, in `dir` (prepared by the caller).
fn start_in(dir: TempDir, admin_extra: &str, extra: &str) -> Instance {
    let backends: Vec<EchoServer> = ["a", "b"]
        .iter()
        .map(|n| EchoServer::start(local(0), n).unwrap_or_else(|e| panic!("echo {n}: {e}")))
        .collect();
    let (admin, proxy_addr) = (local(free_port()), local(free_port()));
    let servers: Vec<String> = backends
        .iter()
        .map(|b| format!("\"{}\"", b.url().trim_start_matches("http://")))
        .collect();
    let text = format!(
        "[server]\nstate_dir = \"state\"\naccess_log = \"access.log\"\naccess_log_format = \"json\"\n\
         shutdown_grace = \"2s\"\nthreads = 2\n\n\
         [admin]\nlisten = \"{admin}\"\n{admin_extra}\n\
         [upstreams.app]\nservers = [{}]\nslow_start = \"10s\"\n\
         [upstreams.app.health]\ntype = \"http\"\ninterval = \"300ms\"\n\n\
         [[sites]]\nlisten = [\"{proxy_addr}\"]\nroutes = [\n\
         {{ path = \"/\", proxy = \"app\", websocket = true }},\n\
         {{ exact = \"/hello\", respond = \"hi\" }},\n\
         {{ exact = \"/gone\", respond = \"gone\", status = 410 }},\n]\n{extra}",
        servers.join(", ")
    );
    let config = dir.write("portico.toml", text);
    let mut proxy = start_portico(&config, dir.path());
    proxy.wait_for_port(proxy_addr, T10);
    proxy.wait_for_port(admin, T10);
    Instance {
        dir,
        config,
        admin,
        proxy_addr,
        proxy,
        backends,
    }
}

/// Keep-alive GETs in a loop until stopped: (ok, failed, answers per backend name).
fn load(
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    counts: Arc<[AtomicU64; 4]>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut conn = http::Conn::connect(addr).ok();
        for _ in 0..200_000 {
            if stop.load(Ordering::Relaxed) {
                break;
            }
            let r = conn.as_mut().map(|c| c.get("/load"));
            match r {
                Some(Ok(resp)) if resp.status == 200 => {
                    counts[0].fetch_add(1, Ordering::Relaxed);
                    let slot = if resp.first_line().starts_with('a') {
                        2
                    } else {
                        3
                    };
                    counts[slot].fetch_add(1, Ordering::Relaxed);
                }
                _ => {
                    counts[1].fetch_add(1, Ordering::Relaxed);
                    conn = http::Conn::connect(addr).ok();
                }
            }
        }
    })
}

#[test]
fn drain_enable_disable_under_load_fail_no_request_and_keep_websockets() {
    let inst = Instance::start("admin-drain", "", "");
    eventually(T10, "both servers up", || {
        inst.status().upstreams[0]
            .servers
            .iter()
            .all(|s| s.state == "up")
            .then_some(())
    });
    // A WebSocket opened before the drain: on which server it landed shows in `active`.
    let tcp = TcpStream::connect(inst.proxy_addr).unwrap_or_else(|e| panic!("{e}"));
    tcp.set_read_timeout(Some(T10)).ok();
    let mut ws = Ws::handshake(tcp, &inst.proxy_addr.to_string()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        ws.roundtrip("before").unwrap_or_else(|e| panic!("{e}")),
        "before"
    );
    let ws_server = eventually(T10, "the WebSocket to count as active", || {
        inst.status().upstreams[0]
            .servers
            .iter()
            .position(|s| s.active == 1)
    });
    let drained = inst.backend_addr(ws_server);
    let drained_name = if ws_server == 0 { 2 } else { 3 };

    let stop = Arc::new(AtomicBool::new(false));
    let counts: Arc<[AtomicU64; 4]> = Arc::new(Default::default());
    let workers: Vec<_> = (0..4)
        .map(|_| load(inst.proxy_addr, stop.clone(), counts.clone()))
        .collect();
    eventually(T10, "load on both servers", || {
        (counts[2].load(Ordering::Relaxed) > 20 && counts[3].load(Ordering::Relaxed) > 20)
            .then_some(())
    });

    let a = inst.server_action(&drained, "drain");
    assert_eq!(a.status, 200, "{}", a.body);
    // Requests in flight at the moment of the drain may still finish there; after that, none.
    std::thread::sleep(Duration::from_millis(200));
    let on_drained = counts[drained_name].load(Ordering::Relaxed);
    let total = counts[0].load(Ordering::Relaxed);
    eventually(T10, "more load after the drain", || {
        (counts[0].load(Ordering::Relaxed) > total + 200).then_some(())
    });
    assert_eq!(
        counts[drained_name].load(Ordering::Relaxed),
        on_drained,
        "the drained server got new requests"
    );
    assert_eq!(
        ws.roundtrip("during drain")
            .unwrap_or_else(|e| panic!("{e}")),
        "during drain",
        "open WebSocket continues"
    );
    let st = inst.status();
    assert_eq!(st.upstreams[0].servers[ws_server].state, "draining");
    assert_eq!(
        st.upstreams[0].servers[ws_server].active, 1,
        "the WebSocket still counts"
    );

    let a = inst.server_action(&drained, "enable");
    assert_eq!(a.status, 200, "{}", a.body);
    eventually(T10, "the enabled server to serve again", || {
        (counts[drained_name].load(Ordering::Relaxed) > on_drained + 20).then_some(())
    });
    // Disable the other one: everything moves to the first.
    let other = 1 - ws_server;
    let a = inst.server_action(&inst.backend_addr(other), "disable");
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(inst.status().upstreams[0].servers[other].state, "disabled");
    let a = inst.server_action(&inst.backend_addr(other), "enable");
    assert_eq!(a.status, 200);

    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().unwrap_or_else(|_| panic!("load thread"));
    }
    let (ok, failed) = (
        counts[0].load(Ordering::Relaxed),
        counts[1].load(Ordering::Relaxed),
    );
    assert_eq!(
        failed, 0,
        "failed requests during drain/enable/disable ({ok} ok)"
    );
    assert_eq!(
        ws.roundtrip("after").unwrap_or_else(|e| panic!("{e}")),
        "after"
    );
    // `disable` also drains the server's WebSockets: close 1001 within the drain window
    // (half of shutdown_grace = 1 s here; the read times out after 10 s).
    let t0 = std::time::Instant::now();
    let a = inst.server_action(&drained, "disable");
    assert_eq!(a.status, 200, "{}", a.body);
    let closed = ws.recv_text();
    let took = t0.elapsed();
    match closed {
        // 1001 = 0x03e9, then the reason.
        Err(e) if e.starts_with("close frame [3, 233") => {}
        other => panic!("expected close 1001 after disable, got {other:?}"),
    }
    assert!(took < Duration::from_secs(5), "close took {took:?}");
    eventually(T10, "the disabled server's WebSocket to end", || {
        let st = inst.status();
        let s = &st.upstreams[0].servers[ws_server];
        (s.state == "disabled" && s.active == 0).then_some(())
    });
    report(&format!(
        "admin: drain/enable/disable under load: {ok} requests, 0 failed; WebSocket kept \
         through drain, closed 1001 by disable after {} ms",
        took.as_millis()
    ));
}

#[test]
fn token_and_browser_refusals_on_the_real_listener() {
    let dir_tag = "admin-token";
    let dir = TempDir::new(dir_tag);
    dir.write("admin.token", "correct-horse\n");
    let inst = start_in(dir, "token_file = \"admin.token\"\n", "");
    let path = format!(
        "/api/v1/upstreams/app/servers/{}/drain",
        inst.backend_addr(0)
    );
    assert_eq!(inst.call("POST", &path, None).status, 401);
    assert_eq!(inst.call("POST", &path, Some("wrong")).status, 401);
    assert_eq!(inst.call("POST", "/api/v1/reload", None).status, 401);
    // A browser form from another site, with the right token even: refused.
    let raw = format!(
        "POST {path} HTTP/1.1\r\nHost: {}\r\nOrigin: https://evil.example\r\nContent-Type: text/plain\r\n\
         Authorization: Bearer correct-horse\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        inst.admin
    );
    let mut c = http::Conn::connect(inst.admin).unwrap_or_else(|e| panic!("{e}"));
    let r = c.request_raw(&raw, b"").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(r.status, 403, "{}", r.text());
    assert!(
        inst.status().upstreams[0]
            .servers
            .iter()
            .all(|s| s.admin_state == "enabled")
    );
    assert_eq!(inst.call("POST", &path, Some("correct-horse")).status, 200);
    assert_eq!(
        inst.status().upstreams[0].servers[0].admin_state,
        "draining"
    );
    assert!(inst.status().admin.token_required);
}

#[test]
fn a_refused_reload_through_the_api_keeps_the_running_config() {
    let inst = Instance::start("admin-reload", "", "");
    let before = http::get(inst.proxy_addr, "/x").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(before.status, 200);
    let good = std::fs::read_to_string(&inst.config).unwrap_or_default();
    // A valid copy with the same admin address: `portico reload -c copy.toml` validates it,
    // then finds the instance runs another file and refuses (exit 2) rather than have it
    // reload its own, broken one.
    let copy = inst.dir.write("copy.toml", &good);
    std::fs::write(
        &inst.config,
        good.replace("[upstreams.app]", "[upstreams.app]\nbalanse = \"x\""),
    )
    .unwrap_or_else(|e| panic!("{e}"));

    let a = inst.call("POST", "/api/v1/reload", None);
    assert_eq!(a.status, 422, "{}", a.body);
    let body: serde_json::Value = serde_json::from_str(&a.body).unwrap_or_default();
    assert_eq!(body["result"], "invalid");
    let text = body["text"].as_str().unwrap_or_default();
    assert!(
        text.contains("portico.toml:") && text.contains("unknown key `balanse`"),
        "{text}"
    );
    assert!(text.contains("did you mean `balance`"), "{text}");
    assert_eq!(
        http::get(inst.proxy_addr, "/x").map(|r| r.status).ok(),
        Some(200),
        "still serving"
    );

    let out = inst.run_cli(&["reload", "-c", copy.to_str().unwrap_or_default()]);
    assert_eq!(out.code(), 2, "{out:?}");
    assert!(out.stderr.contains("not reloading"), "{out:?}");

    let s = inst.status();
    assert_eq!(s.reloads.len(), 1, "the CLI did not ask for a reload");
    assert!(s.reloads.iter().all(|r| r.result == "invalid"));
    assert_eq!(s.config.generation, 1);
    let m = inst.call("GET", "/metrics", None).body;
    assert_eq!(
        metric(&m, "portico_reloads_total{result=\"invalid\"}"),
        Some(1.0),
        "{m}"
    );

    std::fs::write(&inst.config, &good).unwrap_or_else(|e| panic!("{e}"));
    let out = inst.run_cli(&["reload", "-c", inst.config.to_str().unwrap_or_default()]);
    assert!(out.success(), "{out:?}");
    assert!(out.stdout.contains("reloaded"), "{out:?}");
    assert_eq!(inst.status().reloads[0].result, "applied");
}

#[test]
fn status_says_clearly_when_nothing_runs_or_the_api_is_off() {
    let dir = TempDir::new("admin-status-cli");
    let port = free_port();
    let on = dir.write(
        "on.toml",
        format!("[admin]\nlisten = \"127.0.0.1:{port}\"\n[[sites]]\nlisten = [\"127.0.0.1:1\"]\nroutes = [{{ path = \"/\", respond = \"x\" }}]\n"),
    );
    let off = dir.write(
        "off.toml",
        "[admin]\nlisten = \"off\"\n[[sites]]\nlisten = [\"127.0.0.1:1\"]\nroutes = [{ path = \"/\", respond = \"x\" }]\n",
    );
    let run = |cfg: &Path| {
        run_bounded(
            "status",
            portico(
                dir.path(),
                &["status", "-c", cfg.to_str().unwrap_or_default()],
            ),
            dir.path(),
            T10,
            Duration::ZERO,
        )
    };
    let out = run(&on);
    assert_eq!(out.code(), 2, "{out:?}");
    assert!(
        out.stderr.contains("no running instance") && out.stderr.contains(&port.to_string()),
        "{out:?}"
    );
    let out = run(&off);
    assert_eq!(out.code(), 2, "{out:?}");
    assert!(out.stderr.contains("admin API is off"), "{out:?}");
}

/// The value of the series `name{labels}` (labels as they appear, in order).
fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics
        .lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

#[test]
fn metrics_count_a_known_mix_of_requests_websockets_and_streams_exactly() {
    let stream_addr = local(free_port());
    let inst = Instance::start(
        "admin-exact",
        "",
        &format!("\n[[streams]]\nlisten = [\"{stream_addr}\"]\nupstream = \"app\"\n"),
    );
    let p = inst.proxy_addr.to_string();
    let s = stream_addr.to_string();
    // Two stream connections (TCP relayed to the echo servers): every byte each way counted.
    // The admin API is up, so the streams (started before it) are listening.
    let (mut sent, mut received) = (0usize, 0usize);
    for i in 0..2 {
        let mut tcp = TcpStream::connect(stream_addr).unwrap_or_else(|e| panic!("{e}"));
        tcp.set_read_timeout(Some(T10)).ok();
        let req =
            format!("GET /_echo/close?stream={i} HTTP/1.1\r\nHost: s\r\nConnection: close\r\n\r\n");
        tcp.write_all(req.as_bytes())
            .unwrap_or_else(|e| panic!("{e}"));
        let mut answer = Vec::new();
        tcp.read_to_end(&mut answer)
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(answer.starts_with(b"HTTP/1.1 200"), "{answer:?}");
        sent += req.len();
        received += answer.len();
    }
    // One keep-alive connection: 30 proxied GETs, 5 answered by `respond`, 4 answered 410.
    let mut conn = http::Conn::connect(inst.proxy_addr).unwrap_or_else(|e| panic!("{e}"));
    for _ in 0..30 {
        assert_eq!(conn.get("/x").map(|r| r.status).ok(), Some(200));
    }
    for _ in 0..5 {
        assert_eq!(conn.get("/hello").map(|r| r.status).ok(), Some(200));
    }
    for _ in 0..4 {
        let r = conn.get("/gone").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(r.status, 410);
        let id = r.header("x-request-id").unwrap_or_default();
        assert_eq!(
            id.len(),
            32,
            "Portico's own error answer carries the request id"
        );
    }
    drop(conn);
    // Three WebSocket sessions, two messages each, closed by the client.
    for i in 0..3 {
        let tcp = TcpStream::connect(inst.proxy_addr).unwrap_or_else(|e| panic!("{e}"));
        tcp.set_read_timeout(Some(T10)).ok();
        let mut ws = Ws::handshake(tcp, &p).unwrap_or_else(|e| panic!("{e}"));
        for m in 0..2 {
            let text = format!("session {i} message {m}");
            assert_eq!(ws.roundtrip(&text).unwrap_or_else(|e| panic!("{e}")), text);
        }
    }
    let labels = |route: &str, upstream: &str, code: &str| {
        format!(
            "portico_http_requests_total{{site=\"*\",route=\"{route}\",upstream=\"{upstream}\",code=\"{code}\"}}"
        )
    };
    let m = eventually(
        T10,
        "the WebSockets and connections to be counted as closed",
        || {
            let m = inst.call("GET", "/metrics", None).body;
            let closed = sample(
                &m,
                "portico_websocket_sessions_closed_total{upstream=\"app\",closed_by=\"client\"}",
            );
            let open = sample(
                &m,
                &format!("portico_connections_open{{listener=\"{p}\",protocol=\"http\"}}"),
            );
            let streams_open = sample(
                &m,
                &format!("portico_connections_open{{listener=\"{s}\",protocol=\"stream\"}}"),
            );
            (closed == Some(3.0) && open == Some(0.0) && streams_open == Some(0.0)).then_some(m)
        },
    );
    assert_eq!(sample(&m, &labels("/", "app", "200")), Some(30.0), "{m}");
    assert_eq!(sample(&m, &labels("/", "app", "101")), Some(3.0), "{m}");
    assert_eq!(sample(&m, &labels("= /hello", "", "200")), Some(5.0), "{m}");
    assert_eq!(sample(&m, &labels("= /gone", "", "410")), Some(4.0), "{m}");
    let route_app = "site=\"*\",route=\"/\",upstream=\"app\"";
    assert_eq!(
        sample(
            &m,
            &format!("portico_http_request_duration_seconds_count{{{route_app}}}")
        ),
        Some(33.0),
        "{m}"
    );
    assert_eq!(
        sample(
            &m,
            &format!("portico_http_upstream_response_duration_seconds_count{{{route_app}}}")
        ),
        Some(33.0),
        "{m}"
    );
    assert_eq!(
        sample(
            &m,
            "portico_websocket_sessions_opened_total{upstream=\"app\"}"
        ),
        Some(3.0)
    );
    assert_eq!(
        sample(&m, "portico_websocket_sessions_open{upstream=\"app\"}"),
        Some(0.0)
    );
    // Six text frames each way (client frames are masked: 4 bytes more), plus the closes.
    let c2s = sample(
        &m,
        "portico_websocket_bytes_total{upstream=\"app\",direction=\"client_to_server\"}",
    );
    assert!(c2s.is_some_and(|b| b >= 6.0 * 20.0), "{m}");
    for dir in ["client_to_server", "server_to_client"] {
        assert_eq!(
            sample(
                &m,
                &format!(
                    "portico_websocket_messages_total{{upstream=\"app\",direction=\"{dir}\"}}"
                )
            ),
            Some(6.0),
            "two messages each way in three sessions\n{m}"
        );
    }
    assert_eq!(
        sample(
            &m,
            &format!("portico_connections_accepted_total{{listener=\"{p}\",protocol=\"http\"}}")
        ),
        Some(5.0),
        "the start-up port probe, one keep-alive connection and three WebSockets\n{m}"
    );
    assert_eq!(
        sample(
            &m,
            &format!("portico_connections_accepted_total{{listener=\"{s}\",protocol=\"stream\"}}")
        ),
        Some(2.0),
        "{m}"
    );
    // However each ended (server_closed or client_closed): two, with their exact bytes.
    let ended: f64 = m
        .lines()
        .filter(|l| {
            l.starts_with(&format!(
                "portico_stream_connections_total{{listener=\"{s}\",upstream=\"app\","
            ))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert_eq!(ended, 2.0, "{m}");
    let stream_bytes = |dir: &str| {
        sample(
            &m,
            &format!(
                "portico_stream_bytes_total{{listener=\"{s}\",upstream=\"app\",direction=\"{dir}\"}}"
            ),
        )
    };
    assert_eq!(stream_bytes("client_to_server"), Some(sent as f64), "{m}");
    assert_eq!(
        stream_bytes("server_to_client"),
        Some(received as f64),
        "{m}"
    );
    report(&format!(
        "admin: 39 requests, 3 WebSockets, 5 connections, 2 streams ({sent} + {received} bytes): counted exactly"
    ));
}

#[test]
fn request_ids_go_upstream_into_the_log_and_onto_errors() {
    let inst = Instance::start("admin-request-id", "", "");
    let echo = |extra: &str| -> String {
        let mut c = http::Conn::connect(inst.proxy_addr).unwrap_or_else(|e| panic!("{e}"));
        let head = format!(
            "GET /_echo/headers HTTP/1.1\r\nHost: app.test\r\n{extra}Connection: close\r\n\r\n"
        );
        let r = c.request_raw(&head, b"").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(r.status, 200);
        r.text()
            .lines()
            .find_map(|l| l.strip_prefix("x-request-id: ").map(str::to_string))
            .unwrap_or_default()
    };
    let made = echo("");
    assert_eq!(made.len(), 32, "{made:?}");
    assert!(made.bytes().all(|b| b.is_ascii_hexdigit()));
    assert_ne!(echo(""), made, "every request gets its own");
    // The test client is on loopback: a well-formed incoming id is kept.
    assert_eq!(echo("X-Request-Id: trace-42\r\n"), "trace-42");
    assert_eq!(
        echo("X-Request-Id: two words\r\n").len(),
        32,
        "a malformed one is replaced"
    );
    let log = inst.dir.path().join("access.log");
    let line = eventually(T10, "the access log line with the id", || {
        std::fs::read_to_string(&log)
            .ok()?
            .lines()
            .find(|l| l.contains(&made))
            .map(str::to_string)
    });
    let v: serde_json::Value =
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
    assert_eq!(v["request_id"], made.as_str());
}
