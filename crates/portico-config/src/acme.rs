//! `[acme]`: the ACME account and how certificates of `tls = "acme"` sites are obtained, and
//! the checks that tie such sites to the section (it must exist; their hosts must be names).

use std::time::Duration;

use toml::de::DeValue;

use crate::gate::Scope;
use crate::model::{Acme, AcmeChallenge, AcmeDirectory, AcmeKeyType};
use crate::walk::{Ctx, Span, Table, list, suggest};

/// SPEC default of `renew_before`.
pub const DEFAULT_RENEW_BEFORE: Duration = Duration::from_secs(30 * 86_400);

const DIRECTORY_NAMES: &[&str] = &["letsencrypt", "letsencrypt-staging"];

/// `[acme]`; `None` when the section is absent or too broken to use (problems reported).
pub(crate) fn acme(ctx: &mut Ctx<'_>, t: &Table<'_>, header: &Span) -> Option<Acme> {
    let t = ctx.open(t, Scope::Acme, "[acme]");
    let email = match ctx.str(t, "email") {
        Some((s, span)) => check_email(ctx, s, &span),
        None => {
            if !ctx.has(t, "email") {
                ctx.err(
                    header,
                    "[acme] has no `email`",
                    Some(
                        "add email = \"ops@example.com\": the CA's account contact (expiry notices)"
                            .into(),
                    ),
                );
            }
            None
        }
    };
    let directory = match ctx.str(t, "directory") {
        None => AcmeDirectory::LetsEncrypt,
        Some((s, span)) => directory(ctx, s, &span).unwrap_or(AcmeDirectory::LetsEncrypt),
    };
    let directory_ca = ctx.path(t, "directory_ca");
    let challenge = ctx.choice(
        t,
        "challenge",
        &[
            ("http-01", AcmeChallenge::Http01),
            ("tls-alpn-01", AcmeChallenge::TlsAlpn01),
        ],
        AcmeChallenge::Http01,
    );
    let renew_before = ctx.positive_duration(t, "renew_before", DEFAULT_RENEW_BEFORE);
    let key_type = ctx.choice(
        t,
        "key_type",
        &[
            ("ecdsa-p256", AcmeKeyType::EcdsaP256),
            ("rsa-2048", AcmeKeyType::Rsa2048),
        ],
        AcmeKeyType::EcdsaP256,
    );
    Some(Acme {
        email: email?,
        directory,
        directory_ca,
        challenge,
        renew_before,
        key_type,
    })
}

/// A plain address: `name@domain.tld`, no spaces, no `mailto:`.
fn check_email(ctx: &mut Ctx<'_>, s: &str, span: &Span) -> Option<String> {
    if let Some(rest) = s.strip_prefix("mailto:") {
        ctx.err(
            span,
            format!("`email` is an address, not a URI: `{s}`"),
            Some(format!("write email = \"{rest}\" (Portico adds `mailto:`)")),
        );
        return None;
    }
    let valid = match s.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && !domain.contains('@')
                && !s
                    .chars()
                    .any(|c| c.is_whitespace() || c == ',' || c == '<' || c == '>')
        }
        None => false,
    };
    if !valid {
        ctx.err(
            span,
            format!("`email` is not an e-mail address: `{s}`"),
            Some("write one address, e.g. email = \"ops@example.com\"".into()),
        );
        return None;
    }
    Some(s.to_string())
}

fn directory(ctx: &mut Ctx<'_>, s: &str, span: &Span) -> Option<AcmeDirectory> {
    match s {
        "letsencrypt" => return Some(AcmeDirectory::LetsEncrypt),
        "letsencrypt-staging" => return Some(AcmeDirectory::LetsEncryptStaging),
        _ => {}
    }
    if let Some(rest) = s.strip_prefix("https://") {
        let host = rest.split(['/', '?', '#']).next().unwrap_or("");
        if !host.is_empty() && !s.chars().any(char::is_whitespace) {
            return Some(AcmeDirectory::Url(s.to_string()));
        }
        ctx.err(
            span,
            format!("bad `directory` URL `{s}`: no host"),
            Some("for example: directory = \"https://acme.example.com/directory\"".into()),
        );
        return None;
    }
    if let Some(rest) = s.strip_prefix("http://") {
        ctx.err(
            span,
            format!("the ACME `directory` must be served over HTTPS: `{s}`"),
            Some(format!(
                "ACME (RFC 8555) requires HTTPS: directory = \"https://{rest}\"; add directory_ca = \"ca.pem\" for a private CA"
            )),
        );
        return None;
    }
    let hint = match suggest(s, DIRECTORY_NAMES.iter().copied()) {
        Some(close) => format!("did you mean `{close}`?"),
        None => format!(
            "use {} or a URL such as \"https://acme.example.com/directory\"",
            list(DIRECTORY_NAMES)
        ),
    };
    ctx.err(span, format!("unknown ACME `directory` `{s}`"), Some(hint));
    None
}

/// Sites with `tls = "acme"` need the `[acme]` section, and explicit host names: HTTP-01 and
/// TLS-ALPN-01 cannot prove a wildcard, and `"*"` (the default `hosts`) names nothing.
/// Works on the raw `[[sites]]` tables, so it points at the `tls` value and the host itself.
pub(crate) fn check_sites(ctx: &mut Ctx<'_>, root: &Table<'_>, acme_section: bool) {
    let Some(DeValue::Array(sites)) = root.get("sites").map(|v| v.get_ref()) else {
        return;
    };
    let mut first_missing = true;
    for (i, item) in sites.iter().enumerate() {
        let DeValue::Table(t) = item.get_ref() else {
            continue;
        };
        let Some(tls) = t.get("tls") else { continue };
        if !matches!(tls.get_ref(), DeValue::String(s) if s == "acme") {
            continue;
        }
        let what = format!("site #{}", i + 1);
        if !acme_section && first_missing {
            // Once: one missing section is one problem, wherever it is used.
            first_missing = false;
            ctx.err(
                &tls.span(),
                format!("{what} has tls = \"acme\" but the file has no [acme] section"),
                Some(
                    "add [acme] with email = \"ops@example.com\" (the CA's account contact), or use tls = { cert = \"...\", key = \"...\" }"
                        .into(),
                ),
            );
        }
        match t.get("hosts") {
            None => ctx.err(
                &tls.span(),
                format!("{what} has tls = \"acme\" but no `hosts`: a certificate needs names"),
                Some("list the names: hosts = [\"example.com\", \"www.example.com\"]".into()),
            ),
            Some(hosts) => {
                let items: Vec<_> = match hosts.get_ref() {
                    DeValue::Array(a) => a.iter().collect(),
                    _ => vec![hosts],
                };
                for h in items {
                    if let DeValue::String(name) = h.get_ref()
                        && name.contains('*')
                    {
                        ctx.err(
                            &h.span(),
                            format!("{what} has tls = \"acme\" and the wildcard host `{name}`"),
                            Some(
                                "ACME here proves names by HTTP-01 or TLS-ALPN-01, which cannot cover wildcards: list each name, or use tls = { cert, key } with a wildcard certificate"
                                    .into(),
                            ),
                        );
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    const SITE: &str = "[upstreams.a]\nservers = [\"127.0.0.1:1\"]\n\
                        [[sites]]\nlisten = \"127.0.0.1:443\"\nhosts = [\"a.example.test\"]\ntls = \"acme\"\n\
                        [[sites.routes]]\npath = \"/\"\nproxy = \"a\"\n";

    /// Parse; diagnostics other than "not supported yet" (gates of other work items).
    fn parse(text: &str) -> (Option<crate::Config>, Vec<String>) {
        match crate::parse(text, Path::new("t.toml")) {
            Ok(c) => (Some(c), Vec::new()),
            Err(e) => {
                let d = e
                    .diagnostics()
                    .iter()
                    .filter(|d| {
                        !d.message
                            .ends_with("is not supported yet in this version of Portico")
                    })
                    .map(ToString::to_string)
                    .collect();
                (None, d)
            }
        }
    }

    fn acme_of(text: &str) -> Acme {
        let mut ctx = Ctx::new(text, Path::new("/etc/p/t.toml"));
        let root = toml::de::DeTable::parse(text).unwrap();
        let c = crate::walk_root(&mut ctx, root.get_ref());
        let other: Vec<_> = ctx
            .diags
            .iter()
            .filter(|d| {
                !d.message
                    .ends_with("is not supported yet in this version of Portico")
            })
            .collect();
        assert!(other.is_empty(), "{other:?}");
        c.acme.unwrap()
    }

    #[test]
    fn defaults() {
        let a = acme_of("[acme]\nemail = \"ops@example.test\"\n");
        assert_eq!(a.email, "ops@example.test");
        assert_eq!(a.directory, AcmeDirectory::LetsEncrypt);
        assert_eq!(a.directory_ca, None);
        assert_eq!(a.challenge, AcmeChallenge::Http01);
        assert_eq!(a.renew_before, Duration::from_secs(30 * 86_400));
        assert_eq!(a.key_type, AcmeKeyType::EcdsaP256);
    }

    #[test]
    fn every_key() {
        let a = acme_of(
            "[acme]\nemail = \"ops@example.test\"\ndirectory = \"https://127.0.0.1:14000/dir\"\n\
             directory_ca = \"pebble-tls-ca.pem\"\nchallenge = \"tls-alpn-01\"\nrenew_before = \"10d\"\n\
             key_type = \"rsa-2048\"\n",
        );
        assert_eq!(
            a.directory,
            AcmeDirectory::Url("https://127.0.0.1:14000/dir".into())
        );
        assert_eq!(
            a.directory_ca.as_deref(),
            Some(Path::new("/etc/p/pebble-tls-ca.pem"))
        );
        assert_eq!(a.challenge, AcmeChallenge::TlsAlpn01);
        assert_eq!(a.renew_before, Duration::from_secs(10 * 86_400));
        assert_eq!(a.key_type, AcmeKeyType::Rsa2048);
        let s = acme_of("[acme]\nemail = \"a@b.c\"\ndirectory = \"letsencrypt-staging\"\n");
        assert_eq!(s.directory, AcmeDirectory::LetsEncryptStaging);
    }

    #[test]
    fn seed_scenarios() {
        let seed0 = acme_of(include_str!("../../../examples/seed-000-wss-lb-acme.toml"));
        assert_eq!(
            seed0.directory,
            AcmeDirectory::Url("https://127.0.0.1:14000/dir".into())
        );
        assert_eq!(
            seed0.directory_ca.as_deref(),
            Some(Path::new("/etc/p/pebble-tls-ca.pem"))
        );
        assert_eq!(seed0.challenge, AcmeChallenge::Http01);
        let seed1 = acme_of(include_str!(
            "../../../examples/seed-001-ws-cluster-acme.toml"
        ));
        assert_eq!(seed1.email, "ops@example.test");
        assert_eq!(seed1.challenge, AcmeChallenge::Http01);
        assert_eq!(seed1.renew_before, DEFAULT_RENEW_BEFORE);
    }

    #[test]
    fn acme_site_parses() {
        let text = format!("[acme]\nemail = \"ops@example.test\"\n{SITE}");
        let (c, d) = parse(&text);
        assert!(d.is_empty(), "{d:#?}");
        if let Some(c) = c {
            assert!(c.acme.is_some());
            assert_eq!(c.sites[0].tls, Some(crate::SiteTls::Acme));
        }
    }

    #[test]
    fn bad_values_have_positions_and_hints() {
        let (_, d) = parse("[acme]\ndirectory = \"letsencrypt\"\n");
        assert_eq!(d.len(), 1, "{d:#?}");
        assert!(
            d[0].starts_with("t.toml:1:1: [acme] has no `email`\n  hint: add email ="),
            "{}",
            d[0]
        );
        let (_, d) = parse("[acme]\nemail = \"mailto:ops@example.test\"\n");
        assert_eq!(
            d,
            [
                "t.toml:2:9: `email` is an address, not a URI: `mailto:ops@example.test`\n  hint: write email = \"ops@example.test\" (Portico adds `mailto:`)"
            ]
        );
        for bad in ["ops", "ops@localhost", "a b@c.d", "@c.d", "a@b.c,d@e.f"] {
            let (_, d) = parse(&format!("[acme]\nemail = \"{bad}\"\n"));
            assert_eq!(d.len(), 1, "{bad}: {d:#?}");
            assert!(
                d[0].starts_with("t.toml:2:9: `email` is not an e-mail address"),
                "{}",
                d[0]
            );
        }
        let (_, d) = parse("[acme]\nemail = \"a@b.c\"\ndirectory = \"letsencrypt-stagng\"\n");
        assert_eq!(
            d,
            [
                "t.toml:3:13: unknown ACME `directory` `letsencrypt-stagng`\n  hint: did you mean `letsencrypt-staging`?"
            ]
        );
        let (_, d) =
            parse("[acme]\nemail = \"a@b.c\"\ndirectory = \"http://127.0.0.1:14000/dir\"\n");
        assert!(
            d[0].starts_with("t.toml:3:13: the ACME `directory` must be served over HTTPS")
                && d[0].contains("directory = \"https://127.0.0.1:14000/dir\""),
            "{d:#?}"
        );
        let (_, d) = parse("[acme]\nemail = \"a@b.c\"\ndirectory = \"https:///dir\"\n");
        assert!(
            d[0].starts_with("t.toml:3:13: bad `directory` URL"),
            "{d:#?}"
        );
        let (_, d) = parse("[acme]\nemail = \"a@b.c\"\nchallenge = \"dns-01\"\n");
        assert_eq!(
            d,
            ["t.toml:3:13: unknown challenge `dns-01`\n  hint: allowed: `http-01`, `tls-alpn-01`"]
        );
        let (_, d) = parse("[acme]\nemail = \"a@b.c\"\nkey_type = \"rsa\"\n");
        assert!(
            d[0].starts_with("t.toml:3:12: unknown key_type `rsa`"),
            "{d:#?}"
        );
        let (_, d) = parse("[acme]\nemail = \"a@b.c\"\nrenew_before = \"0s\"\n");
        assert!(
            d[0].starts_with("t.toml:3:16: `renew_before` must be more than 0"),
            "{d:#?}"
        );
        let (_, d) = parse("[acme]\nemail = \"a@b.c\"\nrenew_befor = \"1d\"\n");
        assert_eq!(
            d,
            [
                "t.toml:3:1: unknown key `renew_befor` in [acme]\n  hint: did you mean `renew_before`?"
            ]
        );
        let (_, d) = parse("acme = 1\n");
        assert!(
            d[0].starts_with("t.toml:1:8: `acme` must be a table"),
            "{d:#?}"
        );
    }

    #[test]
    fn acme_site_without_section_says_where() {
        let (_, d) = parse(SITE);
        assert_eq!(d.len(), 1, "{d:#?}");
        assert!(
            d[0].starts_with(
                "t.toml:6:7: site #1 has tls = \"acme\" but the file has no [acme] section\n  hint: add [acme] with email"
            ),
            "{}",
            d[0]
        );
        // Two such sites: still one problem (one missing section).
        let two = format!(
            "{SITE}[[sites]]\nlisten = \"127.0.0.1:443\"\nhosts = [\"b.example.test\"]\ntls = \"acme\"\n[[sites.routes]]\npath = \"/\"\nproxy = \"a\"\n"
        );
        assert_eq!(parse(&two).1.len(), 1);
    }

    #[test]
    fn acme_sites_need_explicit_names() {
        let text = "[acme]\nemail = \"a@b.c\"\n[upstreams.a]\nservers = [\"127.0.0.1:1\"]\n\
                    [[sites]]\nlisten = \"127.0.0.1:443\"\ntls = \"acme\"\n[[sites.routes]]\npath = \"/\"\nproxy = \"a\"\n\
                    [[sites]]\nlisten = \"127.0.0.1:444\"\nhosts = [\"a.example.test\", \"*.example.test\"]\ntls = \"acme\"\n[[sites.routes]]\npath = \"/\"\nproxy = \"a\"\n";
        let (_, d) = parse(text);
        assert_eq!(d.len(), 2, "{d:#?}");
        assert!(
            d[0].starts_with("t.toml:7:7: site #1 has tls = \"acme\" but no `hosts`"),
            "{}",
            d[0]
        );
        assert!(
            d[1].starts_with(
                "t.toml:13:28: site #2 has tls = \"acme\" and the wildcard host `*.example.test`"
            ),
            "{}",
            d[1]
        );
    }
}
