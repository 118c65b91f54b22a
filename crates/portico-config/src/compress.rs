//! `compress`, `compress_types`, `compress_min_size`: response compression, read on a site
//! (the default of its routes) and on a route (which replaces the site's value key by key),
//! as part of the traffic policy keys.

use toml::de::DeValue;

use crate::keys::Tbl;
use crate::model::{Coding, CompressKeys};
use crate::walk::Ctx;

/// The three keys of one site or route table.
pub(crate) fn compress_keys(ctx: &mut Ctx<'_>, t: Tbl<'_, '_>) -> CompressKeys {
    let codings = ctx.get(t, "compress").and_then(|v| match v.get_ref() {
        DeValue::Boolean(true) => Some(Coding::ALL.to_vec()),
        DeValue::Boolean(false) => Some(Vec::new()),
        DeValue::Array(items) => {
            let mut out: Vec<Coding> = Vec::new();
            for item in items.iter() {
                let DeValue::String(s) = item.get_ref() else {
                    ctx.wrong_type(
                        "compress",
                        item,
                        "a list of codings",
                        "[\"zstd\", \"br\", \"gzip\"]",
                    );
                    continue;
                };
                match Coding::ALL.iter().find(|c| c.token() == s.as_ref()) {
                    Some(c) if out.contains(c) => {
                        ctx.err(&item.span(), format!("`compress` lists `{s}` twice"), None)
                    }
                    Some(c) => out.push(*c),
                    None => ctx.err(
                        &item.span(),
                        format!("unknown coding `{s}` in `compress`"),
                        Some("allowed: `zstd`, `br`, `gzip` (in order of preference)".into()),
                    ),
                }
            }
            if items.is_empty() {
                ctx.err(
                    &v.span(),
                    "`compress` is an empty list",
                    Some("write `compress = false` to turn compression off".into()),
                );
            }
            Some(out)
        }
        _ => {
            ctx.wrong_type(
                "compress",
                v,
                "true, false or a list of codings",
                "[\"zstd\", \"br\", \"gzip\"]",
            );
            None
        }
    });
    let types = ctx.str_list(t, "compress_types").map(|(items, _)| {
        let mut out = Vec::with_capacity(items.len());
        for (s, span) in items {
            let ty = s.trim().to_ascii_lowercase();
            let ok = ty.split_once('/').is_some_and(|(a, b)| {
                let token = |p: &str| {
                    !p.is_empty()
                        && p.bytes()
                            .all(|c| c.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&c))
                };
                token(a) && (b == "*" || token(b))
            });
            if ok {
                out.push(ty);
            } else {
                ctx.err(
                    &span,
                    format!("bad media type `{s}` in `compress_types`"),
                    Some(
                        "write `type/subtype` or `type/*`, e.g. \"text/*\", \"application/json\""
                            .into(),
                    ),
                );
            }
        }
        out
    });
    let min_size = ctx.has(t, "compress_min_size").then(|| {
        ctx.size(
            t,
            "compress_min_size",
            crate::model::DEFAULT_COMPRESS_MIN_SIZE,
        )
    });
    CompressKeys {
        codings,
        types,
        min_size,
    }
}
