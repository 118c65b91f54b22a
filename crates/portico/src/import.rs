//! `portico import nginx|keepalived FILE [-o OUT]`: convert with `portico-import`, print the
//! report (FILE:LINE: kind: `directive`: why) on stderr, write the TOML (OUT or stdout),
//! then validate it as `portico check` does: exit 0 valid, 1 invalid (or the source cannot
//! be parsed), 2 when a file cannot be read or written.

use anyhow::Context as _;

use crate::check;
use crate::cli::{ImportArgs as Args, ImportKind};
use crate::exit::Failure;

pub fn import(args: Args) -> Result<(), Failure> {
    if let Some(out) = &args.output
        && out.exists()
        && !args.force
    {
        return Err(anyhow::anyhow!(
            "{} exists: choose another -o, or add --force to replace it",
            out.display()
        )
        .into());
    }
    let converted = match args.kind {
        ImportKind::Nginx => portico_import::nginx(
            &args.file,
            &portico_import::NginxOptions {
                acme_email: args.acme_email.clone(),
                prefix: args.nginx_prefix.clone(),
            },
        ),
        ImportKind::Keepalived => portico_import::keepalived(&args.file),
    };
    let conversion = match converted {
        Ok(c) => c,
        Err(e @ portico_import::ImportError::Syntax { .. }) => {
            return Err(Failure::InvalidConfig(format!("portico import: {e}")));
        }
        Err(e) => return Err(anyhow::Error::new(e).context("import failed").into()),
    };
    eprint!("{}", conversion.report);
    eprintln!(
        "portico import: {}: {}",
        args.file.display(),
        conversion.report.summary()
    );
    match &args.output {
        Some(out) => {
            std::fs::write(out, &conversion.toml)
                .with_context(|| format!("cannot write {}", out.display()))?;
            eprintln!("portico import: wrote {}", out.display());
            check::load(out)?;
            eprintln!("{}: configuration is valid", out.display());
        }
        None => {
            print!("{}", conversion.toml);
            // Relative paths would resolve against the folder the file is saved in; the
            // importer writes absolute ones, so the current folder stands in for it.
            let path = std::env::current_dir()
                .unwrap_or_default()
                .join("portico.toml");
            portico_config::parse(&conversion.toml, &path).map_err(|e| {
                Failure::InvalidConfig(format!(
                    "{e}\nportico import: the converted configuration is invalid"
                ))
            })?;
            eprintln!("portico import: the converted configuration is valid");
        }
    }
    Ok(())
}
