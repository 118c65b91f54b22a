//! Traffic policy keys: parsed on sites and routes, a route's own value replaces its site's,
//! and bad values are reported at their `FILE:LINE:COL`.

use std::path::Path;

use portico_config::AccessRule;

use crate::support::one;

const SITE_HEAD: &str = "[[sites]]\nlisten = [\"127.0.0.1:8080\"]\n";

fn parse(text: &str) -> portico_config::Config {
    portico_config::parse(text, Path::new("t.toml")).unwrap()
}

#[test]
fn access_is_inherited_from_the_site_and_replaced_by_a_route() {
    let c = parse(&format!(
        "{SITE_HEAD}access = [\"allow 10.0.0.0/8\", \"deny all\"]\n\
         [[sites.routes]]\npath = \"/\"\nrespond = \"x\"\n\
         [[sites.routes]]\nexact = \"/open\"\nrespond = \"x\"\naccess = []\n\
         [[sites.routes]]\nexact = \"/one\"\nrespond = \"x\"\naccess = \"deny 127.0.0.2\"\n"
    ));
    let routes = &c.sites[0].routes;
    let site = routes[0].policy.access.as_deref().unwrap();
    assert_eq!(site.len(), 2);
    assert!(site[0].allow && site[0].net.unwrap().contains("10.9.9.9".parse().unwrap()));
    assert_eq!(
        site[1],
        AccessRule {
            allow: false,
            net: None
        }
    );
    assert_eq!(routes[1].policy.access.as_deref(), Some(&[][..]));
    let one_rule = routes[2].policy.access.as_deref().unwrap();
    assert!(
        !one_rule[0].allow
            && one_rule[0]
                .net
                .unwrap()
                .contains("127.0.0.2".parse().unwrap())
    );
    let none = parse(&format!(
        "{SITE_HEAD}[[sites.routes]]\npath = \"/\"\nrespond = \"x\"\n"
    ));
    assert!(none.sites[0].routes[0].policy.is_empty());
}

#[test]
fn bad_access_rules_name_their_position() {
    let d = one(&format!(
        "{SITE_HEAD}access = [\"allow 10.0.0.0/8\", \"permit 10.0.0.1/8\"]\n\
         [[sites.routes]]\npath = \"/\"\nrespond = \"x\"\n"
    ));
    assert!(
        d.starts_with("t.toml:3:31: bad `access` rule `permit 10.0.0.1/8`: `permit` is neither"),
        "{d}"
    );
    let d = one(&format!(
        "{SITE_HEAD}[[sites.routes]]\npath = \"/\"\nrespond = \"x\"\naccess = [\"allow 10.0.0.1/8\"]\n"
    ));
    assert!(
        d.starts_with("t.toml:6:11: bad `access` rule `allow 10.0.0.1/8`: `10.0.0.1/8` has bits set past its prefix; write `10.0.0.0/8`"),
        "{d}"
    );
}

#[test]
fn limits_parse_inherit_and_report_bad_values() {
    let c = parse(&format!(
        "{SITE_HEAD}limit_rate = {{ rate = \"10r/s\", burst = 20 }}\nlimit_conn = 5\n\
         [[sites.routes]]\npath = \"/\"\nrespond = \"x\"\n\
         [[sites.routes]]\npath = \"/ws\"\nrespond = \"x\"\nlimit_rate = {{ rate = \"30r/m\" }}\n"
    ));
    let r = &c.sites[0].routes;
    let site = r[0].policy.limit_rate.unwrap();
    assert_eq!((site.requests, site.per.as_secs(), site.burst), (10, 1, 20));
    assert_eq!(r[0].policy.limit_conn, Some(5));
    let own = r[1].policy.limit_rate.unwrap();
    assert_eq!((own.requests, own.per.as_secs(), own.burst), (30, 60, 0));
    assert_eq!(r[1].policy.limit_conn, Some(5), "inherited key by key");

    let route = "[[sites.routes]]\npath = \"/\"\nrespond = \"x\"\n";
    let d = one(&format!(
        "{SITE_HEAD}limit_rate = {{ rate = \"10/s\" }}\n{route}"
    ));
    assert!(
        d.starts_with("t.toml:3:23: bad `rate` `10/s`: the unit is `r/s` or `r/m`"),
        "{d}"
    );
    let d = one(&format!("{SITE_HEAD}limit_rate = {{ burst = 2 }}\n{route}"));
    assert!(
        d.starts_with("t.toml:3:14: `limit_rate` has no `rate`"),
        "{d}"
    );
    let d = one(&format!(
        "{SITE_HEAD}limit_rate = {{ rate = \"1r/s\", brust = 2 }}\n{route}"
    ));
    assert!(
        d.starts_with(
            "t.toml:3:31: unknown key `brust` in `limit_rate`\n  hint: did you mean `burst`?"
        ),
        "{d}"
    );
    let d = one(&format!("{SITE_HEAD}limit_conn = 0\n{route}"));
    assert!(d.starts_with("t.toml:3:14: "), "{d}");
}

#[test]
fn trusted_proxies_parse_and_report_bad_entries() {
    let c = parse("[server]\ntrusted_proxies = [\"10.0.0.0/8\", \"::1\"]\n");
    let t = &c.server.trusted_proxies;
    assert_eq!(t.len(), 2);
    assert!(t[0].contains("10.2.3.4".parse().unwrap()) && t[1].contains("::1".parse().unwrap()));
    assert!(parse("").server.trusted_proxies.is_empty());
    let d = one("[server]\ntrusted_proxies = [\"10.0.0.0/8\", \"proxy.local\"]\n");
    assert!(
        d.starts_with(
            "t.toml:2:34: bad `trusted_proxies` entry `proxy.local`: `proxy.local` is not an IP address"
        ),
        "{d}"
    );
}

#[test]
fn error_pages_are_read_and_bad_entries_named() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("502.html"), "<h1>down</h1>").unwrap();
    let cfg = dir.path().join("t.toml");
    let route = "[[sites.routes]]\npath = \"/\"\nrespond = \"x\"\n";
    let text = format!("{SITE_HEAD}error_pages = {{ 502 = \"502.html\" }}\n{route}");
    let c = portico_config::parse(&text, &cfg).unwrap();
    let page = &c.sites[0].error_pages[0];
    assert_eq!(
        (page.status, page.body.as_slice()),
        (502, &b"<h1>down</h1>"[..])
    );
    let text =
        format!("{SITE_HEAD}error_pages = {{ 200 = \"502.html\", 503 = \"none.html\" }}\n{route}");
    let d: Vec<String> = match portico_config::parse(&text, &cfg) {
        Ok(_) => panic!("accepted"),
        Err(e) => e.diagnostics().iter().map(ToString::to_string).collect(),
    };
    assert_eq!(d.len(), 2, "{d:#?}");
    assert!(
        d[0].contains("t.toml:3:17: bad `error_pages` status `200`"),
        "{}",
        d[0]
    );
    assert!(
        d[1].contains("t.toml:3:41: cannot read error page"),
        "{}",
        d[1]
    );
}

#[test]
fn options_that_would_do_nothing_are_refused_with_a_reason() {
    // slow_start cannot ramp a server up under a hash.
    for balance in ["hash", "ip_hash"] {
        let d = one(&format!(
            "[upstreams.a]\nservers = [\"127.0.0.1:1\"]\nbalance = \"{balance}\"\nslow_start = \"30s\"\n"
        ));
        assert!(
            d.starts_with(
                "t.toml:4:1: `slow_start` has no effect with `balance = \"hash\"` or `\"ip_hash\"`"
            ),
            "{d}"
        );
    }
    parse(
        "[upstreams.a]\nservers = [\"127.0.0.1:1\"]\nbalance = \"least_conn\"\nslow_start = \"30s\"\n",
    );
    parse("[upstreams.a]\nservers = [\"127.0.0.1:1\"]\nbalance = \"hash\"\nslow_start = \"0s\"\n");
    // http_listen only serves http_redirect.
    let tls =
        "[[sites]]\nlisten = [\"127.0.0.1:8443\"]\ntls = { cert = \"c.pem\", key = \"k.pem\" }\n";
    let route = "[[sites.routes]]\npath = \"/\"\nrespond = \"x\"\n";
    let d = one(&format!(
        "{tls}http_redirect = false\nhttp_listen = [\"127.0.0.1:8080\"]\n{route}"
    ));
    assert!(
        d.starts_with("t.toml:5:1: `http_listen` has no effect with `http_redirect = false`"),
        "{d}"
    );
    parse(&format!("{tls}http_redirect = false\n{route}"));
    parse(&format!("{tls}http_listen = [\"127.0.0.1:8080\"]\n{route}"));
}

#[test]
fn compress_keys_inherit_key_by_key_and_bad_values_are_named() {
    use portico_config::Coding;
    let c = parse(&format!(
        "{SITE_HEAD}compress = true\ncompress_min_size = \"1k\"\n\
         [[sites.routes]]\npath = \"/\"\nrespond = \"x\"\n\
         [[sites.routes]]\nexact = \"/api\"\nrespond = \"x\"\ncompress = [\"br\", \"gzip\"]\ncompress_types = [\"Application/JSON\", \"text/*\"]\n\
         [[sites.routes]]\nexact = \"/off\"\nrespond = \"x\"\ncompress = false\n"
    ));
    let r = &c.sites[0].routes;
    let site = r[0].policy.compress.resolve().unwrap();
    assert_eq!(site.codings, Coding::ALL);
    assert_eq!(site.min_size, 1024);
    assert!(site.types.iter().any(|t| t == "text/*"));
    let api = r[1].policy.compress.resolve().unwrap();
    assert_eq!(api.codings, [Coding::Br, Coding::Gzip]);
    assert_eq!(api.types, ["application/json", "text/*"]);
    assert_eq!(api.min_size, 1024, "inherited from the site");
    assert!(r[2].policy.compress.resolve().is_none());
    // No compress anywhere: off.
    let plain = parse(&format!(
        "{SITE_HEAD}[[sites.routes]]\npath = \"/\"\nrespond = \"x\"\n"
    ));
    assert!(plain.sites[0].routes[0].policy.compress.resolve().is_none());

    let route =
        |keys: &str| format!("{SITE_HEAD}[[sites.routes]]\npath = \"/\"\nrespond = \"x\"\n{keys}");
    let d = one(&route("compress = [\"gzip\", \"deflate\"]\n"));
    assert!(
        d.starts_with("t.toml:6:21: unknown coding `deflate` in `compress`"),
        "{d}"
    );
    let d = one(&route("compress = [\"br\", \"br\"]\n"));
    assert!(
        d.starts_with("t.toml:6:19: `compress` lists `br` twice"),
        "{d}"
    );
    let d = one(&route("compress = true\ncompress_types = [\"json\"]\n"));
    assert!(
        d.starts_with("t.toml:7:19: bad media type `json` in `compress_types`"),
        "{d}"
    );
    let d = one(&route("compress_types = [\"text/*\"]\n"));
    assert!(
        d.contains("sets `compress_types` or `compress_min_size` but does not compress"),
        "{d}"
    );
    let d = one(&format!(
        "{SITE_HEAD}compress_min_size = \"1k\"\n[[sites.routes]]\npath = \"/\"\nrespond = \"x\"\n"
    ));
    assert!(
        d.starts_with(
            "t.toml:3:1: `compress_min_size` has no effect: neither site #1 nor its routes compress"
        ),
        "{d}"
    );
}
