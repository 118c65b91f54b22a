//! nginx's policy directives written as Portico keys, with nginx's inheritance: an array
//! directive (`allow`/`deny`, `limit_req`, `limit_conn`, `error_page`) at a level replaces
//! the whole inherited list, a level without one inherits it; `auth_basic`,
//! `auth_basic_user_file` and the `gzip*` settings are merged one by one. Each test writes a
//! small nginx configuration (and the files it names) into a temp folder, converts it,
//! validates the TOML as `portico check` does, and reads the effective policy of each route
//! from the parsed config.

use std::path::PathBuf;

use portico_config::{Config, Matcher, Policy};

use super::*;

/// `alice:secret`, as `htpasswd -nbB -C 5 alice secret` writes it.
const ALICE: &str = "alice:$2y$05$Qt6q.Yh06wDnJws/TwPZcestnmqYa04o6fa17Dw0jI2.iv3ZSgPVK\n";

struct Case {
    dir: PathBuf,
}

impl Case {
    fn new(name: &str) -> Case {
        let dir = std::env::temp_dir().join(format!("pimp-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("tmp");
        Case { dir }
    }

    fn file(&self, name: &str, text: &str) -> String {
        let p = self.dir.join(name);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("dir");
        std::fs::write(&p, text).expect("write");
        p.display().to_string()
    }

    /// Convert `http { BODY }` and validate it.
    fn convert(&self, body: &str) -> (Conversion, Config) {
        let f = self.file("nginx.conf", &format!("events {{}}\nhttp {{\n{body}\n}}\n"));
        let opts = NginxOptions {
            acme_email: None,
            prefix: Some(self.dir.clone()),
        };
        let c = portico_import::nginx(Path::new(&f), &opts).expect("convert");
        let config = validate("policy case", &c);
        (c, config)
    }
}

impl Drop for Case {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The effective policy of the route `path` (prefix or exact) of site `site`.
#[track_caller]
fn policy<'a>(config: &'a Config, site: usize, path: &str) -> &'a Policy {
    let r = config.sites[site]
        .routes
        .iter()
        .find(|r| matches!(&r.matcher, Matcher::Prefix(p) | Matcher::Exact(p) if p == path))
        .unwrap_or_else(|| panic!("no route {path} in site {site}"));
    &r.policy
}

fn access(p: &Policy) -> Option<Vec<String>> {
    p.access.as_ref().map(|rules| {
        rules
            .iter()
            .map(|r| {
                let verb = if r.allow { "allow" } else { "deny" };
                match r.net {
                    Some(n) => format!("{verb} {}/{}", n.addr, n.prefix),
                    None => format!("{verb} all"),
                }
            })
            .collect()
    })
}

fn rate(p: &Policy) -> Option<(u32, u64, u32)> {
    p.limit_rate.map(|l| (l.requests, l.per.as_secs(), l.burst))
}

#[test]
fn allow_deny_replace_the_inherited_list_or_inherit_it() {
    let case = Case::new("access");
    let (c, config) = case.convert(
        "  allow 10.0.0.0/8;\n  deny all;\n  server {\n    listen 8080;\n    location /inherits/ { return 200; }\n    location /also/ { root html; }\n    location /own/ {\n      allow 192.168.1.7/24;\n      allow ::1;\n      deny all;\n      root html;\n    }\n  }\n  server {\n    listen 8081;\n    deny 10.9.9.9;\n    location /x/ { root html; }\n  }\n",
    );
    // A `return` answers before nginx's access phase: no rules on that route.
    assert_eq!(access(policy(&config, 0, "/inherits/")), None, "{}", c.toml);
    assert_eq!(
        access(policy(&config, 0, "/also/")),
        Some(vec!["allow 10.0.0.0/8".into(), "deny all".into()])
    );
    // Bits past the prefix are cleared, as nginx does.
    assert_eq!(
        access(policy(&config, 0, "/own/")),
        Some(vec![
            "allow 192.168.1.0/24".into(),
            "allow ::1/128".into(),
            "deny all".into()
        ])
    );
    // The second server's own rule replaces http's list for its routes.
    assert_eq!(
        access(policy(&config, 1, "/x/")),
        Some(vec!["deny 10.9.9.9/32".into()])
    );
    assert_eq!(
        access(policy(&config, 1, "/")),
        Some(vec!["deny 10.9.9.9/32".into()]),
        "the server's root route inherits it too"
    );
    // Every route of the second server has the same rules: they are written on the site.
    assert!(
        c.toml
            .contains("hosts = [\"*\"]\naccess = [\"deny 10.9.9.9\"]"),
        "{}",
        c.toml
    );
}

#[test]
fn limit_req_replaces_or_inherits_and_keeps_the_status_difference() {
    let case = Case::new("limit-req");
    let (c, config) = case.convert(
        "  limit_req_zone $binary_remote_addr zone=one:10m rate=5r/s;\n  limit_req_zone $binary_remote_addr zone=two:10m rate=30r/m;\n  limit_req_zone $http_x_api_key zone=key:10m rate=1r/s;\n  server {\n    listen 8080;\n    limit_req zone=one burst=10 nodelay;\n    location /a/ { root html; }\n    location /b/ {\n      limit_req zone=two;\n      limit_req zone=one burst=3;\n      limit_req_status 429;\n      root html;\n    }\n    location /c/ {\n      limit_req zone=key;\n      root html;\n    }\n  }\n",
    );
    assert_eq!(
        rate(policy(&config, 0, "/a/")),
        Some((5, 1, 10)),
        "{}",
        c.toml
    );
    assert_eq!(rate(policy(&config, 0, "/")), Some((5, 1, 10)));
    // Its own list replaces the server's: the first of it is kept, the second reported.
    assert_eq!(rate(policy(&config, 0, "/b/")), Some((30, 60, 0)));
    noted(&c, "nginx.conf", 12, "limit_req", Kind::NotCarried);
    // The server's limit answers 503 in nginx; /b/ asked for 429 as Portico does.
    noted(&c, "nginx.conf", 8, "limit_req", Kind::Approximated);
    assert!(
        c.report.find("limit_req", 11).is_none(),
        "zone=two with limit_req_status 429 is carried as it is:\n{}",
        c.report
    );
    // A zone keyed on something else than the client: reported, and /c/ has no limit
    // (its own limit_req replaced the server's in nginx too, and cannot be written).
    noted(&c, "nginx.conf", 5, "limit_req_zone", Kind::NotCarried);
    noted(&c, "nginx.conf", 17, "limit_req", Kind::NotCarried);
    assert_eq!(rate(policy(&config, 0, "/c/")), None);
}

#[test]
fn limit_req_without_nodelay_is_approximated() {
    let case = Case::new("limit-delay");
    let (c, config) = case.convert(
        "  limit_req_zone $binary_remote_addr zone=ws:10m rate=1r/s;\n  limit_req_status 503;\n  server {\n    listen 8080;\n    location / {\n      limit_req zone=ws burst=5;\n      root html;\n    }\n  }\n",
    );
    assert_eq!(rate(policy(&config, 0, "/")), Some((1, 1, 5)));
    let notes: Vec<&str> = c
        .report
        .notes
        .iter()
        .filter(|n| n.line == 8 && n.kind == Kind::Approximated)
        .map(|n| n.why.as_str())
        .collect();
    assert!(notes.iter().any(|w| w.contains("delays")), "{notes:?}");
    assert!(notes.iter().any(|w| w.contains("503")), "{notes:?}");
}

#[test]
fn limit_conn_replaces_or_inherits() {
    let case = Case::new("limit-conn");
    let (c, config) = case.convert(
        "  limit_conn_zone $binary_remote_addr zone=perip:10m;\n  limit_conn_zone $server_name zone=perserver:10m;\n  limit_conn perip 20;\n  server {\n    listen 8080;\n    location /a/ { root html; }\n    location /b/ { limit_conn perip 2; root html; }\n    location /c/ { limit_conn perserver 100; root html; }\n  }\n",
    );
    assert_eq!(policy(&config, 0, "/a/").limit_conn, Some(20), "{}", c.toml);
    assert_eq!(policy(&config, 0, "/b/").limit_conn, Some(2));
    assert_eq!(policy(&config, 0, "/c/").limit_conn, None);
    noted(&c, "nginx.conf", 4, "limit_conn_zone", Kind::NotCarried);
    noted(&c, "nginx.conf", 10, "limit_conn", Kind::NotCarried);
    noted(&c, "nginx.conf", 5, "limit_conn", Kind::Approximated);
    // One zone, two servers: nginx counts them together, Portico per site (reported).
    let (c2, _) = case.convert(
        "  limit_conn_zone $binary_remote_addr zone=perip:10m;\n  limit_conn perip 5;\n  server { listen 8080; }\n  server { listen 8081; }\n",
    );
    noted(&c2, "nginx.conf", 3, "limit_conn_zone", Kind::Approximated);
}

#[test]
fn auth_basic_merges_realm_and_file_and_turns_off() {
    let case = Case::new("auth");
    let users = case.file("htpasswd", ALICE);
    case.file("md5.htpasswd", "bob:$apr1$abc$0123456789012345678901\n");
    let (c, config) = case.convert(
        "  auth_basic \"Staff only\";\n  auth_basic_user_file htpasswd;\n  server {\n    listen 8080;\n    location /a/ { root html; }\n    location /open/ { auth_basic off; root html; }\n    location /b/ { auth_basic \"Other\"; root html; }\n    location /md5/ { auth_basic_user_file md5.htpasswd; root html; }\n    location /missing/ { auth_basic_user_file nowhere; root html; }\n    location /any/ { satisfy any; allow 10.0.0.1; deny all; root html; }\n  }\n",
    );
    let a = policy(&config, 0, "/a/")
        .auth_basic
        .as_ref()
        .expect("auth on /a/");
    assert_eq!(a.realm, "Staff only");
    assert_eq!(a.users_file.display().to_string(), users);
    assert_eq!(a.users.len(), 1);
    assert!(
        policy(&config, 0, "/open/").auth_basic.is_none(),
        "{}",
        c.toml
    );
    // The realm is this level's, the file is inherited from http.
    let b = policy(&config, 0, "/b/")
        .auth_basic
        .as_ref()
        .expect("auth on /b/");
    assert_eq!(
        (b.realm.as_str(), b.users_file.display().to_string()),
        ("Other", users.clone())
    );
    noted(&c, "nginx.conf", 4, "auth_basic_user_file", Kind::Hint);
    // Files Portico cannot read are written closed, never open.
    for (path, line) in [("/md5/", 10), ("/missing/", 11)] {
        let p = policy(&config, 0, path);
        assert!(p.auth_basic.is_none());
        assert_eq!(access(p), Some(vec!["deny all".to_string()]), "{path}");
        noted(
            &c,
            "nginx.conf",
            line,
            "auth_basic_user_file",
            Kind::NotCarried,
        );
    }
    // `satisfy any` (address OR credentials) has no Portico form: both are required.
    noted(&c, "nginx.conf", 12, "satisfy", Kind::NotCarried);
}

#[test]
fn error_page_is_inherited_per_server_and_maps_to_files() {
    let case = Case::new("errors");
    let page = case.file("html/50x.html", "<h1>sorry</h1>\n");
    case.file("www/404.html", "<h1>not here</h1>\n");
    let (c, config) = case.convert(
        "  error_page 502 503 /50x.html;\n  server {\n    listen 8080;\n    location = /50x.html { root html; }\n    location /a/ { error_page 404 /x.html; root html; }\n  }\n  server {\n    listen 8081;\n    root www;\n    error_page 404 =200 /404.html;\n    error_page 500 @fallback;\n    error_page 418 http://example.com/;\n  }\n",
    );
    let pages = |i: usize| -> Vec<(u16, String)> {
        config.sites[i]
            .error_pages
            .iter()
            .map(|p| (p.status, p.file.display().to_string()))
            .collect()
    };
    assert_eq!(
        pages(0),
        vec![(502, page.clone()), (503, page)],
        "{}",
        c.toml
    );
    // A location's own error_page: Portico's pages are per site.
    noted(&c, "nginx.conf", 7, "error_page", Kind::NotCarried);
    // The second server has its own: http's 502/503 are not inherited there.
    let www = case.dir.join("www/404.html").display().to_string();
    assert_eq!(pages(1), vec![(404, www)]);
    noted(&c, "nginx.conf", 12, "error_page", Kind::Approximated);
    noted(&c, "nginx.conf", 13, "error_page", Kind::NotCarried);
    noted(&c, "nginx.conf", 14, "error_page", Kind::NotCarried);
}

#[test]
fn gzip_settings_merge_one_by_one() {
    let case = Case::new("gzip");
    let (c, config) = case.convert(
        "  gzip on;\n  gzip_types application/json;\n  gzip_min_length 1000;\n  gzip_comp_level 5;\n  server {\n    listen 8080;\n    location /a/ { root html; }\n    location /b/ { gzip_types text/css; root html; }\n    location /off/ { gzip off; root html; }\n  }\n  server {\n    listen 8081;\n    gzip_types *;\n  }\n",
    );
    let z = |site: usize, path: &str| policy(&config, site, path).compress.resolve();
    let a = z(0, "/a/").expect("gzip on /a/");
    assert_eq!(format!("{:?}", a.codings), "[Gzip]", "{}", c.toml);
    assert_eq!(a.types, vec!["text/html", "application/json"]);
    assert_eq!(a.min_size, 1000);
    // gzip_types at this level replaces the types only; on and min_length are inherited.
    let b = z(0, "/b/").expect("gzip on /b/");
    assert_eq!(
        (b.types.clone(), b.min_size),
        (vec!["text/html".into(), "text/css".into()], 1000)
    );
    assert!(z(0, "/off/").is_none());
    // `*`: Portico's default list of compressible types.
    let all = z(1, "/").expect("gzip on the second server");
    assert!(
        all.types.contains(&"application/json".to_string()),
        "{:?}",
        all.types
    );
    noted(&c, "nginx.conf", 6, "gzip_comp_level", Kind::Approximated);
}

#[test]
fn sticky_cookie_proxy_protocol_and_real_ip() {
    let case = Case::new("misc");
    let (c, config) = case.convert(
        "  set_real_ip_from 10.1.0.0/16;\n  set_real_ip_from 192.168.0.1;\n  real_ip_header proxy_protocol;\n  upstream app {\n    sticky cookie srv expires=2h path=/ httponly;\n    server 10.0.0.1:8080;\n  }\n  server {\n    listen 8080 proxy_protocol;\n    location / { proxy_pass http://app; }\n  }\n",
    );
    let u = &config.upstreams["app"];
    assert_eq!(u.sticky_cookie.as_deref(), Some("srv"), "{}", c.toml);
    assert_eq!(
        u.sticky_cookie_max_age,
        Some(std::time::Duration::from_secs(7200))
    );
    assert!(config.sites[0].accept_proxy_protocol);
    let trusted: Vec<String> = config
        .server
        .trusted_proxies
        .iter()
        .map(|n| format!("{}/{}", n.addr, n.prefix))
        .collect();
    assert_eq!(trusted, vec!["10.1.0.0/16", "192.168.0.1/32"]);
    assert!(
        !c.report.notes.iter().any(|n| n.kind == Kind::NotCarried),
        "{}",
        c.report
    );
}
