//! What the test modules share: parsing a text into printed diagnostics, the repository's
//! folders, and the keys `docs/configuration.md` documents for each kind of table.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Every diagnostic of `text` (named `t.toml`), as `portico check` prints it; empty if valid.
pub fn diags(text: &str) -> Vec<String> {
    match portico_config::parse(text, Path::new("t.toml")) {
        Ok(_) => Vec::new(),
        Err(e) => e.diagnostics().iter().map(ToString::to_string).collect(),
    }
}

/// The only diagnostic of `text`.
pub fn one(text: &str) -> String {
    let d = diags(text);
    assert_eq!(d.len(), 1, "expected one diagnostic, got {d:#?}");
    d.into_iter().next().unwrap()
}

/// A path relative to the crate's folder.
pub fn crate_path(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// The repository's `examples/` folder.
pub fn examples_dir() -> PathBuf {
    crate_path("../../examples")
}

/// The `.toml` files of `examples/`, sorted.
pub fn example_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(examples_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    files
}

/// Kinds of table (named as in the tests' tables) -> the keys the documentation gives them.
pub type DocKeys = BTreeMap<&'static str, BTreeSet<String>>;

/// Where the documentation lists the keys of a kind of table, and how to read them.
enum Source {
    /// The first column of a markdown table: `key` or `key = value`.
    KeyColumn { heading: &'static str, table: usize },
    /// Every `key` or `key = value` code span in every cell of these tables.
    AllCells {
        heading: &'static str,
        tables: &'static [usize],
    },
    /// The keys of inline tables (`{ a = 1, b = 2 }`) in the rows of a markdown table (all
    /// rows, or those whose first column is `row`).
    InlineKeys {
        heading: &'static str,
        table: usize,
        row: Option<&'static str>,
    },
}

/// For each kind of table, where docs/configuration.md documents its keys.
const SOURCES: &[(&str, Source)] = &[
    (
        "server",
        Source::KeyColumn {
            heading: "## [server]",
            table: 0,
        },
    ),
    (
        "admin",
        Source::KeyColumn {
            heading: "## [admin]",
            table: 0,
        },
    ),
    (
        "acme",
        Source::KeyColumn {
            heading: "## [acme]",
            table: 0,
        },
    ),
    (
        "cluster",
        Source::KeyColumn {
            heading: "## [cluster]",
            table: 0,
        },
    ),
    (
        "upstream",
        Source::KeyColumn {
            heading: "## [upstreams.NAME]",
            table: 0,
        },
    ),
    (
        "server entry",
        Source::InlineKeys {
            heading: "## [upstreams.NAME]",
            table: 0,
            row: Some("servers"),
        },
    ),
    (
        "health",
        Source::KeyColumn {
            heading: "## [upstreams.NAME]",
            table: 1,
        },
    ),
    (
        "upstream tls",
        Source::KeyColumn {
            heading: "### TLS to upstream servers",
            table: 0,
        },
    ),
    (
        "site",
        Source::KeyColumn {
            heading: "## [[sites]]",
            table: 0,
        },
    ),
    (
        "site tls",
        Source::InlineKeys {
            heading: "## [[sites]]",
            table: 0,
            row: Some("tls"),
        },
    ),
    (
        "route",
        Source::AllCells {
            heading: "### [[sites.routes]]",
            tables: &[0, 1, 2],
        },
    ),
    (
        "limit rate",
        Source::InlineKeys {
            heading: "### [[sites.routes]]",
            table: 2,
            row: Some("limit_rate"),
        },
    ),
    (
        "auth basic",
        Source::InlineKeys {
            heading: "### [[sites.routes]]",
            table: 2,
            row: Some("auth_basic"),
        },
    ),
    (
        "headers",
        Source::InlineKeys {
            heading: "### [[sites.routes]]",
            table: 1,
            row: Some("proxy"),
        },
    ),
    (
        "stream",
        Source::KeyColumn {
            heading: "## [[streams]]",
            table: 0,
        },
    ),
    (
        "stream tls",
        Source::InlineKeys {
            heading: "## [[streams]]",
            table: 0,
            row: Some("tls"),
        },
    ),
    (
        "vrrp",
        Source::KeyColumn {
            heading: "## [[vrrp]]",
            table: 0,
        },
    ),
    (
        "track",
        Source::InlineKeys {
            heading: "## [[vrrp]]",
            table: 1,
            row: None,
        },
    ),
];

/// The keys docs/configuration.md documents, per kind of table (`root`: the sections, and
/// the top-level keys of "Not supported yet").
pub fn documented_keys() -> DocKeys {
    let doc = std::fs::read_to_string(crate_path("../../docs/configuration.md")).unwrap();
    let sections = sections(&doc);
    let section = |heading: &str| -> &Vec<Vec<Vec<String>>> {
        sections
            .iter()
            .find(|(h, _)| h == heading)
            .map(|(_, tables)| tables)
            .unwrap_or_else(|| panic!("docs/configuration.md has no `{heading}`"))
    };
    let table = |heading: &str, i: usize| -> &Vec<Vec<String>> {
        section(heading)
            .get(i)
            .unwrap_or_else(|| panic!("`{heading}` has no table #{i}"))
    };
    let mut out = DocKeys::new();
    for (kind, source) in SOURCES {
        let keys: BTreeSet<String> = match source {
            Source::KeyColumn { heading, table: i } => table(heading, *i)
                .iter()
                .flat_map(|row| code_spans(&row[0]))
                .filter_map(|c| leading_key(&c))
                .collect(),
            Source::AllCells { heading, tables } => tables
                .iter()
                .flat_map(|i| table(heading, *i))
                .flatten()
                .flat_map(|cell| code_spans(cell))
                .filter_map(|c| leading_key(&c))
                .collect(),
            Source::InlineKeys {
                heading,
                table: i,
                row,
            } => table(heading, *i)
                .iter()
                .filter(|r| {
                    row.is_none_or(|want| {
                        code_spans(&r[0])
                            .iter()
                            .any(|c| leading_key(c).as_deref() == Some(want))
                    })
                })
                .flatten()
                .flat_map(|cell| code_spans(cell))
                .flat_map(|c| inline_keys(&c))
                .collect(),
        };
        assert!(!keys.is_empty(), "no documented keys found for {kind}");
        out.insert(kind, keys);
    }
    // The top level: the sections (`## [server]`, `## [[sites]]`, `## [upstreams.NAME]`) and
    // the top-level keys that are not supported yet.
    let mut root: BTreeSet<String> = sections
        .iter()
        .filter_map(|(h, _)| h.strip_prefix("## ["))
        .map(|h| {
            h.trim_start_matches('[')
                .split([']', '.'])
                .next()
                .unwrap()
                .to_string()
        })
        .collect();
    let gated = sections
        .iter()
        .find(|(h, _)| h == "## Not supported yet")
        .and_then(|(_, tables)| tables.first());
    for row in gated.into_iter().flatten() {
        if row[0] == "top level" {
            root.extend(
                code_spans(&row[1])
                    .iter()
                    .map(|c| c.trim_matches(['[', ']']).to_string()),
            );
        }
    }
    out.insert("root", root);
    out
}

/// Headings (`## [server]`) with the markdown tables under them (up to the next heading),
/// each a list of rows of cells, without the header and separator rows. Code blocks are
/// skipped (their `#` lines are TOML comments).
fn sections(doc: &str) -> Vec<(String, Vec<Vec<Vec<String>>>)> {
    let mut out: Vec<(String, Vec<Vec<Vec<String>>>)> = Vec::new();
    let mut in_code = false;
    let mut in_table = false;
    for line in doc.lines() {
        if line.starts_with("```") {
            in_code = !in_code;
            continue;
        }
        if in_code {
            continue;
        }
        if line.starts_with('#') {
            out.push((line.trim().to_string(), Vec::new()));
            in_table = false;
            continue;
        }
        let Some((_, tables)) = out.last_mut() else {
            continue;
        };
        if !line.starts_with('|') {
            in_table = false;
            continue;
        }
        if !in_table {
            // The header row; the separator row follows.
            tables.push(Vec::new());
            in_table = true;
            continue;
        }
        if line.starts_with("|---") {
            continue;
        }
        let cells: Vec<String> = line
            .trim()
            .trim_matches('|')
            .split('|')
            .map(|c| c.trim().to_string())
            .collect();
        if let Some(t) = tables.last_mut() {
            t.push(cells);
        }
    }
    out
}

/// The `code spans` of a markdown cell.
fn code_spans(cell: &str) -> Vec<String> {
    cell.split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect()
}

/// `key` of a code span that is `key` or `key = value`.
fn leading_key(code: &str) -> Option<String> {
    let re = regex::Regex::new(r"^([a-z_]+)(?: =|$)").unwrap();
    re.captures(code).map(|c| c[1].to_string())
}

/// The keys of the inline tables in a code span: `{ a = 1, b = { c = 2 } }` -> a, b, c.
fn inline_keys(code: &str) -> Vec<String> {
    let re = regex::Regex::new(r"[{,]\s*([a-z_]+)\s*=").unwrap();
    re.captures_iter(code).map(|c| c[1].to_string()).collect()
}
