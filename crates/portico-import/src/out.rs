//! The Portico configuration being built, as ordered tables of already-rendered TOML
//! values, and its rendering to text. Each table carries the source location it came
//! from, written as a comment above it so the converted file can be read next to the
//! original.

use std::fmt::Write as _;

/// `key = value`, the value already TOML text.
pub(crate) type Field = (String, String);

/// A TOML basic string.
pub(crate) fn q(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

/// A TOML array of already-rendered values.
pub(crate) fn list(items: &[String]) -> String {
    format!("[{}]", items.join(", "))
}

/// A TOML array of strings.
pub(crate) fn qlist<S: AsRef<str>>(items: &[S]) -> String {
    list(&items.iter().map(|s| q(s.as_ref())).collect::<Vec<_>>())
}

/// An inline table of already-rendered fields.
pub(crate) fn inline(fields: &[Field]) -> String {
    let parts: Vec<String> = fields
        .iter()
        .map(|(k, v)| format!("{} = {v}", key(k)))
        .collect();
    format!("{{ {} }}", parts.join(", "))
}

/// A key, quoted unless it is a bare TOML key.
pub(crate) fn key(k: &str) -> String {
    if !k.is_empty()
        && k.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        k.to_string()
    } else {
        q(k)
    }
}

/// A table with its origin comment.
#[derive(Debug, Default, Clone)]
pub(crate) struct Table {
    pub origin: String,
    pub fields: Vec<Field>,
}

impl Table {
    pub fn new(origin: impl Into<String>) -> Table {
        Table {
            origin: origin.into(),
            fields: Vec::new(),
        }
    }

    /// Set `k` (replacing an earlier value).
    pub fn set(&mut self, k: &str, v: String) {
        match self.fields.iter_mut().find(|(key, _)| key == k) {
            Some(f) => f.1 = v,
            None => self.fields.push((k.to_string(), v)),
        }
    }

    pub fn get(&self, k: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
    }
}

/// `[upstreams.NAME]`.
#[derive(Debug, Clone)]
pub(crate) struct Upstream {
    pub name: String,
    pub table: Table,
    /// Rendered server entries (`"host:port"` or inline tables).
    pub servers: Vec<String>,
    pub health: Vec<Field>,
}

/// `[[sites]]` with its routes.
#[derive(Debug, Clone, Default)]
pub(crate) struct Site {
    pub table: Table,
    pub routes: Vec<Table>,
}

/// The whole converted file.
#[derive(Debug, Default)]
pub(crate) struct Out {
    pub header: Vec<String>,
    pub server: Table,
    pub acme: Option<Table>,
    pub upstreams: Vec<Upstream>,
    pub sites: Vec<Site>,
    pub streams: Vec<Table>,
    pub vrrp: Vec<Table>,
}

impl Out {
    pub fn upstream(&self, name: &str) -> Option<&Upstream> {
        self.upstreams.iter().find(|u| u.name == name)
    }

    pub fn upstream_mut(&mut self, name: &str) -> Option<&mut Upstream> {
        self.upstreams.iter_mut().find(|u| u.name == name)
    }

    /// Render the TOML text.
    pub fn render(&self) -> String {
        let mut s = String::new();
        for h in &self.header {
            let _ = writeln!(s, "# {h}");
        }
        if !self.server.fields.is_empty() {
            section(&mut s, "[server]", &self.server);
        }
        if let Some(acme) = &self.acme {
            section(&mut s, "[acme]", acme);
        }
        for u in &self.upstreams {
            let mut t = u.table.clone();
            let servers = if u.servers.len() > 2 || u.servers.iter().any(|v| v.starts_with('{')) {
                format!("[\n  {},\n]", u.servers.join(",\n  "))
            } else {
                list(&u.servers)
            };
            t.fields.insert(0, ("servers".to_string(), servers));
            if !u.health.is_empty() {
                t.set("health", inline(&u.health));
            }
            section(&mut s, &format!("[upstreams.{}]", key(&u.name)), &t);
        }
        for site in &self.sites {
            section(&mut s, "[[sites]]", &site.table);
            for r in &site.routes {
                section(&mut s, "[[sites.routes]]", r);
            }
        }
        for t in &self.streams {
            section(&mut s, "[[streams]]", t);
        }
        for t in &self.vrrp {
            section(&mut s, "[[vrrp]]", t);
        }
        s
    }
}

fn section(s: &mut String, header: &str, t: &Table) {
    s.push('\n');
    if !t.origin.is_empty() {
        let _ = writeln!(s, "# {}", t.origin);
    }
    let _ = writeln!(s, "{header}");
    for (k, v) in &t.fields {
        let _ = writeln!(s, "{} = {v}", key(k));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_and_keys_are_quoted_when_needed() {
        for s in ["a\"b\\c", "it's", "line\nbreak", "(?i)\\.png$"] {
            let doc: toml::Table = toml::from_str(&format!("x = {}", q(s))).unwrap();
            assert_eq!(doc["x"].as_str(), Some(s));
        }
        assert_eq!(key("x-real-ip"), "x-real-ip");
        assert_eq!(key("a.b"), "\"a.b\"");
        assert_eq!(
            inline(&[("set".into(), inline(&[("X-A".into(), q("1"))]))]),
            "{ set = { X-A = \"1\" } }"
        );
    }
}
