//! Each kind of problem: its exact `FILE:LINE:COL`, message and hint, as `portico check`
//! prints them.

use crate::support::{diags, one};

const UP: &str = "[upstreams.app]\nservers = [\"127.0.0.1:8080\"]\n";
const SITE: &str = "[[sites]]\nlisten = [\"127.0.0.1:8080\"]\n[[sites.routes]]\n";

#[test]
fn typo_names_the_closest_key() {
    let text = "[upstreams.app]\nservers = [\"127.0.0.1:8080\"]\nbalanse = \"ip_hash\"\n";
    assert_eq!(
        one(text),
        "t.toml:3:1: unknown key `balanse` in [upstreams.app]\n  hint: did you mean `balance`?"
    );
}

#[test]
fn unknown_key_far_from_all_lists_allowed_keys() {
    let d = one("[admin]\nzzzz = 1\n");
    assert_eq!(
        d,
        "t.toml:2:1: unknown key `zzzz` in [admin]\n  hint: allowed keys here: `listen`, `token_file`"
    );
}

#[test]
fn unknown_top_level_section() {
    let d = one("[sever]\nthreads = 2\n");
    assert!(
        d.starts_with(
            "t.toml:1:2: unknown key `sever` in the top level\n  hint: did you mean `server`?"
        ),
        "{d}"
    );
}

#[test]
fn toml_syntax_error_has_its_position() {
    let d = one("[server]\nthreads = = 2\n");
    assert!(d.starts_with("t.toml:2:"), "{d}");
    assert!(d.contains("TOML syntax error"), "{d}");
}

#[test]
fn duplicate_key_is_a_syntax_error_with_a_hint() {
    let d = one("[server]\nthreads = 1\nthreads = 2\n");
    assert_eq!(
        d,
        "t.toml:3:1: TOML syntax error: duplicate key\n  hint: TOML allows each key, and each [table] header, only once; merge the two"
    );
}

#[test]
fn wrong_type() {
    let d = one("[server]\nthreads = \"four\"\n");
    assert_eq!(
        d,
        "t.toml:2:11: `threads` must be an integer, found a string\n  hint: for example: threads = 1"
    );
}

#[test]
fn duration_without_unit() {
    let d = one("[server]\nheader_timeout = 10\n");
    assert_eq!(
        d,
        "t.toml:2:18: `header_timeout` must be a duration string, found an integer\n  hint: write a unit: header_timeout = \"10s\""
    );
}

#[test]
fn bad_duration_and_size() {
    let text = format!(
        "{UP}{SITE}path = \"/\"\nproxy = \"app\"\nread_timeout = \"5 sec\"\nmax_body = \"10mb\"\n"
    );
    let d = diags(&text);
    assert_eq!(d.len(), 2, "{d:#?}");
    assert!(
        d[0].starts_with("t.toml:8:16: bad duration for `read_timeout`: `5 sec`"),
        "{}",
        d[0]
    );
    assert!(d[0].ends_with("hint: durations look like \"250ms\", \"5s\", \"2m\", \"1h\", \"30d\""));
    assert!(
        d[1].starts_with(
            "t.toml:9:12: bad size for `max_body`: `10mb` has an unknown size unit `mb`"
        ),
        "{}",
        d[1]
    );
}

#[test]
fn enum_values_are_listed() {
    let d = one(&format!("{UP}balance = \"roundrobin\"\n"));
    assert_eq!(
        d,
        "t.toml:3:11: unknown balance `roundrobin`\n  hint: did you mean `round_robin`? allowed: `round_robin`, `least_conn`, `random_two`, `ip_hash`, `hash`"
    );
    let d = one("[server]\naccess_log_format = \"xml\"\n");
    assert!(d.ends_with("hint: allowed: `combined`, `json`"), "{d}");
    let d = one(&format!("{UP}balance = \"hash\"\nhash_key = \"body\"\n"));
    assert!(d.starts_with("t.toml:4:12: bad `hash_key` `body`"), "{d}");
    assert!(
        d.contains("`header:NAME`, `cookie:NAME`, `query:NAME`"),
        "{d}"
    );
}

#[test]
fn listen_with_a_host_name_gets_a_hint() {
    let d = one(
        "[[sites]]\nlisten = [\"localhost:8080\"]\n[[sites.routes]]\npath = \"/\"\nrespond = \"x\"\n",
    );
    assert_eq!(
        d,
        "t.toml:2:11: bad `listen` address: `localhost:8080` is not an IP address with a port\n  hint: listen takes an IP address, not a name: \"127.0.0.1:8080\""
    );
    let d = one("[admin]\nlisten = \"fe80::1::80\"\n");
    assert!(
        d.ends_with("hint: bracket IPv6 addresses: \"[::]:443\""),
        "{d}"
    );
    let d = one("[admin]\nlisten = \"::1\"\n");
    assert!(d.ends_with("hint: add a port: \"[::1]:80\""), "{d}");
    let d = one("[admin]\nlisten = \"127.0.0.1\"\n");
    assert!(d.ends_with("hint: add a port: \"127.0.0.1:80\""), "{d}");
}

#[test]
fn server_addresses() {
    let text = "[upstreams.a]\nservers = [\"backend.local:80\", \"[::1]:81\", \"fe80::1:80\", \"x\", \"h:0\"]\n";
    let d = diags(text);
    assert_eq!(d.len(), 3, "{d:#?}");
    assert_eq!(
        d[0],
        "t.toml:2:44: bad server address `fe80::1:80`: IPv6 addresses need brackets\n  hint: write \"[fe80::1]:80\""
    );
    assert!(
        d[1].starts_with("t.toml:2:58: bad server address `x`: no port"),
        "{}",
        d[1]
    );
    assert!(
        d[2].starts_with("t.toml:2:63: bad server address `h:0`: `0` is not a port"),
        "{}",
        d[2]
    );
}

#[test]
fn server_tables_and_weights() {
    let text = "[upstreams.a]\nservers = [{ addr = \"127.0.0.1:1\", weight = 0 }, { adr = \"127.0.0.1:2\" }]\n";
    let d = diags(text);
    assert_eq!(d.len(), 3, "{d:#?}");
    assert!(
        d[0].starts_with("t.toml:2:45: `weight` must be between 1 and"),
        "{}",
        d[0]
    );
    assert_eq!(
        d[1],
        "t.toml:2:50: server entry has no `addr`\n  hint: write { addr = \"127.0.0.1:8080\", weight = 2 }"
    );
    assert!(d[2].starts_with("t.toml:2:52: unknown key `adr` in a server of [upstreams.a]\n  hint: did you mean `addr`?"), "{}", d[2]);
}

#[test]
fn empty_and_missing_servers() {
    let d = one("[upstreams.a]\nservers = []\n");
    assert!(
        d.starts_with("t.toml:2:11: [upstreams.a] has an empty `servers` list"),
        "{d}"
    );
    let d = one("[upstreams.a]\nbalance = \"hash\"\n");
    assert!(
        d.starts_with("t.toml:1:12: [upstreams.a] has no `servers`"),
        "{d}"
    );
    let d = one("[upstreams.a]\nservers = [\"127.0.0.1:1\", \"127.0.0.1:1\"]\n");
    assert!(
        d.starts_with("t.toml:2:27: server `127.0.0.1:1` is listed twice"),
        "{d}"
    );
}

#[test]
fn discover_needs_cluster_and_allows_empty_servers() {
    let d = one("[upstreams.a]\nservers = []\ndiscover = \"cluster\"\n");
    assert!(
        d.starts_with("t.toml:3:1: `discover = \"cluster\"` needs a [cluster] section"),
        "{d}"
    );
    let d = one("[upstreams.a]\nservers = [\"127.0.0.1:1\"]\ndiscover = \"dns\"\n");
    assert!(d.starts_with("t.toml:3:12: unknown discover `dns`"), "{d}");
    let text = "[cluster]\netcd = [\"http://127.0.0.1:2379\"]\n\
                [upstreams.a]\nservers = []\ndiscover = \"cluster\"\n";
    let c = portico_config::parse(text, std::path::Path::new("t.toml"))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        c.upstreams["a"].discover,
        Some(portico_config::Discover::Cluster)
    );
    assert!(c.upstreams["a"].servers.is_empty());
}

#[test]
fn unknown_upstream_names_the_closest() {
    let d = one(&format!("{UP}{SITE}path = \"/\"\nproxy = \"ap\"\n"));
    assert_eq!(
        d,
        "t.toml:7:9: unknown upstream `ap`\n  hint: did you mean `app`?"
    );
    let d = one(&format!("{UP}{SITE}path = \"/\"\nproxy = \"zzz\"\n"));
    assert_eq!(
        d,
        "t.toml:7:9: unknown upstream `zzz`\n  hint: defined upstreams: `app`"
    );
}

#[test]
fn route_matcher_and_action_counts() {
    let d = one(&format!("{SITE}respond = \"x\"\n"));
    assert_eq!(
        d,
        "t.toml:3:1: route #1 of site #1 has none of the matchers `path`, `exact`, `regex`\n  hint: a route needs exactly one of `path`, `exact`, `regex`"
    );
    let d = one(&format!("{SITE}path = \"/\"\n"));
    assert!(
        d.starts_with("t.toml:3:1: route #1 of site #1 has none of the actions"),
        "{d}"
    );
    let d = one(&format!(
        "{SITE}path = \"/\"\nrespond = \"x\"\nroot = \"www\"\n"
    ));
    assert_eq!(
        d,
        "t.toml:6:1: route #1 of site #1 has two actions: `respond` (at t.toml:5:1) and `root`\n  hint: a route has exactly one; split it into two routes"
    );
    let d = one(&format!(
        "{SITE}path = \"/\"\nexact = \"/x\"\nrespond = \"x\"\n"
    ));
    assert!(
        d.starts_with(
            "t.toml:5:1: route #1 of site #1 has two matchers: `path` (at t.toml:4:1) and `exact`"
        ),
        "{d}"
    );
}

#[test]
fn option_of_another_action() {
    let d = one(&format!(
        "{UP}{SITE}path = \"/\"\nproxy = \"app\"\nindex = [\"a.html\"]\n"
    ));
    assert_eq!(
        d,
        "t.toml:8:1: `index` does not apply to a `proxy` route\n  hint: `index` goes with `root`"
    );
    let d = one(&format!(
        "{SITE}exact = \"/\"\nrespond = \"x\"\nwebsocket = false\n"
    ));
    assert_eq!(
        d,
        "t.toml:6:1: `websocket` does not apply to a `respond` route\n  hint: `websocket` goes with `proxy`"
    );
    let d = one(&format!(
        "{UP}{SITE}regex = \"^/a\"\nproxy = \"app\"\nstrip_prefix = true\n"
    ));
    assert!(
        d.starts_with("t.toml:8:1: `strip_prefix` needs a `path` matcher"),
        "{d}"
    );
}

#[test]
fn regex_template_and_status() {
    let d = one(&format!("{SITE}regex = \"(\"\nrespond = \"x\"\n"));
    assert!(d.starts_with("t.toml:4:9: regex does not compile:"), "{d}");
    let d = one(&format!(
        "{SITE}path = \"/\"\nredirect = \"https://{{hots}}{{uri}}\"\n"
    ));
    assert_eq!(
        d,
        "t.toml:5:12: bad redirect template: unknown placeholder `{hots}`\n  hint: placeholders: {scheme} {host} {uri} {path} {query}"
    );
    let d = one(&format!(
        "{SITE}path = \"/\"\nredirect = \"/x\"\nstatus = 200\n"
    ));
    assert_eq!(
        d,
        "t.toml:6:10: status 200 is not a redirect status\n  hint: use one of 301, 302, 303, 307, 308"
    );
    let d = one(&format!(
        "{SITE}path = \"/\"\nrespond = \"x\"\nstatus = 600\n"
    ));
    assert_eq!(d, "t.toml:6:10: `status` must be between 100 and 599");
    let d = one(&format!("{SITE}path = \"x\"\nrespond = \"x\"\n"));
    assert_eq!(
        d,
        "t.toml:4:8: `path` `x` must start with `/`\n  hint: path = \"/x\""
    );
}

#[test]
fn header_names_and_cookie_names() {
    let text = format!(
        "{UP}{SITE}path = \"/\"\nproxy = \"app\"\nrequest_headers = {{ set = {{ \"X Bad\" = \"1\", x-ok = \"2\" }}, remove = [\"a:b\"] }}\n"
    );
    let d = diags(&text);
    assert_eq!(d.len(), 2, "{d:#?}");
    assert!(
        d[0].starts_with("t.toml:8:29: `X Bad` is not a valid header name"),
        "{}",
        d[0]
    );
    assert!(
        d[1].starts_with("t.toml:8:68: `a:b` is not a valid header name"),
        "{}",
        d[1]
    );
    let d = one(&format!("{UP}sticky_cookie = \"a b\"\n"));
    assert!(
        d.starts_with("t.toml:3:17: `sticky_cookie` `a b` is not a valid cookie name"),
        "{d}"
    );
}

#[test]
fn duplicate_site_names_both_places() {
    let text = "[[sites]]\nlisten = [\"127.0.0.1:80\"]\nhosts = [\"a.test\"]\n[[sites.routes]]\npath = \"/\"\nrespond = \"1\"\n\
                [[sites]]\nlisten = [\"127.0.0.1:80\"]\nhosts = [\"b.test\", \"A.test\"]\n[[sites.routes]]\npath = \"/\"\nrespond = \"2\"\n";
    let d = one(text);
    assert_eq!(
        d,
        "t.toml:9:20: site #2 repeats host `a.test` on 127.0.0.1:80, already served by site #1 at t.toml:3:10\n  hint: merge the routes into one site, or change its `hosts` or `listen`"
    );
}

#[test]
fn duplicate_route_matcher_in_a_site() {
    let d = one(&format!(
        "{SITE}path = \"/\"\nrespond = \"1\"\n[[sites.routes]]\npath = \"/\"\nrespond = \"2\"\n"
    ));
    assert!(
        d.starts_with(
            "t.toml:7:8: site #1 has the same matcher twice (path = \"/\"), first at t.toml:4:8"
        ),
        "{d}"
    );
}

#[test]
fn max_connections_and_admin_token() {
    let d = one("[server]\nmax_connections = 0\n");
    assert_eq!(d, "t.toml:2:19: `max_connections` must be at least 1");
    let d = one("[admin]\nlisten = \"0.0.0.0:9900\"\n");
    assert!(
        d.starts_with(
            "t.toml:2:10: admin `listen` on non-loopback 0.0.0.0:9900 needs a `token_file`"
        ),
        "{d}"
    );
    assert!(diags("[admin]\nlisten = \"0.0.0.0:9900\"\ntoken_file = \"tok\"\n").is_empty());
}

#[test]
fn every_problem_is_reported_not_just_the_first() {
    let text = "[server]\nthreads = -1\nbogus = 1\n[admin]\nlisten = \"nope\"\n";
    let d = diags(text);
    assert_eq!(d.len(), 3, "{d:#?}");
    assert!(d[0].starts_with("t.toml:2:"));
    assert!(d[1].starts_with("t.toml:3:"));
    assert!(d[2].starts_with("t.toml:5:"));
}

/// Keys that an earlier version refused as "not supported yet" (ACME, upstream TLS and
/// health, https redirects, `ws_ping`, stream TLS, `[cluster]`, compression, PROXY headers
/// on sites) are all accepted now: the gate list is empty.
#[test]
fn keys_once_gated_are_accepted() {
    let text = "[acme]\nemail = \"a@b.c\"\n\
                [upstreams.app]\nservers = [\"127.0.0.1:1\"]\ntls = { verify = false }\nhealth = { type = \"tcp\" }\n\
                [cluster]\netcd = [\"127.0.0.1:2379\"]\n[[sites]]\nlisten = [\"127.0.0.1:443\"]\nhosts = [\"a.example.test\"]\ntls = \"acme\"\nhttp_redirect = true\nhttp_listen = [\"127.0.0.1:80\"]\nhsts = \"max-age=1\"\n\
                [[sites.routes]]\npath = \"/\"\nproxy = \"app\"\nws_ping = \"30s\"\n\
                [[streams]]\nlisten = [\"127.0.0.1:1\"]\nupstream = \"app\"\ntls = { cert = \"c.pem\", key = \"k.pem\" }\n[[sites]]\nlisten = [\"127.0.0.1:2\"]\ncompress = true\naccept_proxy_protocol = true\n[[sites.routes]]\npath = \"/\"\nproxy = \"app\"\n";
    let d = diags(text);
    assert!(d.is_empty(), "{d:#?}");
}

#[test]
fn tls_companions_need_tls() {
    let text = "[[sites]]\nlisten = [\"127.0.0.1:80\"]\nhsts = \"max-age=1\"\n[[sites.routes]]\npath = \"/\"\nrespond = \"x\"\n";
    let d = diags(text);
    assert_eq!(d.len(), 1, "{d:#?}");
    assert!(
        d[0].starts_with("t.toml:3:1: `hsts` needs `tls` on the site"),
        "{}",
        d[0]
    );
}

#[test]
fn vrrp_checks() {
    let base = "[[vrrp]]\nname = \"VI_1\"\ninterface = \"eth0\"\nvirtual_ips = [\"10.0.0.1/24\"]\n";
    assert!(diags(&format!("{base}vrid = 1\n")).is_empty());
    assert_eq!(
        one(&format!("{base}vrid = 0\n")),
        "t.toml:5:8: `vrid` must be between 1 and 255"
    );
    let d = one(&format!("{base}vrid = 1\nversion = 4\n"));
    assert_eq!(
        d,
        "t.toml:6:11: unknown vrrp `version`\n  hint: allowed: 2, 3 (2 for peers that speak only VRRPv2)"
    );
    let d = one(&format!("{base}vrid = 1\nadvert_interval = \"15ms\"\n"));
    assert!(
        d.starts_with("t.toml:6:19: VRRPv3 `advert_interval` must be a multiple of 10ms"),
        "{d}"
    );
    let d = one(&format!(
        "{base}vrid = 1\nversion = 2\nadvert_interval = \"500ms\"\n"
    ));
    assert!(
        d.starts_with("t.toml:7:19: VRRPv2 `advert_interval` must be whole seconds"),
        "{d}"
    );
    let d = one(&format!("{base}vrid = 1\nauth_pass = \"x\"\n"));
    assert!(
        d.starts_with("t.toml:6:13: `auth_pass` needs `version = 2`"),
        "{d}"
    );
    let d = one(&format!(
        "{base}vrid = 1\nversion = 2\nauth_pass = \"123456789\"\n"
    ));
    assert!(
        d.starts_with("t.toml:7:13: `auth_pass` must be 1 to 8 bytes"),
        "{d}"
    );
    let d = one(&format!(
        "{base}vrid = 1\ntrack = [{{ upstream = \"nope\", weight = -20 }}]\n"
    ));
    assert_eq!(
        d,
        "t.toml:6:23: unknown upstream `nope`\n  hint: define it: [upstreams.nope] with servers = [\"127.0.0.1:8080\"]"
    );
    let d = one(&format!(
        "{base}vrid = 1\ntrack = [{{ listeners = true, weight = -254 }}]\n"
    ));
    assert_eq!(d, "t.toml:6:39: `weight` must be between -253 and 253");
    let d = one(&format!(
        "{base}vrid = 1\nunicast_peers = [\"10.0.0.2:112\"]\n"
    ));
    assert!(
        d.starts_with("t.toml:6:18: unicast peer `10.0.0.2:112` is not an IP address"),
        "{d}"
    );
    let d = one(&format!(
        "{base}vrid = 1\ntrack = [{{ script = \"chk.sh\", interval = \"0s\" }}]\n"
    ));
    assert!(
        d.starts_with("t.toml:6:42: a script `interval` must be more than 0"),
        "{d}"
    );
}

#[test]
fn vrrp_virtual_ips() {
    let base = "[[vrrp]]\nname = \"VI_1\"\ninterface = \"eth0\"\nvrid = 1\n";
    let d = one(&format!(
        "{base}virtual_ips = [\"10.0.0.1/24\", \"fd00::1/64\"]\n"
    ));
    assert!(
        d.starts_with(
            "t.toml:5:31: virtual IP `fd00::1/64` is not of the same family as `10.0.0.1/24`"
        ),
        "{d}"
    );
    let d = one(&format!("{base}virtual_ips = []\n"));
    assert!(
        d.starts_with("t.toml:5:15: vrrp instance #1 has an empty `virtual_ips` list"),
        "{d}"
    );
    let d = one(&format!("{base}virtual_ips = [\"10.0.0.1/33\"]\n"));
    assert!(
        d.starts_with(
            "t.toml:5:16: bad virtual IP `10.0.0.1/33`: `33` is not a prefix length 0-32"
        ),
        "{d}"
    );
    let d = one(&format!(
        "{base}version = 2\nvirtual_ips = [\"fd00::1/64\"]\n"
    ));
    assert!(
        d.starts_with("t.toml:6:16: VRRPv2 cannot carry the IPv6 address"),
        "{d}"
    );
    let d = one("[[vrrp]]\nname = \"VI_1\"\ninterface = \"eth0\"\nvrid = 1\n");
    assert!(
        d.starts_with("t.toml:1:1: vrrp instance #1 has no `virtual_ips`"),
        "{d}"
    );
}

#[test]
fn vrrp_duplicates_name_both_places() {
    let inst = |name: &str, vrid: u8| {
        format!(
            "[[vrrp]]\nname = \"{name}\"\ninterface = \"eth0\"\nvrid = {vrid}\nvirtual_ips = [\"10.0.0.1/24\"]\n"
        )
    };
    let d = one(&format!("{}{}", inst("A", 1), inst("A", 2)));
    assert_eq!(
        d,
        "t.toml:7:8: vrrp instance name `A` is already used at t.toml:2:8\n  hint: give each [[vrrp]] its own name"
    );
    let d = one(&format!("{}{}", inst("A", 7), inst("B", 7)));
    assert_eq!(
        d,
        "t.toml:9:8: vrid 7 on `eth0` is already used at t.toml:4:8\n  hint: each instance on an interface needs its own vrid"
    );
}

#[test]
fn ws_ping_is_a_positive_duration_on_a_websocket_route() {
    let route = |opts: &str| {
        format!(
            "[upstreams.app]\nservers = [\"127.0.0.1:1\"]\n[[sites]]\nlisten = [\"127.0.0.1:80\"]\n\
             [[sites.routes]]\npath = \"/\"\nproxy = \"app\"\n{opts}\n"
        )
    };
    assert!(diags(&route("ws_ping = \"20s\"")).is_empty());
    let d = one(&route("ws_ping = \"0s\""));
    assert!(d.starts_with("t.toml:8:"), "{d}");
    let d = one(&route("ws_ping = 30"));
    assert!(d.starts_with("t.toml:8:"), "{d}");
    let d = one(&route("websocket = false\nws_ping = \"20s\""));
    assert!(
        d.starts_with("t.toml:9:1: `ws_ping` needs `websocket = true`"),
        "{d}"
    );
    let d = one(&format!(
        "{}[[sites.routes]]\npath = \"/s\"\nrespond = \"x\"\nws_ping = \"1s\"\n",
        route("")
    ));
    assert!(
        d.contains("`ws_ping` does not apply to a `respond` route"),
        "{d}"
    );
}

#[test]
fn sites_sharing_an_address_agree_on_proxy_protocol() {
    let site = |pp: &str, host: &str| {
        format!(
            "[[sites]]\nlisten = [\"127.0.0.1:80\"]\nhosts = [\"{host}\"]\n{pp}[[sites.routes]]\npath = \"/\"\nrespond = \"1\"\n"
        )
    };
    let text = site("accept_proxy_protocol = true\n", "a.test") + &site("", "b.test");
    let d = one(&text);
    assert!(
        d.starts_with(
            "t.toml:8:1: site #1 expects PROXY headers on 127.0.0.1:80 (`accept_proxy_protocol`) and site #2 shares that address without them"
        ),
        "{d}"
    );
    // Both with it, or on different addresses: valid.
    let both = site("accept_proxy_protocol = true\n", "a.test")
        + &site("accept_proxy_protocol = true\n", "b.test");
    assert!(diags(&both).is_empty());
    let apart = site("accept_proxy_protocol = true\n", "a.test")
        + &site("", "b.test").replace(":80", ":81");
    assert!(diags(&apart).is_empty());
}

#[test]
fn sticky_cookie_max_age_needs_a_cookie() {
    let d = one(&format!("{UP}sticky_cookie_max_age = \"1h\"\n"));
    assert!(
        d.starts_with("t.toml:3:1: `sticky_cookie_max_age` needs `sticky_cookie`"),
        "{d}"
    );
}
