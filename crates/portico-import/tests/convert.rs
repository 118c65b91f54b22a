//! Every configuration in `tests/data` converts, the TOML passes Portico's own validation
//! (`portico_config::parse`, what `portico check` runs), and the report names what was not
//! carried over with FILE:LINE. The seed articles' configurations are `seed-*`; the others
//! are real-world-shaped configurations written for these tests.

use std::path::{Path, PathBuf};

use portico_import::{Conversion, Kind, NginxOptions};

#[path = "convert/policy.rs"]
mod policy;

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

/// Convert with the prefix set to the data folder, and validate the TOML.
fn nginx_with(name: &str, acme_email: Option<&str>) -> (Conversion, portico_config::Config) {
    let opts = NginxOptions {
        acme_email: acme_email.map(String::from),
        prefix: Some(data("")),
    };
    let c = portico_import::nginx(&data(name), &opts).unwrap_or_else(|e| panic!("{name}: {e}"));
    let config = validate(name, &c);
    (c, config)
}

fn nginx(name: &str) -> (Conversion, portico_config::Config) {
    nginx_with(name, None)
}

fn keepalived(name: &str) -> (Conversion, portico_config::Config) {
    let c = portico_import::keepalived(&data(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
    let config = validate(name, &c);
    (c, config)
}

fn validate(name: &str, c: &Conversion) -> portico_config::Config {
    match portico_config::parse(&c.toml, &data("converted.toml")) {
        Ok(config) => config,
        Err(e) => panic!(
            "{name}: the converted config does not pass portico check:\n{e}\n--- TOML\n{}\n--- report\n{}",
            c.toml, c.report
        ),
    }
}

/// The report has a note of `kind` for `directive` (its first word) at `file:line`.
#[track_caller]
fn noted(c: &Conversion, file: &str, line: usize, directive: &str, kind: Kind) {
    let found = c.report.notes.iter().any(|n| {
        n.file.ends_with(file)
            && n.line == line
            && n.directive.split_whitespace().next() == Some(directive)
            && n.kind == kind
    });
    assert!(
        found,
        "no `{}` note for `{directive}` at {file}:{line}; report:\n{}",
        kind.label(),
        c.report
    );
}

#[track_caller]
fn has(c: &Conversion, text: &str) {
    assert!(c.toml.contains(text), "TOML lacks `{text}`:\n{}", c.toml);
}

#[test]
fn every_data_file_converts_and_passes_check() {
    let nginx_files = [
        "seed-000-nginx.conf",
        "seed-001-nginx.conf",
        "seed-002-nginx.conf",
        "seed-003-node1-nginx.conf",
        "seed-003-node2-nginx.conf",
        "seed-004-nginx.conf",
        "ws-chat.conf",
        "certbot-site.conf",
        "getssl-both.conf",
        "stream-tcp.conf",
        "upstream-params.conf",
        "includes/nginx.conf",
        "locations.conf",
        "policies.conf",
        "vhosts.conf",
        "api-gateway.conf",
        "redirects.conf",
        "static-site.conf",
    ];
    for f in nginx_files {
        let (c, _) = nginx(f);
        // Every note names a line of a real file.
        for n in &c.report.notes {
            assert!(n.line >= 1, "{f}: {n}");
            assert!(!n.why.is_empty(), "{f}: {n}");
        }
        let (c, _) = nginx_with(f, Some("ops@example.com"));
        assert!(!c.toml.is_empty());
    }
    for f in [
        "seed-003-node1-keepalived.conf",
        "seed-003-node2-keepalived.conf",
        "seed-004-master-keepalived.conf",
        "seed-004-backup-keepalived.conf",
        "lvs-keepalived.conf",
    ] {
        keepalived(f);
    }
}

#[test]
fn seed_002_websocket_idiom_is_recognised_and_dropped() {
    let (c, config) = nginx("seed-002-nginx.conf");
    let site = &config.sites[0];
    let portico_config::Action::Proxy(p) = &site.routes[0].action else {
        panic!("not a proxy route: {}", c.toml);
    };
    assert!(
        p.websocket,
        "the WebSocket idiom must leave websocket = true"
    );
    assert_eq!(p.read_timeout, Some(std::time::Duration::from_secs(300)));
    let servers: Vec<String> = config.upstreams["websocket"]
        .servers
        .iter()
        .map(|s| s.addr.to_string())
        .collect();
    assert_eq!(servers, ["localhost:8010", "localhost:8011"]);
    noted(&c, "seed-002-nginx.conf", 5, "map", Kind::Dropped);
    noted(
        &c,
        "seed-002-nginx.conf",
        26,
        "proxy_set_header",
        Kind::Dropped,
    );
    noted(
        &c,
        "seed-002-nginx.conf",
        27,
        "proxy_set_header",
        Kind::Dropped,
    );
    // Nothing else is lost: every note is an idiom Portico has built in.
    assert!(
        c.report.notes.iter().all(|n| n.kind == Kind::Dropped),
        "{}",
        c.report
    );
}

#[test]
fn seed_003_http_lb_keeps_timeouts_and_body_limit() {
    let (c, config) = nginx("seed-003-node1-nginx.conf");
    let up = &config.upstreams["tomcat"];
    assert_eq!(up.servers.len(), 3);
    assert_eq!(up.connect_timeout, std::time::Duration::from_secs(5));
    assert_eq!(up.send_timeout, std::time::Duration::from_secs(5));
    has(&c, "max_body = \"10m\"");
    has(&c, "read_timeout = \"5s\"");
    has(&c, "listen = [\"0.0.0.0:6101\"]");
    noted(
        &c,
        "seed-003-node1-nginx.conf",
        38,
        "proxy_buffers",
        Kind::Dropped,
    );
}

#[test]
fn seed_004_static_site_and_error_page() {
    let (c, config) = nginx("seed-004-nginx.conf");
    has(&c, "listen = [\"0.0.0.0:88\"]");
    // `root html` is relative to nginx's prefix.
    has(&c, &format!("root = \"{}\"", data("html").display()));
    has(&c, "index = [\"index.html\", \"index.htm\"]");
    assert_eq!(config.sites[0].routes.len(), 2);
    noted(
        &c,
        "seed-004-nginx.conf",
        34,
        "error_page",
        Kind::NotCarried,
    );
}

#[test]
fn seed_000_limits_gzip_and_auth_are_written() {
    let (c, config) = nginx("seed-000-nginx.conf");
    // `gzip on` in http: every site compresses as nginx did (text/html, from 20 bytes).
    for site in &config.sites {
        for r in &site.routes {
            if r.policy.compress.codings.is_none() {
                continue; // redirects answer before nginx's gzip filter sees a body
            }
            let z = r.policy.compress.resolve().expect("gzip");
            assert_eq!(
                (z.types.clone(), z.min_size),
                (vec!["text/html".to_string()], 20)
            );
        }
    }
    // `limit_req zone=ws burst=5` (zone: 1r/s per client address) on the ws site.
    has(&c, "limit_rate = { rate = \"1r/s\", burst = 5 }");
    let ws = config
        .sites
        .iter()
        .find(|s| {
            s.hosts
                .iter()
                .any(|h| format!("{h:?}").contains("ws.example.net"))
                && s.tls.is_some()
        })
        .expect("the ws site");
    let l = ws.routes[0].policy.limit_rate.expect("limit_rate");
    assert_eq!((l.requests, l.per.as_secs(), l.burst), (1, 1, 5));
    // No nodelay and no limit_req_status: both differences are in the report.
    noted(
        &c,
        "seed-000-nginx.conf",
        51,
        "limit_req",
        Kind::Approximated,
    );
    assert!(
        c.report.find("limit_req_zone", 29).is_none(),
        "{}",
        c.report
    );
    assert!(c.report.find("gzip", 26).is_none(), "{}", c.report);
    // /etc/nginx/htpasswd does not exist here: the site is written closed, and reported.
    noted(
        &c,
        "seed-000-nginx.conf",
        87,
        "auth_basic_user_file",
        Kind::NotCarried,
    );
    has(&c, "access = [\"deny all\"]");
    noted(&c, "seed-000-nginx.conf", 44, "server", Kind::Hint);
    has(&c, "tls = { verify = false }");
    has(&c, "{ addr = \"127.0.0.1:8091\", backup = true }");
    // With an ACME contact, getssl's certificates become tls = "acme" and the challenge
    // location goes (Portico answers challenges itself).
    let (c, config) = nginx_with("seed-000-nginx.conf", Some("ops@example.net"));
    assert!(config.acme.is_some());
    let acme_sites = config
        .sites
        .iter()
        .filter(|s| matches!(s.tls, Some(portico_config::SiteTls::Acme)))
        .count();
    assert_eq!(acme_sites, 3, "{}", c.toml);
    assert!(!c.toml.contains("acme-challenge"), "{}", c.toml);
}

#[test]
fn seed_001_tls_site_with_hsts_and_acme() {
    let (c, _) = nginx("seed-001-nginx.conf");
    has(&c, "hsts = \"max-age=31536000\"");
    has(&c, "http_redirect = false");
    has(&c, "read_timeout = \"1h\"");
    // With --acme-email the port-80 server (challenges + redirect) folds into the TLS site.
    let (c, config) = nginx_with("seed-001-nginx.conf", Some("ops@example.com"));
    assert_eq!(config.sites.len(), 1, "{}", c.toml);
    has(&c, "tls = \"acme\"");
    has(&c, "http_listen = [\"0.0.0.0:80\", \"[::]:80\"]");
    has(&c, "email = \"ops@example.com\"");
}

#[test]
fn certbot_site_keeps_the_webroot_without_acme_mode() {
    let (c, config) = nginx("certbot-site.conf");
    assert_eq!(config.sites.len(), 2);
    has(
        &c,
        "path = \"/.well-known/acme-challenge/\"\nroot = \"/var/www/certbot\"",
    );
    has(&c, "path = \"/static/\"\nroot = \"/srv/shop\"");
    has(
        &c,
        "response_headers = { set = { x-frame-options = \"DENY\" } }",
    );
    has(&c, "connect_timeout = \"3s\"");
    noted(&c, "certbot-site.conf", 32, "include", Kind::NotCarried);
    noted(&c, "certbot-site.conf", 42, "expires", Kind::NotCarried);
    let (c, _) = nginx_with("certbot-site.conf", Some("ops@example.com"));
    has(&c, "tls = \"acme\"");
    has(&c, "http_listen = [\"0.0.0.0:80\", \"[::]:80\"]");
}

#[test]
fn a_server_with_plain_and_tls_listeners_becomes_two_sites() {
    let (c, config) = nginx("getssl-both.conf");
    assert_eq!(config.sites.len(), 2, "{}", c.toml);
    assert!(config.sites[0].tls.is_none());
    assert!(config.sites[1].tls.is_some());
    // The alias maps onto the root.
    has(
        &c,
        "path = \"/.well-known/acme-challenge/\"\nroot = \"/var/www/blog\"",
    );
}

#[test]
fn ws_chat_routes() {
    let (c, config) = nginx("ws-chat.conf");
    let routes = &config.sites[0].routes;
    assert_eq!(routes.len(), 4, "{}", c.toml);
    has(&c, "balance = \"ip_hash\"");
    has(&c, "{ addr = \"10.0.1.21:8080\", weight = 2 }");
    has(&c, "keepalive = 16");
    has(&c, "read_timeout = \"1d\"");
    // `access_log off` in one location does not turn the whole log off.
    assert!(!c.toml.contains("access_log"), "{}", c.toml);
    noted(&c, "ws-chat.conf", 53, "access_log", Kind::NotCarried);
    noted(&c, "ws-chat.conf", 27, "listen", Kind::Dropped);
    noted(&c, "ws-chat.conf", 58, "try_files", Kind::Dropped);
}

#[test]
fn stream_block() {
    let (c, config) = nginx("stream-tcp.conf");
    assert_eq!(config.streams.len(), 4, "{}", c.toml);
    has(
        &c,
        "sni_routes = { \"a.example.com\" = \"site_a\", \"b.example.com\" = \"site_b\", \"*\" = \"fallback\" }",
    );
    has(
        &c,
        "tls = { cert = \"/etc/ssl/mail.pem\", key = \"/etc/ssl/mail.key\" }",
    );
    has(&c, "accept_proxy_protocol = true\nproxy_protocol = \"v1\"");
    has(&c, "idle_timeout = \"1h\"");
    has(&c, "balance = \"hash\"");
    noted(&c, "stream-tcp.conf", 54, "listen", Kind::NotCarried);
}

#[test]
fn upstream_parameters() {
    let (c, config) = nginx("upstream-params.conf");
    let w = &config.upstreams["weighted"];
    assert_eq!(w.servers.len(), 5);
    assert_eq!(w.servers[0].weight, 5);
    assert_eq!(w.servers[0].max_conns, 100);
    assert!(w.servers[3].backup);
    assert!(w.servers[4].down);
    assert_eq!(w.keepalive, 32);
    let f = &config.upstreams["fewest"];
    assert_eq!(f.max_fails, 3);
    assert_eq!(f.fail_timeout, std::time::Duration::from_secs(30));
    assert_eq!(f.slow_start, std::time::Duration::from_secs(30));
    has(&c, "hash_key = \"uri\"");
    has(&c, "hash_key = \"cookie:session\"");
    has(&c, "balance = \"random_two\"");
    noted(&c, "upstream-params.conf", 25, "hash", Kind::Approximated);
    noted(&c, "upstream-params.conf", 27, "server", Kind::Approximated);
    // nginx Plus `sticky cookie srv_id expires=1h` -> the upstream's sticky cookie.
    let st = &config.upstreams["sticky_app"];
    assert_eq!(st.sticky_cookie.as_deref(), Some("srv_id"));
    assert_eq!(
        st.sticky_cookie_max_age,
        Some(std::time::Duration::from_secs(3600))
    );
    assert!(c.report.find("sticky", 35).is_none(), "{}", c.report);
    noted(&c, "upstream-params.conf", 37, "server", Kind::NotCarried);
}

#[test]
fn includes_are_followed_with_their_own_file_names() {
    let (c, config) = nginx("includes/nginx.conf");
    assert_eq!(config.sites.len(), 2);
    has(&c, "keepalive_timeout = \"30s\"");
    has(&c, "hosts = [\"app.internal\", \"_\"]");
    noted(
        &c,
        "includes/snippets/proxy-params.conf",
        1,
        "proxy_set_header",
        Kind::Dropped,
    );
    noted(&c, "includes/nginx.conf", 9, "multi_accept", Kind::Dropped);
}

#[test]
fn location_forms() {
    let (c, config) = nginx("locations.conf");
    let kinds: Vec<String> = config.sites[0]
        .routes
        .iter()
        .map(|r| format!("{:?}", r.matcher))
        .collect();
    assert_eq!(kinds.len(), 9, "{kinds:?}\n{}", c.toml);
    has(&c, "regex = \"^/static/\"");
    let regexes: Vec<&str> = config.sites[0]
        .routes
        .iter()
        .filter_map(|r| match &r.matcher {
            portico_config::Matcher::Regex(re) => Some(re.as_str()),
            _ => None,
        })
        .collect();
    assert!(regexes.contains(&"(?i)\\.(png|jpe?g|gif)$"), "{regexes:?}");
    has(&c, "strip_prefix = true");
    noted(&c, "locations.conf", 37, "location", Kind::NotCarried);
    noted(&c, "locations.conf", 8, "location", Kind::Approximated);
    noted(&c, "locations.conf", 30, "location", Kind::Approximated);
    noted(&c, "locations.conf", 43, "error_page", Kind::NotCarried);
}

#[test]
fn policies_are_written() {
    let (c, config) = nginx("policies.conf");
    let site = &config.sites[0];
    let route = |path: &str| {
        site.routes
            .iter()
            .find(|r| format!("{:?}", r.matcher).contains(&format!("\"{path}\"")))
            .unwrap_or_else(|| panic!("no route {path}:\n{}", c.toml))
    };
    let v1 = &route("/v1/").policy;
    let l = v1.limit_rate.expect("limit_rate on /v1/");
    assert_eq!((l.requests, l.burst), (10, 20));
    assert_eq!(v1.limit_conn, Some(10));
    // gzip on + gzip_types in http: written on the site, inherited by every route.
    let z = v1.compress.resolve().expect("compress");
    assert_eq!(
        z.types,
        vec!["text/html", "text/plain", "application/json", "text/css"]
    );
    assert_eq!(z.min_size, 20);
    has(&c, "compress = [\"gzip\"]");
    // set_real_ip_from + real_ip_header X-Forwarded-For -> [server] trusted_proxies.
    has(&c, "trusted_proxies = [\"10.0.0.0/8\"]");
    noted(
        &c,
        "policies.conf",
        10,
        "real_ip_header",
        Kind::Approximated,
    );
    // Both refuse past the limits; nginx with 503 (no *_status), Portico with 429.
    noted(&c, "policies.conf", 20, "limit_req", Kind::Approximated);
    noted(&c, "policies.conf", 21, "limit_conn", Kind::Approximated);
    // /etc/nginx/.htpasswd is not on this machine: /admin/ is written closed.
    let admin = &route("/admin/").policy;
    assert!(admin.auth_basic.is_none());
    assert_eq!(admin.access.as_ref().map(Vec::len), Some(1));
    noted(
        &c,
        "policies.conf",
        29,
        "auth_basic_user_file",
        Kind::NotCarried,
    );
    // /usr/share/nginx/html/50x.html is not here either: reported, not written.
    noted(&c, "policies.conf", 17, "error_page", Kind::NotCarried);
    assert!(site.error_pages.is_empty());
    noted(&c, "policies.conf", 34, "fastcgi_pass", Kind::NotCarried);
    for (line, d) in [
        (5, "gzip"),
        (6, "gzip_types"),
        (7, "limit_req_zone"),
        (8, "limit_conn_zone"),
        (9, "set_real_ip_from"),
        (26, "allow"),
        (27, "deny"),
        (28, "auth_basic"),
    ] {
        assert!(
            c.report.find(d, line).is_none(),
            "{d} at line {line}:\n{}",
            c.report
        );
    }
}

#[test]
fn virtual_hosts() {
    let (c, config) = nginx("vhosts.conf");
    assert_eq!(config.sites.len(), 4);
    has(&c, "hosts = [\"_\"]");
    has(&c, "hosts = [\"*.tenants.example.com\"]");
    has(&c, "hosts = [\"example.net\", \"*.example.net\"]");
    noted(&c, "vhosts.conf", 26, "server_name", Kind::NotCarried);
}

#[test]
fn api_gateway() {
    let (c, _) = nginx("api-gateway.conf");
    has(
        &c,
        "request_headers = { set = { x-service = \"users\" }, remove = [\"accept-encoding\"] }",
    );
    has(
        &c,
        "response_headers = { set = { x-gateway = \"portico-test\" }, remove = [\"x-powered-by\"] }",
    );
    has(&c, "max_body = \"0\"");
    has(&c, "max_body = \"10m\"");
    has(&c, "read_timeout = \"5m\"");
    noted(&c, "api-gateway.conf", 29, "proxy_pass", Kind::NotCarried);
}

#[test]
fn redirect_forms() {
    let (c, _) = nginx("redirects.conf");
    has(&c, "redirect = \"https://new.example.com{uri}\"");
    has(&c, "redirect = \"https://legacy.example.com{uri}\"");
    has(
        &c,
        "redirect = \"https://blog.example.com{uri}\"\nstatus = 308",
    );
    has(
        &c,
        "redirect = \"{scheme}://{host}/new-page\"\nstatus = 302",
    );
    has(&c, "status = 410");
    has(&c, "status = 418");
    noted(&c, "redirects.conf", 13, "rewrite", Kind::Approximated);
    noted(&c, "redirects.conf", 31, "return", Kind::NotCarried);
}

#[test]
fn static_sites() {
    let (c, _) = nginx("static-site.conf");
    has(&c, "path = \"/assets/\"\nroot = \"/srv/static\"");
    noted(&c, "static-site.conf", 15, "expires", Kind::NotCarried);
    noted(&c, "static-site.conf", 16, "add_header", Kind::NotCarried);
    noted(&c, "static-site.conf", 19, "alias", Kind::NotCarried);
    noted(&c, "static-site.conf", 20, "autoindex", Kind::NotCarried);
    noted(&c, "static-site.conf", 23, "try_files", Kind::NotCarried);
}

#[test]
fn seed_keepalived_configs() {
    let (c, config) = keepalived("seed-003-node1-keepalived.conf");
    let v = &config.vrrp[0];
    assert_eq!(v.vrid, 51);
    assert_eq!(v.priority, 100);
    assert_eq!(config.streams.len(), 1);
    has(&c, "persistence = \"50s\"");
    has(&c, "auth_pass = \"123456\"");
    has(&c, "version = 2");
    noted(
        &c,
        "seed-003-node1-keepalived.conf",
        3,
        "state",
        Kind::Dropped,
    );

    let (c, config) = keepalived("seed-004-master-keepalived.conf");
    let v = &config.vrrp[0];
    assert!(!v.preempt);
    assert_eq!(v.track.len(), 1);
    has(&c, "track = [{ listeners = true, weight = -20 }]");
    let (_, backup) = keepalived("seed-004-backup-keepalived.conf");
    assert_eq!(backup.vrrp[0].priority, 90);
    assert_eq!(backup.vrrp[0].interface, "eth1");
}

#[test]
fn lvs_director() {
    let (c, config) = keepalived("lvs-keepalived.conf");
    assert_eq!(config.streams.len(), 2);
    let v = &config.vrrp[0];
    assert_eq!(v.priority, 160, "150 + the positive weight 10");
    assert_eq!(v.track.len(), 2);
    assert!(!v.preempt);
    assert_eq!(v.preempt_delay, std::time::Duration::from_secs(30));
    has(&c, "unicast_peers = [\"10.0.0.12\"]");
    has(
        &c,
        "health = { type = \"http\", path = \"/health\", expect_status = \"200\"",
    );
    has(&c, "{ addr = \"10.0.0.50:80\", backup = true }");
    has(&c, "{ addr = \"10.0.2.2:3306\", down = true }");
    has(&c, "balance = \"hash\"");
    noted(
        &c,
        "lvs-keepalived.conf",
        27,
        "vrrp_sync_group",
        Kind::NotCarried,
    );
    noted(
        &c,
        "lvs-keepalived.conf",
        53,
        "track_interface",
        Kind::NotCarried,
    );
    noted(
        &c,
        "lvs-keepalived.conf",
        60,
        "notify_master",
        Kind::NotCarried,
    );
    noted(
        &c,
        "lvs-keepalived.conf",
        120,
        "virtual_server",
        Kind::NotCarried,
    );
}

#[test]
fn unknown_directives_are_reported_never_dropped() {
    let dir = std::env::temp_dir().join(format!("pimp-unknown-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("tmp");
    let f = dir.join("nginx.conf");
    std::fs::write(
        &f,
        "events {}\nhttp {\n  frobnicate on;\n  server {\n    listen 8080;\n    mystery_block x {\n      inner 1;\n    }\n    location / { return 200 ok; }\n  }\n}\n",
    )
    .expect("write");
    let c = portico_import::nginx(&f, &NginxOptions::default()).expect("convert");
    validate("unknown", &c);
    noted(&c, "nginx.conf", 3, "frobnicate", Kind::NotCarried);
    noted(&c, "nginx.conf", 6, "mystery_block", Kind::NotCarried);
    let f = dir.join("keepalived.conf");
    std::fs::write(&f, "vrrp_instance X {\n interface eth0\n virtual_router_id 9\n virtual_ipaddress {\n 10.9.9.9\n }\n weird_option 3\n}\n").expect("write");
    let c = portico_import::keepalived(&f).expect("convert");
    validate("unknown", &c);
    noted(&c, "keepalived.conf", 7, "weird_option", Kind::NotCarried);
    std::fs::remove_dir_all(&dir).expect("cleanup");
}

#[test]
fn syntax_errors_name_file_and_line() {
    let dir = std::env::temp_dir().join(format!("pimp-syntax-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("tmp");
    let f = dir.join("nginx.conf");
    std::fs::write(&f, "http {\n  server {\n    listen 80\n  }\n").expect("write");
    let e = portico_import::nginx(&f, &NginxOptions::default()).expect_err("must fail");
    assert!(e.to_string().contains("nginx.conf:"), "{e}");
    std::fs::remove_dir_all(&dir).expect("cleanup");
}
