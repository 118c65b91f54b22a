//! nginx values -> Portico values: times, sizes, listen addresses, server addresses,
//! variables in redirect targets, upstream names.

/// An nginx time (`30`, `30s`, `1m30s`, `500ms`, `1h`, `2d`, `1w`) as a Portico duration.
pub(crate) fn time(s: &str) -> Option<String> {
    let mut ms: u64 = 0;
    let mut num = String::new();
    let mut chars = s.chars().peekable();
    let mut any = false;
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() {
            num.push(c);
            continue;
        }
        let n: u64 = num.parse().ok()?;
        num.clear();
        let unit = match c {
            'm' if chars.peek() == Some(&'s') => {
                chars.next();
                1
            }
            's' => 1_000,
            'm' => 60_000,
            'h' => 3_600_000,
            'd' => 86_400_000,
            'w' => 7 * 86_400_000,
            'M' => 30 * 86_400_000,
            'y' => 365 * 86_400_000,
            _ => return None,
        };
        ms = ms.checked_add(n.checked_mul(unit)?)?;
        any = true;
    }
    if !num.is_empty() {
        ms = ms.checked_add(num.parse::<u64>().ok()?.checked_mul(1_000)?)?;
        any = true;
    }
    any.then(|| duration(ms))
}

/// Milliseconds as a Portico duration in the largest exact unit.
pub(crate) fn duration(ms: u64) -> String {
    if ms == 0 {
        return "0s".to_string();
    }
    for (unit, size) in [
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
    ] {
        if ms.is_multiple_of(size) {
            return format!("{}{unit}", ms / size);
        }
    }
    format!("{ms}ms")
}

/// An nginx size (`512`, `64k`, `10m`, `1g`, upper case too) as a Portico size.
pub(crate) fn size(s: &str) -> Option<String> {
    let lower = s.to_ascii_lowercase();
    let digits = lower.trim_end_matches(['k', 'm', 'g']);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if lower.len() - digits.len() > 1 {
        return None;
    }
    Some(lower)
}

/// A `listen` address, or why it cannot be one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Listen {
    /// `IP:PORT` as Portico writes it.
    pub addr: String,
    pub port: u16,
    /// A note to add (e.g. a name turned into an address).
    pub note: Option<String>,
}

/// nginx `listen` forms: `80`, `*:80`, `1.2.3.4`, `1.2.3.4:80`, `[::]:80`, `localhost:80`.
pub(crate) fn listen(spec: &str) -> Result<Listen, String> {
    if spec.starts_with("unix:") {
        return Err("Portico listens on IP addresses only, not on unix sockets".into());
    }
    let ok = |addr: String, port: u16| {
        Ok(Listen {
            addr,
            port,
            note: None,
        })
    };
    if let Ok(port) = spec.parse::<u16>() {
        return ok(format!("0.0.0.0:{port}"), port);
    }
    if let Some(rest) = spec.strip_prefix('[') {
        let (ip, after) = rest.split_once(']').ok_or("unclosed `[`")?;
        let ip: std::net::Ipv6Addr = ip.parse().map_err(|_| format!("bad IPv6 address {ip}"))?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse().map_err(|_| format!("bad port {p}"))?,
            None if after.is_empty() => 80,
            None => return Err(format!("cannot read `{spec}`")),
        };
        return ok(format!("[{ip}]:{port}"), port);
    }
    let (host, port) = match spec.rsplit_once(':') {
        Some((h, p)) => (h, p.parse::<u16>().map_err(|_| format!("bad port {p}"))?),
        None => (spec, 80),
    };
    if host == "*" {
        return ok(format!("0.0.0.0:{port}"), port);
    }
    if let Ok(ip) = host.parse::<std::net::Ipv4Addr>() {
        return ok(format!("{ip}:{port}"), port);
    }
    if host == "localhost" {
        return Ok(Listen {
            addr: format!("127.0.0.1:{port}"),
            port,
            note: Some(
                "`localhost` written as 127.0.0.1 (Portico listens on addresses, not names)".into(),
            ),
        });
    }
    Err(format!(
        "`{host}` is a name: Portico listens on addresses; write the address it resolves to"
    ))
}

/// A server address for `[upstreams]`: `host:port` (port 80 when absent, as nginx), or why not.
pub(crate) fn server_addr(spec: &str, default_port: u16) -> Result<String, String> {
    if spec.starts_with("unix:") {
        return Err("Portico connects to servers over TCP only, not unix sockets".into());
    }
    if spec.contains('$') {
        return Err("variables in server addresses cannot be carried over".into());
    }
    if spec.starts_with('[') {
        return if spec.contains("]:") {
            Ok(spec.to_string())
        } else {
            Ok(format!("{spec}:{default_port}"))
        };
    }
    match spec.rsplit_once(':') {
        Some((h, p)) if !h.is_empty() && p.parse::<u16>().is_ok_and(|p| p > 0) => {
            Ok(spec.to_string())
        }
        Some(_) => Err(format!("cannot read the address `{spec}`")),
        None if spec.is_empty() => Err("empty address".into()),
        None => Ok(format!("{spec}:{default_port}")),
    }
}

/// An upstream name Portico accepts (letters, digits, `_`, `-`, `.`).
pub(crate) fn upstream_name(s: &str) -> String {
    let n: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "_-.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    if n.is_empty() { "upstream".into() } else { n }
}

/// What a redirect target or text becomes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Template {
    pub text: String,
    /// Differences worth a note (e.g. `$host`'s port).
    pub notes: Vec<String>,
}

/// Translate nginx variables into Portico redirect placeholders. `server_name` is the
/// server's first name (for `$server_name`), `port` its first listen port.
pub(crate) fn template(s: &str, server_name: Option<&str>, port: u16) -> Result<Template, String> {
    if s.contains(['{', '}']) && !s.contains("${") {
        return Err("`{` and `}` are placeholders in Portico redirects".into());
    }
    let mut text = String::new();
    let mut notes = Vec::new();
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        text.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let (name, len) = if let Some(inner) = after.strip_prefix('{') {
            let end = inner.find('}').ok_or("unclosed `${`")?;
            (&inner[..end], end + 2)
        } else {
            let end = after
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(after.len());
            (&after[..end], end)
        };
        rest = &after[len..];
        // `$uri$is_args$args` is the request URI.
        if name == "uri" && rest.starts_with("$is_args$args") {
            rest = &rest["$is_args$args".len()..];
            text.push_str("{uri}");
            continue;
        }
        match name {
            "host" => {
                text.push_str("{host}");
                let note =
                    "Portico's {host} keeps a port the client sent in Host; nginx's $host drops it"
                        .to_string();
                if !notes.contains(&note) {
                    notes.push(note);
                }
            }
            "http_host" => text.push_str("{host}"),
            "request_uri" => text.push_str("{uri}"),
            "uri" | "document_uri" => text.push_str("{path}"),
            "args" | "query_string" => text.push_str("{query}"),
            "scheme" => text.push_str("{scheme}"),
            "server_port" => text.push_str(&port.to_string()),
            "server_name" => match server_name {
                Some(n) => text.push_str(n),
                None => return Err("`$server_name` without a server_name".into()),
            },
            "" => text.push('$'),
            other => {
                return Err(format!(
                    "the variable `${other}` has no Portico placeholder"
                ));
            }
        }
    }
    text.push_str(rest);
    Ok(Template { text, notes })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times() {
        assert_eq!(time("300s").as_deref(), Some("5m"));
        assert_eq!(time("60").as_deref(), Some("1m"));
        assert_eq!(time("5s").as_deref(), Some("5s"));
        assert_eq!(time("1m30s").as_deref(), Some("90s"));
        assert_eq!(time("500ms").as_deref(), Some("500ms"));
        assert_eq!(time("1h").as_deref(), Some("1h"));
        assert_eq!(time("x"), None);
        assert_eq!(time("10q"), None);
    }

    #[test]
    fn sizes() {
        assert_eq!(size("10m").as_deref(), Some("10m"));
        assert_eq!(size("10M").as_deref(), Some("10m"));
        assert_eq!(size("0").as_deref(), Some("0"));
        assert_eq!(size("1kk"), None);
        assert_eq!(size("k"), None);
    }

    #[test]
    fn listens() {
        assert_eq!(listen("80").unwrap().addr, "0.0.0.0:80");
        assert_eq!(listen("*:8080").unwrap().addr, "0.0.0.0:8080");
        assert_eq!(listen("127.0.0.1").unwrap().addr, "127.0.0.1:80");
        assert_eq!(listen("[::]:443").unwrap().addr, "[::]:443");
        assert_eq!(listen("[::1]").unwrap().addr, "[::1]:80");
        assert!(listen("localhost:81").unwrap().note.is_some());
        assert!(listen("unix:/run/x.sock").is_err());
        assert!(listen("example.com:80").is_err());
    }

    #[test]
    fn servers() {
        assert_eq!(server_addr("localhost:8010", 80).unwrap(), "localhost:8010");
        assert_eq!(server_addr("backend", 80).unwrap(), "backend:80");
        assert_eq!(server_addr("[::1]", 80).unwrap(), "[::1]:80");
        assert!(server_addr("unix:/tmp/s", 80).is_err());
    }

    #[test]
    fn templates() {
        let t = template("https://$host$request_uri", None, 80).unwrap();
        assert_eq!(t.text, "https://{host}{uri}");
        assert_eq!(t.notes.len(), 1);
        let t = template("https://$server_name$uri$is_args$args", Some("a.test"), 80).unwrap();
        assert_eq!(t.text, "https://a.test{uri}");
        assert!(template("https://$foo/", None, 80).is_err());
        assert_eq!(
            template("$scheme://${http_host}/x?$args", None, 80)
                .unwrap()
                .text,
            "{scheme}://{host}/x?{query}"
        );
    }
}
