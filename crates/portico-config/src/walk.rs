//! Walking the spanned TOML tree: the [`Ctx`] collects diagnostics and offers typed getters
//! that report a wrong type or a bad value at its exact position.
//!
//! Getters never stop at the first problem: they record it and return a default (or `None`) so
//! that the walk goes on and every problem of the file is reported at once. Every getter also
//! records the key it asks for (see `keys.rs`): the keys nobody asked for are the unknown ones,
//! reported by [`Ctx::report_keys`] after the walk.

use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use crate::error::{Diagnostic, LineIndex};
use crate::gate::Scope;
use crate::keys::{KeyLog, Stray, Tbl};
use crate::units::{parse_duration, parse_size};

pub(crate) type Span = Range<usize>;
pub(crate) type Table<'i> = DeTable<'i>;
pub(crate) type Value<'i> = Spanned<DeValue<'i>>;

/// Parsing context: the source, where it came from, and the problems found so far.
pub(crate) struct Ctx<'s> {
    pub src: &'s str,
    pub file: PathBuf,
    pub base_dir: PathBuf,
    lines: LineIndex,
    pub diags: Vec<Diagnostic>,
    /// Every `proxy = "NAME"` and `track = [{ upstream = "NAME" }]`, checked after the walk.
    pub upstream_refs: Vec<(String, Span)>,
    /// The keys the readers asked for, and the tables they opened.
    pub keys: KeyLog,
}

impl<'s> Ctx<'s> {
    pub(crate) fn new(src: &'s str, file: &Path) -> Self {
        let base_dir = match file.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        Ctx {
            src,
            file: file.to_path_buf(),
            base_dir,
            lines: LineIndex::new(src),
            diags: Vec::new(),
            upstream_refs: Vec::new(),
            keys: KeyLog::default(),
        }
    }

    /// `FILE:LINE:COL` of a byte offset, for messages that mention a second place.
    pub(crate) fn location(&self, offset: usize) -> String {
        let (line, col) = self.lines.position(self.src, offset);
        format!("{}:{line}:{col}", self.file.display())
    }

    pub(crate) fn err(&mut self, span: &Span, message: impl Into<String>, hint: Option<String>) {
        let (line, col) = self.lines.position(self.src, span.start);
        self.diags.push(Diagnostic {
            file: self.file.clone(),
            line,
            col,
            message: message.into(),
            hint,
        });
    }

    /// A relative path resolved against the config file's folder.
    pub(crate) fn resolve(&self, p: &str) -> PathBuf {
        let path = Path::new(p);
        if path.is_absolute() {
            path.to_path_buf()
        } else {
            self.base_dir.join(path)
        }
    }

    /// Starts reading `table` as a table of kind `scope`; `what` names it in "unknown key"
    /// messages. Its keys that no reader of that kind asks for are reported after the walk.
    pub(crate) fn open<'t, 'i>(
        &mut self,
        table: &'t Table<'i>,
        scope: Scope,
        what: impl Into<String>,
    ) -> Tbl<'t, 'i> {
        self.keys.open(table, scope, what.into())
    }

    /// The value of `key` (recorded as a known key of `t`'s kind).
    pub(crate) fn get<'t, 'i>(
        &mut self,
        t: Tbl<'t, 'i>,
        key: &'static str,
    ) -> Option<&'t Value<'i>> {
        self.keys.ask(t, key).map(|(_, v)| v)
    }

    /// Whether `t` has `key` (recorded as a known key of `t`'s kind).
    pub(crate) fn has(&mut self, t: Tbl<'_, '_>, key: &'static str) -> bool {
        self.keys.ask(t, key).is_some()
    }

    /// Where `key` is written in `t`, for messages about the key itself (recorded as a known
    /// key of `t`'s kind).
    pub(crate) fn key_span(&mut self, t: Tbl<'_, '_>, key: &'static str) -> Option<Span> {
        self.keys.ask(t, key).map(|(k, _)| k.span())
    }

    /// Reports the keys of every opened table that are not supported yet, and those no
    /// reader asked for (with the closest known key of that kind as hint).
    pub(crate) fn report_keys(&mut self) {
        for (name, span, stray) in self.keys.take_strays() {
            match stray {
                Stray::Gated { hint } => self.err(
                    &span,
                    format!("`{name}` is not supported yet in this version of Portico"),
                    Some(hint.to_string()),
                ),
                Stray::Unknown { what, known } => {
                    let hint = suggest(&name, known.iter().copied())
                        .map(|s| format!("did you mean `{s}`?"))
                        .unwrap_or_else(|| format!("allowed keys here: {}", list(&known)));
                    self.err(&span, format!("unknown key `{name}` in {what}"), Some(hint));
                }
            }
        }
    }

    /// Reports a value of the wrong type.
    pub(crate) fn wrong_type(&mut self, key: &str, v: &Value<'_>, expected: &str, example: &str) {
        self.err(
            &v.span(),
            format!(
                "`{key}` must be {expected}, found {}",
                article(v.get_ref().type_str())
            ),
            Some(format!("for example: {key} = {example}")),
        );
    }

    pub(crate) fn str<'t>(&mut self, t: Tbl<'t, '_>, key: &'static str) -> Option<(&'t str, Span)> {
        let v = self.get(t, key)?;
        match v.get_ref() {
            DeValue::String(s) => Some((s.as_ref(), v.span())),
            _ => {
                self.wrong_type(key, v, "a string", "\"...\"");
                None
            }
        }
    }

    pub(crate) fn bool(&mut self, t: Tbl<'_, '_>, key: &'static str, default: bool) -> bool {
        let Some(v) = self.get(t, key) else {
            return default;
        };
        match v.get_ref() {
            DeValue::Boolean(b) => *b,
            _ => {
                self.wrong_type(key, v, "true or false", "true");
                default
            }
        }
    }

    /// An integer within `min..=max`, or `default` when absent or invalid.
    pub(crate) fn int(
        &mut self,
        t: Tbl<'_, '_>,
        key: &'static str,
        default: i64,
        min: i64,
        max: i64,
    ) -> i64 {
        let Some(v) = self.get(t, key) else {
            return default;
        };
        self.int_value(key, v, min, max).unwrap_or(default)
    }

    pub(crate) fn int_value(
        &mut self,
        key: &str,
        v: &Value<'_>,
        min: i64,
        max: i64,
    ) -> Option<i64> {
        let n = match v.get_ref() {
            DeValue::Integer(i) => i64::from_str_radix(i.as_str(), i.radix()).ok(),
            _ => {
                self.wrong_type(key, v, "an integer", &min.max(1).to_string());
                return None;
            }
        };
        match n {
            Some(n) if (min..=max).contains(&n) => Some(n),
            _ => {
                let range = if max >= i64::from(u32::MAX) {
                    format!("at least {min}")
                } else {
                    format!("between {min} and {max}")
                };
                self.err(&v.span(), format!("`{key}` must be {range}"), None);
                None
            }
        }
    }

    pub(crate) fn duration(
        &mut self,
        t: Tbl<'_, '_>,
        key: &'static str,
        default: Duration,
    ) -> Duration {
        self.opt_duration(t, key).map_or(default, |(d, _)| d)
    }

    /// A duration that must be more than zero (timeouts that would otherwise fire at once).
    pub(crate) fn positive_duration(
        &mut self,
        t: Tbl<'_, '_>,
        key: &'static str,
        default: Duration,
    ) -> Duration {
        match self.opt_positive_duration(t, key) {
            Some(d) => d,
            None => default,
        }
    }

    pub(crate) fn opt_positive_duration(
        &mut self,
        t: Tbl<'_, '_>,
        key: &'static str,
    ) -> Option<Duration> {
        let (d, span) = self.opt_duration(t, key)?;
        if d.is_zero() {
            self.err(
                &span,
                format!("`{key}` must be more than 0"),
                Some(format!("for example: {key} = \"5s\"")),
            );
            return None;
        }
        Some(d)
    }

    pub(crate) fn opt_duration(
        &mut self,
        t: Tbl<'_, '_>,
        key: &'static str,
    ) -> Option<(Duration, Span)> {
        let v = self.get(t, key)?;
        let DeValue::String(s) = v.get_ref() else {
            let hint = match v.get_ref() {
                DeValue::Integer(i) => format!("write a unit: {key} = \"{}s\"", i.as_str()),
                _ => format!("for example: {key} = \"5s\""),
            };
            self.err(
                &v.span(),
                format!(
                    "`{key}` must be a duration string, found {}",
                    article(v.get_ref().type_str())
                ),
                Some(hint),
            );
            return None;
        };
        match parse_duration(s) {
            Ok(d) => Some((d, v.span())),
            Err(reason) => {
                self.err(
                    &v.span(),
                    format!("bad duration for `{key}`: {reason}"),
                    Some("durations look like \"250ms\", \"5s\", \"2m\", \"1h\", \"30d\"".into()),
                );
                None
            }
        }
    }

    pub(crate) fn size(&mut self, t: Tbl<'_, '_>, key: &'static str, default: u64) -> u64 {
        let Some(v) = self.get(t, key) else {
            return default;
        };
        let text = match v.get_ref() {
            DeValue::String(s) => s.to_string(),
            DeValue::Integer(i) => i.as_str().to_string(),
            _ => {
                self.wrong_type(key, v, "a size", "\"10m\"");
                return default;
            }
        };
        match parse_size(&text) {
            Ok(n) => n,
            Err(reason) => {
                self.err(
                    &v.span(),
                    format!("bad size for `{key}`: {reason}"),
                    Some("sizes look like \"512\", \"64k\", \"10m\", \"1g\"".into()),
                );
                default
            }
        }
    }

    /// A path, resolved against the config folder.
    pub(crate) fn path(&mut self, t: Tbl<'_, '_>, key: &'static str) -> Option<PathBuf> {
        let (s, span) = self.str(t, key)?;
        if s.is_empty() {
            self.err(&span, format!("`{key}` must not be empty"), None);
            return None;
        }
        Some(self.resolve(s))
    }

    /// A table-valued key, as a plain table: the caller opens it as a kind of table
    /// ([`Ctx::open`]) or walks it as a map of names (`[upstreams]`, `sni_routes`).
    pub(crate) fn table<'t, 'i>(
        &mut self,
        t: Tbl<'t, 'i>,
        key: &'static str,
    ) -> Option<(&'t Table<'i>, Span)> {
        let v = self.get(t, key)?;
        match v.get_ref() {
            DeValue::Table(inner) => Some((inner, v.span())),
            _ => {
                self.wrong_type(key, v, "a table", "{ ... }");
                None
            }
        }
    }

    /// An array of strings; a single string is accepted as a list of one.
    pub(crate) fn str_list(
        &mut self,
        t: Tbl<'_, '_>,
        key: &'static str,
    ) -> Option<(Vec<(String, Span)>, Span)> {
        let v = self.get(t, key)?;
        match v.get_ref() {
            DeValue::String(s) => Some((vec![(s.to_string(), v.span())], v.span())),
            DeValue::Array(items) => {
                let mut out = Vec::new();
                for item in items.iter() {
                    match item.get_ref() {
                        DeValue::String(s) => out.push((s.to_string(), item.span())),
                        _ => self.wrong_type(key, item, "a list of strings", "[\"...\"]"),
                    }
                }
                Some((out, v.span()))
            }
            _ => {
                self.wrong_type(key, v, "a list of strings", "[\"...\"]");
                None
            }
        }
    }

    /// One of a fixed set of string values.
    pub(crate) fn choice<T: Copy>(
        &mut self,
        t: Tbl<'_, '_>,
        key: &'static str,
        choices: &[(&str, T)],
        default: T,
    ) -> T {
        let Some((s, span)) = self.str(t, key) else {
            return default;
        };
        if let Some((_, v)) = choices.iter().find(|(name, _)| *name == s) {
            return *v;
        }
        let names: Vec<&str> = choices.iter().map(|(n, _)| *n).collect();
        let hint = match suggest(s, names.iter().copied()) {
            Some(close) => format!("did you mean `{close}`? allowed: {}", list(&names)),
            None => format!("allowed: {}", list(&names)),
        };
        self.err(&span, format!("unknown {key} `{s}`"), Some(hint));
        default
    }

    /// A list of IP socket addresses to listen on.
    pub(crate) fn listen_list(
        &mut self,
        t: Tbl<'_, '_>,
        key: &'static str,
    ) -> Option<(Vec<SocketAddr>, Span)> {
        let (items, span) = self.str_list(t, key)?;
        let mut out = Vec::new();
        for (s, item_span) in items {
            match parse_listen(&s) {
                Ok(a) => out.push(a),
                Err((msg, hint)) => {
                    self.err(&item_span, format!("bad `{key}` address: {msg}"), hint)
                }
            }
        }
        Some((out, span))
    }
}

/// Parses a listen address: an IP socket address such as `127.0.0.1:8080` or `[::]:443`.
pub(crate) fn parse_listen(s: &str) -> Result<SocketAddr, (String, Option<String>)> {
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(a);
    }
    let hint = if s.parse::<std::net::IpAddr>().is_ok() {
        Some(format!(
            "add a port: \"{}\"",
            if s.contains(':') {
                format!("[{s}]:80")
            } else {
                format!("{s}:80")
            }
        ))
    } else if s.matches(':').count() > 1 && !s.starts_with('[') {
        Some("bracket IPv6 addresses: \"[::]:443\"".to_string())
    } else if let Some((host, port)) = s.rsplit_once(':') {
        if host.eq_ignore_ascii_case("localhost") {
            Some(format!(
                "listen takes an IP address, not a name: \"127.0.0.1:{port}\""
            ))
        } else if port.parse::<u16>().is_err() {
            Some("the port must be a number 0-65535".to_string())
        } else {
            Some(format!(
                "listen takes an IP address, not a name: \"0.0.0.0:{port}\" for every IPv4 interface, \"[::]:{port}\" for IPv6"
            ))
        }
    } else {
        Some("write an IP address and a port: \"127.0.0.1:8080\" or \"[::]:443\"".to_string())
    };
    Err((format!("`{s}` is not an IP address with a port"), hint))
}

/// The closest candidate to `word`, if one is close enough to be a likely typo.
pub(crate) fn suggest<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (strsim::jaro_winkler(word, c), c))
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

/// "`a`, `b`, `c`".
pub(crate) fn list(items: &[&str]) -> String {
    items
        .iter()
        .map(|i| format!("`{i}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn article(type_name: &str) -> String {
    match type_name {
        "integer" | "array" => format!("an {type_name}"),
        other => format!("a {other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_addresses() {
        assert_eq!(parse_listen("127.0.0.1:8080").unwrap().port(), 8080);
        assert!(parse_listen("[::]:443").unwrap().is_ipv6());
        let hint = |s: &str| parse_listen(s).unwrap_err().1.unwrap();
        assert_eq!(
            hint("localhost:80"),
            "listen takes an IP address, not a name: \"127.0.0.1:80\""
        );
        assert!(hint("example.com:80").contains("\"0.0.0.0:80\""));
        assert_eq!(hint("10.0.0.1"), "add a port: \"10.0.0.1:80\"");
        assert_eq!(hint("::"), "add a port: \"[::]:80\"");
        assert_eq!(hint("fe80::1::80"), "bracket IPv6 addresses: \"[::]:443\"");
        assert_eq!(hint("1.2.3.4:http"), "the port must be a number 0-65535");
        assert!(hint("nothing").contains("IP address and a port"));
    }

    #[test]
    fn suggestions() {
        let keys = ["balance", "servers", "hash_key"];
        assert_eq!(suggest("balanse", keys), Some("balance"));
        assert_eq!(suggest("server", keys), Some("servers"));
        assert_eq!(suggest("zzz", keys), None);
        assert_eq!(list(&["a", "b"]), "`a`, `b`");
    }

    #[test]
    fn base_dir_and_resolution() {
        let ctx = Ctx::new("", Path::new("/etc/portico/p.toml"));
        assert_eq!(ctx.resolve("www"), PathBuf::from("/etc/portico/www"));
        assert_eq!(ctx.resolve("/srv/www"), PathBuf::from("/srv/www"));
        assert_eq!(
            Ctx::new("", Path::new("p.toml")).base_dir,
            PathBuf::from(".")
        );
    }
}
