//! Known keys, learnt from the readers: there is no hand-kept list of allowed keys.
//!
//! A section reader opens its table as a [`Tbl`] of a kind ([`Scope`]) and reads it only
//! through the getters of `Ctx`, and every getter records the key it asks for under that
//! kind in the [`KeyLog`]. After the walk, a key of an opened table that no reader asked for
//! under its kind is unknown (reported by `Ctx::report_keys`, with the closest asked-for key
//! as hint). The set is per kind, not per table: a key a reader asks for in one table (say
//! `status` of a `redirect` route) is known in every table of that kind. Readers ask for
//! each key they may read before any early return, so the set does not depend on what the
//! file holds; the crate's tests check it against `docs/configuration.md` with tables that
//! hold nothing else.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;

use toml::Spanned;
use toml::de::{DeString, DeTable, DeValue};

use crate::gate::{NOT_SUPPORTED, Scope, gated};

/// A table being read as a table of kind `scope`. Deliberately gives no access to the
/// table itself: reads go through `Ctx`, which records the key.
#[derive(Clone, Copy)]
pub(crate) struct Tbl<'t, 'i> {
    table: &'t DeTable<'i>,
    scope: Scope,
}

/// One opened table: its kind, how messages name it, and its keys with their positions.
#[derive(Debug)]
struct Opened {
    scope: Scope,
    what: String,
    keys: Vec<(String, Range<usize>)>,
}

/// The keys asked for per kind of table, and every table opened so far.
#[derive(Debug, Default)]
pub(crate) struct KeyLog {
    asked: BTreeMap<Scope, BTreeSet<&'static str>>,
    opened: Vec<Opened>,
}

/// A key of an opened table that is gated or that no reader asked for.
#[derive(Debug)]
pub(crate) enum Stray {
    /// Recognised, but in [`NOT_SUPPORTED`]: the hint says what it will do.
    Gated { hint: &'static str },
    /// Nobody asked for it; `known` are the keys of that kind, sorted.
    Unknown {
        what: String,
        known: Vec<&'static str>,
    },
}

impl KeyLog {
    /// Starts reading `table` as a table of kind `scope`; `what` names it in messages.
    pub(crate) fn open<'t, 'i>(
        &mut self,
        table: &'t DeTable<'i>,
        scope: Scope,
        what: String,
    ) -> Tbl<'t, 'i> {
        let keys = table
            .iter()
            .map(|(k, _)| (k.get_ref().to_string(), k.span()))
            .collect();
        self.opened.push(Opened { scope, what, keys });
        Tbl { table, scope }
    }

    /// Records that a reader asked for `key` in `t`'s kind; returns the key and value.
    pub(crate) fn ask<'t, 'i>(
        &mut self,
        t: Tbl<'t, 'i>,
        key: &'static str,
    ) -> Option<(&'t Spanned<DeString<'i>>, &'t Spanned<DeValue<'i>>)> {
        self.asked.entry(t.scope).or_default().insert(key);
        t.table.get_key_value(key)
    }

    /// The keys asked for in tables of kind `scope`, plus its gated keys, sorted.
    pub(crate) fn known(&self, scope: Scope) -> Vec<&'static str> {
        let mut known: BTreeSet<&'static str> = self.asked.get(&scope).cloned().unwrap_or_default();
        known.extend(
            NOT_SUPPORTED
                .iter()
                .filter(|g| g.scope == scope)
                .map(|g| g.key),
        );
        known.into_iter().collect()
    }

    /// Every gated or unknown key of the tables opened so far, with its position; clears
    /// the list of opened tables.
    pub(crate) fn take_strays(&mut self) -> Vec<(String, Range<usize>, Stray)> {
        let mut out = Vec::new();
        for table in std::mem::take(&mut self.opened) {
            for (name, span) in table.keys {
                let stray = if let Some(g) = gated(table.scope, &name) {
                    Stray::Gated { hint: g.hint }
                } else if self
                    .asked
                    .get(&table.scope)
                    .is_some_and(|keys| keys.contains(name.as_str()))
                {
                    continue;
                } else {
                    Stray::Unknown {
                        what: table.what.clone(),
                        known: self.known(table.scope),
                    }
                };
                out.push((name, span, stray));
            }
        }
        out
    }

    /// The keys asked for in tables of kind `scope` (tests compare them with other lists).
    #[cfg(test)]
    pub(crate) fn asked(&self, scope: Scope) -> BTreeSet<&'static str> {
        self.asked.get(&scope).cloned().unwrap_or_default()
    }
}
