//! SNI certificate resolver over a swappable map.
//!
//! Certificates are installed under an id (a site, a cert-file pair, an ACME group) with the
//! host names they serve: exact names, `*.suffix` wildcards and `*` (any name). A handshake
//! loads one immutable index with an `ArcSwap` and looks the SNI up: exact name, then the
//! longest matching wildcard, then a `*` entry, then the default id. Each TLS listener answers
//! through a [`ListenerResolver`]: the same live map, but only the listener's own entries
//! match names, and its default is the listener's first TLS site (nginx's default server of
//! an address), so a handshake without SNI, or with a name no site of that listener serves,
//! gets that site's certificate. Names reserved without a
//! certificate yet (an ACME site still ordering) fail their handshakes cleanly instead of
//! falling back to another site's certificate.
//!
//! A ClientHello that offers only ALPN `acme-tls/1` is an ACME TLS-ALPN-01 validation: it is
//! answered with the challenge certificate published for that SNI, or refused.

use std::collections::{BTreeMap, HashMap, HashSet};
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

/// One candidate of a name: the entry it comes from and its certificate (`None`: reserved).
#[derive(Clone)]
struct Slot {
    id: Arc<str>,
    key: Option<Arc<CertifiedKey>>,
}

/// The certificate entries of one TLS listener: the ids of its sites' entries, the first
/// (file order) being its default (nginx's default server of an address). Built when the
/// listener's sites are known; certificates themselves are always looked up live.
#[derive(Debug, Clone)]
pub struct ListenerCerts {
    ids: HashSet<Box<str>>,
    default_id: Box<str>,
}

impl ListenerCerts {
    /// The entries `ids` (file order; the first answers handshakes without SNI or with a
    /// name none of them serves). `None` when `ids` is empty.
    pub fn new<S: AsRef<str>>(ids: &[S]) -> Option<ListenerCerts> {
        let default_id = ids.first()?.as_ref().into();
        Some(ListenerCerts {
            ids: ids.iter().map(|id| id.as_ref().into()).collect(),
            default_id,
        })
    }

    /// The default entry's id.
    pub fn default_id(&self) -> &str {
        &self.default_id
    }

    fn contains(&self, id: &str) -> bool {
        self.ids.contains(id)
    }
}

/// The immutable index a handshake reads.
#[derive(Default)]
struct CertMap {
    entries: BTreeMap<String, Entry>,
    default_id: Option<String>,
    /// Per name, every entry serving it: certificates before reservations, then id order.
    exact: HashMap<String, Vec<Slot>>,
    /// Longest suffix first, certificates before reservations.
    suffixes: Vec<(String, Slot)>,
    /// `*` entries, certificates first.
    any: Vec<Slot>,
    default: Option<Arc<CertifiedKey>>,
}

impl CertMap {
    fn build(entries: BTreeMap<String, Entry>, default_id: Option<String>) -> CertMap {
        let mut exact: HashMap<String, Vec<Slot>> = HashMap::new();
        let mut suffixes = Vec::new();
        let mut any = Vec::new();
        for (id, entry) in &entries {
            let id: Arc<str> = id.as_str().into();
            for name in &entry.names {
                let slot = Slot {
                    id: id.clone(),
                    key: entry.key.clone(),
                };
                match name {
                    NamePattern::Exact(n) => exact.entry(n.clone()).or_default().push(slot),
                    NamePattern::Suffix(s) => suffixes.push((s.clone(), slot)),
                    NamePattern::Any => any.push(slot),
                }
            }
        }
        // Stable sorts: id order within equal keys. A real certificate wins over a
        // reservation for the same name.
        for slots in exact.values_mut() {
            slots.sort_by_key(|s| s.key.is_none());
        }
        any.sort_by_key(|s| s.key.is_none());
        suffixes.sort_by(|a, b| {
            b.0.len()
                .cmp(&a.0.len())
                .then(a.1.key.is_none().cmp(&b.1.key.is_none()))
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

    /// The certificate for `sni`, among every entry (`scope` `None`) or among the entries of
    /// one listener, falling back to that listener's default. A name matched by an entry
    /// without a certificate (reserved) gets `None`: the handshake fails.
    fn lookup(
        &self,
        sni: Option<&str>,
        scope: Option<&ListenerCerts>,
    ) -> Option<Arc<CertifiedKey>> {
        let allowed = |slot: &&Slot| scope.is_none_or(|s| s.contains(&slot.id));
        let default = || match scope {
            Some(s) => self.entries.get(&*s.default_id).and_then(|e| e.key.clone()),
            None => self.default.clone(),
        };
        let Some(sni) = sni else {
            return default().or_else(|| self.any.iter().find(allowed).and_then(|s| s.key.clone()));
        };
        let name = sni.trim_end_matches('.').to_ascii_lowercase();
        if let Some(slot) = self
            .exact
            .get(&name)
            .and_then(|slots| slots.iter().find(allowed))
        {
            return slot.key.clone();
        }
        for (suffix, slot) in &self.suffixes {
            if name.len() > suffix.len() && name.ends_with(suffix.as_str()) && allowed(&slot) {
                return slot.key.clone();
            }
        }
        if let Some(slot) = self.any.iter().find(allowed) {
            return slot.key.clone();
        }
        default()
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
    pub fn retain(&self, keep: &HashSet<String>) {
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
        self.map.load().lookup(sni, None)
    }

    /// The certificate a handshake on the listener of `certs` would get: only that
    /// listener's entries match names; no SNI or an unknown name gets its default entry.
    pub fn lookup_on(&self, sni: Option<&str>, certs: &ListenerCerts) -> Option<Arc<CertifiedKey>> {
        self.map.load().lookup(sni, Some(certs))
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

impl CertResolver {
    /// Answer a ClientHello: an ACME TLS-ALPN-01 validation with its challenge certificate,
    /// anything else by SNI (within `scope` when given).
    fn resolve_in(
        &self,
        hello: &ClientHello<'_>,
        scope: Option<&ListenerCerts>,
    ) -> Option<Arc<CertifiedKey>> {
        if only_acme_alpn(hello) {
            let found = self.alpn_challenge(hello.server_name());
            if found.is_none() {
                tracing::debug!(sni = ?hello.server_name(), "acme-tls/1 handshake without a pending challenge");
            }
            return found;
        }
        let found = self.map.load().lookup(hello.server_name(), scope);
        if found.is_none() {
            tracing::debug!(sni = ?hello.server_name(), "no certificate for this name; handshake refused");
        }
        found
    }
}

impl ResolvesServerCert for CertResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.resolve_in(&hello, None)
    }
}

/// The resolver of one TLS listener: the shared [`CertResolver`] (live certificates, hot
/// swaps, ACME challenges) restricted to the listener's entries, with the listener's first
/// TLS site as the default instead of the global one.
pub struct ListenerResolver {
    shared: Arc<CertResolver>,
    certs: ListenerCerts,
}

impl ListenerResolver {
    /// A resolver answering from `shared` for the listener of `certs`.
    pub fn new(shared: Arc<CertResolver>, certs: ListenerCerts) -> ListenerResolver {
        ListenerResolver { shared, certs }
    }
}

impl fmt::Debug for ListenerResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ListenerResolver")
            .field("certs", &self.certs)
            .finish()
    }
}

impl ResolvesServerCert for ListenerResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.shared.resolve_in(&hello, Some(&self.certs))
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

    #[test]
    fn a_listener_matches_only_its_entries_and_defaults_to_its_first() {
        let r = CertResolver::new();
        let (a, b, c, any) = (key("a.test"), key("b.test"), key("c.test"), key("any"));
        r.set("a", vec![NamePattern::parse("a.test")], a.clone());
        r.set("b", vec![NamePattern::parse("b.test")], b.clone());
        r.set("c", vec![NamePattern::parse("*.c.test")], c.clone());
        r.set("any", vec![NamePattern::Any], any.clone());
        r.set_default(Some("a"));
        let one = ListenerCerts::new(&["a"]).unwrap();
        let two = ListenerCerts::new(&["c", "b"]).unwrap();
        assert_eq!(two.default_id(), "c");
        assert!(same(&r.lookup_on(None, &one), &a));
        assert!(same(&r.lookup_on(None, &two), &c));
        assert!(same(&r.lookup_on(Some("unknown.test"), &one), &a));
        assert!(same(&r.lookup_on(Some("unknown.test"), &two), &c));
        assert!(same(&r.lookup_on(Some("b.test"), &two), &b));
        assert!(same(&r.lookup_on(Some("x.c.test"), &two), &c));
        // Another listener's names are unknown here.
        assert!(same(&r.lookup_on(Some("b.test"), &one), &a));
        assert!(same(&r.lookup_on(Some("a.test"), &two), &c));
        // The global view is unchanged: `*` answers unknown names.
        assert!(same(&r.lookup(Some("unknown.test")), &any));
        // Live: a replaced default certificate is served at once.
        let c2 = key("c.test");
        assert!(r.replace_key("c", c2.clone()));
        assert!(same(&r.lookup_on(None, &two), &c2));
        assert!(ListenerCerts::new::<&str>(&[]).is_none());
    }

    #[test]
    fn the_same_name_on_two_listeners_gets_each_listeners_certificate() {
        let r = CertResolver::new();
        let (one_key, two_key) = (key("x.test"), key("x.test"));
        r.set("one", vec![NamePattern::parse("x.test")], one_key.clone());
        r.set("two", vec![NamePattern::parse("x.test")], two_key.clone());
        let one = ListenerCerts::new(&["one"]).unwrap();
        let two = ListenerCerts::new(&["two"]).unwrap();
        assert!(same(&r.lookup_on(Some("x.test"), &one), &one_key));
        assert!(same(&r.lookup_on(Some("x.test"), &two), &two_key));
        // A reservation on this listener still fails instead of falling back.
        r.reserve("acme:y", vec![NamePattern::parse("y.test")]);
        let three = ListenerCerts::new(&["one", "acme:y"]).unwrap();
        assert!(r.lookup_on(Some("y.test"), &three).is_none());
        assert!(same(&r.lookup_on(Some("y.test"), &one), &one_key));
    }
}
