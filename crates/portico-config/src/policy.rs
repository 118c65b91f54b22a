//! Traffic policy keys, read on a site (the default of its routes) and on a route (which
//! replaces the site's value key by key): `access`, `limit_rate`, `limit_conn`,
//! `auth_basic`, and the compression keys (`compress.rs`).

use std::net::IpAddr;
use std::time::Duration;

use toml::de::DeValue;

use crate::gate::Scope;
use crate::keys::Tbl;
use crate::model::{AccessRule, AuthBasic, IpNet, LimitRate, Policy};
use crate::walk::Ctx;

/// The policy keys, asked for on every site and every route whatever its action (a route
/// test checks the route reader asks for these and its own keys only).
#[cfg(test)]
pub(crate) const POLICY_KEYS: &[&str] = &[
    "access",
    "limit_rate",
    "limit_conn",
    "auth_basic",
    "compress",
    "compress_types",
    "compress_min_size",
];

/// The policy keys of one site or route table.
pub(crate) fn policy(ctx: &mut Ctx<'_>, t: Tbl<'_, '_>) -> Policy {
    let limit_conn = ctx
        .get(t, "limit_conn")
        .and_then(|v| ctx.int_value("limit_conn", v, 1, i64::from(u32::MAX)))
        .map(|n| n as u32);
    Policy {
        access: access(ctx, t),
        limit_rate: limit_rate(ctx, t),
        limit_conn,
        auth_basic: auth_basic(ctx, t),
        compress: crate::compress::compress_keys(ctx, t),
    }
}

/// `auth_basic = { realm = "...", users_file = "htpasswd", forward_auth = false }`.
fn auth_basic(ctx: &mut Ctx<'_>, t: Tbl<'_, '_>) -> Option<AuthBasic> {
    let v = ctx.get(t, "auth_basic")?;
    let example = "{ realm = \"staff\", users_file = \"htpasswd\" }";
    let DeValue::Table(at) = v.get_ref() else {
        ctx.wrong_type("auth_basic", v, "a table", example);
        return None;
    };
    let span = v.span();
    let at = ctx.open(at, Scope::AuthBasic, "`auth_basic`");
    let forward_auth = ctx.bool(at, "forward_auth", false);
    let realm = match ctx.str(at, "realm") {
        Some((r, rspan)) => {
            if r.is_empty() || r.contains(['"', '\\']) || r.bytes().any(|b| b.is_ascii_control()) {
                ctx.err(
                    &rspan,
                    format!("bad `realm` `{r}`"),
                    Some("a non-empty name without quotes or backslashes, e.g. \"staff\"".into()),
                );
            }
            r.to_string()
        }
        None => "Restricted".to_string(),
    };
    let file_span = ctx.get(at, "users_file").map(|f| f.span());
    let Some(users_file) = ctx.path(at, "users_file") else {
        if file_span.is_none() {
            ctx.err(
                &span,
                "`auth_basic` has no `users_file`",
                Some(format!(
                    "write {example}; create it with `htpasswd -B -c htpasswd USER`"
                )),
            );
        }
        return None;
    };
    let file_span = file_span.unwrap_or(span);
    let users = match std::fs::read_to_string(&users_file) {
        Ok(text) => {
            match parse_htpasswd(&text) {
                Ok(users) => users,
                Err((line, msg)) => {
                    ctx.err(
                    &file_span,
                    format!("{}:{line}: {msg}", users_file.display()),
                    Some("only bcrypt hashes are read: create entries with `htpasswd -B FILE USER`".into()),
                );
                    return None;
                }
            }
        }
        Err(e) => {
            ctx.err(
                &file_span,
                format!("cannot read `users_file` {}: {e}", users_file.display()),
                Some("create it with `htpasswd -B -c FILE USER`".into()),
            );
            return None;
        }
    };
    Some(AuthBasic {
        realm,
        users_file,
        users,
        forward_auth,
    })
}

/// An htpasswd file of bcrypt entries (`user:$2y$05$...`, as `htpasswd -B` writes);
/// blank lines and `#` comments are skipped. `Err((line, message))` at the first bad line.
pub(crate) fn parse_htpasswd(text: &str) -> Result<Vec<(String, String)>, (usize, String)> {
    let mut users: Vec<(String, String)> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((user, hash)) = line.split_once(':') else {
            return Err((n, "not `user:hash`".into()));
        };
        if user.is_empty() {
            return Err((n, "empty user name".into()));
        }
        let scheme = if hash.starts_with("$apr1$") {
            Some("MD5 ($apr1$)")
        } else if hash.starts_with("{SHA}") {
            Some("SHA-1 ({SHA})")
        } else if hash.starts_with("$5$") || hash.starts_with("$6$") {
            Some("SHA-crypt ($5$/$6$)")
        } else if !(hash.starts_with("$2y$")
            || hash.starts_with("$2b$")
            || hash.starts_with("$2a$"))
        {
            Some("crypt or plain text")
        } else {
            None
        };
        if let Some(scheme) = scheme {
            return Err((
                n,
                format!("user `{user}` has a {scheme} hash; only bcrypt ($2y$) is supported"),
            ));
        }
        if hash.len() != 60 {
            return Err((n, format!("user `{user}` has a malformed bcrypt hash")));
        }
        if users.iter().any(|(u, _)| u == user) {
            return Err((n, format!("user `{user}` is listed twice")));
        }
        users.push((user.to_string(), hash.to_string()));
    }
    Ok(users)
}

/// `limit_rate = { rate = "10r/s", burst = 20 }`.
fn limit_rate(ctx: &mut Ctx<'_>, t: Tbl<'_, '_>) -> Option<LimitRate> {
    let v = ctx.get(t, "limit_rate")?;
    let DeValue::Table(lt) = v.get_ref() else {
        ctx.wrong_type(
            "limit_rate",
            v,
            "a table",
            "{ rate = \"10r/s\", burst = 20 }",
        );
        return None;
    };
    let span = v.span();
    let lt = ctx.open(lt, Scope::LimitRate, "`limit_rate`");
    let burst = ctx.int(lt, "burst", 0, 0, 1_000_000) as u32;
    let Some((rate, rate_span)) = ctx.str(lt, "rate") else {
        if !ctx.has(lt, "rate") {
            ctx.err(
                &span,
                "`limit_rate` has no `rate`",
                Some("write { rate = \"10r/s\", burst = 20 }".into()),
            );
        }
        return None;
    };
    match parse_rate(rate) {
        Ok((requests, per)) => Some(LimitRate {
            requests,
            per,
            burst,
        }),
        Err(msg) => {
            ctx.err(
                &rate_span,
                format!("bad `rate` `{rate}`: {msg}"),
                Some("write requests per second or per minute, e.g. \"10r/s\" or \"30r/m\"".into()),
            );
            None
        }
    }
}

/// `"10r/s"` -> (10, 1 s); `"30r/m"` -> (30, 60 s).
pub(crate) fn parse_rate(s: &str) -> Result<(u32, Duration), String> {
    let (n, per) = if let Some(n) = s.strip_suffix("r/s") {
        (n, Duration::from_secs(1))
    } else if let Some(n) = s.strip_suffix("r/m") {
        (n, Duration::from_secs(60))
    } else {
        return Err("the unit is `r/s` or `r/m`".into());
    };
    match n.parse::<u32>() {
        Ok(n) if n >= 1 => Ok((n, per)),
        _ => Err(format!("`{n}` is not a whole number of requests >= 1")),
    }
}

/// `access = ["allow 10.0.0.0/8", "deny all"]`.
fn access(ctx: &mut Ctx<'_>, t: Tbl<'_, '_>) -> Option<Vec<AccessRule>> {
    let (items, _) = ctx.str_list(t, "access")?;
    let mut rules = Vec::with_capacity(items.len());
    for (text, span) in items {
        match parse_access_rule(&text) {
            Ok(rule) => rules.push(rule),
            Err(msg) => ctx.err(
                &span,
                format!("bad `access` rule `{text}`: {msg}"),
                Some(
                    "write \"allow ADDRESS\" or \"deny ADDRESS\", ADDRESS an IP, a CIDR \
                     (\"10.0.0.0/8\", \"2001:db8::/32\") or `all`"
                        .into(),
                ),
            ),
        }
    }
    Some(rules)
}

/// `allow 10.0.0.0/8`, `deny all`, `allow ::1`.
pub(crate) fn parse_access_rule(s: &str) -> Result<AccessRule, String> {
    let mut words = s.split_whitespace();
    let allow = match words.next() {
        Some("allow") => true,
        Some("deny") => false,
        Some(other) => return Err(format!("`{other}` is neither `allow` nor `deny`")),
        None => return Err("empty rule".into()),
    };
    let Some(what) = words.next() else {
        return Err("no address".into());
    };
    if words.next().is_some() {
        return Err("one address per rule".into());
    }
    let net = if what == "all" {
        None
    } else {
        Some(parse_cidr(what)?)
    };
    Ok(AccessRule { allow, net })
}

/// `10.0.0.0/8`, `2001:db8::/32`, or one address (`10.1.2.3`, `::1`).
pub(crate) fn parse_cidr(s: &str) -> Result<IpNet, String> {
    let (addr, prefix) = match s.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (s, None),
    };
    let addr: IpAddr = addr
        .parse()
        .map_err(|_| format!("`{addr}` is not an IP address"))?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let prefix = match prefix {
        None => max,
        Some(p) => match p.parse::<u8>() {
            Ok(n) if n <= max => n,
            _ => return Err(format!("`/{p}`: the prefix length is 0-{max}")),
        },
    };
    let net = IpNet { addr, prefix };
    if net.network() != addr {
        return Err(format!(
            "`{s}` has bits set past its prefix; write `{}/{prefix}`",
            net.network()
        ));
    }
    Ok(net)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn htpasswd_files() {
        let hash = "$2y$05$abcdefghijklmnopqrstuu5QyVvXaEYJBzX1RFRu2iABHO2lxDjVW";
        assert_eq!(hash.len(), 60);
        let users = parse_htpasswd(&format!("# staff\nalice:{hash}\n\nbob:{hash}\r\n")).unwrap();
        assert_eq!(users.len(), 2);
        assert_eq!(users[1].0, "bob");
        let err = |t: &str| parse_htpasswd(t).unwrap_err();
        assert_eq!(
            err(&format!("alice:{hash}\ncarol:$apr1$x$y\n")),
            (
                2,
                "user `carol` has a MD5 ($apr1$) hash; only bcrypt ($2y$) is supported".into()
            )
        );
        assert_eq!(err("dave:{SHA}abc").0, 1);
        assert_eq!(
            err("erin:plain").1,
            "user `erin` has a crypt or plain text hash; only bcrypt ($2y$) is supported"
        );
        assert_eq!(err("nocolon").1, "not `user:hash`");
        assert_eq!(
            err("f:$2y$05$short").1,
            "user `f` has a malformed bcrypt hash"
        );
        assert_eq!(
            err(&format!("a:{hash}\na:{hash}")).1,
            "user `a` is listed twice"
        );
    }

    #[test]
    fn rates() {
        assert_eq!(parse_rate("10r/s"), Ok((10, Duration::from_secs(1))));
        assert_eq!(parse_rate("30r/m"), Ok((30, Duration::from_secs(60))));
        for bad in ["", "10", "0r/s", "1.5r/s", "-1r/s", "10r/h", "r/s"] {
            assert!(parse_rate(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn rules_and_nets() {
        let r = parse_access_rule("allow 10.0.0.0/8").unwrap();
        assert!(r.allow);
        let net = r.net.unwrap();
        assert!(net.contains("10.200.3.4".parse().unwrap()));
        assert!(
            net.contains("::ffff:10.1.1.1".parse().unwrap()),
            "v4-mapped"
        );
        assert!(!net.contains("11.0.0.1".parse().unwrap()));
        assert!(!net.contains("::1".parse().unwrap()));
        let r = parse_access_rule("deny   all").unwrap();
        assert!(!r.allow && r.net.is_none());
        let one = parse_cidr("127.0.0.2").unwrap();
        assert!(one.contains("127.0.0.2".parse().unwrap()));
        assert!(!one.contains("127.0.0.3".parse().unwrap()));
        let v6 = parse_cidr("2001:db8::/32").unwrap();
        assert!(v6.contains("2001:db8:1::5".parse().unwrap()));
        assert!(parse_cidr("::/0").unwrap().contains("::1".parse().unwrap()));
        assert!(
            parse_cidr("0.0.0.0/0")
                .unwrap()
                .contains("1.2.3.4".parse().unwrap())
        );
        for bad in [
            "",
            "allow",
            "permit all",
            "allow all now",
            "allow 10.0.0.1/8",
            "allow 10/8",
            "allow 10.0.0.0/33",
            "deny ::1/129",
            "allow host.example",
        ] {
            assert!(parse_access_rule(bad).is_err(), "{bad}");
        }
        assert_eq!(
            parse_cidr("10.0.0.1/8").unwrap_err(),
            "`10.0.0.1/8` has bits set past its prefix; write `10.0.0.0/8`"
        );
    }
}
