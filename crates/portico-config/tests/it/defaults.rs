//! Defaults from SPEC.md's tables, and relative path resolution against the file's folder.

use std::path::{Path, PathBuf};
use std::time::Duration;

use portico_config::*;

const MINIMAL: &str = r#"
[upstreams.app]
servers = ["127.0.0.1:8080", { addr = "backend.local:81", weight = 3, backup = true, down = true, max_conns = 7 }, "[::1]:82"]

[[sites]]
listen = ["127.0.0.1:8000", "[::1]:8000"]

[[sites.routes]]
path = "/api"
proxy = "app"

[[sites.routes]]
exact = "/static"
root = "www"

[[sites.routes]]
regex = '^/old/(.*)$'
redirect = "https://{host}{uri}"

[[sites.routes]]
path = "/"
respond = "hello"

[[vrrp]]
name = "VI_1"
interface = "eth0"
vrid = 51
virtual_ips = ["192.168.50.130/24"]
track = [{ script = "chk.sh" }, { upstream = "app", weight = -20 }]
notify = "/usr/local/bin/notify"
"#;

fn minimal() -> Config {
    match parse(MINIMAL, Path::new("/etc/portico/portico.toml")) {
        Ok(c) => c,
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn server_and_admin_defaults() {
    let c = minimal();
    assert_eq!(c.source, PathBuf::from("/etc/portico/portico.toml"));
    assert_eq!(c.base_dir, PathBuf::from("/etc/portico"));
    let s = &c.server;
    assert_eq!(s.state_dir, PathBuf::from("/etc/portico/portico-data"));
    assert_eq!(s.access_log, AccessLogTarget::Stdout);
    assert_eq!(s.access_log_format, AccessLogFormat::Combined);
    assert_eq!(s.max_connections, 65536);
    assert_eq!(s.header_timeout, Duration::from_secs(10));
    assert_eq!(s.keepalive_timeout, Duration::from_secs(65));
    assert_eq!(s.shutdown_grace, Duration::from_secs(30));
    assert_eq!(s.threads, 0);
    assert_eq!(s.secret_file, None);
    assert_eq!(c.admin.listen, Some("127.0.0.1:9900".parse().unwrap()));
    assert_eq!(c.admin.token_file, None);
}

#[test]
fn upstream_defaults() {
    let c = minimal();
    let u = &c.upstreams["app"];
    assert_eq!(u.name, "app");
    assert_eq!(u.balance, Balance::RoundRobin);
    assert_eq!(u.hash_key, HashKey::ClientIp);
    assert_eq!(u.sticky_cookie, None);
    assert_eq!(u.sticky_cookie_max_age, None);
    assert_eq!(u.connect_timeout, Duration::from_secs(5));
    assert_eq!(u.read_timeout, Duration::from_secs(60));
    assert_eq!(u.send_timeout, Duration::from_secs(60));
    assert_eq!(u.keepalive, 32);
    assert_eq!(u.max_fails, 1);
    assert_eq!(u.fail_timeout, Duration::from_secs(10));
    assert_eq!(u.retries, 1);
    assert_eq!(u.slow_start, Duration::ZERO);
    assert_eq!((u.tls.clone(), u.health.clone()), (None, None));
    let s0 = &u.servers[0];
    assert_eq!(
        (s0.weight, s0.backup, s0.down, s0.max_conns),
        (1, false, false, 0)
    );
    let s1 = &u.servers[1];
    assert_eq!(
        s1.addr,
        ServerAddr {
            host: "backend.local".into(),
            port: 81
        }
    );
    assert_eq!(
        (s1.weight, s1.backup, s1.down, s1.max_conns),
        (3, true, true, 7)
    );
    assert_eq!(u.servers[2].addr.to_string(), "[::1]:82");
    assert_eq!(
        u.servers[2].addr.ip_socket_addr(),
        Some("[::1]:82".parse().unwrap())
    );
}

#[test]
fn site_and_route_defaults() {
    let c = minimal();
    let site = &c.sites[0];
    assert_eq!(site.index, 0);
    assert_eq!(site.listen.len(), 2);
    assert_eq!(site.hosts, vec![HostPattern::Any]);
    assert_eq!(site.tls, None);
    assert!(!site.http_redirect);
    assert_eq!(site.http_listen, vec!["0.0.0.0:80".parse().unwrap()]);
    assert_eq!(site.hsts, None);
    let r = &site.routes;
    assert_eq!(r.len(), 4);
    assert!(matches!(&r[0].matcher, Matcher::Prefix(p) if p == "/api"));
    let Action::Proxy(p) = &r[0].action else {
        panic!()
    };
    assert_eq!(p.upstream, "app");
    assert!(p.websocket);
    assert_eq!(p.read_timeout, None);
    assert_eq!(p.max_body, 1024 * 1024);
    assert!(!p.strip_prefix);
    assert_eq!(p.request_headers, HeaderRules::default());
    assert_eq!(p.ws_ping, None);
    assert!(matches!(&r[1].matcher, Matcher::Exact(p) if p == "/static"));
    let Action::Static(s) = &r[1].action else {
        panic!()
    };
    assert_eq!(s.root, PathBuf::from("/etc/portico/www"));
    assert_eq!(s.index, vec!["index.html".to_string()]);
    let Matcher::Regex(re) = &r[2].matcher else {
        panic!()
    };
    assert!(re.is_match("/old/x"));
    let Action::Redirect(rd) = &r[2].action else {
        panic!()
    };
    assert_eq!(
        (rd.template.as_str(), rd.status),
        ("https://{host}{uri}", 301)
    );
    let Action::Respond(rs) = &r[3].action else {
        panic!()
    };
    assert_eq!(
        (rs.body.as_str(), rs.status, rs.content_type.as_str()),
        ("hello", 200, "text/plain")
    );
    assert_eq!(r[3].index, 3);
}

#[test]
fn vrrp_defaults() {
    let c = minimal();
    let v = &c.vrrp[0];
    assert_eq!(v.priority, 100);
    assert_eq!(v.advert_interval, Duration::from_secs(1));
    assert_eq!(v.version, VrrpVersion::V3);
    assert_eq!(v.auth_pass, None);
    assert!(v.preempt);
    assert_eq!(v.preempt_delay, Duration::ZERO);
    assert!(v.unicast_peers.is_empty());
    assert_eq!(v.notify, Some(PathBuf::from("/usr/local/bin/notify")));
    assert_eq!(
        v.track[0],
        VrrpTrack {
            kind: VrrpTrackKind::Script {
                path: "/etc/portico/chk.sh".into(),
                interval: Duration::from_secs(2)
            },
            weight: 0
        }
    );
    assert_eq!(v.track[1].kind, VrrpTrackKind::Upstream("app".into()));
}

#[test]
fn explicit_values_and_relative_paths() {
    let text = r#"
[server]
state_dir = "state"
access_log = "logs/access.log"
access_log_format = "json"
max_connections = 100
threads = 2
[admin]
listen = "off"
token_file = "tok"
[upstreams.h]
servers = ["127.0.0.1:1"]
balance = "hash"
hash_key = "header:X-User"
sticky_cookie = "srv"
sticky_cookie_max_age = "1h"
[[sites]]
listen = ["127.0.0.1:1"]
hosts = ["Example.COM", "*.example.org", "*"]
[[sites.routes]]
path = "/app/"
proxy = "h"
websocket = false
max_body = "0"
strip_prefix = true
request_headers = { set = { X-Env = "prod" }, remove = ["X-Debug"] }
response_headers = { remove = ["Server"] }
"#;
    let c = parse(text, Path::new("conf/p.toml")).unwrap();
    assert_eq!(c.base_dir, PathBuf::from("conf"));
    assert_eq!(c.server.state_dir, PathBuf::from("conf/state"));
    assert_eq!(
        c.server.access_log,
        AccessLogTarget::File("conf/logs/access.log".into())
    );
    assert_eq!(c.server.access_log_format, AccessLogFormat::Json);
    assert_eq!((c.server.max_connections, c.server.threads), (100, 2));
    assert_eq!(c.admin.listen, None);
    assert_eq!(c.admin.token_file, Some("conf/tok".into()));
    let u = &c.upstreams["h"];
    assert_eq!(u.hash_key, HashKey::Header("x-user".into()));
    assert_eq!(u.sticky_cookie.as_deref(), Some("srv"));
    assert_eq!(u.sticky_cookie_max_age, Some(Duration::from_secs(3600)));
    let hosts = &c.sites[0].hosts;
    assert_eq!(hosts[0], HostPattern::Exact("example.com".into()));
    assert_eq!(hosts[1], HostPattern::Suffix(".example.org".into()));
    assert!(hosts[1].matches("a.example.org") && !hosts[1].matches("example.org"));
    assert_eq!(hosts[2], HostPattern::Any);
    let Action::Proxy(p) = &c.sites[0].routes[0].action else {
        panic!()
    };
    assert!(!p.websocket && p.strip_prefix);
    assert_eq!(p.max_body, 0);
    assert_eq!(
        p.request_headers.set,
        vec![("x-env".to_string(), "prod".to_string())]
    );
    assert_eq!(p.request_headers.remove, vec!["x-debug".to_string()]);
    assert_eq!(p.response_headers.remove, vec!["server".to_string()]);
}

#[test]
fn file_name_without_folder_resolves_against_dot() {
    let c = parse("", Path::new("portico.toml")).unwrap();
    assert_eq!(c.base_dir, PathBuf::from("."));
    assert_eq!(c.server.state_dir, PathBuf::from("./portico-data"));
    assert_eq!(
        c.server.send_min_rate, 1024,
        "send_min_rate defaults to 1 KiB/s"
    );
    let set = |v: &str| {
        parse(
            &format!("[server]\nsend_min_rate = {v}\n"),
            Path::new("p.toml"),
        )
        .map(|c| c.server.send_min_rate)
    };
    assert_eq!(set("\"4k\"").unwrap(), 4096);
    assert_eq!(set("0").unwrap(), 0, "0 turns it off");
    assert!(set("\"fast\"").is_err());
    assert!(
        c.sites.is_empty() && c.upstreams.is_empty() && c.vrrp.is_empty() && c.streams.is_empty()
    );
}

#[test]
fn load_reports_a_missing_file() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.toml");
    let err = load(&missing).unwrap_err();
    assert!(matches!(&err, ConfigError::Io { path, .. } if *path == missing));
    assert!(
        err.to_string().contains("cannot read the config file"),
        "{err}"
    );
    let file = dir.path().join("ok.toml");
    std::fs::write(&file, "[server]\nthreads = 1\n").unwrap();
    assert_eq!(load(&file).unwrap().server.threads, 1);
}
