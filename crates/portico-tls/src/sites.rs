//! From configured sites to resolver entries: the one place that maps `[[sites]] tls` to
//! certificates, so every listener is built the same way.
//!
//! Each TLS site becomes one resolver entry serving its `hosts`: `tls = { cert, key }` pairs
//! are loaded (and watched) by [`FileCerts`]; `tls = "acme"` sites reserve their names and are
//! returned as ACME groups for [`AcmeManager::manage`](crate::acme::AcmeManager::manage).
//! The first TLS site is the resolver's global default; each listener answers handshakes
//! without SNI, or with a name none of its sites serves, with its own first TLS site
//! ([`site_resolver_id`] names that site's entry; see `ListenerResolver`).

use std::collections::HashSet;
use std::path::Path;

use portico_config::{HostPattern, Site, SiteTls};

use crate::acme::resolver_id;
use crate::error::TlsError;
use crate::files::FileCerts;
use crate::resolver::NamePattern;

/// The resolver id of a site with certificate files.
pub fn site_id(site: &Site) -> String {
    format!("site{}", site.index)
}

/// The resolver entry a TLS site's certificate lives under: [`site_id`] for certificate
/// files, the ACME group's id for `tls = "acme"`. `None` for a site without `tls` or an ACME
/// site with wildcard hosts (rejected by [`install_sites`]).
pub fn site_resolver_id(site: &Site) -> Option<String> {
    match site.tls.as_ref()? {
        SiteTls::Files { .. } => Some(site_id(site)),
        SiteTls::Acme => acme_names(&site.hosts).map(|names| resolver_id(&names)),
    }
}

/// Install the certificates of `sites` (in file order) into the resolver behind `files`.
/// Returns the name groups to hand to the ACME manager, one per `tls = "acme"` site.
/// Relative certificate paths resolve against `base`. Entries of sites no longer present
/// (after a reload into the same resolver) are removed; an ACME site that stays keeps its
/// certificate.
pub fn install_sites<'a>(
    sites: impl IntoIterator<Item = &'a Site>,
    base: &Path,
    files: &mut FileCerts,
) -> Result<Vec<Vec<String>>, TlsError> {
    let mut acme_groups = Vec::new();
    let mut default_id = None;
    let mut ids = HashSet::new();
    for site in sites {
        let Some(tls) = &site.tls else { continue };
        let patterns: Vec<NamePattern> = site.hosts.iter().map(NamePattern::from).collect();
        let id = match tls {
            SiteTls::Files { cert, key } => {
                let id = site_id(site);
                files.add(&id, patterns, &base.join(cert), &base.join(key))?;
                id
            }
            SiteTls::Acme => {
                let names = acme_names(&site.hosts).ok_or_else(|| {
                    TlsError::acme(
                        "site hosts",
                        format!(
                            "site {} uses tls = \"acme\" but its hosts include a wildcard or \"*\"",
                            site.index
                        ),
                    )
                })?;
                let id = resolver_id(&names);
                files.resolver().reserve(&id, patterns);
                acme_groups.push(names);
                id
            }
        };
        default_id.get_or_insert(id.clone());
        ids.insert(id);
    }
    files.resolver().retain(&ids);
    files.resolver().set_default(default_id.as_deref());
    Ok(acme_groups)
}

/// The exact names of an ACME site, or `None` when a host is a wildcard.
fn acme_names(hosts: &[HostPattern]) -> Option<Vec<String>> {
    hosts
        .iter()
        .map(|h| match h {
            HostPattern::Exact(name) => Some(name.clone()),
            HostPattern::Any | HostPattern::Suffix(_) => None,
        })
        .collect()
}
