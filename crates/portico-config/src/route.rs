//! `[[sites.routes]]`: exactly one matcher (`path`, `exact`, `regex`), exactly one action
//! (`proxy`, `root`, `redirect`, `respond`) and only the options of that action.

use toml::de::DeValue;

use crate::gate::Scope;
use crate::keys::Tbl;
use crate::model::{
    Action, HeaderRules, Matcher, ProxyAction, RedirectAction, RespondAction, Route, StaticAction,
};
use crate::upstream::is_token;
use crate::walk::{Ctx, Span, Value, list};

const MATCHERS: &[&str] = &["path", "exact", "regex"];
const ACTIONS: &[&str] = &["proxy", "root", "redirect", "respond"];
/// Options and the actions they belong to. The reader asks for every option of every route
/// (to say which do not apply), so each is a known key even where its action's branch is not
/// taken; a test checks that the route keys the reader asks for are exactly these, the
/// matchers and the actions.
const OPTIONS: &[(&str, &[&str])] = &[
    ("websocket", &["proxy"]),
    ("read_timeout", &["proxy"]),
    ("max_body", &["proxy"]),
    ("strip_prefix", &["proxy"]),
    ("request_headers", &["proxy"]),
    ("response_headers", &["proxy"]),
    ("ws_ping", &["proxy"]),
    ("index", &["root"]),
    ("status", &["redirect", "respond"]),
    ("content_type", &["respond"]),
];
/// Placeholders allowed in a redirect template.
pub(crate) const PLACEHOLDERS: &[&str] = &["scheme", "host", "uri", "path", "query"];

pub(crate) fn route(
    ctx: &mut Ctx<'_>,
    index: usize,
    v: &Value<'_>,
    site: &str,
) -> Option<(Route, Span)> {
    let DeValue::Table(t) = v.get_ref() else {
        ctx.wrong_type("routes", v, "an array of tables", "[[sites.routes]]");
        return None;
    };
    let what = format!("route #{} of {site}", index + 1);
    let t = ctx.open(t, Scope::Route, format!("[[sites.routes]] ({what})"));
    let matcher_key = one_of(ctx, t, MATCHERS, "matchers", &v.span(), &what);
    let action_key = one_of(ctx, t, ACTIONS, "actions", &v.span(), &what);
    // Options that belong to another action. Every option is asked for, whatever the action.
    for (key, owners) in OPTIONS {
        if let Some(span) = ctx.key_span(t, key)
            && let Some(action) = action_key
            && !owners.contains(&action)
        {
            ctx.err(
                &span,
                format!("`{key}` does not apply to a `{action}` route"),
                Some(format!("`{key}` goes with {}", list(owners))),
            );
        }
    }
    if action_key == Some("proxy")
        && let Some((name, span)) = ctx.str(t, "proxy")
    {
        ctx.upstream_refs.push((name.to_string(), span));
    }
    let matcher_key = matcher_key?;
    let matcher = matcher(ctx, t, matcher_key)?;
    if matcher_key != "path"
        && let Some(span) = ctx.key_span(t, "strip_prefix")
    {
        ctx.err(
            &span,
            "`strip_prefix` needs a `path` matcher",
            Some("it removes the matched `path` prefix before proxying".into()),
        );
    }
    let action = match action_key? {
        "proxy" => {
            let name = ctx.get(t, "proxy")?.get_ref().as_str()?;
            let proxy = ProxyAction {
                upstream: name.to_string(),
                websocket: ctx.bool(t, "websocket", true),
                read_timeout: ctx.opt_positive_duration(t, "read_timeout"),
                max_body: ctx.size(t, "max_body", 1 << 20),
                strip_prefix: ctx.bool(t, "strip_prefix", false),
                request_headers: headers(ctx, t, "request_headers"),
                response_headers: headers(ctx, t, "response_headers"),
                ws_ping: ctx.opt_positive_duration(t, "ws_ping"),
            };
            if !proxy.websocket
                && let Some(span) = ctx.key_span(t, "ws_ping")
            {
                ctx.err(
                    &span,
                    "`ws_ping` needs `websocket = true` on the route",
                    Some("it pings the two sides of a proxied WebSocket".into()),
                );
            }
            Action::Proxy(proxy)
        }
        "root" => {
            let root = ctx.path(t, "root")?;
            let index = match ctx.str_list(t, "index") {
                None => vec!["index.html".to_string()],
                Some((items, _)) => {
                    for (name, span) in &items {
                        if name.is_empty()
                            || name.contains('/')
                            || name.contains('\\')
                            || name == ".."
                        {
                            ctx.err(
                                span,
                                format!("bad `index` name `{name}`"),
                                Some(
                                    "a file name inside the directory, e.g. \"index.html\"".into(),
                                ),
                            );
                        }
                    }
                    items.into_iter().map(|(s, _)| s).collect()
                }
            };
            Action::Static(StaticAction { root, index })
        }
        "redirect" => {
            let (template, span) = ctx.str(t, "redirect")?;
            if let Err(msg) = check_template(template) {
                ctx.err(
                    &span,
                    format!("bad redirect template: {msg}"),
                    Some(format!(
                        "placeholders: {}",
                        PLACEHOLDERS
                            .iter()
                            .map(|p| format!("{{{p}}}"))
                            .collect::<Vec<_>>()
                            .join(" ")
                    )),
                );
            }
            let status = status(ctx, t, 301, &[301, 302, 303, 307, 308], "redirect");
            Action::Redirect(RedirectAction {
                template: template.to_string(),
                status,
            })
        }
        _ => {
            let (body, _) = ctx.str(t, "respond")?;
            let status = status(ctx, t, 200, &[], "respond");
            let content_type = match ctx.str(t, "content_type") {
                None => "text/plain".to_string(),
                Some((ct, span)) => {
                    if ct.is_empty() || ct.bytes().any(|b| b.is_ascii_control()) {
                        ctx.err(
                            &span,
                            format!("bad `content_type` `{ct}`"),
                            Some("for example \"text/html; charset=utf-8\"".into()),
                        );
                    }
                    ct.to_string()
                }
            };
            Action::Respond(RespondAction {
                body: body.to_string(),
                status,
                content_type,
            })
        }
    };
    let matcher_span = ctx.get(t, matcher_key).map_or(v.span(), |m| m.span());
    Some((
        Route {
            index,
            matcher,
            action,
        },
        matcher_span,
    ))
}

/// The one key of `keys` present in `t`; reports none or several.
fn one_of(
    ctx: &mut Ctx<'_>,
    t: Tbl<'_, '_>,
    keys: &'static [&'static str],
    kind: &str,
    span: &Span,
    what: &str,
) -> Option<&'static str> {
    let mut present: Vec<(&'static str, Span)> = keys
        .iter()
        .filter_map(|k| ctx.key_span(t, k).map(|span| (*k, span)))
        .collect();
    present.sort_by_key(|(_, span)| span.start);
    match present.as_slice() {
        [] => {
            ctx.err(
                span,
                format!("{what} has none of the {kind} {}", list(keys)),
                Some(format!("a route needs exactly one of {}", list(keys))),
            );
            None
        }
        [(one, _)] => Some(one),
        [(first, first_span), rest @ ..] => {
            let first_at = ctx.location(first_span.start);
            for (k, s) in rest {
                ctx.err(
                    s,
                    format!("{what} has two {kind}: `{first}` (at {first_at}) and `{k}`"),
                    Some("a route has exactly one; split it into two routes".into()),
                );
            }
            None
        }
    }
}

fn matcher(ctx: &mut Ctx<'_>, t: Tbl<'_, '_>, key: &'static str) -> Option<Matcher> {
    let (s, span) = ctx.str(t, key)?;
    match key {
        "regex" => match regex::Regex::new(s) {
            Ok(re) => Some(Matcher::Regex(re)),
            Err(e) => {
                let reason = e
                    .to_string()
                    .lines()
                    .last()
                    .unwrap_or("invalid")
                    .trim()
                    .to_string();
                ctx.err(&span, format!("regex does not compile: {reason}"), Some("Rust `regex` syntax; escape `\\` twice in a TOML basic string or use '...'".into()));
                None
            }
        },
        _ => {
            if !s.starts_with('/') {
                ctx.err(
                    &span,
                    format!("`{key}` `{s}` must start with `/`"),
                    Some(format!("{key} = \"/{}\"", s.trim_start_matches('/'))),
                );
                return None;
            }
            Some(if key == "path" {
                Matcher::Prefix(s.to_string())
            } else {
                Matcher::Exact(s.to_string())
            })
        }
    }
}

fn status(ctx: &mut Ctx<'_>, t: Tbl<'_, '_>, default: u16, allowed: &[u16], action: &str) -> u16 {
    let Some(v) = ctx.get(t, "status") else {
        return default;
    };
    let Some(n) = ctx.int_value("status", v, 100, 599) else {
        return default;
    };
    let n = n as u16;
    if !allowed.is_empty() && !allowed.contains(&n) {
        let names: Vec<String> = allowed.iter().map(u16::to_string).collect();
        ctx.err(
            &v.span(),
            format!("status {n} is not a {action} status"),
            Some(format!("use one of {}", names.join(", "))),
        );
        return default;
    }
    n
}

fn headers(ctx: &mut Ctx<'_>, t: Tbl<'_, '_>, key: &'static str) -> HeaderRules {
    let mut rules = HeaderRules::default();
    let Some((ht, _)) = ctx.table(t, key) else {
        return rules;
    };
    let ht = ctx.open(ht, Scope::Headers, format!("`{key}`"));
    if let Some((set, _)) = ctx.table(ht, "set") {
        for (name, value) in set.iter() {
            let n: &str = name.get_ref();
            if !is_token(n) {
                ctx.err(
                    &name.span(),
                    format!("`{n}` is not a valid header name"),
                    Some("header names use letters, digits and `-`".into()),
                );
                continue;
            }
            match value.get_ref() {
                DeValue::String(s) if !s.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) => {
                    rules.set.push((n.to_ascii_lowercase(), s.to_string()));
                }
                DeValue::String(_) => ctx.err(
                    &value.span(),
                    format!("header `{n}` has a line break or NUL in its value"),
                    None,
                ),
                _ => ctx.wrong_type(n, value, "a string", "\"value\""),
            }
        }
    }
    if let Some((names, _)) = ctx.str_list(ht, "remove") {
        for (n, span) in names {
            if is_token(&n) {
                rules.remove.push(n.to_ascii_lowercase());
            } else {
                ctx.err(
                    &span,
                    format!("`{n}` is not a valid header name"),
                    Some("header names use letters, digits and `-`".into()),
                );
            }
        }
    }
    rules
}

/// Checks `{name}` placeholders of a redirect template.
pub(crate) fn check_template(s: &str) -> Result<(), String> {
    let mut rest = s;
    while let Some(open) = rest.find(['{', '}']) {
        if rest[open..].starts_with('}') {
            return Err("`}` without `{`".into());
        }
        let after = &rest[open + 1..];
        let Some(close) = after.find('}') else {
            return Err("`{` without `}`".into());
        };
        let name = &after[..close];
        if !PLACEHOLDERS.contains(&name) {
            return Err(format!("unknown placeholder `{{{name}}}`"));
        }
        rest = &after[close + 1..];
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates() {
        assert!(check_template("https://{host}{uri}").is_ok());
        assert!(check_template("{scheme}://example.com{path}?{query}").is_ok());
        assert!(check_template("/plain").is_ok());
        assert_eq!(
            check_template("{hots}"),
            Err("unknown placeholder `{hots}`".into())
        );
        assert_eq!(check_template("a{host"), Err("`{` without `}`".into()));
        assert_eq!(check_template("a}b"), Err("`}` without `{`".into()));
        assert!(check_template("{}").is_err());
    }

    #[test]
    fn every_option_belongs_to_a_known_action() {
        for (key, owners) in OPTIONS {
            assert!(!MATCHERS.contains(key) && !ACTIONS.contains(key), "{key}");
            assert!(owners.iter().all(|o| ACTIONS.contains(o)), "{key}");
        }
    }

    /// A key a route reader asks for only in its action's branch would be unknown on a route
    /// of another action, instead of "does not apply": every key it asks for must be a
    /// matcher, an action or an option. Asks come from a file with every kind of route.
    #[test]
    fn route_keys_are_the_matchers_actions_and_options() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/everything.toml");
        let text = std::fs::read_to_string(path).unwrap();
        let mut ctx = crate::walk::Ctx::new(&text, std::path::Path::new(path));
        let root = toml::de::DeTable::parse(&text).unwrap();
        crate::walk_root(&mut ctx, root.get_ref());
        let asked = ctx.keys.asked(Scope::Route);
        let declared: std::collections::BTreeSet<&str> = MATCHERS
            .iter()
            .chain(ACTIONS)
            .chain(OPTIONS.iter().map(|(k, _)| k))
            .copied()
            .collect();
        assert_eq!(asked, declared);
    }
}
