//! The "not supported yet" gate: keys of `SPEC.md` that later work implements.
//!
//! A gated key is known (never an "unknown key", and offered as a "did you mean" hint) but
//! produces a diagnostic at its position, whether or not a reader asks for it. To enable a feature, delete its entry from [`NOT_SUPPORTED`]:
//! the parsers already read them into the model.

/// A kind of table: where a key appears. The keys known in a kind are those its reader asks
/// for (see `keys.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Scope {
    Root,
    Server,
    Acme,
    Admin,
    Upstream,
    UpstreamTls,
    Health,
    ServerEntry,
    SiteTls,
    Headers,
    Site,
    Route,
    LimitRate,
    AuthBasic,
    Vrrp,
    Track,
    Stream,
    Cluster,
}

/// One key that is recognised but not supported yet.
#[derive(Debug)]
pub(crate) struct Gated {
    pub scope: Scope,
    pub key: &'static str,
    /// What it will do, briefly.
    pub hint: &'static str,
}

/// Delete an entry to enable that feature.
pub(crate) const NOT_SUPPORTED: &[Gated] = &[];

/// The gate entry for `key` in `scope`, if the key is not supported yet.
pub(crate) fn gated(scope: Scope, key: &str) -> Option<&'static Gated> {
    NOT_SUPPORTED
        .iter()
        .find(|g| g.scope == scope && g.key == key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_unique_and_found() {
        for (i, g) in NOT_SUPPORTED.iter().enumerate() {
            assert!(!g.hint.is_empty());
            let first = NOT_SUPPORTED
                .iter()
                .position(|o| o.scope == g.scope && o.key == g.key);
            assert_eq!(first, Some(i), "duplicate gate entry {}", g.key);
            assert!(gated(g.scope, g.key).is_some());
        }
        assert!(gated(Scope::Upstream, "servers").is_none());
        assert!(gated(Scope::Route, "tls").is_none());
    }
}
