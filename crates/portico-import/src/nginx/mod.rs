//! nginx -> Portico. The walk: top level (process settings, `events`), `http` (upstreams
//! first, then the inheritable settings, then each `server` with its `location`s), and
//! `stream`. A file holding only `server` / `upstream` blocks (a `conf.d` or
//! `sites-available` file) is read as the inside of `http`.
//!
//! Modules: `parse` (syntax, includes), `values` (times, sizes, addresses, variables),
//! `upstream` (`upstream` blocks and the pools `proxy_pass host:port` implies), `inherit`
//! (settings that flow from `http` to `server` to `location`), `policy` (limits, access,
//! basic auth, compression, error pages, with nginx's inheritance), `real_ip` (trusted
//! proxies), `server` and `location` (sites and routes), `stream` (TCP services).

mod inherit;
mod location;
mod parse;
mod policy;
mod real_ip;
mod server;
mod stream;
mod upstream;
mod values;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::out::{Out, q};
use crate::report::Kind;
use crate::tree::{Node, Notes};
use crate::{Conversion, ImportError, NginxOptions};

/// State of one nginx conversion.
pub(crate) struct Cx<'a> {
    pub notes: Notes,
    pub out: Out,
    pub opts: &'a NginxOptions,
    /// Relative `root`, `alias`, `access_log` resolve here (`nginx -p`).
    pub prefix: PathBuf,
    /// Relative `ssl_certificate` and includes resolve here (the main file's folder).
    pub conf_dir: PathBuf,
    /// nginx `upstream` name -> Portico upstream name, per context (http, stream).
    pub http_upstreams: HashMap<String, String>,
    pub stream_upstreams: HashMap<String, String>,
    /// Where `[server] access_log` was set, to name conflicts.
    access_log: Option<String>,
    /// Inside a `location` (an `access_log` there cannot become the process-wide one).
    pub in_location: bool,
    /// Reading a `server`'s own directives (process-wide settings there are noted).
    pub in_server: bool,
    /// `limit_req_zone` / `limit_conn_zone` of `http`.
    pub zones: policy::Zones,
    /// `set_real_ip_from` and friends, for `[server] trusted_proxies`.
    pub real_ip: real_ip::RealIp,
}

impl Cx<'_> {
    /// An nginx path relative to the prefix, made absolute.
    pub fn prefix_path(&self, p: &str) -> String {
        abs(&self.prefix, p)
    }

    /// An nginx path relative to the conf folder, made absolute.
    pub fn conf_path(&self, p: &str) -> String {
        abs(&self.conf_dir, p)
    }

    /// `access_log` at any level: Portico has one access log.
    pub fn access_log(&mut self, n: &Node) {
        let Some(first) = n.arg(0) else {
            return self.notes.note(n, Kind::NotCarried, "no path given");
        };
        let target = if first == "off" {
            "off".to_string()
        } else if first.starts_with("syslog:") {
            return self.notes.note(
                n,
                Kind::NotCarried,
                "Portico writes its access log to a file, stdout or stderr (use journald under systemd)",
            );
        } else if first == "/dev/stdout" {
            "stdout".to_string()
        } else if first == "/dev/stderr" {
            "stderr".to_string()
        } else {
            self.prefix_path(first)
        };
        match &self.access_log {
            None if self.in_location => {
                let why = format!(
                    "Portico has one access log for the whole process and logs every request; `{target}` for this location is not carried over"
                );
                self.notes.note(n, Kind::NotCarried, why);
            }
            None => {
                self.out.server.set("access_log", q(&target));
                self.access_log = Some(target);
                if n.args.len() > 1 && n.args[1] != "combined" {
                    self.notes.note_part(
                        n,
                        &n.args[1],
                        Kind::Approximated,
                        "Portico writes nginx's `combined` format (or `json`: access_log_format); other log_format layouts are not carried over",
                    );
                }
                n.mark();
            }
            Some(t) if *t == target => n.mark(),
            Some(t) => {
                let why = format!(
                    "Portico has one access log for the whole process; kept `{t}` from the first access_log"
                );
                self.notes.note(n, Kind::Approximated, why);
            }
        }
    }
}

fn abs(base: &Path, p: &str) -> String {
    let path = Path::new(p);
    if path.is_absolute() {
        p.to_string()
    } else {
        base.join(path).display().to_string()
    }
}

pub(crate) fn convert(path: &Path, opts: &NginxOptions) -> Result<Conversion, ImportError> {
    let mut notes = Notes::default();
    let tree = parse::parse_file(path, &mut notes)?;
    let full = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let conf_dir = full
        .parent()
        .map_or_else(|| PathBuf::from("/"), Path::to_path_buf);
    let prefix = match &opts.prefix {
        Some(p) => std::path::absolute(p).unwrap_or_else(|_| p.clone()),
        None => conf_dir
            .parent()
            .map_or(conf_dir.clone(), Path::to_path_buf),
    };
    let mut cx = Cx {
        notes,
        out: Out::default(),
        opts,
        prefix,
        conf_dir,
        http_upstreams: HashMap::new(),
        stream_upstreams: HashMap::new(),
        access_log: None,
        in_location: false,
        in_server: false,
        zones: policy::Zones::default(),
        real_ip: real_ip::RealIp::default(),
    };
    cx.out.header = vec![
        format!(
            "Converted from the nginx configuration {} by `portico import nginx`.",
            path.display()
        ),
        "Directives that were not carried over as written are listed in the import report."
            .to_string(),
    ];
    // A conf.d-style file: `server` and `upstream` blocks at the top level.
    if tree
        .iter()
        .any(|n| n.name == "server" || n.name == "upstream")
        && !tree.iter().any(|n| n.name == "http")
    {
        server::http(&mut cx, &tree);
    }
    for n in &tree {
        match n.name.as_str() {
            "http" => server::http(&mut cx, n.children()),
            "stream" => stream::stream(&mut cx, n),
            "events" => events(&mut cx, n),
            _ => top_level(&mut cx, n),
        }
        if n.name == "http" || n.name == "stream" {
            n.mark();
        }
    }
    real_ip::finish(&mut cx);
    policy::finish_zones(&mut cx);
    cx.notes.leftovers(&tree);
    Ok(Conversion {
        toml: cx.out.render(),
        report: cx.notes.report,
    })
}

fn events(cx: &mut Cx<'_>, n: &Node) {
    n.mark();
    for d in n.children() {
        match d.name.as_str() {
            "worker_connections" => cx.notes.note(
                d,
                Kind::Dropped,
                "Portico counts connections over all listeners with [server] max_connections (default 65536)",
            ),
            "use" | "multi_accept" | "accept_mutex" | "accept_mutex_delay" | "worker_aio_requests" => {
                cx.notes.note(d, Kind::Dropped, "Portico's event loop needs no tuning here")
            }
            _ => {}
        }
    }
}

fn top_level(cx: &mut Cx<'_>, n: &Node) {
    let (kind, why) = match n.name.as_str() {
        "user" => (
            Kind::Dropped,
            "run Portico as its own user (the systemd unit in dist/ uses `portico`)",
        ),
        "worker_processes" | "worker_cpu_affinity" | "worker_priority" => (
            Kind::Dropped,
            "Portico is one process with one worker thread per core ([server] threads)",
        ),
        "worker_rlimit_nofile" => (
            Kind::Dropped,
            "set the file limit in the service manager (LimitNOFILE= in the systemd unit)",
        ),
        "pid" => (
            Kind::Dropped,
            "Portico writes its pid file into [server] state_dir",
        ),
        "error_log" => (
            Kind::Dropped,
            "Portico logs to stderr (journald under systemd); RUST_LOG sets the level",
        ),
        "daemon" | "master_process" => (
            Kind::Dropped,
            "Portico runs in the foreground under its service manager",
        ),
        "load_module" => (
            Kind::NotCarried,
            "Portico has no dynamic modules; see the report for what each module's directives became",
        ),
        "worker_shutdown_timeout" => {
            if let Some(d) = n.arg(0).and_then(values::time) {
                cx.out.server.set("shutdown_grace", q(&d));
                return n.mark();
            }
            (Kind::NotCarried, "cannot read this time")
        }
        "env" | "pcre_jit" | "thread_pool" | "lock_file" | "timer_resolution"
        | "working_directory" | "ssl_engine" => (Kind::Dropped, "no Portico equivalent needed"),
        "server" | "upstream" | "include" | "map" => return,
        _ => return,
    };
    cx.notes.note(n, kind, why);
}
