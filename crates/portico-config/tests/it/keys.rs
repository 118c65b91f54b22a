//! Known keys cannot drift from the documentation. For every kind of table, in a table that
//! holds nothing else (so a key a reader asks for only in some branch would be missed): the
//! keys the reader knows, as the "allowed keys here" hint lists them, are exactly those
//! docs/configuration.md documents; a misspelt documented key is unknown with the right
//! "did you mean"; and the everything file uses every documented key (and is valid but for
//! the gated ones, see `examples::everything_file_fails_only_at_the_marked_keys`).

use std::collections::BTreeSet;

use toml::de::{DeTable, DeValue};

use crate::support::{DocKeys, crate_path, diags, documented_keys};

const UP: &str = "[upstreams.a]\nservers = [\"127.0.0.1:1\"]\n";

/// Each kind of table, and a file where `BODY` is the whole of one table of that kind.
const KINDS: &[(&str, &str)] = &[
    ("root", "BODY\n"),
    ("server", "[server]\nBODY\n"),
    ("admin", "[admin]\nBODY\n"),
    ("acme", "[acme]\nBODY\n"),
    ("upstream", "[upstreams.a]\nBODY\n"),
    ("server entry", "[upstreams.a]\nservers = [{ BODY }]\n"),
    ("health", "UP[upstreams.a.health]\nBODY\n"),
    ("upstream tls", "UP[upstreams.a.tls]\nBODY\n"),
    ("site", "[[sites]]\nBODY\n"),
    ("site tls", "[[sites]]\n[sites.tls]\nBODY\n"),
    ("route", "[[sites]]\n[[sites.routes]]\nBODY\n"),
    (
        "headers",
        "UP[[sites]]\nlisten = \"127.0.0.1:1\"\n[[sites.routes]]\npath = \"/\"\nproxy = \"a\"\n\
         [sites.routes.request_headers]\nBODY\n",
    ),
    ("stream", "[[streams]]\nBODY\n"),
    ("stream tls", "[[streams]]\n[streams.tls]\nBODY\n"),
    ("vrrp", "[[vrrp]]\nBODY\n"),
    ("track", "[[vrrp]]\ntrack = [{ BODY }]\n"),
    ("limit rate", "[[sites]]\nlimit_rate = { BODY }\n"),
    ("auth basic", "[[sites]]\nauth_basic = { BODY }\n"),
    ("cluster", "[cluster]\nBODY\n"),
];

fn file(template: &str, body: &str) -> String {
    template.replace("UP", UP).replace("BODY", body)
}

/// The diagnostic about the unknown key `key` in `text`.
fn unknown(text: &str, key: &str) -> String {
    let d = diags(text);
    let prefix = format!("unknown key `{key}` in ");
    let found: Vec<&String> = d.iter().filter(|d| d.contains(&prefix)).collect();
    assert_eq!(
        found.len(),
        1,
        "one unknown `{key}` expected in\n{text}\n{d:#?}"
    );
    found[0].clone()
}

#[test]
fn the_known_keys_of_each_kind_are_the_documented_ones() {
    let documented = documented_keys();
    assert_eq!(
        documented.keys().copied().collect::<BTreeSet<_>>(),
        KINDS.iter().map(|(k, _)| *k).collect(),
        "every kind of table has a test file and a documentation source"
    );
    for (kind, template) in KINDS {
        let d = unknown(&file(template, "zzzzzzzz = 1"), "zzzzzzzz");
        let (_, allowed) = d
            .split_once("hint: allowed keys here: ")
            .unwrap_or_else(|| panic!("{kind}: no list of allowed keys in {d}"));
        let known: BTreeSet<String> = allowed
            .split(", ")
            .map(|k| k.trim_matches('`').to_string())
            .collect();
        assert_eq!(
            known, documented[kind],
            "{kind}: the keys the reader knows (left) differ from the documented ones (right)"
        );
    }
}

/// `balance` -> `balaance`: one letter doubled in the middle.
fn misspell(key: &str) -> String {
    let mid = key.len() / 2;
    format!("{}{}", &key[..=mid], &key[mid..])
}

#[test]
fn a_misspelt_key_of_each_kind_names_the_right_key() {
    let documented = documented_keys();
    let mut checked = 0;
    for (kind, template) in KINDS {
        for key in &documented[kind] {
            let typo = misspell(key);
            let d = unknown(&file(template, &format!("{typo} = 1")), &typo);
            assert!(
                d.ends_with(&format!("hint: did you mean `{key}`?")),
                "{kind}: `{typo}` should suggest `{key}`: {d}"
            );
            checked += 1;
        }
    }
    assert!(checked > 90, "only {checked} keys checked");
}

#[test]
fn unknown_keys_have_their_position_and_the_table_named() {
    let d = unknown(&file(KINDS[10].1, "websockt = true"), "websockt");
    assert_eq!(
        d,
        "t.toml:3:1: unknown key `websockt` in [[sites.routes]] (route #1 of site #1)\n  hint: did you mean `websocket`?"
    );
    let d = unknown(&file(KINDS[15].1, "listener = true"), "listener");
    assert_eq!(
        d,
        "t.toml:2:12: unknown key `listener` in a `track` entry\n  hint: did you mean `listeners`?"
    );
}

/// The keys of `tests/data/everything.toml`, per kind of table.
fn everything_keys() -> DocKeys {
    let text = std::fs::read_to_string(crate_path("tests/data/everything.toml")).unwrap();
    let root = DeTable::parse(&text).unwrap();
    let root = root.get_ref();
    let mut out = DocKeys::new();
    let mut add = |kind: &'static str, t: &DeTable<'_>| {
        out.entry(kind)
            .or_default()
            .extend(t.iter().map(|(k, _)| k.get_ref().to_string()));
    };
    add("root", root);
    for kind in ["server", "admin", "acme", "cluster"] {
        add(kind, table(root.get(kind)).unwrap());
    }
    for (_, up) in table(root.get("upstreams")).unwrap().iter() {
        let up = table(Some(up)).unwrap();
        add("upstream", up);
        items(up.get("servers"))
            .filter_map(|s| table(Some(s)))
            .for_each(|s| add("server entry", s));
        table(up.get("tls"))
            .into_iter()
            .for_each(|t| add("upstream tls", t));
        table(up.get("health"))
            .into_iter()
            .for_each(|t| add("health", t));
    }
    for site in items(root.get("sites")).filter_map(|s| table(Some(s))) {
        add("site", site);
        table(site.get("tls"))
            .into_iter()
            .for_each(|t| add("site tls", t));
        table(site.get("limit_rate"))
            .into_iter()
            .for_each(|t| add("limit rate", t));
        table(site.get("auth_basic"))
            .into_iter()
            .for_each(|t| add("auth basic", t));
        for route in items(site.get("routes")).filter_map(|r| table(Some(r))) {
            add("route", route);
            table(route.get("limit_rate"))
                .into_iter()
                .for_each(|t| add("limit rate", t));
            table(route.get("auth_basic"))
                .into_iter()
                .for_each(|t| add("auth basic", t));
            for key in ["request_headers", "response_headers"] {
                table(route.get(key))
                    .into_iter()
                    .for_each(|t| add("headers", t));
            }
        }
    }
    for stream in items(root.get("streams")).filter_map(|s| table(Some(s))) {
        add("stream", stream);
        table(stream.get("tls"))
            .into_iter()
            .for_each(|t| add("stream tls", t));
    }
    for vrrp in items(root.get("vrrp")).filter_map(|s| table(Some(s))) {
        add("vrrp", vrrp);
        items(vrrp.get("track"))
            .filter_map(|t| table(Some(t)))
            .for_each(|t| add("track", t));
    }
    out
}

fn table<'t, 'i>(v: Option<&'t toml::Spanned<DeValue<'i>>>) -> Option<&'t DeTable<'i>> {
    match v?.get_ref() {
        DeValue::Table(t) => Some(t),
        _ => None,
    }
}

fn items<'t, 'i>(
    v: Option<&'t toml::Spanned<DeValue<'i>>>,
) -> impl Iterator<Item = &'t toml::Spanned<DeValue<'i>>> {
    let items = match v.map(|v| v.get_ref()) {
        Some(DeValue::Array(a)) => Some(a.iter()),
        _ => None,
    };
    items.into_iter().flatten()
}

#[test]
fn the_everything_file_uses_every_documented_key() {
    let used = everything_keys();
    for (kind, keys) in documented_keys() {
        let missing: Vec<&String> = keys
            .iter()
            .filter(|k| !used.get(kind).is_some_and(|u| u.contains(*k)))
            .collect();
        assert!(
            missing.is_empty(),
            "tests/data/everything.toml does not use the documented {kind} keys {missing:?}"
        );
    }
}
