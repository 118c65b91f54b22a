//! The admin API over a real socket: metrics text, status JSON, drain/enable/disable
//! reaching the balancer's picks, the browser and token refusals, API reloads.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use portico_admin::client::call;
use portico_admin::{
    Admin, AdminServer, CertView, ReloadRecord, ReloadResult, Sources, TrackView, VrrpView,
};
use portico_balance::{CheckStatus, PickKey, Pool, Registry};
use portico_config::Config;

/// Fixed certificate and VRRP figures (the binary reads them from the TLS runtime and the
/// VRRP instances; here the API's rendering of them is under test). WebSocket drains are
/// recorded (`upstream/addr`), as the binary hands them to the data plane.
#[derive(Default, Clone)]
struct Fixed {
    drained: Arc<std::sync::Mutex<Vec<String>>>,
}

impl Sources for Fixed {
    fn health(&self) -> Vec<CheckStatus> {
        Vec::new()
    }
    fn certificates(&self) -> Vec<CertView> {
        vec![CertView {
            names: vec!["a.example.test".into(), "b.example.test".into()],
            source: "acme",
            path: None,
            not_after: Some(SystemTime::UNIX_EPOCH + Duration::from_secs(2_000_000_000)),
            next_renewal: None,
            last_error: None,
            orders_ok: 2,
            orders_failed: 1,
        }]
    }
    fn vrrp(&self) -> Vec<VrrpView> {
        vec![VrrpView {
            name: "VI_1".into(),
            interface: "eth0".into(),
            vrid: 51,
            state: "MASTER",
            base_priority: 150,
            effective_priority: 130,
            transitions: 2,
            virtual_ips: vec!["10.200.0.130/24".into()],
            tracks: vec![TrackView {
                check: "upstream app".into(),
                weight: -20,
                failing: true,
            }],
        }]
    }
    fn drain_websockets(&self, server: &portico_balance::ServerId) {
        self.drained
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(format!("{}/{}", server.upstream, server.addr));
    }
}

fn config(extra: &str) -> Arc<Config> {
    let text = format!(
        "{extra}\n[upstreams.app]\nservers = [\"127.0.0.1:7001\", \"127.0.0.1:7002\", {{ addr = \"127.0.0.1:7003\", backup = true }}]\n\
         balance = \"ip_hash\"\n\
         [[sites]]\nlisten = [\"127.0.0.1:1\"]\nroutes = [{{ path = \"/\", proxy = \"app\" }}]\n"
    );
    let dir = std::env::temp_dir();
    Arc::new(
        portico_config::parse(&text, &dir.join("admin-api-test.toml"))
            .unwrap_or_else(|e| panic!("config: {e}")),
    )
}

struct Running {
    server: AdminServer,
    admin: Admin,
    registry: Registry,
    config: Arc<Config>,
    /// WebSocket drains asked of the data plane.
    drained: Arc<std::sync::Mutex<Vec<String>>>,
}

fn start(config: Arc<Config>) -> Running {
    let registry = Registry::new();
    let sources = Fixed::default();
    let drained = sources.drained.clone();
    let (admin, mut requests) = Admin::new(config.clone(), registry.clone(), sources);
    let server = AdminServer::start(
        admin.clone(),
        "127.0.0.1:0".parse().unwrap_or_else(|e| panic!("{e}")),
    )
    .unwrap_or_else(|e| panic!("start: {e}"));
    // Stand-in control loop: refuses every reload with a diagnostic, as the binary does for
    // an invalid file.
    let recorder = admin.clone();
    let cfg = config.clone();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap_or_else(|e| panic!("{e}"));
        rt.block_on(async move {
            let mut generation = 0;
            loop {
                let req = requests.next().await;
                generation += 1;
                let rec = ReloadRecord {
                    generation,
                    at: SystemTime::now(),
                    result: ReloadResult::Invalid,
                    text: "p.toml:3:7: unknown key `lisen`\n".into(),
                };
                recorder.record_reload(rec.clone(), cfg.clone());
                req.answer(rec);
            }
        });
    });
    Running {
        server,
        admin,
        registry,
        config,
        drained,
    }
}

fn get(r: &Running, path: &str) -> (u16, String) {
    let a = call(r.server.addr(), "GET", path, None, Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("GET {path}: {e}"));
    (a.status, a.body)
}

/// A raw request, to send exactly the headers a browser would.
fn raw(r: &Running, request: &str) -> (u16, String) {
    use std::io::{Read as _, Write as _};
    let mut c = std::net::TcpStream::connect(r.server.addr()).unwrap_or_else(|e| panic!("{e}"));
    c.set_read_timeout(Some(Duration::from_secs(5))).ok();
    let req = request.replace("HOST", &r.server.addr().to_string());
    c.write_all(req.as_bytes())
        .unwrap_or_else(|e| panic!("{e}"));
    let mut out = String::new();
    let _ = c.read_to_string(&mut out);
    let status = out
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, out)
}

fn post(r: &Running, path: &str, token: Option<&str>) -> (u16, String) {
    let a = call(r.server.addr(), "POST", path, token, Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("POST {path}: {e}"));
    (a.status, a.body)
}

#[test]
fn metrics_are_prometheus_text_with_per_server_state() {
    let r = start(config(""));
    let (status, body) = get(&r, "/metrics");
    assert_eq!(status, 200);
    for line in [
        "# TYPE portico_upstream_server_state gauge",
        "portico_upstream_server_state{upstream=\"app\",server=\"127.0.0.1:7001\",state=\"up\"} 1",
        "portico_upstream_server_state{upstream=\"app\",server=\"127.0.0.1:7001\",state=\"draining\"} 0",
        "portico_upstream_server_state{upstream=\"app\",server=\"127.0.0.1:7003\",state=\"backup\"} 1",
        "portico_upstream_server_weight{upstream=\"app\",server=\"127.0.0.1:7002\"} 1",
        "# TYPE portico_reloads_total counter",
        "portico_reloads_total{result=\"applied\"} 0",
        "portico_certificate_expiry_timestamp_seconds{name=\"b.example.test\",source=\"acme\"} 2000000000",
        "portico_acme_orders_total{result=\"success\"} 2",
        "portico_acme_orders_total{result=\"failure\"} 1",
        "portico_vrrp_state{instance=\"VI_1\",state=\"MASTER\"} 1",
        "portico_vrrp_effective_priority{instance=\"VI_1\"} 130",
        "portico_vrrp_transitions_total{instance=\"VI_1\"} 2",
        "portico_build_info{version=\"",
        "# TYPE process_cpu_seconds_total counter",
        "# TYPE process_open_fds gauge",
    ] {
        assert!(body.contains(line), "missing {line:?} in\n{body}");
    }
}

#[test]
fn drain_enable_disable_reach_the_picks_and_the_status() {
    let r = start(config(""));
    let pool = Pool::new(&r.config.upstreams["app"], &r.registry);
    let key = |i: u8| PickKey {
        client_ip: std::net::IpAddr::from([10, i, 0, 1]),
        hash: None,
    };
    let picks = |pool: &Pool| -> Vec<usize> {
        (0..100u8)
            .map(|i| {
                pool.pick(&key(i), &[])
                    .unwrap_or_else(|e| panic!("{e}"))
                    .index
            })
            .collect()
    };
    assert!(
        picks(&pool).contains(&0),
        "ip_hash spreads over both primaries"
    );
    let (status, body) = post(
        &r,
        "/api/v1/upstreams/app/servers/127.0.0.1:7001/drain",
        None,
    );
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"admin_state\": \"draining\""), "{body}");
    assert!(
        picks(&pool).iter().all(|&i| i == 1),
        "ip_hash clients moved away"
    );
    let (_, json) = get(&r, "/api/v1/status");
    let s: portico_admin::status::Status =
        serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(s.upstreams[0].servers[0].state, "draining");
    assert_eq!(s.upstreams[0].servers[1].state, "up");
    assert_eq!(s.upstreams[0].servers[2].state, "backup");
    assert_eq!(s.vrrp[0].tracks[0].check, "upstream app");
    let (_, m) = get(&r, "/metrics");
    assert!(m.contains("portico_upstream_server_state{upstream=\"app\",server=\"127.0.0.1:7001\",state=\"draining\"} 1"));

    let (status, _) = post(
        &r,
        "/api/v1/upstreams/app/servers/127.0.0.1:7002/disable",
        None,
    );
    assert_eq!(status, 200);
    assert!(
        picks(&pool).iter().all(|&i| i == 2),
        "only the backup is left"
    );
    assert_eq!(
        *r.drained.lock().unwrap_or_else(|e| e.into_inner()),
        ["app/127.0.0.1:7002"],
        "disable (not drain) closes the server's WebSockets"
    );
    for addr in ["127.0.0.1:7001", "127.0.0.1:7002"] {
        let (status, _) = post(
            &r,
            &format!("/api/v1/upstreams/app/servers/{addr}/enable"),
            None,
        );
        assert_eq!(status, 200);
    }
    assert!(picks(&pool).contains(&0) && picks(&pool).contains(&1));

    let (status, body) = post(&r, "/api/v1/upstreams/app/servers/127.0.0.1:9/drain", None);
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("127.0.0.1:7001"), "lists the servers: {body}");
    let (status, _) = post(
        &r,
        "/api/v1/upstreams/nope/servers/127.0.0.1:7001/drain",
        None,
    );
    assert_eq!(status, 404);
    let (status, _) = post(
        &r,
        "/api/v1/upstreams/app/servers/127.0.0.1:7001/explode",
        None,
    );
    assert_eq!(status, 404);
    let (status, _) = get(&r, "/api/v1/upstreams/app/servers/127.0.0.1:7001/drain");
    assert_eq!(status, 405, "GET never changes anything");
    drop(r.admin);
}

#[test]
fn browser_cross_origin_and_form_posts_are_refused() {
    let r = start(config(""));
    let path = "/api/v1/upstreams/app/servers/127.0.0.1:7001/drain";
    // What a form on another site can send: no custom header, a simple content type.
    let (status, body) = raw(
        &r,
        &format!(
            "POST {path} HTTP/1.1\r\nHost: HOST\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        ),
    );
    assert_eq!(status, 403, "{body}");
    // A fetch() from another origin with the custom header (the browser would preflight;
    // the API refuses anyway).
    let (status, body) = raw(
        &r,
        &format!(
            "POST {path} HTTP/1.1\r\nHost: HOST\r\nOrigin: http://evil.example\r\nX-Portico: 1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        ),
    );
    assert_eq!(status, 403, "{body}");
    assert_eq!(
        r.registry
            .entries()
            .iter()
            .filter(|(_, s)| s.admin_state() != portico_balance::AdminState::Enabled)
            .count(),
        0,
        "nothing was drained"
    );
    // The dashboard's own request: same origin, JSON.
    let (status, body) = raw(
        &r,
        &format!(
            "POST {path} HTTP/1.1\r\nHost: HOST\r\nOrigin: http://HOST\r\nContent-Type: application/json\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        ),
    );
    assert_eq!(status, 200, "{body}");
}

#[test]
fn with_a_token_mutating_calls_need_it_and_reads_do_not() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let token = dir.path().join("admin.token");
    std::fs::write(&token, "t0ken-123\n").unwrap_or_else(|e| panic!("{e}"));
    let r = start(config(&format!(
        "[admin]\ntoken_file = \"{}\"\n",
        token.display()
    )));
    let path = "/api/v1/upstreams/app/servers/127.0.0.1:7001/drain";
    let (status, body) = post(&r, path, None);
    assert_eq!(status, 401, "{body}");
    let (status, _) = post(&r, path, Some("wrong"));
    assert_eq!(status, 401);
    let (status, _) = post(&r, "/api/v1/reload", None);
    assert_eq!(status, 401, "reload too");
    let (status, _) = post(&r, path, Some("t0ken-123"));
    assert_eq!(status, 200);
    let (status, body) = get(&r, "/api/v1/status");
    assert_eq!(status, 200);
    assert!(body.contains("\"token_required\": true"), "{body}");
}

#[test]
fn a_refused_reload_answers_422_with_the_diagnostics_and_is_logged() {
    let r = start(config(""));
    let (status, body) = post(&r, "/api/v1/reload", None);
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("p.toml:3:7: unknown key"), "{body}");
    let (_, json) = get(&r, "/api/v1/status");
    let s: portico_admin::status::Status =
        serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(s.reloads.len(), 1);
    assert_eq!(s.reloads[0].result, "invalid");
    assert_eq!(s.config.generation, 1);
    let (_, m) = get(&r, "/metrics");
    assert!(
        m.contains("portico_reloads_total{result=\"invalid\"} 1"),
        "{m}"
    );
}

#[test]
fn the_dashboard_is_served_self_contained() {
    let r = start(config(""));
    let (status, raw_resp) = raw(
        &r,
        "GET / HTTP/1.1\r\nHost: HOST\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status, 200);
    let lower = raw_resp.to_ascii_lowercase();
    assert!(lower.contains("content-type: text/html"));
    assert!(lower.contains("content-security-policy: default-src 'none'"));
    assert!(
        !lower.contains("src=\"http"),
        "no external scripts or styles"
    );
    assert!(
        lower.contains("/api/v1/status"),
        "the page polls the status"
    );
    let (status, _) = get(&r, "/nope");
    assert_eq!(status, 404);
}
