//! Portico importers: an nginx or keepalived configuration becomes the text of an
//! equivalent Portico configuration (TOML, `docs/configuration.md`) plus a [`Report`] that
//! lists, with FILE:LINE and a reason, every directive that was not carried over as written.
//!
//! Data comes in as a file path (nginx `include`s and keepalived `include`s are followed
//! relative to the main file's folder) and leaves as a [`Conversion`]: the TOML text and
//! the report. Nothing is dropped silently: the parsers build a tree in which each
//! directive is marked when a converter carries it over or reports it, and whatever is
//! left unmarked is reported as "not carried over" (see `tree.rs`).
//!
//! The output only uses keys that Portico's `portico check` accepts today, including the
//! traffic policy (limits, access rules, basic auth, compression, error pages, trusted
//! proxies), written with nginx's inheritance. Files the config names and Portico reads
//! when it loads (an `auth_basic` users file, error pages) are looked at: one Portico
//! could not load is reported and the protection is written closed (never open). The
//! `portico import` command (crate `portico`) writes the text and then validates it as
//! `portico check` does.
//!
//! - `nginx`: `http` (`upstream`, `server`, `location`, `map`), `stream`, and the top level.
//! - `keepalived`: `vrrp_instance`, `vrrp_script`, LVS `virtual_server`.

#![cfg_attr(test, allow(clippy::unwrap_used))]

mod glob;
mod keepalived;
mod nginx;
mod out;
pub mod report;
mod tree;

use std::path::{Path, PathBuf};

pub use report::{Kind, Note, Report};

/// Import failures: the source cannot be read or parsed. Everything else is a note.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("cannot read {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{file}:{line}: {message}")]
    Syntax {
        file: String,
        line: usize,
        message: String,
    },
}

/// Choices the nginx importer cannot guess.
#[derive(Debug, Clone, Default)]
pub struct NginxOptions {
    /// When set, sites whose certificates come from certbot/getssl (or that answer
    /// `/.well-known/acme-challenge/` themselves) get `tls = "acme"` and an `[acme]` section
    /// with this contact address; otherwise their certificate files are kept.
    pub acme_email: Option<String>,
    /// nginx's prefix, against which relative `root` paths resolve (`nginx -p`). Default: the
    /// parent of the main file's folder (the layout `PREFIX/conf/nginx.conf`).
    pub prefix: Option<PathBuf>,
}

/// The result of an import.
#[derive(Debug, Clone)]
pub struct Conversion {
    /// The Portico configuration (TOML).
    pub toml: String,
    /// What was not carried over as written.
    pub report: Report,
}

/// Convert the nginx configuration at `path`.
pub fn nginx(path: &Path, opts: &NginxOptions) -> Result<Conversion, ImportError> {
    nginx::convert(path, opts)
}

/// Convert the keepalived configuration at `path`.
pub fn keepalived(path: &Path) -> Result<Conversion, ImportError> {
    keepalived::convert(path)
}
