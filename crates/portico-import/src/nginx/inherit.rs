//! Settings that nginx inherits from `http` to `server` to `location` (a level that sets
//! an array directive such as `proxy_set_header` or `add_header` replaces the whole array
//! it inherited, as in nginx), and the notes for directives of those levels that Portico
//! has built in or does not have.

use super::Cx;
use super::policy::{Own, Policy};
use super::values;
use crate::report::Kind;
use crate::tree::Node;

/// One `add_header` carried over, with where it came from (for notes where a route cannot
/// take it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Header {
    pub name: String,
    pub value: String,
    pub file: String,
    pub line: usize,
    pub text: String,
}

/// The effective settings at one level.
#[derive(Debug, Clone, Default)]
pub(crate) struct Inherit {
    /// Absolute document root (`root`).
    pub root: Option<String>,
    pub index: Option<Vec<String>>,
    pub max_body: Option<String>,
    pub read_timeout: Option<String>,
    pub send_timeout: Option<String>,
    pub connect_timeout: Option<String>,
    /// `proxy_set_header` with literal values; `None`: this level and its parents set none.
    pub set_headers: Option<SetHeaders>,
    pub hide_headers: Vec<String>,
    pub add_headers: Option<Vec<Header>>,
    pub cert: Option<String>,
    pub key: Option<String>,
    pub proxy_ssl_verify: bool,
    pub proxy_ssl_name: Option<String>,
    pub proxy_ssl_ca: Option<String>,
    /// Limits, access rules, basic auth, compression, error pages.
    pub policy: Policy,
}

/// The effective `proxy_set_header` array.
#[derive(Debug, Clone, Default)]
pub(crate) struct SetHeaders {
    pub set: Vec<(String, String)>,
    pub remove: Vec<String>,
    /// The WebSocket `Upgrade` + `Connection` idiom is in the array.
    pub websocket: bool,
    /// `Host` is set (to `$host` or similar: Portico keeps the client's Host).
    pub host: bool,
}

impl Inherit {
    /// `self` as inherited by a child level whose own directives are `nodes`.
    pub fn child(&self, cx: &mut Cx<'_>, nodes: &[Node]) -> Inherit {
        let mut s = self.clone();
        let mut own_set: Option<SetHeaders> = None;
        let mut own_add: Option<Vec<Header>> = None;
        let mut own_hide: Option<Vec<String>> = None;
        let mut own_policy = Own::default();
        for n in nodes {
            if !s.policy.read(cx, n, &mut own_policy) {
                s.read(cx, n, &mut own_set, &mut own_add, &mut own_hide);
            }
        }
        s.policy.finish(own_policy);
        if let Some(h) = own_set {
            s.set_headers = Some(h);
        }
        if let Some(a) = own_add {
            s.add_headers = Some(a);
        }
        if let Some(h) = own_hide {
            s.hide_headers = h;
        }
        s
    }

    fn read(
        &mut self,
        cx: &mut Cx<'_>,
        n: &Node,
        own_set: &mut Option<SetHeaders>,
        own_add: &mut Option<Vec<Header>>,
        own_hide: &mut Option<Vec<String>>,
    ) {
        let arg = n.arg(0).unwrap_or("");
        let time = |cx: &mut Cx<'_>, slot: &mut Option<String>| match values::time(arg) {
            Some(t) => {
                *slot = Some(t);
                n.mark();
            }
            None => cx.notes.note(n, Kind::NotCarried, "cannot read this time"),
        };
        match n.name.as_str() {
            "root" => {
                self.root = Some(cx.prefix_path(arg));
                n.mark();
            }
            "index" => {
                self.index = Some(n.args.clone());
                n.mark();
            }
            "client_max_body_size" => match values::size(arg) {
                Some(s) => {
                    self.max_body = Some(s);
                    n.mark();
                }
                None => cx.notes.note(n, Kind::NotCarried, "cannot read this size"),
            },
            "proxy_read_timeout" => time(cx, &mut self.read_timeout),
            "proxy_send_timeout" => time(cx, &mut self.send_timeout),
            "proxy_connect_timeout" => time(cx, &mut self.connect_timeout),
            "proxy_set_header" => {
                set_header(cx, n, own_set.get_or_insert_with(SetHeaders::default))
            }
            "proxy_hide_header" => {
                own_hide
                    .get_or_insert_with(|| self.hide_headers.clone())
                    .push(arg.to_ascii_lowercase());
                n.mark();
            }
            "add_header" => {
                let value = n.arg(1).unwrap_or("");
                if value.contains('$') {
                    cx.notes.note(n, Kind::NotCarried, "header values with variables cannot be carried over (Portico's are literal)");
                } else {
                    own_add.get_or_insert_with(Vec::new).push(Header {
                        name: arg.to_string(),
                        value: value.to_string(),
                        file: n.file.to_string(),
                        line: n.line,
                        text: n.text(),
                    });
                    n.mark();
                }
            }
            "ssl_certificate" => {
                self.cert = Some(cx.conf_path(arg));
                n.mark();
            }
            "ssl_certificate_key" => {
                self.key = Some(cx.conf_path(arg));
                n.mark();
            }
            "proxy_ssl_verify" => {
                self.proxy_ssl_verify = arg == "on";
                n.mark();
            }
            "proxy_ssl_name" => {
                if arg.contains('$') {
                    cx.notes.note(
                        n,
                        Kind::Dropped,
                        "Portico sends the server's host name as SNI by default",
                    );
                } else {
                    self.proxy_ssl_name = Some(arg.to_string());
                    n.mark();
                }
            }
            "proxy_ssl_trusted_certificate" => {
                self.proxy_ssl_ca = Some(cx.conf_path(arg));
                n.mark();
            }
            "proxy_ssl_server_name" => cx.notes.note(
                n,
                Kind::Dropped,
                "Portico always sends SNI to TLS upstreams",
            ),
            "access_log" => cx.access_log(n),
            "set_real_ip_from" | "real_ip_header" | "real_ip_recursive" => {
                super::real_ip::read(cx, n)
            }
            // Directives a converter handled itself (return, try_files...) are marked.
            _ if n.is_marked() => {}
            _ => note_other(cx, n),
        }
    }
}

fn set_header(cx: &mut Cx<'_>, n: &Node, h: &mut SetHeaders) {
    let name = n.arg(0).unwrap_or("").to_ascii_lowercase();
    let value = n.arg(1).unwrap_or("");
    let dropped = |cx: &mut Cx<'_>, why: &str| cx.notes.note(n, Kind::Dropped, why);
    match (name.as_str(), value) {
        ("host", "$host" | "$http_host") => {
            h.host = true;
            dropped(cx, "Portico keeps the client's Host when proxying");
        }
        ("x-real-ip", "$remote_addr") => dropped(cx, "Portico sends X-Real-IP itself"),
        ("x-forwarded-for", "$proxy_add_x_forwarded_for") => {
            dropped(cx, "Portico appends the client to X-Forwarded-For itself")
        }
        ("x-forwarded-for", "$remote_addr") => cx.notes.note(
            n,
            Kind::Approximated,
            "Portico appends the client to the X-Forwarded-For it received instead of replacing it",
        ),
        ("x-forwarded-proto", "$scheme") => dropped(cx, "Portico sends X-Forwarded-Proto itself"),
        ("x-forwarded-host", "$host" | "$http_host") => {
            dropped(cx, "Portico sends X-Forwarded-Host itself")
        }
        ("upgrade", "$http_upgrade") => {
            h.websocket = true;
            dropped(
                cx,
                "WebSocket idiom: Portico forwards upgrades itself (websocket = true on the route)",
            );
        }
        ("connection", v) if v.eq_ignore_ascii_case("upgrade") || v == "$connection_upgrade" => {
            h.websocket = true;
            dropped(
                cx,
                "WebSocket idiom: Portico forwards upgrades itself (websocket = true on the route)",
            );
        }
        ("connection", "" | "keep-alive" | "close") => dropped(
            cx,
            "Portico manages upstream connections itself (keep-alive pool per server)",
        ),
        (_, "") => {
            h.remove.push(name);
            n.mark();
        }
        (_, v) if !v.contains('$') => {
            h.set.push((name, v.to_string()));
            n.mark();
        }
        _ => cx.notes.note(
            n,
            Kind::NotCarried,
            "header values with variables cannot be carried over (Portico's are literal)",
        ),
    }
}

/// Directives of `http` / `server` / `location` that are not carried into the TOML: a note
/// for each known one; unknown ones are left for the leftovers pass.
pub(crate) fn note_other(cx: &mut Cx<'_>, n: &Node) {
    use Kind::*;
    let name = n.name.as_str();
    let arg = n.arg(0).unwrap_or("");
    let (kind, why): (Kind, &str) = match name {
        "sendfile" | "tcp_nopush" | "tcp_nodelay" | "aio" | "directio" | "output_buffers" => (
            Dropped,
            "Portico streams bodies and sets TCP_NODELAY itself",
        ),
        "proxy_http_version" => (Dropped, "Portico speaks HTTP/1.1 to upstreams"),
        "proxy_buffering"
        | "proxy_buffer_size"
        | "proxy_buffers"
        | "proxy_busy_buffers_size"
        | "proxy_temp_file_write_size"
        | "proxy_max_temp_file_size"
        | "proxy_temp_path"
        | "client_body_buffer_size"
        | "proxy_request_buffering"
        | "client_body_temp_path"
        | "large_client_header_buffers"
        | "client_header_buffer_size" => (
            Dropped,
            "Portico streams request and response bodies; there are no buffers to size",
        ),
        "proxy_redirect" if arg == "off" => (
            Dropped,
            "Portico passes Location headers unchanged, as `proxy_redirect off`",
        ),
        "proxy_redirect" => (NotCarried, "Portico does not rewrite Location headers"),
        "brotli" | "brotli_types" | "brotli_comp_level" | "brotli_static" => (
            NotCarried,
            "the importer writes gzip only: add \"br\" to the route's `compress` list by hand (Portico compresses brotli at quality 4)",
        ),
        "ssl_protocols"
        | "ssl_ciphers"
        | "ssl_prefer_server_ciphers"
        | "ssl_ecdh_curve"
        | "ssl_conf_command" => (
            Dropped,
            "Portico offers TLS 1.3 and 1.2 with safe cipher suites only (rustls)",
        ),
        "ssl_session_cache" | "ssl_session_timeout" | "ssl_session_tickets" | "ssl_buffer_size" => {
            (Dropped, "Portico resumes TLS sessions by itself")
        }
        "ssl_dhparam" => (
            Dropped,
            "Portico uses ECDHE key exchange only; no DH parameters",
        ),
        "ssl_stapling"
        | "ssl_stapling_verify"
        | "ssl_trusted_certificate"
        | "resolver"
        | "resolver_timeout" => (
            NotCarried,
            "Portico does not staple OCSP responses and resolves names when the configuration loads",
        ),
        "ssl_client_certificate" | "ssl_verify_client" | "ssl_verify_depth" => {
            (NotCarried, "Portico does not ask clients for certificates")
        }
        "ssl" if arg == "on" => (
            Dropped,
            "the legacy `ssl on` is read as `listen ... ssl` on this server's listeners",
        ),
        "http2" | "http3" | "quic_retry" => (
            Dropped,
            "Portico offers HTTP/2 on TLS listeners through ALPN by itself",
        ),
        "server_tokens"
        | "charset"
        | "source_charset"
        | "override_charset"
        | "charset_types"
        | "ignore_invalid_headers"
        | "underscores_in_headers"
        | "merge_slashes"
        | "msie_padding"
        | "server_names_hash_bucket_size"
        | "server_names_hash_max_size"
        | "types_hash_max_size"
        | "types_hash_bucket_size"
        | "variables_hash_max_size"
        | "map_hash_bucket_size"
        | "reset_timedout_connection"
        | "send_timeout"
        | "client_body_timeout"
        | "lingering_close"
        | "lingering_time"
        | "lingering_timeout"
        | "keepalive_requests"
        | "open_file_cache"
        | "open_file_cache_valid"
        | "open_file_cache_min_uses"
        | "open_file_cache_errors"
        | "log_not_found"
        | "log_subrequest"
        | "server_name_in_redirect"
        | "port_in_redirect"
        | "absolute_redirect"
        | "postpone_output"
        | "proxy_pass_request_headers"
        | "proxy_pass_request_body"
        | "proxy_ignore_client_abort"
        | "log_format"
        | "error_log"
        | "etag"
        | "if_modified_since"
        | "disable_symlinks" => (
            Dropped,
            "no Portico setting: Portico's fixed behaviour covers this",
        ),
        "default_type" | "types" => (
            Dropped,
            "Portico picks content types from file extensions itself",
        ),
        "proxy_next_upstream" | "proxy_next_upstream_tries" | "proxy_next_upstream_timeout" => (
            Approximated,
            "Portico retries another server when connecting fails or an idempotent request fails before any response byte (upstream `retries`)",
        ),
        "proxy_intercept_errors" | "recursive_error_pages" => (
            NotCarried,
            "Portico's `error_pages` replace its own error answers only, never an upstream's",
        ),
        "proxy_cache"
        | "proxy_cache_path"
        | "proxy_cache_valid"
        | "proxy_cache_key"
        | "proxy_cache_bypass"
        | "proxy_no_cache"
        | "proxy_cache_use_stale"
        | "proxy_cache_lock"
        | "proxy_cache_methods"
        | "proxy_cache_min_uses"
        | "expires"
        | "add_trailer" => (
            NotCarried,
            "Portico has no response cache and adds no caching headers",
        ),
        "proxy_pass_header"
        | "proxy_ignore_headers"
        | "proxy_cookie_domain"
        | "proxy_cookie_path"
        | "proxy_method"
        | "proxy_set_body"
        | "sub_filter"
        | "sub_filter_once"
        | "sub_filter_types" => (
            NotCarried,
            "Portico does not rewrite these parts of requests and responses",
        ),
        "autoindex" if arg == "off" => {
            (Dropped, "Portico does not list folders, as `autoindex off`")
        }
        "autoindex" | "autoindex_exact_size" | "autoindex_localtime" | "autoindex_format" => {
            (NotCarried, "Portico does not list folders")
        }
        "ssi"
        | "fastcgi_pass"
        | "uwsgi_pass"
        | "scgi_pass"
        | "grpc_pass"
        | "memcached_pass"
        | "fastcgi_param"
        | "fastcgi_index"
        | "fastcgi_split_path_info"
        | "uwsgi_param"
        | "perl"
        | "js_content"
        | "mirror"
        | "slice"
        | "image_filter"
        | "dav_methods" => (
            NotCarried,
            "Portico proxies HTTP and serves static files; this handler has no equivalent",
        ),
        "keepalive_timeout" | "client_header_timeout" => (
            Approximated,
            "Portico has one value for the whole process ([server]); only the http-level one is carried over",
        ),
        "satisfy" if arg == "all" => (
            Dropped,
            "Portico requires every check (access, limits, auth_basic), as `satisfy all`",
        ),
        "satisfy" => (
            NotCarried,
            "Portico requires both `access` and `auth_basic` (satisfy all): a client must pass the address rules AND give credentials",
        ),
        "auth_request" | "auth_request_set" | "secure_link" | "secure_link_md5" => (
            NotCarried,
            "Portico has no subrequest or link authentication",
        ),
        "if" => (
            NotCarried,
            "`if` is not carried over: Portico routes by host and path only; write the cases as routes",
        ),
        "set" => (NotCarried, "Portico has no variables"),
        "rewrite_log" | "uninitialized_variable_warn" | "break" => {
            (NotCarried, "Portico has no rewrite module")
        }
        "rewrite" => (
            NotCarried,
            "Portico does not rewrite URIs (only `strip_prefix` on proxy routes and redirects); write it as a `redirect` route if it redirects",
        ),
        "try_files" => (
            NotCarried,
            "Portico serves the file or the folder's index, else 404; other fallbacks are not carried over",
        ),
        "internal" => (NotCarried, "Portico has no internal redirects"),
        "add_header" => return,
        _ => return,
    };
    cx.notes.note(n, kind, why);
}
