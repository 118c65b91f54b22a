//! SNI certificate resolver over a swappable map.
//!
//! Certificates are installed under an id (a site, a cert-file pair, an ACME group) with the
//! host names they serve: exact names, `*.suffix` wildcards and `*` (any name). A handshake
//! loads one immutable index with an `ArcSwap` and looks the SNI up: exact name, then the
//! longest matching wildcard, then a `*` entry, then the default id. Names reserved without a
//! certificate yet (an ACME site still ordering) fail their handshakes cleanly instead of
//! falling back to another site's certificate.
//!
//! A ClientHello that offers only ALPN `acme-tls/1` is an ACME TLS-ALPN-01 validation: it is
//! answered with the challenge certificate published for that SNI, or refused.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use arc_swap::ArcSwap;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// The ALPN protocol id of TLS-ALPN-01 (RFC 8737).
pub const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";

/// A host name pattern of a certificate entry.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum NamePattern {
    /// Any name (`*`).
    Any,
    /// One name, lower-case.
    Exact(String),
    /// `*.example.com`, stored as `.example.com`.
    Suffix(String),
}

impl NamePattern {
    /// Parse `*`, `*.example.com` or `example.com` (case-insensitive, trailing dot ignored).
    pub fn parse(s: &str) -> NamePattern {
        let s = s.trim().trim_end_matches('.').to_ascii_lowercase();
        if s == "*" {
            NamePattern::Any
        } else if let Some(rest) = s.strip_prefix('*') {
            NamePattern::Suffix(rest.to_string())
        } else {
            NamePattern::Exact(s)
        }
    }
}

impl From<&portico_config::HostPattern> for NamePattern {
    fn from(h: &portico_config::HostPattern) -> Self {
        match h {
            portico_config::HostPattern::Any => NamePattern::Any,
            portico_config::HostPattern::Exact(n) => NamePattern::Exact(n.clone()),
            portico_config::HostPattern::Suffix(s) => NamePattern::Suffix(s.clone()),
        }
    }
}

#[derive(Clone)]
struct Entry {
    names: Vec<NamePattern>,
    /// `None`: names reserved, no certificate yet.
    key: Option<Arc<CertifiedKey>>,
}

/// The immutable index a handshake reads.
#[derive(Default)]
struct CertMap {
    entries: BTreeMap<String, Entry>,
    default_id: Option<String>,
    exact: HashMap<String, Option<Arc<CertifiedKey>>>,
    /// Longest suffix first.
    suffixes: Vec<(String, Option<Arc<CertifiedKey>>)>,
    any: Option<Option<Arc<CertifiedKey>>>,
    default: Option<Arc<CertifiedKey>>,
}

impl CertMap {
    fn build(entries: BTreeMap<String, Entry>, default_id: Option<String>) -> CertMap {
        let mut exact = HashMap::new();
        let mut suffixes = Vec::new();
        let mut any = None;
        for entry in entries.values() {
            for name in &entry.names {
                match name {
                    NamePattern::Exact(n) => {
                        // A real certificate wins over a reservation for the same name.
                        let slot = exact.entry(n.clone()).or_insert(None);
                        if slot.is_none() {
                            *slot = entry.key.clone();
                        }
                    }
                    NamePattern::Suffix(s) => suffixes.push((s.clone(), entry.key.clone())),
                    NamePattern::Any => {
                        if !matches!(any, Some(Some(_))) {
                            any = Some(entry.key.clone());
                        }
                    }
                }
            }
        }
        suffixes.sort_by(|a, b| {
            b.0.len()
                .cmp(&a.0.len())
                .then(b.1.is_some().cmp(&a.1.is_some()))
        });
        let default = default_id
            .as_ref()
            .and_then(|id| entries.get(id))
            .and_then(|e| e.key.clone());
        CertMap {
            entries,
            default_id,
            exact,
            suffixes,
            any,
            default,
        }
    }

    /// `Some(None)`: the name is known but has no certificate (fail the handshake).
    fn lookup(&self, sni: Option<&str>) -> Option<Arc<CertifiedKey>> {
        let Some(sni) = sni else {
            return self.default.clone().or_else(|| self.any.clone().flatten());
        };
        let name = sni.trim_end_matches('.').to_ascii_lowercase();
        if let Some(found) = self.exact.get(&name) {
            return found.clone();
        }
        for (suffix, key) in &self.suffixes {
            if name.len() > suffix.len() && name.ends_with(suffix.as_str()) {
                return key.clone();
            }
        }
        if let Some(any) = &self.any {
            return any.clone();
        }
        self.default.clone()
    }
}

/// The SNI resolver. Cheap to share (`Arc<CertResolver>`); updates swap a new index in, so
/// handshakes in flight keep the map they started with and never block.
pub struct CertResolver {
    map: ArcSwap<CertMap>,
    /// Serialises writers (read-modify-write of the map).
    write: Mutex<()>,
    /// TLS-ALPN-01 challenge certificates by lower-case name.
    challenges: Mutex<HashMap<String, Arc<CertifiedKey>>>,
}

impl fmt::Debug for CertResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let map = self.map.load();
        f.debug_struct("CertResolver")
            .field("ids", &map.entries.keys().collect::<Vec<_>>())
            .field("default", &map.default_id)
            .finish()
    }
}

impl Default for CertResolver {
    fn default() -> Self {
        CertResolver {
            map: ArcSwap::from_pointee(CertMap::default()),
            write: Mutex::new(()),
            challenges: Mutex::new(HashMap::new()),
        }
    }
}

impl CertResolver {
    /// An empty resolver (every handshake fails until something is installed).
    pub fn new() -> Arc<CertResolver> {
        Arc::new(CertResolver::default())
    }

    fn update(&self, f: impl FnOnce(&mut BTreeMap<String, Entry>, &mut Option<String>)) {
        let _guard = self.write.lock().unwrap_or_else(PoisonError::into_inner);
        let current = self.map.load();
        let mut entries = current.entries.clone();
        let mut default_id = current.default_id.clone();
        f(&mut entries, &mut default_id);
        self.map
            .store(Arc::new(CertMap::build(entries, default_id)));
    }

    /// Install (or replace) the certificate of `id`, serving `names`.
    pub fn set(&self, id: &str, names: Vec<NamePattern>, key: Arc<CertifiedKey>) {
        self.update(|entries, _| {
            entries.insert(
                id.to_string(),
                Entry {
                    names,
                    key: Some(key),
                },
            );
        });
    }

    /// Replace only the certificate of an existing `id`, keeping its names. Returns false
    /// when `id` is unknown.
    pub fn replace_key(&self, id: &str, key: Arc<CertifiedKey>) -> bool {
        let mut found = false;
        self.update(|entries, _| {
            if let Some(entry) = entries.get_mut(id) {
                entry.key = Some(key);
                found = true;
            }
        });
        found
    }

    /// Reserve `names` for `id` without a certificate: their handshakes fail until [`set`]
    /// (or [`replace_key`]) installs one. An existing certificate of `id` is kept.
    ///
    /// [`set`]: CertResolver::set
    /// [`replace_key`]: CertResolver::replace_key
    pub fn reserve(&self, id: &str, names: Vec<NamePattern>) {
        self.update(|entries, _| {
            let key = entries.get(id).and_then(|e| e.key.clone());
            entries.insert(id.to_string(), Entry { names, key });
        });
    }

    /// Remove `id` and its names.
    pub fn remove(&self, id: &str) {
        self.update(|entries, _| {
            entries.remove(id);
        });
    }

    /// Remove every entry whose id is not in `keep` (after a reload: sites that went away).
    pub fn retain(&self, keep: &std::collections::HashSet<String>) {
        self.update(|entries, default_id| {
            entries.retain(|id, _| keep.contains(id));
            if default_id.as_ref().is_some_and(|id| !keep.contains(id)) {
                *default_id = None;
            }
        });
    }

    /// The ids installed now.
    pub fn ids(&self) -> Vec<String> {
        self.map.load().entries.keys().cloned().collect()
    }

    /// The entry answering handshakes without SNI or with an unknown name (nginx's default
    /// server: the first site of the listener).
    pub fn set_default(&self, id: Option<&str>) {
        self.update(|_, default_id| *default_id = id.map(str::to_string));
    }

    /// The certificate a handshake with this SNI (and ordinary ALPN) would get.
    pub fn lookup(&self, sni: Option<&str>) -> Option<Arc<CertifiedKey>> {
        self.map.load().lookup(sni)
    }

    /// Whether `id` currently has a certificate.
    pub fn has_cert(&self, id: &str) -> bool {
        self.map
            .load()
            .entries
            .get(id)
            .is_some_and(|e| e.key.is_some())
    }

    /// Publish a TLS-ALPN-01 challenge certificate for `name`.
    pub fn set_alpn_challenge(&self, name: &str, key: Arc<CertifiedKey>) {
        self.challenges
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(name.to_ascii_lowercase(), key);
    }

    /// Withdraw the TLS-ALPN-01 challenge certificate of `name`.
    pub fn remove_alpn_challenge(&self, name: &str) {
        self.challenges
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&name.to_ascii_lowercase());
    }

    fn alpn_challenge(&self, sni: Option<&str>) -> Option<Arc<CertifiedKey>> {
        let name = sni?.trim_end_matches('.').to_ascii_lowercase();
        self.challenges
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&name)
            .cloned()
    }
}

/// Whether the ClientHello offers exactly one ALPN protocol, `acme-tls/1`.
fn only_acme_alpn(hello: &ClientHello<'_>) -> bool {
    let Some(mut protocols) = hello.alpn() else {
        return false;
    };
    protocols.next() == Some(ACME_TLS_ALPN) && protocols.next().is_none()
}

impl ResolvesServerCert for CertResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        if only_acme_alpn(&hello) {
            let found = self.alpn_challenge(hello.server_name());
            if found.is_none() {
                tracing::debug!(sni = ?hello.server_name(), "acme-tls/1 handshake without a pending challenge");
            }
            return found;
        }
        let found = self.lookup(hello.server_name());
        if found.is_none() {
            tracing::debug!(sni = ?hello.server_name(), "no certificate for this name; handshake refused");
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str) -> Arc<CertifiedKey> {
        let ck = rcgen::generate_simple_self_signed(vec![name.to_string()]).unwrap();
        let provider = crate::provider::default_provider();
        let der = rustls_pki_types::PrivateKeyDer::Pkcs8(ck.signing_key.serialize_der().into());
        let signing = provider.key_provider.load_private_key(der).unwrap();
        Arc::new(CertifiedKey::new(vec![ck.cert.der().clone()], signing))
    }

    fn same(a: &Option<Arc<CertifiedKey>>, b: &Arc<CertifiedKey>) -> bool {
        a.as_ref().is_some_and(|a| Arc::ptr_eq(a, b))
    }

    #[test]
    fn exact_then_longest_wildcard_then_any_then_default() {
        let r = CertResolver::new();
        let (a, wild, deep, any) = (key("a.test"), key("*.test"), key("*.x.test"), key("any"));
        r.set("a", vec![NamePattern::parse("A.test.")], a.clone());
        r.set("w", vec![NamePattern::parse("*.test")], wild.clone());
        r.set("d", vec![NamePattern::parse("*.x.test")], deep.clone());
        assert!(same(&r.lookup(Some("a.test")), &a));
        assert!(same(&r.lookup(Some("b.test")), &wild));
        assert!(same(&r.lookup(Some("y.x.test")), &deep));
        assert!(
            r.lookup(Some("test")).is_none(),
            "a wildcard does not match its bare suffix"
        );
        assert!(r.lookup(Some("other.example")).is_none());
        assert!(r.lookup(None).is_none());
        r.set_default(Some("a"));
        assert!(same(&r.lookup(Some("other.example")), &a));
        assert!(same(&r.lookup(None), &a));
        r.set("any", vec![NamePattern::Any], any.clone());
        assert!(same(&r.lookup(Some("other.example")), &any));
    }

    #[test]
    fn reserved_names_fail_instead_of_falling_back() {
        let r = CertResolver::new();
        let a = key("a.test");
        r.set("a", vec![NamePattern::parse("a.test")], a.clone());
        r.set_default(Some("a"));
        r.reserve("acme:b", vec![NamePattern::parse("b.test")]);
        assert!(r.lookup(Some("b.test")).is_none());
        assert!(!r.has_cert("acme:b"));
        let b = key("b.test");
        assert!(r.replace_key("acme:b", b.clone()));
        assert!(same(&r.lookup(Some("b.test")), &b));
        r.reserve("acme:b", vec![NamePattern::parse("b.test")]);
        assert!(
            same(&r.lookup(Some("b.test")), &b),
            "reserve keeps an existing certificate"
        );
        r.remove("acme:b");
        assert!(same(&r.lookup(Some("b.test")), &a));
    }
}
