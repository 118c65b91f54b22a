//! The validated, immutable, typed configuration.
//!
//! Every value here has passed validation: durations and sizes are parsed, addresses are
//! well-formed, every `proxy = "NAME"` names an existing upstream, every route has exactly one
//! matcher and one action. Code downstream (proxy, balance, vrrp) never re-validates.
//!
//! Field names follow `SPEC.md`. Features that later work items implement are parsed into
//! these types as well, so the model is the one contract between crates.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

/// A whole, validated configuration file.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file this was read from (as given on the command line).
    pub source: PathBuf,
    /// The folder relative paths were resolved against (the config file's folder).
    pub base_dir: PathBuf,
    pub server: ServerConfig,
    pub admin: AdminConfig,
    /// Upstreams by name (sorted by name).
    pub upstreams: BTreeMap<String, Upstream>,
    /// Sites in file order (order matters: the first site on a listener answers unknown hosts).
    pub sites: Vec<Site>,
    /// TCP (L4) services in file order.
    pub streams: Vec<Stream>,
    /// VRRP instances in file order.
    pub vrrp: Vec<VrrpInstance>,
    /// `[acme]`; present whenever a site has `tls = "acme"`.
    pub acme: Option<Acme>,
    /// `[cluster]`: shared state in etcd; `None` for a single node.
    pub cluster: Option<ClusterConfig>,
}

/// `[server]`: process-wide settings.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerConfig {
    /// Resolved against the config folder.
    pub state_dir: PathBuf,
    pub access_log: AccessLogTarget,
    pub access_log_format: AccessLogFormat,
    pub max_connections: usize,
    pub header_timeout: Duration,
    pub keepalive_timeout: Duration,
    /// Longest stall of a write to a client (nginx's `send_timeout`).
    pub send_timeout: Duration,
    /// Least average rate, in bytes per second, at which a client must take a response
    /// that waits for it (measured over windows of `send_timeout`); 0 = no minimum.
    pub send_min_rate: u64,
    /// Requests (HTTP/2: streams) per client connection, then it closes (nginx's
    /// `keepalive_requests`).
    pub keepalive_requests: u64,
    pub shutdown_grace: Duration,
    /// Worker threads; 0 in the file means one per core and is kept as 0 here.
    pub threads: usize,
    /// `secret_file`: the key that signs sticky cookies (resolved against the config
    /// folder; read, and checked to hold at least 32 bytes, when the proxy loads the config).
    pub secret_file: Option<PathBuf>,
    /// `trusted_proxies`: peers whose `X-Forwarded-For` / `X-Real-IP` are believed.
    pub trusted_proxies: Vec<IpNet>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccessLogTarget {
    Stdout,
    Stderr,
    Off,
    /// Resolved against the config folder.
    File(PathBuf),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccessLogFormat {
    /// nginx's `combined` format.
    Combined,
    /// One JSON object per line.
    Json,
}

/// `[cluster]`: the etcd cluster shared by every node with the same section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterConfig {
    /// Endpoints as `http://HOST:PORT` or `https://HOST:PORT` (a bare `HOST:PORT` in the
    /// file means `http://`); never empty.
    pub etcd: Vec<String>,
    /// Every key Portico writes lives under it; starts with `/`, no trailing `/`.
    pub prefix: String,
    /// `None`: the host name, read at start.
    pub node_name: Option<String>,
    /// CA bundle that verifies etcd's certificate (resolved against the config folder).
    pub ca_file: Option<PathBuf>,
    /// Client certificate and key for etcd (both or neither).
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    /// etcd authentication (both or neither).
    pub username: Option<String>,
    pub password_file: Option<PathBuf>,
    /// Key material (at least 32 bytes) that encrypts private keys stored in etcd.
    pub secret_file: Option<PathBuf>,
}

/// `[admin]`.
#[derive(Debug, Clone, PartialEq)]
pub struct AdminConfig {
    /// `None` when `listen = "off"`.
    pub listen: Option<SocketAddr>,
    pub token_file: Option<PathBuf>,
}

/// `[upstreams.NAME]`: a pool of backend servers.
#[derive(Debug, Clone, PartialEq)]
pub struct Upstream {
    pub name: String,
    /// Never empty, unless `discover` is set (then servers also come from the cluster).
    pub servers: Vec<ServerSpec>,
    pub balance: Balance,
    pub hash_key: HashKey,
    pub sticky_cookie: Option<String>,
    /// `sticky_cookie_max_age`: the cookie's `Max-Age` (`None`: a session cookie).
    pub sticky_cookie_max_age: Option<Duration>,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
    pub send_timeout: Duration,
    /// Idle keep-alive connections kept per server.
    pub keepalive: usize,
    /// 0 disables passive health.
    pub max_fails: u32,
    pub fail_timeout: Duration,
    pub retries: u32,
    pub slow_start: Duration,
    pub tls: Option<UpstreamTls>,
    pub health: Option<HealthCheck>,
    /// `discover = "cluster"`: servers also come from etcd (`portico register`); only with
    /// `[cluster]`. `servers` may then be empty.
    pub discover: Option<Discover>,
}

/// Where an upstream finds servers besides its `servers` list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Discover {
    /// `PREFIX/registry/UPSTREAM/` in the cluster's etcd.
    Cluster,
}

/// One server of an upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerSpec {
    pub addr: ServerAddr,
    /// >= 1.
    pub weight: u32,
    pub backup: bool,
    pub down: bool,
    /// 0 = unlimited.
    pub max_conns: u32,
}

/// `host:port` of a server as written (host may be a name such as `localhost`, an IPv4
/// address or a bracketed IPv6 address). Resolution happens when a snapshot is built.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServerAddr {
    /// Without brackets for IPv6.
    pub host: String,
    pub port: u16,
}

impl fmt::Display for ServerAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

impl ServerAddr {
    /// Parse `host:port` as the config does (bracketed IPv6 host allowed); the error says
    /// what is wrong (for addresses that come from elsewhere, e.g. `portico register`).
    pub fn parse(s: &str) -> Result<ServerAddr, String> {
        crate::upstream::parse_server_addr(s).map_err(|(msg, hint)| format!("{msg}; {hint}"))
    }

    /// The address as an IP socket address when the host is a literal IP.
    pub fn ip_socket_addr(&self) -> Option<SocketAddr> {
        self.host
            .parse::<IpAddr>()
            .ok()
            .map(|ip| SocketAddr::new(ip, self.port))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Balance {
    /// Smooth weighted round robin, as nginx.
    RoundRobin,
    LeastConn,
    /// Power of two random choices on active connections.
    RandomTwo,
    IpHash,
    /// Consistent hash on `hash_key`.
    Hash,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HashKey {
    ClientIp,
    Uri,
    Path,
    /// Header name, lower-cased.
    Header(String),
    Cookie(String),
    Query(String),
}

/// `tls = { server_name, verify, ca_file, client_cert, client_key }` on an upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamTls {
    pub server_name: Option<String>,
    pub verify: bool,
    pub ca_file: Option<PathBuf>,
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
}

/// `[upstreams.NAME.health]`.
#[derive(Debug, Clone, PartialEq)]
pub struct HealthCheck {
    pub kind: HealthKind,
    pub path: String,
    pub host: Option<String>,
    pub interval: Duration,
    pub timeout: Duration,
    pub rise: u32,
    pub fall: u32,
    /// Inclusive ranges, e.g. `200-399` -> `[(200, 399)]`.
    pub expect_status: Vec<(u16, u16)>,
    pub expect_body: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HealthKind {
    Http,
    Tcp,
    WebSocket,
}

/// `[[sites]]`: an HTTP(S) virtual host.
#[derive(Debug, Clone)]
pub struct Site {
    /// Index of this site in file order.
    pub index: usize,
    pub listen: Vec<SocketAddr>,
    /// Never empty; `[HostPattern::Any]` by default.
    pub hosts: Vec<HostPattern>,
    pub tls: Option<SiteTls>,
    pub http_redirect: bool,
    pub http_listen: Vec<SocketAddr>,
    pub hsts: Option<String>,
    /// `accept_proxy_protocol`: every connection to the site's listeners (`listen`, and
    /// `http_listen` on a TLS site) starts with a PROXY v1/v2 header naming the client.
    pub accept_proxy_protocol: bool,
    /// Routes in file order. Matching order (exact, regex in order, longest prefix) is the
    /// proxy's job.
    pub routes: Vec<Route>,
    /// `error_pages = { 502 = "errors/502.html" }`: bodies of Portico's own error
    /// responses, read when the config is loaded.
    pub error_pages: Vec<ErrorPage>,
}

/// One `error_pages` entry.
#[derive(Clone, PartialEq, Eq)]
pub struct ErrorPage {
    /// 400-599.
    pub status: u16,
    /// Resolved against the config folder.
    pub file: PathBuf,
    pub body: Vec<u8>,
}

impl fmt::Debug for ErrorPage {
    /// Without the body.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ErrorPage")
            .field("status", &self.status)
            .field("file", &self.file)
            .field("bytes", &self.body.len())
            .finish()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum HostPattern {
    /// `"*"`.
    Any,
    /// An exact name, lower-cased, without a port.
    Exact(String),
    /// `"*.example.com"`, stored as the suffix `".example.com"`, lower-cased.
    Suffix(String),
}

impl HostPattern {
    /// Whether `host` (lower-cased, without port) matches.
    pub fn matches(&self, host: &str) -> bool {
        match self {
            HostPattern::Any => true,
            HostPattern::Exact(name) => name == host,
            HostPattern::Suffix(suffix) => host.len() > suffix.len() && host.ends_with(suffix),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SiteTls {
    Acme,
    Files { cert: PathBuf, key: PathBuf },
}

/// One route of a site: a matcher and an action.
#[derive(Debug, Clone)]
pub struct Route {
    /// Index of this route within its site, in file order.
    pub index: usize,
    pub matcher: Matcher,
    pub action: Action,
    /// The route's traffic policy: its own keys, else its site's.
    pub policy: Policy,
}

/// Traffic policy of a route (`None`: the key is not set, neither on the route nor on its
/// site).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policy {
    /// `access`: rules in file order, the first match decides; no match allows (nginx). An
    /// empty list allows everyone (and replaces the site's list on a route).
    pub access: Option<Vec<AccessRule>>,
    /// `limit_rate = { rate = "10r/s", burst = 20 }`: requests per client IP.
    pub limit_rate: Option<LimitRate>,
    /// `limit_conn = N`: requests in progress (WebSockets while open) per client IP.
    pub limit_conn: Option<u32>,
    /// `auth_basic = { realm, users_file, forward_auth }`.
    pub auth_basic: Option<AuthBasic>,
    /// `compress`, `compress_types`, `compress_min_size` as written (see
    /// [`CompressKeys::resolve`]); not a check, so not counted by [`Policy::is_empty`].
    pub compress: CompressKeys,
}

/// A content coding Portico compresses responses with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coding {
    Zstd,
    Br,
    Gzip,
}

impl Coding {
    /// Every coding, in the default order of preference (`compress = true`).
    pub const ALL: [Coding; 3] = [Coding::Zstd, Coding::Br, Coding::Gzip];

    /// The token of `Accept-Encoding` / `Content-Encoding`.
    pub fn token(self) -> &'static str {
        match self {
            Coding::Zstd => "zstd",
            Coding::Br => "br",
            Coding::Gzip => "gzip",
        }
    }
}

/// The media types compressed when `compress_types` is not set: text and the text-like
/// application types (JSON, JavaScript, XML, SVG, WebAssembly).
pub const DEFAULT_COMPRESS_TYPES: &[&str] = &[
    "text/*",
    "application/json",
    "application/javascript",
    "application/xml",
    "application/xhtml+xml",
    "application/rss+xml",
    "application/atom+xml",
    "application/ld+json",
    "application/manifest+json",
    "application/wasm",
    "image/svg+xml",
];

/// `compress_min_size` when not set: bodies smaller than this are sent as they are.
pub const DEFAULT_COMPRESS_MIN_SIZE: u64 = 256;

/// The compression keys of one site or route table; `None`: not written there (a route
/// then takes the site's).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CompressKeys {
    /// `compress`: `true` is every coding (zstd, br, gzip), `false` none.
    pub codings: Option<Vec<Coding>>,
    /// `compress_types`: lower-cased `type/subtype` or `type/*`.
    pub types: Option<Vec<String>>,
    /// `compress_min_size`, in bytes.
    pub min_size: Option<u64>,
}

/// How a route compresses its responses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compress {
    /// In order of preference (a tie of the client's q-values goes to the first).
    pub codings: Vec<Coding>,
    pub types: Vec<String>,
    pub min_size: u64,
}

impl CompressKeys {
    /// Take each key not set here from `site`.
    pub fn inherit(&mut self, site: &CompressKeys) {
        if self.codings.is_none() {
            self.codings.clone_from(&site.codings);
        }
        if self.types.is_none() {
            self.types.clone_from(&site.types);
        }
        if self.min_size.is_none() {
            self.min_size = site.min_size;
        }
    }

    /// The compression these keys ask for (`None`: off), defaults filled in.
    pub fn resolve(&self) -> Option<Compress> {
        let codings = self.codings.as_ref().filter(|c| !c.is_empty())?;
        Some(Compress {
            codings: codings.clone(),
            types: self.types.clone().unwrap_or_else(|| {
                DEFAULT_COMPRESS_TYPES
                    .iter()
                    .map(|s| (*s).to_string())
                    .collect()
            }),
            min_size: self.min_size.unwrap_or(DEFAULT_COMPRESS_MIN_SIZE),
        })
    }
}

/// `auth_basic`: HTTP Basic authentication against an htpasswd file of bcrypt hashes.
#[derive(Clone, PartialEq, Eq)]
pub struct AuthBasic {
    pub realm: String,
    /// Resolved against the config folder.
    pub users_file: PathBuf,
    /// `(user, bcrypt hash)` from the file, read when the config is loaded (reload re-reads).
    pub users: Vec<(String, String)>,
    /// Pass the client's `Authorization` header to the servers (default: removed).
    pub forward_auth: bool,
}

impl fmt::Debug for AuthBasic {
    /// Without the hashes.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthBasic")
            .field("realm", &self.realm)
            .field("users_file", &self.users_file)
            .field("users", &self.users.len())
            .field("forward_auth", &self.forward_auth)
            .finish()
    }
}

impl Policy {
    /// Take each key not set here from `site`.
    pub fn inherit(&mut self, site: &Policy) {
        if self.access.is_none() {
            self.access.clone_from(&site.access);
        }
        if self.limit_rate.is_none() {
            self.limit_rate = site.limit_rate;
        }
        if self.limit_conn.is_none() {
            self.limit_conn = site.limit_conn;
        }
        if self.auth_basic.is_none() {
            self.auth_basic.clone_from(&site.auth_basic);
        }
        self.compress.inherit(&site.compress);
    }

    /// Whether no key is set.
    pub fn is_empty(&self) -> bool {
        self.access.is_none()
            && self.limit_rate.is_none()
            && self.limit_conn.is_none()
            && self.auth_basic.is_none()
    }
}

/// `{ rate = "10r/s", burst = 20 }`: `requests` per `per` (1 s or 1 min), `burst` more
/// at once (nginx `limit_req ... burst=N nodelay`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LimitRate {
    /// >= 1.
    pub requests: u32,
    /// One second (`r/s`) or one minute (`r/m`).
    pub per: Duration,
    pub burst: u32,
}

/// `allow NET` / `deny NET` (`net: None` is `all`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AccessRule {
    pub allow: bool,
    pub net: Option<IpNet>,
}

/// An IP network (`10.0.0.0/8`; one address is `/32` or `/128`). No bits past the prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNet {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl IpNet {
    /// `addr` with the bits past the prefix cleared.
    pub fn network(&self) -> IpAddr {
        match self.addr {
            IpAddr::V4(a) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                IpAddr::V4((u32::from(a) & mask).into())
            }
            IpAddr::V6(a) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                IpAddr::V6((u128::from(a) & mask).into())
            }
        }
    }

    /// Whether `ip` is in this network; an IPv4-mapped IPv6 address (`::ffff:10.0.0.1`, as
    /// a dual-stack listener sees IPv4 clients) counts as its IPv4 address.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let net = IpNet {
            addr: ip.to_canonical(),
            prefix: self.prefix,
        };
        net.addr.is_ipv4() == self.addr.is_ipv4() && net.network() == self.addr
    }
}

#[derive(Debug, Clone)]
pub enum Matcher {
    /// `path = "/api"`: prefix match.
    Prefix(String),
    /// `exact = "/health"`.
    Exact(String),
    /// `regex = "^/img/.*\\.png$"`, compiled.
    Regex(regex::Regex),
}

#[derive(Debug, Clone)]
pub enum Action {
    Proxy(ProxyAction),
    Static(StaticAction),
    Redirect(RedirectAction),
    Respond(RespondAction),
}

/// `proxy = "UPSTREAM"` and its options.
#[derive(Debug, Clone, PartialEq)]
pub struct ProxyAction {
    /// Always names an existing upstream.
    pub upstream: String,
    /// Allow `Upgrade: websocket` (default true).
    pub websocket: bool,
    /// Overrides the upstream's `read_timeout` for this route (and is the WebSocket idle timeout).
    pub read_timeout: Option<Duration>,
    /// Request body limit in bytes (default 1 MiB); 413 past it.
    pub max_body: u64,
    pub strip_prefix: bool,
    pub request_headers: HeaderRules,
    pub response_headers: HeaderRules,
    pub ws_ping: Option<Duration>,
}

/// `{ set = { name = value, .. }, remove = [name, ..] }`. Names lower-cased.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeaderRules {
    pub set: Vec<(String, String)>,
    pub remove: Vec<String>,
}

/// `root = "DIR"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaticAction {
    /// Resolved against the config folder.
    pub root: PathBuf,
    /// Default `["index.html"]`.
    pub index: Vec<String>,
    /// Serve names starting with `.` (`.git`, `.env`); default false: 404.
    pub dotfiles: bool,
}

/// `redirect = "https://{host}{uri}"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedirectAction {
    /// The template with `{scheme} {host} {uri} {path} {query}` placeholders (validated).
    pub template: String,
    /// 301, 302, 303, 307 or 308.
    pub status: u16,
}

/// `respond = "TEXT"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RespondAction {
    pub body: String,
    pub status: u16,
    pub content_type: String,
}

/// `[[streams]]`: a TCP (L4) service.
#[derive(Debug, Clone, PartialEq)]
pub struct Stream {
    /// Index of this stream in file order.
    pub index: usize,
    /// Never empty.
    pub listen: Vec<SocketAddr>,
    /// The upstream every connection goes to; `None` only when `sni_routes` is set (then the
    /// routes choose the upstream). Always names an existing upstream.
    pub upstream: Option<String>,
    /// Source-IP affinity kept this long after a client's last connection closes (LVS
    /// `persistence_timeout`); zero disables it.
    pub persistence: Duration,
    /// PROXY protocol header sent to servers.
    pub proxy_protocol: Option<ProxyProtocolVersion>,
    /// Expect a PROXY header (v1 or v2) from clients.
    pub accept_proxy_protocol: bool,
    /// Longest time with no byte in either direction; more than zero.
    pub idle_timeout: Duration,
    /// Terminate TLS (as for sites). Excludes `sni_routes`.
    pub tls: Option<SiteTls>,
    /// TLS passthrough: SNI pattern -> upstream name (matching tries exact names first, then
    /// the longest wildcard suffix, then `"*"`). Empty when not set. Excludes `tls`.
    pub sni_routes: Vec<(HostPattern, String)>,
}

/// Version of the PROXY protocol header sent to servers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyProtocolVersion {
    /// The text form (`PROXY TCP4 ...\r\n`).
    V1,
    /// The binary form.
    V2,
}

/// `[[vrrp]]`: a virtual-IP failover instance.
#[derive(Debug, Clone, PartialEq)]
pub struct VrrpInstance {
    pub name: String,
    pub interface: String,
    pub vrid: u8,
    /// 1-255 (255 = address owner).
    pub priority: u8,
    pub advert_interval: Duration,
    /// Never empty; all of one address family.
    pub virtual_ips: Vec<IpPrefix>,
    pub version: VrrpVersion,
    pub auth_pass: Option<String>,
    pub preempt: bool,
    pub preempt_delay: Duration,
    pub unicast_peers: Vec<IpAddr>,
    pub track: Vec<VrrpTrack>,
    /// Resolved against the config folder.
    pub notify: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VrrpVersion {
    V2,
    V3,
}

/// An address with a prefix length, e.g. `192.168.50.130/24`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IpPrefix {
    pub addr: IpAddr,
    pub prefix_len: u8,
}

impl fmt::Display for IpPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix_len)
    }
}

/// One entry of `track = [...]`.
#[derive(Debug, Clone, PartialEq)]
pub struct VrrpTrack {
    pub kind: VrrpTrackKind,
    /// Added to the priority while the track fails; 0 means a failure forces FAULT.
    pub weight: i32,
}

#[derive(Debug, Clone, PartialEq)]
pub enum VrrpTrackKind {
    /// The node's own listeners accept and answer.
    Listeners,
    /// Fails when no server of this upstream is healthy.
    Upstream(String),
    /// keepalived semantics: exit 0 = ok. Path resolved against the config folder.
    Script { path: PathBuf, interval: Duration },
}

/// `[acme]`: automatic certificates for `tls = "acme"` sites.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Acme {
    /// The account contact, a plain address (`mailto:` is added when registering).
    pub email: String,
    pub directory: AcmeDirectory,
    /// Extra root CA (PEM) trusted for the directory's own HTTPS; resolved against the
    /// config folder.
    pub directory_ca: Option<PathBuf>,
    pub challenge: AcmeChallenge,
    /// Renew when less than this is left (or a third of the lifetime, whichever is sooner).
    pub renew_before: Duration,
    pub key_type: AcmeKeyType,
}

/// `directory = ...`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AcmeDirectory {
    /// `"letsencrypt"` (the default).
    LetsEncrypt,
    /// `"letsencrypt-staging"`.
    LetsEncryptStaging,
    /// An `https://` directory URL, as written.
    Url(String),
}

/// `challenge = ...`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AcmeChallenge {
    /// `"http-01"`: answered by the sites' plain-HTTP side (`http_listen`).
    Http01,
    /// `"tls-alpn-01"`: answered by the TLS listener (ALPN `acme-tls/1`).
    TlsAlpn01,
}

/// `key_type = ...`: the key of issued certificates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AcmeKeyType {
    EcdsaP256,
    Rsa2048,
}
