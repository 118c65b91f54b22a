//! Portico configuration: a TOML file becomes a validated, immutable, typed [`Config`].
//!
//! Data comes in as the text of one file (plus its path, used to resolve relative paths and
//! to name error locations) and leaves as [`Config`] (see [`model`]). Nothing here does I/O
//! beyond reading the given file. Every problem is a [`Diagnostic`] that names
//! `FILE:LINE:COL`, says what is wrong in one line and gives a hint; all problems of a file
//! are reported at once.
//!
//! The TOML is parsed with spans (`toml::de::DeTable`) and walked by hand, one module per
//! section, so unknown keys and bad values are reported at their exact position. There is no
//! list of allowed keys: the getters record the keys the readers ask for, and a key nobody
//! asked for is unknown (`keys.rs`). Keys of `SPEC.md` that later work implements go through
//! the gate in `gate.rs`.

#![cfg_attr(test, allow(clippy::unwrap_used))]

mod acme;
mod cluster;
mod compress;
mod error;
mod gate;
mod keys;
pub mod model;
mod policy;
mod route;
mod server;
mod site;
mod stream;
mod units;
mod upstream;
mod validate;
mod vrrp;
mod walk;

use std::collections::BTreeMap;
use std::path::Path;

use toml::de::{DeTable, DeValue};

pub use cluster::DEFAULT_CLUSTER_PREFIX;
pub use error::{ConfigError, Diagnostic, Diagnostics};
pub use model::*;
pub use server::DEFAULT_ADMIN_LISTEN;
pub use stream::DEFAULT_STREAM_IDLE_TIMEOUT;
pub use units::{parse_duration, parse_size};

use crate::gate::Scope;
use crate::keys::Tbl;
use crate::walk::Ctx;

/// Reads `path` and parses it (see [`parse`]).
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    parse(&text, path)
}

/// Parses and validates the text of a config file. `path` names the file in diagnostics and
/// its folder is the base for relative paths.
pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
    let mut ctx = Ctx::new(text, path);
    let root = match DeTable::parse(text) {
        Ok(root) => root,
        Err(e) => {
            let span = e.span().unwrap_or(0..0);
            let message = e
                .message()
                .trim()
                .lines()
                .next()
                .unwrap_or("invalid TOML")
                .to_string();
            let hint = message.contains("duplicate").then(|| {
                "TOML allows each key, and each [table] header, only once; merge the two"
                    .to_string()
            });
            ctx.err(&span, format!("TOML syntax error: {message}"), hint);
            return Err(ConfigError::Invalid(Diagnostics(ctx.diags)));
        }
    };
    let config = walk_root(&mut ctx, root.get_ref());
    let mut diags = ctx.diags;
    if diags.is_empty() {
        return Ok(config);
    }
    diags.sort_by_key(|d| (d.line, d.col));
    diags.dedup();
    Err(ConfigError::Invalid(Diagnostics(diags)))
}

fn walk_root(ctx: &mut Ctx<'_>, raw_root: &DeTable<'_>) -> Config {
    let root = ctx.open(raw_root, Scope::Root, "the top level");
    let server_t = ctx.table(root, "server").map(|(t, _)| t);
    let server = server::server(ctx, server_t);
    let admin_t = ctx.table(root, "admin").map(|(t, _)| t);
    let admin = server::admin(ctx, admin_t);
    let acme = ctx
        .table(root, "acme")
        .and_then(|(t, span)| acme::acme(ctx, t, &span));
    let acme_section = ctx.has(root, "acme");
    let has_cluster = ctx.has(root, "cluster");
    let cluster = ctx
        .table(root, "cluster")
        .and_then(|(t, span)| cluster::cluster(ctx, t, &span));

    let mut upstreams = BTreeMap::new();
    let mut upstream_spans = BTreeMap::new();
    if let Some((ups, _)) = ctx.table(root, "upstreams") {
        for (name, v) in ups.iter() {
            let name_str: &str = name.get_ref();
            let DeValue::Table(t) = v.get_ref() else {
                ctx.wrong_type(
                    name_str,
                    v,
                    "a table [upstreams.NAME]",
                    "{ servers = [\"127.0.0.1:8080\"] }",
                );
                continue;
            };
            let up = upstream::upstream(ctx, name_str, &name.span(), t, has_cluster);
            upstream_spans.insert(name_str.to_string(), name.span());
            upstreams.insert(name_str.to_string(), up);
        }
    }

    let mut sites = Vec::new();
    let mut site_spans = Vec::new();
    if let Some(items) = array_of_tables(ctx, root, "sites") {
        for (i, v) in items.iter().enumerate() {
            if let Some((s, spans)) = site::site(ctx, i, v) {
                sites.push(s);
                site_spans.push(spans);
            }
        }
    }

    let mut streams = Vec::new();
    let mut stream_spans = Vec::new();
    if let Some(items) = array_of_tables(ctx, root, "streams") {
        for (i, v) in items.iter().enumerate() {
            if let Some((s, spans)) = stream::stream(ctx, i, v) {
                streams.push(s);
                stream_spans.push(spans);
            }
        }
    }

    let mut vrrp = Vec::new();
    let mut vrrp_spans = Vec::new();
    if let Some(items) = array_of_tables(ctx, root, "vrrp") {
        for (i, v) in items.iter().enumerate() {
            if let Some((inst, spans)) = vrrp::instance(ctx, i, v) {
                vrrp.push(inst);
                vrrp_spans.push(spans);
            }
        }
    }

    let mut config = Config {
        source: ctx.file.clone(),
        base_dir: ctx.base_dir.clone(),
        server,
        admin,
        upstreams,
        sites,
        streams,
        vrrp,
        acme,
        cluster,
    };
    acme::check_sites(ctx, raw_root, acme_section);
    validate::cross_check(ctx, &config, &site_spans, &stream_spans, &vrrp_spans);
    stream::health_defaults(raw_root, &mut config);
    ctx.report_keys();
    config
}

/// The items of an array-of-tables key (`[[sites]]`), reporting a wrong type.
fn array_of_tables<'t, 'i>(
    ctx: &mut Ctx<'_>,
    t: Tbl<'t, 'i>,
    key: &'static str,
) -> Option<&'t toml::de::DeArray<'i>> {
    let v = ctx.get(t, key)?;
    match v.get_ref() {
        DeValue::Array(items) => Some(items),
        _ => {
            ctx.wrong_type(key, v, "an array of tables", &format!("[[{key}]]"));
            None
        }
    }
}
